/// Checks a file's bytes, fed in order in any slicing, against its inventory checksums:
/// each chunk as soon as it is complete, so a mismatch is reported with the bytes it is in.
/// Chunks are independent, so several checks can each take a run of them.
struct ChecksumCheck {
    private let entry: Amber_ImageFile
    /// Bytes fed so far.
    private var offset: UInt64 = 0
    private var hash = XXH64()

    /// Checks the file from byte `offset` on, which must start a chunk (or be 0).
    init(_ entry: Amber_ImageFile, from offset: UInt64 = 0) {
        self.entry = entry
        self.offset = offset
    }

    /// Checks that an entry's checksum fields fit its size; `field` names the entry in errors.
    static func checkFields(of entry: Amber_ImageFile, field: String) throws(ImageError) {
        func invalid(_ detail: String) -> ImageError {
            ImageError(.invalid, file: ImageFormat.inventoryName, detail: "\(field) (\(entry.name)): \(detail)")
        }
        if entry.chunkSize == 0 {
            guard entry.chunkXxh64.isEmpty else { throw invalid("chunk_xxh64 is set but chunk_size is 0") }
            return
        }
        guard entry.chunkSize % ImageFormat.pageSize == 0, entry.chunkSize <= ImageFormat.maximumChunkSize else {
            throw invalid(
                "chunk_size \(entry.chunkSize) is not a whole number of pages up to \(ImageFormat.maximumChunkSize >> 20) MiB"
            )
        }
        guard entry.xxh64 == 0 else { throw invalid("a file checksummed in chunks has a whole-file xxh64 too") }
        let chunks = entry.size / entry.chunkSize + (entry.size % entry.chunkSize == 0 ? 0 : 1)
        guard UInt64(entry.chunkXxh64.count) == chunks else {
            throw invalid(
                "\(entry.chunkXxh64.count) chunk checksums for \(entry.size) bytes in chunks of \(entry.chunkSize): expected \(chunks)"
            )
        }
    }

    /// Hashes the next bytes of the file; throws `.checksumMismatch` when a chunk they complete differs.
    mutating func update(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
        guard entry.chunkSize > 0 else {
            hash.update(bytes)
            offset += UInt64(bytes.count)
            return
        }
        var start = 0
        while start < bytes.count {
            let room = Int(entry.chunkSize - offset % entry.chunkSize)
            let end = min(bytes.count, start + room)
            hash.update(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            offset += UInt64(end - start)
            start = end
            if offset % entry.chunkSize == 0 { try checkChunk() }
        }
    }

    /// Checks what is left: the last, shorter chunk, or the whole-file checksum.
    mutating func finish() throws(ImageError) {
        if entry.chunkSize == 0 {
            guard hash.digest == entry.xxh64 else {
                throw ImageError(
                    .checksumMismatch, file: entry.name,
                    detail: "its XXH64 is \(hex(hash.digest)), the inventory lists \(hex(entry.xxh64))",
                    byteRange: 0..<offset)
            }
        } else if offset % entry.chunkSize != 0 {
            try checkChunk()
        }
    }

    private mutating func checkChunk() throws(ImageError) {
        let index = Int((offset - 1) / entry.chunkSize)
        let start = UInt64(index) * entry.chunkSize
        let digest = hash.digest
        hash = XXH64()
        guard index < entry.chunkXxh64.count, digest == entry.chunkXxh64[index] else {
            let listed = index < entry.chunkXxh64.count ? hex(entry.chunkXxh64[index]) : "none"
            throw ImageError(
                .checksumMismatch, file: entry.name,
                detail:
                    "bytes \(hexRange(start, offset)) (chunk \(index) of \(entry.chunkXxh64.count)) have XXH64 \(hex(digest)), the inventory lists \(listed)",
                byteRange: start..<offset)
        }
    }
}
