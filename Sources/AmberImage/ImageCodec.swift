import CZstd
import Crypto
import FoundationEssentials
import Glibc

/// How a dump stores its files: page files compressed (`--compress`), every file sealed under a
/// key (`--encrypt-key`), or plain.
public struct ImageStorage: Sendable {
    public var compress: Bool
    public var encryptionKey: ImageEncryptionKey?

    public init(compress: Bool = false, encryptionKey: ImageEncryptionKey? = nil) {
        self.compress = compress
        self.encryptionKey = encryptionKey
    }

    public static let plain = ImageStorage()
}

/// The key of `--encrypt-key`: a file of exactly 32 random bytes that no other user can read or write
/// (`head -c 32 /dev/urandom > key; chmod 600 key`).
public struct ImageEncryptionKey: Sendable {
    public static let size = 32
    /// Kept as bytes: SymmetricKey is not Sendable.
    private let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.size else { return nil }
        self.bytes = bytes
    }

    var key: SymmetricKey { SymmetricKey(data: bytes) }

    /// Reads the key file at `path`; refuses a file of another size, or one other users can read or write.
    public init(file path: String) throws(ImageError) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .system("open the key file", file: path) }
        defer { close(fd) }
        let status = try fileStatus(fd, file: path)
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw ImageError(.invalid, file: path, detail: "the key file is not a regular file")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw ImageError(
                .invalid, file: path,
                detail:
                    "the key file is open to other users (mode \(String(status.st_mode & 0o777, radix: 8))): chmod 600 it"
            )
        }
        guard status.st_size == Self.size else {
            throw ImageError(
                .invalid, file: path,
                detail:
                    "the key file has \(status.st_size) bytes, not \(Self.size) (make one with head -c 32 /dev/urandom > KEY)"
            )
        }
        var bytes = [UInt8](repeating: 0, count: Self.size + 1)
        let count = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(ImageError) in try readFully(fd, into: buffer, file: path) }
        }.get()
        guard count == Self.size, let key = ImageEncryptionKey(bytes: Array(bytes[..<count])) else {
            throw ImageError(.invalid, file: path, detail: "the key file changed size while it was read")
        }
        self = key
    }
}

/// The keys of one encrypted image, derived from the key file and the image's salt with
/// HKDF-SHA256: one per file (so the chunk index alone is a nonce that never repeats under a
/// key), one for the key check and the inventory's code.
struct ImageSealing: Sendable {
    static let algorithm = "AES-256-GCM"
    static let saltSize = 32
    static let tagSize = 16
    private let key: ImageEncryptionKey
    private let salt: [UInt8]

    init(key: ImageEncryptionKey, salt: [UInt8]) {
        self.key = key
        self.salt = salt
    }

    /// A new image's keys, under a fresh random salt.
    init(key: ImageEncryptionKey) {
        self.init(key: key, salt: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
    }

    private func derive(_ purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key.key, salt: salt, info: Array("amber image 1\u{0}\(purpose)".utf8), outputByteCount: 32
        )
    }

    /// The key of file `name`, as bytes.
    func fileKey(_ name: String) -> [UInt8] { derive("file\u{0}\(name)").withUnsafeBytes { Array($0) } }

    private var checkKey: SymmetricKey { derive("check") }

