import FoundationEssentials
import Glibc
import SwiftProtobuf

/// Writes one image directory: records and page files first, the inventory last.
///
/// Until `finish(inventory:)` has renamed `inventory.pb` into place the
/// directory has no inventory, so a dump that fails half-way leaves nothing
/// that a reader would take for an image. A writer is used by one thread at a time.
public final class ImageWriter {
    public let directory: String
    private let directoryFD: CInt
    /// The directories this writer created (the image directory and parents it lacked), each as
    /// its parent and name, outermost first.
    private let created: [(parentFD: CInt, name: String)]
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

    /// Creates the directory (with parents) or takes an existing empty one; a non-empty one is refused
    /// (.directoryNotEmpty). No component of `directory` may be a symbolic link (.invalid): amber
    /// runs as root, and a link a user planted would point root's writes at a directory of its choosing.
    /// With `key`, `finish(inventory:)` also writes the image's MAC. `storage` says how files are
    /// stored (docs/image-format.md, "Compressed and encrypted files").
    public init(directory: String, durable: Bool = false, key: ImageKey? = nil, storage: ImageStorage = .plain)
        throws(ImageError)
    {
        self.directory = directory
        self.durable = durable
        self.key = key
        compress = storage.compress
        sealing = storage.encryptionKey.map { ImageSealing(key: $0) }
        let (fd, created) = try Self.openDirectories(directory)
        do {
            if let made = created.last {
                // Make the new directory's entry durable, like the files that will go in it.
                if durable { try syncFile(made.parentFD, file: Self.parent(of: directory)) }
            } else {
                try Self.checkEmpty(fd, path: directory)
            }
        } catch {
            close(fd)
            for made in created { close(made.parentFD) }
            throw error
        }
        directoryFD = fd
        self.created = created
    }

    deinit {
        close(directoryFD)
        for made in created { close(made.parentFD) }
    }

    /// Removes every file this writer wrote and the directories it created, so that a dump
    /// that was refused, failed or was interrupted leaves the file system as it found it (a
    /// directory that existed before stays); nothing once the image is complete.
    public func discard() {
        guard !complete else { return }
        for name in names.union([ImageFormat.inventoryTemporaryName, ImageFormat.macName]) {
            unlinkat(directoryFD, name, 0)
        }
        for made in created.reversed() {
            guard unlinkat(made.parentFD, made.name, AT_REMOVEDIR) == 0 else { return }
        }
    }

    /// Writes `message` to the file `name` (e.g. `ImageFormat.taskRecordName(pid:)`), and syncs it if `durable`.
    public func writeRecord(_ message: some SwiftProtobuf.Message, name: String) throws(ImageError) {
        try claim(name)
        let bytes = try Self.serialize(message, file: name)
        if key != nil { recordDigests[name] = ImageMAC.digest(bytes) }
        guard let sealing else {
            try writeFile(name, bytes, flags: O_EXCL)
            records.append(
                Self.entry(name: name, size: UInt64(bytes.count), xxh64: bytes.withUnsafeBytes { XXH64.hash($0) }))
            return
        }
        // A record is one sealed chunk; the inventory lists its plain size.
        let stored = bytes.withUnsafeBytes {
            ChunkCodec(name: name, compress: false, sealing: sealing).encode($0, index: 0, isLast: true)
        }
        try writeFile(name, stored, flags: O_EXCL)
        var entry = Self.entry(name: name, size: UInt64(bytes.count), xxh64: stored.withUnsafeBytes { XXH64.hash($0) })
        entry.storedChunkSize = [UInt64(stored.count)]
        entry.encrypted = true
        records.append(entry)
    }

    /// Creates the page file `name` (e.g. `ImageFormat.pageFileName(pid:)`); `finish(inventory:)` closes and lists it (syncs it first if `durable`).
    public func makePageFile(name: String) throws(ImageError) -> PageFileWriter {
        try claim(name)
        let fd = openFile(in: directoryFD, name, O_WRONLY | O_CREAT | O_EXCL)
        guard fd >= 0 else { throw .system("create", file: name) }
        let codec =
            compress || sealing != nil ? ChunkCodec(name: name, compress: compress, sealing: sealing) : nil
        let pageFile = PageFileWriter(name: name, fd: fd, codec: codec)
        pageFiles.append(pageFile)
        return pageFile
    }

    /// Fills inventory.files with every file written (name, size, checksums), sets
    /// format_version, then writes inventory.pb via a temporary file and a rename:
    /// only then is the image complete. If `durable`, the temporary file is synced
    /// before the rename and the directory after it. With a key,
    /// `inventory.mac` is written before the rename, so a complete image always has it.
    ///
    /// Whatever `inventory.files` and `format_version` held is replaced. The
    /// root task's record must have been written: a reader refuses an image
    /// without it. The writer accepts nothing after this call, whether it
    /// succeeds or not; after a failure the directory is an incomplete image to be removed.
    public func finish(inventory: Amber_Inventory) throws(ImageError) {
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
        try writeFile(temporary, bytes, flags: O_TRUNC)
        if let key {
            guard
                let code = ImageMAC.code(
                    key: key, inventory: bytes, entries: inventory.files, recordDigests: recordDigests)
            else {
                throw ImageError(
                    .invalid, file: ImageFormat.macName,
                    detail: "a record the inventory lists was not written by this writer")
            }
            try writeFile(ImageFormat.macName, code, flags: O_EXCL)
        }
        guard renameat(directoryFD, temporary, directoryFD, ImageFormat.inventoryName) == 0 else {
            throw .system("rename \(temporary) to", file: ImageFormat.inventoryName)
        }
        complete = true
        if durable { try syncFile(directoryFD, file: directory) }
    }

