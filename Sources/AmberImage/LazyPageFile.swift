/// A page file whose pages are handed out a few chunks at a time, for a lazy restore: the
/// chunks are read into the caller's buffer and their checksums checked there, so what is
/// handed out is exactly what was checked, whatever happens to the file meanwhile.
public final class LazyPageFile: @unchecked Sendable {
    private let entry: Amber_ImageFile
    /// Read only with `read(into:at:)`, which may be called from several threads at once.
    private let file: any ImageStoreFile
    /// For a compressed or encrypted file: how its chunks decode, and where each starts in the file.
    private let codec: ChunkCodec?
    private let storedOffsets: [UInt64]

    init(entry: Amber_ImageFile, file: any ImageStoreFile, sealing: ImageSealing?) {
        self.entry = entry
        self.file = file
        codec = entry.isCoded ? ChunkCodec(entry: entry, sealing: sealing) : nil
        storedOffsets = entry.storedOffsets
    }

    public var name: String { entry.name }
    public var size: UInt64 { entry.size }
    /// The checksum chunk's size: the unit `read(_:into:)` reads and checks.
    public var chunkSize: UInt64 { entry.chunkSize }

    /// The chunk-aligned bytes around `bytes` (a range of the file), as far as `limit` bytes
    /// allow: whole chunks, the last one shorter at the end of the file.
    public func chunks(around bytes: Range<UInt64>, limit: UInt64) -> Range<UInt64> {
        let start = bytes.lowerBound / chunkSize * chunkSize
        let wanted = (bytes.upperBound + chunkSize - 1) / chunkSize * chunkSize
        return start..<min(size, wanted, start + max(chunkSize, limit / chunkSize * chunkSize))
    }

    /// Reads `bytes` (from `chunks(around:limit:)`) into `buffer` and checks every chunk of
    /// them; throws `.truncated` if the file ends early, `.checksumMismatch` naming the chunk.
    public func read(_ bytes: Range<UInt64>, into buffer: UnsafeMutableRawBufferPointer) throws(ImageError)
        -> UnsafeRawBufferPointer
    {
        let count = Int(bytes.upperBound - bytes.lowerBound)
        precondition(bytes.lowerBound % chunkSize == 0 && count <= buffer.count)
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])
        if let codec {
            let stored = UnsafeMutableRawBufferPointer.allocate(
                byteCount: Int(chunkSize) + ImageSealing.tagSize, alignment: Int(ImageFormat.pageSize))
            defer { stored.deallocate() }
            var index = Int(bytes.lowerBound / chunkSize)
            var offset = 0
            while offset < count {
                let plain = Int(entry.plainRange(ofChunk: index).count)
                try ImageReader.decodeChunk(
                    entry, index: index, offset: storedOffsets[index], file: file, codec: codec, stored: stored,
                    into: UnsafeMutableRawBufferPointer(rebasing: target[offset..<(offset + plain)]))
                offset += plain
                index += 1
            }
            return UnsafeRawBufferPointer(target)
        }
        let read = try file.read(into: target, at: bytes.lowerBound)
        guard read == count else {
            throw ImageError(
                .truncated, file: entry.name,
                detail: "it ended at byte \(bytes.lowerBound + UInt64(read)) while its bytes \(bytes) were being read")
        }
        var check = ChecksumCheck(entry, from: bytes.lowerBound)
        try check.update(UnsafeRawBufferPointer(target))
        if bytes.upperBound == entry.size { try check.finish() }
        return UnsafeRawBufferPointer(target)
    }
}
