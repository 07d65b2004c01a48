import Glibc

/// Reading compressed and encrypted files (`Amber_ImageFile.isCoded`): each stored chunk's
/// XXH64 is checked before it is opened or decompressed, and it must decode to exactly its
/// plain size.
extension ImageReader {
    /// Reads stored chunk `index` of `entry` (at `offset` in the file) into `stored`, checks
    /// its XXH64 and decodes it into `plain`, which has its plain size (a chunk stored as it is
    /// is read into `plain` and checked there).
    static func decodeChunk(
        _ entry: Amber_ImageFile, index: Int, offset: UInt64, file: any ImageStoreFile, codec: ChunkCodec,
        stored: UnsafeMutableRawBufferPointer, into plain: UnsafeMutableRawBufferPointer
    ) throws(ImageError) {
        let count = Int(entry.storedChunkSize[index])
        let range = offset..<(offset + UInt64(count))
        // A chunk stored as it is (not sealed, not smaller) is read straight into its place.
        let storedPlain = codec.key == nil && count == plain.count
        let target = storedPlain ? plain : UnsafeMutableRawBufferPointer(rebasing: stored[..<count])
        let read = try file.read(into: target, at: offset)
        guard read == count else {
            throw ImageError(
                .truncated, file: entry.name,
                detail: "it ended at byte \(offset + UInt64(read)) while its stored bytes \(range) were being read")
        }
        let digest = XXH64.hash(UnsafeRawBufferPointer(target))
        let listed = entry.chunkSize == 0 ? entry.xxh64 : entry.chunkXxh64[index]
        guard digest == listed else {
            throw ImageError(
                .checksumMismatch, file: entry.name,
                detail:
                    "stored bytes \(range) (\(hex(range.lowerBound))..<\(hex(range.upperBound)), chunk \(index) of \(entry.storedChunkSize.count)) have XXH64 \(hex(digest)), the inventory lists \(hex(listed))",
                byteRange: range)
        }
        guard !storedPlain else { return }
        try codec.decode(
            UnsafeRawBufferPointer(target), index: UInt64(index), isLast: index == entry.storedChunkSize.count - 1,
            range: range, into: plain)
    }

    /// Decodes the chunks `chunks` of a coded page file: into `destination` at their plain
    /// offsets, or, when it is nil, into a scratch buffer only to check them.
    static func decodeChunks(
        _ entry: Amber_ImageFile, _ chunks: Range<Int>, file: any ImageStoreFile, codec: ChunkCodec,
        offsets: [UInt64], into destination: UnsafeMutableRawPointer?
    ) throws(ImageError) {
        let chunkSize = Int(entry.chunkSize)
        let stored = UnsafeMutableRawBufferPointer.allocate(
            byteCount: chunkSize + ImageSealing.tagSize, alignment: Int(ImageFormat.pageSize))
        defer { stored.deallocate() }
        let scratch =
            destination == nil ? UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 64) : nil
        defer { scratch?.deallocate() }
        for index in chunks {
            let plainRange = entry.plainRange(ofChunk: index)
            let count = Int(plainRange.count)
            let plain =
                destination.map { UnsafeMutableRawBufferPointer(start: $0 + Int(plainRange.lowerBound), count: count) }
                ?? UnsafeMutableRawBufferPointer(rebasing: scratch![..<count])
            try decodeChunk(
                entry, index: index, offset: offsets[index], file: file, codec: codec, stored: stored, into: plain)
        }
    }

    /// Decodes a coded page file's chunks on every CPU, into `destination` or only to check them.
    static func decodeAll(
        _ entry: Amber_ImageFile, file: any ImageStoreFile, sealing: ImageSealing?,
        into destination: UnsafeMutableRawPointer?
    ) throws(ImageError) {
        let codec = ChunkCodec(entry: entry, sealing: sealing)
        let offsets = entry.storedOffsets
        let chunks = entry.storedChunkSize.count
        let parts = max(1, min(chunks, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let ranges = (0..<parts).map { part in (chunks * part / parts)..<(chunks * (part + 1) / parts) }
        // Each part reads with pread into buffers of its own, and writes its own chunks only.
        nonisolated(unsafe) let shared = file
        nonisolated(unsafe) let target = destination
        let results = ranges.concurrentMap { chunks in
            Result { () throws(ImageError) in
                try decodeChunks(entry, chunks, file: shared, codec: codec, offsets: offsets, into: target)
            }
        }
        for result in results { try result.get() }
    }

    /// Checks every chunk of a coded page file: its XXH64, then that it opens and decompresses.
    static func verifyCoded(_ entry: Amber_ImageFile, file: any ImageStoreFile, sealing: ImageSealing?)
        throws(ImageError)
    {
        try decodeAll(entry, file: file, sealing: sealing, into: nil)
    }

    /// A coded page file, decoded whole into memory of its own (what restore hands out pages from).
    static func decodedPageFile(_ entry: Amber_ImageFile, file: any ImageStoreFile, sealing: ImageSealing?)
        throws(ImageError) -> MappedPageFile
    {
        guard entry.size > 0 else {
            return MappedPageFile(
                name: entry.name, bytes: UnsafeRawBufferPointer(start: nil, count: 0), backing: .mapping)
        }
        guard
            let base = mmap(nil, Int(entry.size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            base != MAP_FAILED
        else { throw .system("mmap \(entry.size) bytes to decode", file: entry.name) }
        let pages = MappedPageFile(
            name: entry.name, bytes: UnsafeRawBufferPointer(start: base, count: Int(entry.size)), backing: .mapping)
        try decodeAll(entry, file: file, sealing: sealing, into: base)
        return pages
    }

    /// A record stored sealed: one chunk, checked and opened.
    static func readCodedRecord(_ entry: Amber_ImageFile, file: any ImageStoreFile, sealing: ImageSealing?)
        throws(ImageError) -> [UInt8]
    {
        let codec = ChunkCodec(entry: entry, sealing: sealing)
        let stored = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Int(entry.storedChunkSize[0]), alignment: 16)
        defer { stored.deallocate() }
        var result: Result<Void, ImageError> = .success(())
        let bytes = [UInt8](unsafeUninitializedCapacity: Int(entry.size)) { buffer, initialized in
            result = Result { () throws(ImageError) in
                try decodeChunk(
                    entry, index: 0, offset: 0, file: file, codec: codec, stored: stored,
                    into: UnsafeMutableRawBufferPointer(buffer))
            }
            initialized = (try? result.get()) != nil ? buffer.count : 0
        }
        try result.get()
        return bytes
    }
}