    /// Reserves a file name: plain, not the inventory's, not used before.
    private func claim(_ name: String) throws(ImageError) {
        try checkOpen(name)
        guard ImageFormat.isPlainFileName(name) else {
            throw ImageError(
                .invalid, file: name, detail: "an image file name must not be empty or contain \"/\", \"..\" or NUL")
        }
        guard name != ImageFormat.inventoryName, name != ImageFormat.inventoryTemporaryName, name != ImageFormat.macName
        else {
            throw ImageError(.invalid, file: name, detail: "the name is reserved for the inventory and its MAC")
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

    private func writeFile(_ name: String, _ bytes: [UInt8], flags: CInt) throws(ImageError) {
        let fd = openFile(in: directoryFD, name, O_WRONLY | O_CREAT | flags)
        guard fd >= 0 else { throw .system("create", file: name) }
        defer { close(fd) }
        try bytes.withUnsafeBytes { buffer in Result { () throws(ImageError) in try writeAll(fd, buffer, file: name) } }
            .get()
        if durable { try syncFile(fd, file: name) }
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

    /// `mkdir -p`, the image directory itself 0700, each component opened relative to the one
    /// before with O_NOFOLLOW, so that no symbolic link is followed anywhere on the path. Returns
    /// the image directory and the directories created, outermost first, each with its parent
    /// kept open (the last one, if any, is the image directory, known to be empty).
    private static func openDirectories(_ path: String) throws(ImageError) -> (
        fd: CInt, created: [(parentFD: CInt, name: String)]
    ) {
        var components = path.split(separator: "/").map(String.init)
        if components.isEmpty { components = ["."] }
        var prefix = path.hasPrefix("/") ? "/" : ""
        var fd = openFile(in: AT_FDCWD, prefix.isEmpty ? "." : prefix, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw .system("open", file: prefix.isEmpty ? "." : prefix) }
        var created: [(parentFD: CInt, name: String)] = []
        for (index, component) in components.enumerated() {
            prefix += component
            func undo(_ error: ImageError) -> ImageError {
                close(fd)
                for made in created.reversed() {
                    unlinkat(made.parentFD, made.name, AT_REMOVEDIR)
                    close(made.parentFD)
                }
                return error
            }
            let made = mkdirat(fd, component, index == components.count - 1 ? 0o700 : 0o755) == 0
            guard made || errno == EEXIST else { throw undo(.system("mkdir", file: prefix)) }
            let next = openFile(in: fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            guard next >= 0 else {
                // O_DIRECTORY | O_NOFOLLOW fails on a symbolic link with ENOTDIR.
                throw undo(
                    errno == ENOTDIR && isSymbolicLink(in: fd, component)
                        ? ImageError(
                            .invalid, file: path,
                            detail: "\(prefix) is a symbolic link, which amber does not follow for an image directory")
                        : .system("open", file: prefix))
            }
            if made { created.append((fd, component)) } else { close(fd) }
            fd = next
            prefix += "/"
        }
        return (fd, created)
    }

    private static func isSymbolicLink(in directoryFD: CInt, _ name: String) -> Bool {
        var status = stat()
        return fstatat(directoryFD, name, &status, AT_SYMLINK_NOFOLLOW) == 0 && status.st_mode & S_IFMT == S_IFLNK
    }

    private static func checkEmpty(_ fd: CInt, path: String) throws(ImageError) {
        let copy = dup(fd)
        guard copy >= 0, let stream = fdopendir(copy) else {
            let error = ImageError.system("open", file: path)
            if copy >= 0 { close(copy) }
            throw error
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." {
                throw ImageError(
                    .directoryNotEmpty, file: path,
                    detail: "it holds \(name); an image is written only into a new or empty directory")
            }
        }
    }

    private static func parent(of path: String) -> String {
        let trimmed = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        let joined = trimmed.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

}

/// One page file being written: whole pages appended at the end, hashed on the way in chunks
/// of `ImageFormat.pageFileChunkSize`.
public final class PageFileWriter {
    public let name: String
    /// Bytes appended so far; the offset the next `append` returns.
    public private(set) var size: UInt64 = 0
    private var fd: CInt
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

    init(name: String, fd: CInt, codec: ChunkCodec? = nil) {
        self.name = name
        self.fd = fd
        self.codec = codec
        pipeline = codec.map { ChunkPipeline(codec: $0, chunkSize: Int(Self.chunkSize)) }
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Appends whole pages (count must be a multiple of pageSize), hashes them into the
    /// file's chunk checksums, returns the offset where they start.
    ///
    /// The bytes go straight from `bytes` to the kernel, without a copy. After a
    /// failed append the page file, and so the image, cannot be finished.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> UInt64 {
        guard fd >= 0, !failed else {
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
                try writeAll(fd, slice, file: name)
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

    /// Writes a stored chunk (compressed or sealed) at the end of the file.
    private func writeStored(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
        try writeAll(fd, bytes, file: name)
    }

    private func completeChunk() {
        chunkDigests.append(chunkHash.digest)
        chunkHash = XXH64()
    }

    /// Closes the file, synced first if `durable`; returns its inventory entry.
    func seal(durable: Bool) throws(ImageError) -> Amber_ImageFile {
        guard !failed else { throw ImageError(.invalid, file: name, detail: "an earlier append failed") }
        defer {
            close(fd)
            fd = -1
        }
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
        if durable { try syncFile(fd, file: name) }
        return entry
    }
}