    var keyCheck: [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array("amber key check".utf8), using: checkKey))
    }

    /// The code over an inventory serialized with `encryption.inventory_code` empty.
    func inventoryCode(_ bytes: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: bytes, using: checkKey))
    }

    /// What the inventory records (its code is set by the writer once the rest is final).
    var record: Amber_ImageEncryption {
        var record = Amber_ImageEncryption()
        record.algorithm = Self.algorithm
        record.salt = Data(salt)
        record.keyCheck = Data(keyCheck)
        return record
    }

    /// Checks an encrypted image's inventory against `key`: the algorithm, the key check and the
    /// inventory's code. Returns the image's keys.
    static func open(_ inventory: Amber_Inventory, key: ImageEncryptionKey?) throws(ImageError) -> ImageSealing? {
        let name = ImageFormat.inventoryName
        guard inventory.hasEncryption else {
            guard key == nil else {
                throw ImageError(
                    .invalid, file: name,
                    detail: "the image is not encrypted: --encrypt-key is for encrypted images only")
            }
            return nil
        }
        let record = inventory.encryption
        guard let key else {
            throw ImageError(.invalid, file: name, detail: "the image is encrypted: give --encrypt-key")
        }
        guard record.algorithm == algorithm, record.salt.count == saltSize else {
            throw ImageError(
                .invalid, file: name,
                detail:
                    "encryption: algorithm \"\(record.algorithm)\" with a \(record.salt.count)-byte salt is not \(algorithm) with a \(saltSize)-byte one"
            )
        }
        let sealing = ImageSealing(key: key, salt: Array(record.salt))
        guard ImageMAC.matches(Array(record.keyCheck), sealing.keyCheck) else {
            throw ImageError(.invalid, file: name, detail: "the key given (--encrypt-key) is not the image's key")
        }
        var unsealed = inventory
        unsealed.encryption.inventoryCode = Data()
        guard let bytes = try? unsealed.serializedBytes() as [UInt8],
            ImageMAC.matches(Array(record.inventoryCode), sealing.inventoryCode(bytes))
        else {
            throw ImageError(
                .checksumMismatch, file: name,
                detail: "it changed since the dump: its code under the key does not match")
        }
        return sealing
    }
}

/// Encodes and decodes the chunks of one file: zstd (when it makes the chunk smaller) and
/// AES-256-GCM, in that order. The associated data of chunk i names the file, i and whether it
/// is the last chunk, so a chunk moved within or between files, or a file cut after a chunk,
/// does not open.
struct ChunkCodec: Sendable {
    let name: String
    let compress: Bool
    /// The file's AES-256 key, as bytes (SymmetricKey is not Sendable); nil when it is not sealed.
    let key: [UInt8]?

    /// zstd's first "fast" level (a negative level): on heap-like data (bench/heap.c) it keeps
    /// 3.2x of level 1's 3.26x at more speed; -3 and below fall under 3x (docs/measurements.md).
    static let level: Int32 = -1

    init(name: String, compress: Bool, sealing: ImageSealing?) {
        self.name = name
        self.compress = compress
        key = sealing?.fileKey(name)
    }

    init(entry: Amber_ImageFile, sealing: ImageSealing?) {
        self.init(name: entry.name, compress: entry.compressed, sealing: entry.encrypted ? sealing : nil)
    }

    private func nonce(_ index: UInt64) -> AES.GCM.Nonce {
        try! AES.GCM.Nonce(data: [0, 0, 0, 0] + withUnsafeBytes(of: index.bigEndian) { Array($0) })
    }

    private func associatedData(_ index: UInt64, isLast: Bool) -> [UInt8] {
        Array("amber chunk 1\u{0}\(name)\u{0}".utf8) + withUnsafeBytes(of: index.bigEndian) { Array($0) }
            + [isLast ? 1 : 0]
    }

    /// Pages sampled from a chunk to tell whether it is worth compressing, and the share of them
    /// compression must save: PRNG data or data compressed already is stored as it is at the
    /// cost of compressing the samples (1/32 of a 1 MiB chunk), not the whole chunk.
    static let samplePages = 8
    private static let sampleSaving = 32

    /// Whether `plain` is worth compressing: its sampled pages, compressed together, shrink by
    /// 1/`sampleSaving` at least. A chunk too small to sample is tried whole.
    static func looksCompressible(_ plain: UnsafeRawBufferPointer, encoder: ChunkEncoder) -> Bool {
        let page = Int(ImageFormat.pageSize)
        guard plain.count >= 4 * samplePages * page else { return true }
        let stride = plain.count / samplePages / page * page
        let sample = encoder.sample
        for index in 0..<samplePages {
            (sample.baseAddress! + index * page).copyMemory(from: plain.baseAddress! + index * stride, byteCount: page)
        }
        let output = encoder.sampleOutput
        let result = ZSTD_compressCCtx(
            encoder.context, output.baseAddress, output.count, sample.baseAddress, sample.count, level)
        return ZSTD_isError(result) == 0 && result < sample.count - sample.count / sampleSaving
    }

