import Glibc

/// Why an image could not be written, read or trusted: what went wrong, in
/// which file of the image, and a sentence for the person reading the error.
public struct ImageError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// A file the image needs does not exist (for `inventory.pb`: no image, or an incomplete one).
        case missing
        /// A file is shorter than the inventory says.
        case truncated
        /// A file cannot be decoded, or its size does not match the inventory.
        case corrupt
        /// A file's contents differ from the checksum in the inventory.
        case checksumMismatch
        /// The inventory names a format version this build does not read.
        case unsupportedVersion
        /// A record decodes but breaks a rule of the format (a field out of range, a bad path, ...).
        case invalid
        /// The writer was given a directory that already holds files.
        case directoryNotEmpty
        /// A system call failed.
        case io
    }

    public let kind: Kind
    /// The file concerned, relative to the image directory (the directory itself for directory errors).
    public let file: String
    public let detail: String
    /// For `.checksumMismatch`: the bytes of `file` whose checksum differs (one chunk, or the whole file).
    public let byteRange: Range<UInt64>?

    public init(_ kind: Kind, file: String, detail: String, byteRange: Range<UInt64>? = nil) {
        self.kind = kind
        self.file = file
        self.detail = detail
        self.byteRange = byteRange
    }

    public var description: String {
        switch kind {
        case .missing: "image file \(file) is missing: \(detail)"
        case .truncated: "image file \(file) is truncated: \(detail)"
        case .corrupt: "image file \(file) is corrupt: \(detail)"
        case .checksumMismatch: "image file \(file) does not match its checksum: \(detail)"
        case .unsupportedVersion: "image file \(file) has an unsupported format version: \(detail)"
        case .invalid: "image file \(file) is invalid: \(detail)"
        case .directoryNotEmpty: "image directory \(file) is not empty: \(detail)"
        case .io: "image file \(file): \(detail)"
        }
    }

    /// An `.io` error for the current `errno`, e.g. "write failed: No space left on device (errno 28)".
    static func system(_ operation: String, file: String, errno code: CInt = Glibc.errno) -> ImageError {
        let message = strerror(code).map { String(cString: $0) } ?? "unknown error"
        return ImageError(.io, file: file, detail: "\(operation) failed: \(message) (errno \(code))")
    }
}

/// "0x" and lowercase hex digits: how addresses and checksums appear in error details.
func hex(_ value: UInt64) -> String {
    "0x" + String(value, radix: 16)
}

/// A half-open range as `0x1000-0x2000` (as /proc/PID/maps prints one): how byte and address
/// ranges appear in error details and in `amber show`.
func hexRange(_ start: UInt64, _ end: UInt64) -> String {
    hex(start) + "-" + hex(end)
}
