import Amber
import AmberImage
import ArgumentParser

/// `--encrypt-key FILE`, for every command that writes or reads an image (docs/security.md).
struct EncryptionOptions: ParsableArguments {
    @Option(
        name: .customLong("encrypt-key"),
        help: ArgumentHelp(
            "The image is encrypted with the key in FILE (AES-256-GCM): a dump seals every file with it, the other commands need it to read the image.",
            discussion:
                "FILE holds exactly 32 random bytes and no other user may read or write it: head -c 32 /dev/urandom > FILE; chmod 600 FILE. Without the key nothing of the image is readable but its file names and sizes.",
            valueName: "FILE"))
    var keyFile: String?

    /// The key read from FILE, or nil without the option; exits with a message on a bad key file.
    func key() -> ImageEncryptionKey? {
        guard let keyFile else { return nil }
        do {
            return try ImageEncryptionKey(file: keyFile)
        } catch {
            fail(AmberError(.failure, "--encrypt-key \(keyFile): \(error.detail)"))
        }
    }
}