    /// The stored form of chunk `index` of plain bytes `plain`, made in `encoder`'s buffers: valid
    /// until `encoder` encodes again. A chunk stored as it is (not compressed, not sealed) is
    /// `plain` itself, not a copy.
    func encode(_ plain: UnsafeRawBufferPointer, index: UInt64, isLast: Bool, encoder: ChunkEncoder)
        -> UnsafeRawBufferPointer
    {
        precondition(plain.count <= encoder.chunkSize)
        var payload = plain
        if compress, plain.count > 0, encoder.context != nil, Self.looksCompressible(plain, encoder: encoder) {
            // Room for zstd's bound: it compresses faster when it need not check for the end of the output.
            let output = encoder.output
            let result = ZSTD_compressCCtx(
                encoder.context, output.baseAddress, ZSTD_compressBound(plain.count), plain.baseAddress, plain.count,
                Self.level)
            // An incompressible chunk is stored plain: its size tells the reader.
            if ZSTD_isError(result) == 0 && result > 0 && result < plain.count {
                payload = UnsafeRawBufferPointer(rebasing: output[..<result])
            }
        }
        guard let bytes = self.key else { return payload }
        let sealed = try! AES.GCM.seal(
            payload, using: SymmetricKey(data: bytes), nonce: nonce(index),
            authenticating: associatedData(index, isLast: isLast))
        // The sealed payload goes where the compressed one was (it was copied out by the seal).
        let output = encoder.output
        let count = sealed.ciphertext.count
        precondition(count + ImageSealing.tagSize <= output.count)
        _ = sealed.ciphertext.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: output[..<count]))
        _ = sealed.tag.copyBytes(
            to: UnsafeMutableRawBufferPointer(rebasing: output[count..<(count + ImageSealing.tagSize)]))
        return UnsafeRawBufferPointer(rebasing: output[..<(count + ImageSealing.tagSize)])
    }

    /// The stored form of chunk `index` of `plain`, as an array of its own.
    func encode(_ plain: UnsafeRawBufferPointer, index: UInt64, isLast: Bool) -> [UInt8] {
        let encoder = ChunkEncoder(chunkSize: plain.count)
        return withExtendedLifetime(encoder) { Array(encode(plain, index: index, isLast: isLast, encoder: encoder)) }
    }

    /// Decodes stored chunk `index` (bytes `range` of the file) into `plain`, which it must fill
    /// exactly; throws naming the file and the chunk.
    func decode(
        _ stored: UnsafeRawBufferPointer, index: UInt64, isLast: Bool, range: Range<UInt64>,
        into plain: UnsafeMutableRawBufferPointer
    ) throws(ImageError) {
        func corrupt(_ detail: String) -> ImageError {
            ImageError(.corrupt, file: name, detail: "chunk \(index) (stored bytes \(range)): \(detail)")
        }
        var opened: Data? = nil
        if let bytes = self.key {
            let key = SymmetricKey(data: bytes)
            guard stored.count >= ImageSealing.tagSize else { throw corrupt("shorter than its tag") }
            let tagStart = stored.count - ImageSealing.tagSize
            do {
                let box = try AES.GCM.SealedBox(
                    nonce: nonce(index), ciphertext: UnsafeRawBufferPointer(rebasing: stored[..<tagStart]),
                    tag: UnsafeRawBufferPointer(rebasing: stored[tagStart...]))
                opened = try AES.GCM.open(box, using: key, authenticating: associatedData(index, isLast: isLast))
            } catch {
                throw ImageError(
                    .checksumMismatch, file: name,
                    detail:
                        "chunk \(index) (stored bytes \(range)) does not open under the image's key: changed, moved from elsewhere, or the file was cut",
                    byteRange: range)
            }
        }
        func place(_ payload: UnsafeRawBufferPointer) throws(ImageError) {
            if payload.count == plain.count {
                plain.copyMemory(from: payload)
                return
            }
            guard compress, payload.count < plain.count else {
                throw corrupt("\(payload.count) bytes stored for \(plain.count) plain bytes, and it is not compressed")
            }
            let result = ZSTD_decompress(plain.baseAddress, plain.count, payload.baseAddress, payload.count)
            guard ZSTD_isError(result) == 0 else {
                throw corrupt("it does not decompress: \(String(cString: ZSTD_getErrorName(result)))")
            }
            guard result == plain.count else {
                throw corrupt("it decompresses to \(result) bytes, not its \(plain.count)")
            }
        }
        if let opened {
            try opened.withUnsafeBytes { payload in Result { () throws(ImageError) in try place(payload) } }.get()
        } else {
            try place(stored)
        }
    }
}

