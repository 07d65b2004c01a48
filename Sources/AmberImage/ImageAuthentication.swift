import Crypto

/// A host's secret for authenticating the images its root dumps (docs/security.md): 32 bytes.
public struct ImageKey: Sendable {
    public static let size = 32
    private let bytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: bytes) }

    /// nil unless `bytes` has exactly `ImageKey.size` bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size else { return nil }
        self.bytes = bytes
    }

    /// A new key from the system's secure random source.
    public static func random() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }
}

/// Whether an image was written by a dump that held this host's key.
public enum ImageAuthenticity: Sendable, Equatable, CustomStringConvertible {
    /// `inventory.mac` matches the inventory and every record under the key.
    case authenticated
    /// No `inventory.mac`: written by a user's dump (who cannot read the key), or by hand.
    case noCode
    /// `inventory.mac` does not match: changed since the dump, or written on another host.
    case mismatch
    /// No key to check with: the reader is not root, or this host never wrote an authenticated image.
    case noKey

    public var isAuthenticated: Bool { self == .authenticated }

    public var description: String {
        switch self {
        case .authenticated: "authenticated: written by root's amber dump on this host, unchanged since"
        case .noCode:
            "not authenticated: it has no \(ImageFormat.macName) (a user's dump, or not made by amber dump as root)"
        case .mismatch:
            "not authenticated: its \(ImageFormat.macName) does not match (changed since the dump, or dumped on another host)"
        case .noKey:
            "not authenticated: this host's image key cannot be read (only root reads it), or this host has none"
        }
    }
}

/// The code in `inventory.mac`: HMAC-SHA256 under the host key of the inventory's bytes and
/// the SHA-256 of every record it lists (entries without chunk checksums), in its order. The
/// records are bound by SHA-256 rather than by their XXH64, which anyone can forge; page files
/// only by their XXH64 chunks (hashing all memory with SHA-256 would slow every dump).
enum ImageMAC {
    static let size = 32
    private static let domain = Array("amber image mac 1\u{0}".utf8)

    static func isRecord(_ entry: Amber_ImageFile) -> Bool { entry.chunkSize == 0 }

    static func digest(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }

    /// `recordDigests`: the SHA-256 of each record the inventory lists, by name.
    static func code(
        key: ImageKey, inventory bytes: [UInt8], entries: [Amber_ImageFile], recordDigests: [String: [UInt8]]
    ) -> [UInt8]? {
        var mac = HMAC<SHA256>(key: key.key)
        mac.update(data: domain)
        mac.update(data: withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { Array($0) })
        mac.update(data: bytes)
        for entry in entries where isRecord(entry) {
            guard let digest = recordDigests[entry.name] else { return nil }
            mac.update(data: digest)
        }
        return Array(mac.finalize())
    }

    /// Compares in time independent of where the codes differ.
    static func matches(_ code: [UInt8], _ expected: [UInt8]) -> Bool {
        guard code.count == expected.count else { return false }
        return zip(code, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension ImageKey {
    /// The `inventory.mac` that an image of `files` (name to contents) would carry under this
    /// key, or nil when its inventory does not decode or a record it lists is missing: how
    /// the fuzz target seals mutated images so that they reach the authenticated path.
    public func authenticationCode(forImage files: [String: [UInt8]]) -> [UInt8]? {
        guard let bytes = files[ImageFormat.inventoryName], let inventory = try? Amber_Inventory(serializedBytes: bytes)
        else { return nil }
        var digests: [String: [UInt8]] = [:]
        for entry in inventory.files where ImageMAC.isRecord(entry) {
            guard let record = files[entry.name] else { return nil }
            digests[entry.name] = ImageMAC.digest(record)
        }
        return ImageMAC.code(key: self, inventory: bytes, entries: inventory.files, recordDigests: digests)
    }
}
