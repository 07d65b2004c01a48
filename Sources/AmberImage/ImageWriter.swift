import FoundationEssentials
import Glibc
import SwiftProtobuf

/// Writes one image directory: records and page files first, the inventory last; through an
/// `ImageSink`, into a directory here or to a page server on another host.
///
/// Until `finish(inventory:)` has renamed `inventory.pb` into place the
/// directory has no inventory, so a dump that fails half-way leaves nothing
/// that a reader would take for an image. A writer is used by one thread at a time.
public final class ImageWriter {
    /// Where the image goes: the directory's path, or the page server's address.
    public let directory: String
    private let sink: any ImageSink
    /// Every name handed out so far, records and page files alike.
    private var names: Set<String> = []
    private var records: [Amber_ImageFile] = []
    private var pageFiles: [PageFileWriter] = []
    private var finished = false
    /// Set once the inventory is in place: the image is whole, and `discard` leaves it.
    private var complete = false
    /// Whether every file is fsynced before the inventory names it. Without it the image sits in the
    /// page cache (the fast case); a crash before writeback is still caught, by the checksums.
    public let durable: Bool
    /// The host key that authenticates the image (`ImageFormat.macName`), if the dumper holds it.
    private let key: ImageKey?
    /// The SHA-256 of every record written, by name, for the MAC.
    private var recordDigests: [String: [UInt8]] = [:]
    /// Whether page files are compressed (`--compress`).
    private let compress: Bool
    /// The image's keys when it is encrypted (`--encrypt-key`): every file is sealed.
    private let sealing: ImageSealing?

    /// Creates the directory (with parents) or takes an existing empty one: see `DirectorySink`
    /// (`amongOtherFiles`: one that holds files of others, but no image). With `key`,
    /// `finish(inventory:)` also writes the image's MAC. `storage` says how files are stored
    /// (docs/image-format.md, "Compressed and encrypted files").
    public convenience init(
        directory: String, durable: Bool = false, key: ImageKey? = nil, storage: ImageStorage = .plain,
        amongOtherFiles: Bool = false
    ) throws(ImageError) {
        self.init(
            sink: try DirectorySink(directory: directory, durable: durable, amongOtherFiles: amongOtherFiles),
            durable: durable, key: key, storage: storage)
    }

    /// Writes the image into `sink`, which has nothing of it yet.
    public init(sink: any ImageSink, durable: Bool = false, key: ImageKey? = nil, storage: ImageStorage = .plain) {
        self.sink = sink
        directory = sink.destination
        self.durable = durable
        self.key = key
        compress = storage.compress
        sealing = storage.encryptionKey.map { ImageSealing(key: $0) }
    }

    /// Removes every file this writer wrote and the directories it created, so that a dump
    /// that was refused, failed or was interrupted leaves the file system as it found it (a
    /// directory that existed before stays); nothing once the image is complete.
    public func discard() {
        guard !complete else { return }
        sink.discard()
    }

    /// Removes the image even once it is complete (one its dump found a restore would refuse):
    /// the inventory first, then every file and directory `discard` would remove. A page
    /// server's complete image stays.
    public func withdraw() {
        sink.withdraw()
        complete = false
    }

    /// Writes `message` to the file `name` (e.g. `ImageFormat.taskRecordName(pid:)`), and syncs it if `durable`.
    public func writeRecord(_ message: some SwiftProtobuf.Message, name: String) throws(ImageError) {
        try claim(name)
        let bytes = try Self.serialize(message, file: name)
        if key != nil { recordDigests[name] = ImageMAC.digest(bytes) }
        guard let sealing else {
            try writeFile(name, bytes, replacing: false)
            records.append(
                Self.entry(name: name, size: UInt64(bytes.count), xxh64: bytes.withUnsafeBytes { XXH64.hash($0) }))
            return
        }
        // A record is one sealed chunk; the inventory lists its plain size.
        let stored = bytes.withUnsafeBytes {
            ChunkCodec(name: name, compress: false, sealing: sealing).encode($0, index: 0, isLast: true)
        }
        try writeFile(name, stored, replacing: false)
        var entry = Self.entry(name: name, size: UInt64(bytes.count), xxh64: stored.withUnsafeBytes { XXH64.hash($0) })
        entry.storedChunkSize = [UInt64(stored.count)]
        entry.encrypted = true
        records.append(entry)
    }