/// What encoding chunks of up to `chunkSize` plain bytes one at a time needs, reused from chunk
/// to chunk: zstd's compression context, and the buffers the stored chunk and the sampled pages
/// are made in (allocated once: a fresh 1 MiB buffer a chunk costs its page faults every time).
final class ChunkEncoder {
    let chunkSize: Int
    let context: OpaquePointer?
    let output: UnsafeMutableRawBufferPointer
    let sample: UnsafeMutableRawBufferPointer
    let sampleOutput: UnsafeMutableRawBufferPointer

    init(chunkSize: Int) {
        self.chunkSize = chunkSize
        context = ZSTD_createCCtx()
        output = .allocate(byteCount: ZSTD_compressBound(chunkSize) + ImageSealing.tagSize, alignment: 64)
        let sampleSize = ChunkCodec.samplePages * Int(ImageFormat.pageSize)
        sample = .allocate(byteCount: sampleSize, alignment: 64)
        sampleOutput = .allocate(byteCount: ZSTD_compressBound(sampleSize), alignment: 64)
    }

    deinit {
        ZSTD_freeCCtx(context)
        output.deallocate()
        sample.deallocate()
        sampleOutput.deallocate()
    }
}

extension Amber_ImageFile {
    /// Whether the file is stored in chunks of their own (compressed or sealed).
    var isCoded: Bool { compressed || encrypted }

    /// The file's size on disk (for a plain file, `size`); nil if the stored sizes overflow.
    var storedSize: UInt64? {
        guard isCoded else { return size }
        var total: UInt64 = 0
        for size in storedChunkSize {
            let (sum, overflow) = total.addingReportingOverflow(size)
            guard !overflow else { return nil }
            total = sum
        }
        return total
    }

    /// The plain bytes of chunk `index`.
    func plainRange(ofChunk index: Int) -> Range<UInt64> {
        guard chunkSize > 0 else { return 0..<size }
        let start = UInt64(index) * chunkSize
        return start..<min(size, start + chunkSize)
    }

    /// Where each stored chunk starts in the file (checked fields: no overflow).
    var storedOffsets: [UInt64] {
        var offsets: [UInt64] = []
        offsets.reserveCapacity(storedChunkSize.count)
        var offset: UInt64 = 0
        for size in storedChunkSize {
            offsets.append(offset)
            offset += size
        }
        return offsets
    }

    /// Checks a coded entry's fields: one stored size per chunk, each possible for its plain size.
    func checkCodedFields(field: String, encryptedImage: Bool) throws(ImageError) {
        func invalid(_ detail: String) -> ImageError {
            ImageError(.invalid, file: ImageFormat.inventoryName, detail: "\(field) (\(name)): \(detail)")
        }
        guard encrypted == encryptedImage else {
            throw invalid(
                encryptedImage
                    ? "every file of an encrypted image is encrypted, this one is not"
                    : "it is marked encrypted in an image that is not")
        }
        guard isCoded else {
            guard storedChunkSize.isEmpty else { throw invalid("stored_chunk_size is set for a plain file") }
            return
        }
        let chunks = chunkSize == 0 ? 1 : Int(chunkXxh64.count)
        guard storedChunkSize.count == chunks else {
            throw invalid("\(storedChunkSize.count) stored chunk sizes for \(chunks) chunks")
        }
        guard chunkSize != 0 || !compressed else { throw invalid("a record is never compressed") }
        guard chunkSize != 0 || size <= ImageFormat.maximumRecordSize else {
            throw invalid(
                "an encrypted record of \(size) bytes exceeds the \(ImageFormat.maximumRecordSize >> 20) MiB limit")
        }
        guard storedSize != nil else { throw invalid("the stored chunk sizes overflow") }
        let overhead = encrypted ? UInt64(ImageSealing.tagSize) : 0
        for (index, stored) in storedChunkSize.enumerated() {
            let plain = UInt64(plainRange(ofChunk: index).count)
            guard stored >= overhead, stored - overhead <= plain,
                stored - overhead == plain || (compressed && stored > overhead)
            else {
                throw invalid(
                    "stored_chunk_size[\(index)] \(stored) cannot hold \(plain) plain bytes\(compressed ? " compressed" : "")\(encrypted ? " sealed" : "")"
                )
            }
        }
    }
}
