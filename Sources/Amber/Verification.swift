import AmberImage

/// Reads an image through and checks it, without restoring anything: what `amber verify` does.
public enum Verification {
    /// What a check of an image found, once every file and record passed.
    public struct Report: Sendable {
        /// The PID of the image's root process, and how many processes (zombies included) it holds.
        public let rootPID: Int32
        public let processes: Int
        /// The files the inventory lists, and their bytes: each checked against its checksums.
        public let files: Int
        public let bytes: UInt64
        /// Whether root's `amber dump` on this host wrote the image, unchanged since; only root
        /// can tell (docs/security.md).
        public let isAuthenticated: Bool
        /// One line on the image's authenticity, and if it has none, why.
        public let authenticity: String
    }

    /// Checks the inventory, every file it lists against its checksums, and every task record
    /// field by field and against the others (docs/image-format.md). Throws `.badImage` naming
    /// the first file that fails (for a page file, the byte range of the bad chunk).
    public static func run(directory: String, encryptionKey: ImageEncryptionKey? = nil) throws(AmberError) -> Report {
        let key = try HostImageKey.forCheck()
        do {
            let reader = try ImageReader(directory: directory, key: key, encryptionKey: encryptionKey)
            _ = try reader.tasks()
            // An incremental image's chain was checked with it: its files count too.
            var chain: [Amber_ImageFile] = []
            var link: ImageReader? = reader
            while let image = link {
                chain += image.inventory.files
                link = image.parent
            }
            return Report(
                rootPID: reader.inventory.rootPid, processes: reader.taskPIDs.count,
                files: chain.count, bytes: chain.reduce(0) { $0 + $1.size },
                isAuthenticated: reader.authenticity.isAuthenticated, authenticity: reader.authenticity.description)
        } catch {
            throw AmberError(.badImage, error.description)
        }
    }
}