    /// Creates the page file `name` (e.g. `ImageFormat.pageFileName(pid:)`); `finish(inventory:)` closes and lists it (syncs it first if `durable`).
    public func makePageFile(name: String) throws(ImageError) -> PageFileWriter {
        try claim(name)
        let codec =
            compress || sealing != nil ? ChunkCodec(name: name, compress: compress, sealing: sealing) : nil
        let pageFile = PageFileWriter(name: name, file: try sink.create(name, replacing: false), codec: codec)
        pageFiles.append(pageFile)
        return pageFile
    }

    /// Fills inventory.files with every file written (name, size, checksums), sets
    /// format_version, then writes inventory.pb via a temporary file and a rename:
    /// only then is the image complete. If `durable`, the temporary file is synced
    /// before the rename and the directory after it. The inventory's own checksum,
    /// `inventory.xxh64`, and with a key `inventory.mac`, are written before the
    /// rename, so a complete image always has them.
    ///
    /// Whatever `inventory.files` and `format_version` held is replaced. The
    /// root task's record must have been written: a reader refuses an image
    /// without it. The writer accepts nothing after this call, whether it
    /// succeeds or not; after a failure the directory is an incomplete image to be removed.
    /// Returns the inventory written.
    @discardableResult
    public func finish(inventory: Amber_Inventory) throws(ImageError) -> Amber_Inventory {
        try checkOpen(ImageFormat.inventoryName)
        guard inventory.hasPreDump || names.contains(ImageFormat.taskRecordName(pid: inventory.rootPid)) else {
            throw ImageError(
                .invalid, file: ImageFormat.inventoryName,
                detail:
                    "root_pid \(inventory.rootPid) has no task record; write \(ImageFormat.taskRecordName(pid: inventory.rootPid)) first"
            )
        }
        finished = true
        var files = records
        for pageFile in pageFiles {
            files.append(try pageFile.seal(durable: durable))
        }
        var inventory = inventory
        inventory.formatVersion = ImageFormat.version
        inventory.files = files.sorted { $0.name < $1.name }
        if let sealing {
            inventory.encryption = sealing.record
            inventory.encryption.inventoryCode = Data(
                sealing.inventoryCode(try Self.serialize(inventory, file: ImageFormat.inventoryName)))
        }
        let bytes = try Self.serialize(inventory, file: ImageFormat.inventoryName)
        let temporary = ImageFormat.inventoryTemporaryName
        try writeFile(temporary, bytes, replacing: true)
        try writeFile(ImageFormat.inventoryChecksumName, InventoryChecksum.file(forInventory: bytes), replacing: false)
        if let key {
            guard
                let code = ImageMAC.code(
                    key: key, inventory: bytes, entries: inventory.files, recordDigests: recordDigests)
            else {
                throw ImageError(
                    .invalid, file: ImageFormat.macName,
                    detail: "a record the inventory lists was not written by this writer")
            }
            try writeFile(ImageFormat.macName, code, replacing: false)
        }
        try sink.commitInventory(durable: durable)
        complete = true
        return inventory
    }

    /// Reserves a file name: plain, not the inventory's, not used before.
    private func claim(_ name: String) throws(ImageError) {
        try checkOpen(name)
        guard ImageFormat.isPlainFileName(name) else {
            throw ImageError(
                .invalid, file: name, detail: "an image file name must not be empty or contain \"/\", \"..\" or NUL")
        }
        guard name != ImageFormat.inventoryName, !ImageFormat.inventoryCompanionNames.contains(name) else {
            throw ImageError(
                .invalid, file: name, detail: "the name is reserved for the inventory, its checksum and its MAC")
        }
        guard names.insert(name).inserted else {
            throw ImageError(.invalid, file: name, detail: "the image already has a file of this name")
        }
    }

    private func checkOpen(_ name: String) throws(ImageError) {
        guard !finished else {
            throw ImageError(.invalid, file: name, detail: "the image was already finished")
        }
    }

    private func writeFile(_ name: String, _ bytes: [UInt8], replacing: Bool) throws(ImageError) {
        let file = try sink.create(name, replacing: replacing)
        try bytes.withUnsafeBytes { buffer in Result { () throws(ImageError) in try file.write(buffer) } }.get()
        if durable { try file.sync() }
        try file.close()
    }

    private static func serialize(_ message: some SwiftProtobuf.Message, file: String) throws(ImageError) -> [UInt8] {
        do {
            return try message.serializedBytes()
        } catch {
            throw ImageError(
                .invalid, file: file, detail: "cannot encode \(type(of: message).protoMessageName): \(error)")
        }
    }

    static func entry(name: String, size: UInt64, xxh64: UInt64) -> Amber_ImageFile {
        var file = Amber_ImageFile()
        file.name = name
        file.size = size
        file.xxh64 = xxh64
        return file
    }
}

