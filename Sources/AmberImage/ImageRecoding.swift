import FoundationEssentials
import SwiftProtobuf

/// The files of a plain image (name to contents, as `ImageReader(files:)` takes them) stored as
/// `storage` says, exactly as `ImageWriter` would have stored them: for tests and the fuzz target,
/// which make images in memory. Nil when the inventory does not decode or lists a missing file.
public func recodedImage(_ files: [String: [UInt8]], storage: ImageStorage) -> [String: [UInt8]]? {
    guard let bytes = files[ImageFormat.inventoryName], var inventory = try? Amber_Inventory(serializedBytes: bytes)
    else { return nil }
    let sealing = storage.encryptionKey.map { ImageSealing(key: $0) }
    var result = files
    for index in inventory.files.indices {
        var entry = inventory.files[index]
        guard let contents = files[entry.name] else { return nil }
        let isPageFile = entry.chunkSize > 0
        let compress = storage.compress && isPageFile
        guard compress || sealing != nil, UInt64(contents.count) == entry.size else { continue }
        let codec = ChunkCodec(name: entry.name, compress: compress, sealing: sealing)
        let step = isPageFile ? Int(entry.chunkSize) : max(contents.count, 1)
        let encoder = ChunkEncoder(chunkSize: step)
        var stored: [UInt8] = []
        var sizes: [UInt64] = []
        var digests: [UInt64] = []
        let starts = Array(stride(from: 0, to: max(contents.count, isPageFile ? 0 : 1), by: step))
        for (chunk, start) in starts.enumerated() {
            let end = min(start + step, contents.count)
            let encoded = withExtendedLifetime(encoder) {
                contents.withUnsafeBytes {
                    Array(
                        codec.encode(
                            UnsafeRawBufferPointer(rebasing: $0[start..<end]), index: UInt64(chunk),
                            isLast: chunk == starts.count - 1, encoder: encoder))
                }
            }
            stored += encoded
            sizes.append(UInt64(encoded.count))
            digests.append(encoded.withUnsafeBytes { XXH64.hash($0) })
        }
        entry.storedChunkSize = sizes
        entry.compressed = compress
        entry.encrypted = sealing != nil
        if isPageFile { entry.chunkXxh64 = digests } else { entry.xxh64 = digests[0] }
        inventory.files[index] = entry
        result[entry.name] = stored
    }
    if let sealing {
        inventory.encryption = sealing.record
        guard let unsealed = try? inventory.serializedBytes() as [UInt8] else { return nil }
        inventory.encryption.inventoryCode = Data(sealing.inventoryCode(unsealed))
    }
    let inventoryBytes: [UInt8]? = try? inventory.serializedBytes()
    result[ImageFormat.inventoryName] = inventoryBytes
    result[ImageFormat.inventoryChecksumName] = inventoryBytes.map { InventoryChecksum.file(forInventory: $0) }
    result[ImageFormat.macName] = nil
    return result
}

extension ImageEncryptionKey {
    /// Sets an encrypted inventory's `inventory_code` under this key, as the writer does (the
    /// fuzz target reseals mutated inventories with it); leaves any other inventory as it is.
    public func sealInventory(_ inventory: inout Amber_Inventory) {
        guard inventory.hasEncryption, inventory.encryption.salt.count == ImageSealing.saltSize else { return }
        let sealing = ImageSealing(key: self, salt: Array(inventory.encryption.salt))
        inventory.encryption.inventoryCode = Data()
        guard let bytes = try? inventory.serializedBytes() as [UInt8] else { return }
        inventory.encryption.inventoryCode = Data(sealing.inventoryCode(bytes))
    }
}
