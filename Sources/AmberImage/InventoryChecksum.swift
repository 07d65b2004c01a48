/// The inventory's own checksum, in `inventory.xxh64` beside it: the XXH64 of `inventory.pb`'s
/// bytes, which the inventory cannot list itself. A byte flipped anywhere in the inventory, an
/// unused field or a padding byte included, is then a checksum mismatch, as in any other file.
///
/// The file holds one line as `xxhsum -H1` prints it, 16 lowercase hex digits, two spaces and
/// the inventory's name (`xxhsum -c inventory.xxh64` checks it too), so the inventory stays a
/// plain protobuf message.
public enum InventoryChecksum {
    /// The contents of `inventory.xxh64` for an inventory of these bytes.
    public static func file(forInventory bytes: [UInt8]) -> [UInt8] {
        let digest = bytes.withUnsafeBytes { XXH64.hash($0) }
        let digits = String(digest, radix: 16)
        let line = String(repeating: "0", count: 16 - digits.count) + digits + "  " + ImageFormat.inventoryName + "\n"
        return Array(line.utf8)
    }

    /// The file's size: every checksum file is one line of this many bytes.
    static let fileSize = 16 + 2 + ImageFormat.inventoryName.utf8.count + 1

    /// Checks the inventory's bytes against the contents of `inventory.xxh64`: `.corrupt` naming
    /// the checksum file when it is not one such line, `.checksumMismatch` naming the inventory
    /// when the digests differ.
    static func check(_ file: [UInt8], inventory bytes: [UInt8]) throws(ImageError) {
        let line = String(decoding: file, as: UTF8.self)
        let suffix = "  " + ImageFormat.inventoryName + "\n"
        let digits = line.dropLast(suffix.count)
        guard file.count == fileSize, line.hasSuffix(suffix),
            digits.allSatisfy({ $0.isHexDigit && !$0.isUppercase }),
            let listed = UInt64(digits, radix: 16)
        else {
            throw ImageError(
                .corrupt, file: ImageFormat.inventoryChecksumName,
                detail: "it is not one line of 16 lowercase hex digits, two spaces and \(ImageFormat.inventoryName)")
        }
        let digest = bytes.withUnsafeBytes { XXH64.hash($0) }
        guard digest == listed else {
            throw ImageError(
                .checksumMismatch, file: ImageFormat.inventoryName,
                detail: "its XXH64 is \(hex(digest)), \(ImageFormat.inventoryChecksumName) lists \(hex(listed))",
                byteRange: 0..<UInt64(bytes.count))
        }
    }
}