/// One page file being written: whole pages appended at the end, hashed on the way in chunks
/// of `ImageFormat.pageFileChunkSize`.
public final class PageFileWriter {
    public let name: String
    /// Bytes appended so far; the offset the next `append` returns.
    public private(set) var size: UInt64 = 0
    private var file: (any ImageSinkFile)?
    /// The XXH64 of the chunk being filled, and of every completed chunk.
    private var chunkHash = XXH64()
    private var chunkDigests: [UInt64] = []
    /// Set when a write failed: the file no longer matches `size` and the digests.
    private var failed = false
    /// For a compressed or encrypted page file: its chunks' encoder; the file holds what it returns.
    private let pipeline: ChunkPipeline?
    private let codec: ChunkCodec?

    /// Hash and write in slices of this size: each slice is still in the CPU cache when
    /// `write` copies it after hashing read it, and the page cache takes 256 KiB writes
    /// faster than larger ones on the development VM (docs/measurements.md).
    private static let sliceSize = 256 << 10
    private static let chunkSize = ImageFormat.pageFileChunkSize

    init(name: String, file: any ImageSinkFile, codec: ChunkCodec? = nil) {
        self.name = name
        self.file = file
        self.codec = codec
        pipeline = codec.map { ChunkPipeline(codec: $0, chunkSize: Int(Self.chunkSize)) }
    }

    /// Appends whole pages (count must be a multiple of pageSize), hashes them into the
    /// file's chunk checksums, returns the offset where they start.
    ///
    /// The bytes go straight from `bytes` to the kernel, without a copy. After a
    /// failed append the page file, and so the image, cannot be finished.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> UInt64 {
        guard let file, !failed else {
            throw ImageError(
                .invalid, file: name, detail: failed ? "an earlier append failed" : "the image was already finished")
        }
        guard UInt64(bytes.count) % ImageFormat.pageSize == 0 else {
            throw ImageError(
                .invalid, file: name,
                detail: "an append of \(bytes.count) bytes is not a whole number of \(ImageFormat.pageSize)-byte pages")
        }
        let offset = size
        if let pipeline {
            do {
                try pipeline.add(bytes, to: writeStored)
            } catch {
                failed = true
                throw error
            }
            size += UInt64(bytes.count)
            return offset
        }
        var start = 0
        while start < bytes.count {
            let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<min(start + Self.sliceSize, bytes.count)])
            hashChunks(slice, at: offset + UInt64(start))
            do {
                try file.write(slice)
            } catch {
                failed = true
                throw error
            }
            start += slice.count
        }
        size += UInt64(bytes.count)
        return offset
    }

    /// Feeds bytes that start at file offset `position` into the chunk hashes.
    private func hashChunks(_ bytes: UnsafeRawBufferPointer, at position: UInt64) {
        var position = position
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + Int(Self.chunkSize - position % Self.chunkSize))
            chunkHash.update(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            position += UInt64(end - start)
            start = end
            if position % Self.chunkSize == 0 { completeChunk() }
        }
    }

    /// Writes a stored chunk (compressed or sealed) at the end of the file, in slices of
    /// `sliceSize` as the plain pages are.
    private func writeStored(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
        guard let file else { throw ImageError(.invalid, file: name, detail: "the image was already finished") }
        var start = 0
        while start < bytes.count {
            let end = min(start + Self.sliceSize, bytes.count)
            try file.write(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            start = end
        }
    }

    private func completeChunk() {
        chunkDigests.append(chunkHash.digest)
        chunkHash = XXH64()
    }

    /// Closes the file, synced first if `durable`; returns its inventory entry.
    func seal(durable: Bool) throws(ImageError) -> Amber_ImageFile {
        guard !failed, let file else { throw ImageError(.invalid, file: name, detail: "an earlier append failed") }
        var entry = ImageWriter.entry(name: name, size: size, xxh64: 0)
        entry.chunkSize = Self.chunkSize
        if let pipeline, let codec {
            do {
                try pipeline.finish(to: writeStored)
            } catch {
                failed = true
                throw error
            }
            entry.chunkXxh64 = pipeline.storedDigests
            entry.storedChunkSize = pipeline.storedSizes
            entry.compressed = codec.compress
            entry.encrypted = codec.key != nil
        } else {
            if size % Self.chunkSize != 0 { completeChunk() }
            entry.chunkXxh64 = chunkDigests
        }
        self.file = nil
        if durable { try file.sync() }
        try file.close()
        return entry
    }
}
