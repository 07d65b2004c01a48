import Glibc
import SwiftProtobuf
import Synchronization

/// Opens an image and hands out its records only after checking them.
///
/// Opening checks the inventory and every file it lists (name, size, XXH64 of the whole
/// file or of each chunk);
/// `task(pid:)` then decodes and validates one task record, `tasks()` every one and
/// checks them against one another, and `pageFile(named:)` maps one page file.
/// Nothing is read that the inventory does not list. An image in a directory and one
/// given as bytes (`init(files:)`) go through the same checks; only the opening and
/// reading of files differ (`ImageStore`).
public final class ImageReader: Sendable {
    /// The image directory, or "(memory)" for an image given as bytes.
    public let directory: String
    public let inventory: Amber_Inventory
    /// The PIDs of the task records (files named task-<pid>.pb), ascending.
    public let taskPIDs: [Int32]
    let store: any ImageStore
    /// Whether the image was written by a dump holding `key` (the one given when it was opened).
    public let authenticity: ImageAuthenticity
    /// The inventory's entries by file name.
    let files: [String: Amber_ImageFile]
    /// For an authenticated image, the SHA-256 of each record the MAC covers: `task(pid:)`
    /// decodes only those very bytes.
    private let authenticatedDigests: [String: [UInt8]]
    /// Every record (a file checksummed whole), read once when the image is opened, its
    /// checksum checked: the MAC is computed over these bytes and `task(pid:)` decodes them,
    /// so what is decoded is what was verified, whatever happens to the files since.
    let records: [String: [UInt8]]
    /// The SHA-256 of the inventory's bytes, which an image whose parent this is records.
    public let inventoryDigest: [UInt8]
    /// An incremental image's parent (`Inventory.parent`), opened and checked as this one was;
    /// nil for an image that refers to none (`ImageChain`).
    public let parent: ImageReader?
    /// Whether the page files were checked when the image was opened; if not, `pageFile(named:)`
    /// checks each one it maps.
    private let pagesChecked: Bool
    /// An encrypted image's keys (`Inventory.encryption`), from the key it was opened with.
    let sealing: ImageSealing?
    /// The compressed or encrypted page files decoded when the image was opened and checked
    /// (`keepDecodedPages`), each handed out once by `pageFile(named:)` instead of decoded again.
    private let decodedPages: Mutex<[String: MappedPageFile]>

    /// Reads and checks the inventory, then checks that every file it lists
    /// exists with the listed size and checksum; with `key`, whether the image is authenticated.
    /// Without `checkPages` the page files' checksums are left to whoever reads their pages
    /// (`LazyPageFile`, which checks each chunk before it hands out a byte of it).
    /// An encrypted image needs `encryptionKey` (`--encrypt-key`); it is refused for any other.
    /// With `keepDecodedPages` (and `checkPages`), the compressed or encrypted page files stay
    /// decoded in memory from the check until `pageFile(named:)` hands them out: what a restore,
    /// which reads them all, wants, at the cost of holding them all at once.
    public convenience init(
        directory: String, key: ImageKey? = nil, checkPages: Bool = true, encryptionKey: ImageEncryptionKey? = nil,
        keepDecodedPages: Bool = false
    ) throws(ImageError) {
        try self.init(
            store: DirectoryStore(directory: directory), directory: directory, key: key, checkPages: checkPages,
            encryptionKey: encryptionKey, keepDecodedPages: keepDecodedPages)
    }

    /// The image whose files are `files` (name to contents), checked exactly as
    /// one in a directory; a name the inventory lists but `files` lacks is missing.
    public convenience init(
        files: [String: [UInt8]], key: ImageKey? = nil, encryptionKey: ImageEncryptionKey? = nil
    ) throws(ImageError) {
        try self.init(store: MemoryStore(files: files), directory: "(memory)", key: key, encryptionKey: encryptionKey)
    }

    init(
        store: any ImageStore, directory: String, key: ImageKey?, depth: Int = 0, checkPages: Bool = true,
        encryptionKey: ImageEncryptionKey? = nil, keepDecodedPages: Bool = false
    ) throws(ImageError) {
        let inventoryBytes: [UInt8]
        (inventory, inventoryBytes) = try Self.readInventory(from: store, directory: directory)
        files = try Self.checkEntries(of: inventory)
        sealing = try ImageSealing.open(inventory, key: encryptionKey)
        let decoded: [String: MappedPageFile]
        (records, decoded) = try Self.verifyFiles(
            of: inventory, in: store, checkPages: checkPages, sealing: sealing, keepDecodedPages: keepDecodedPages)
        decodedPages = Mutex(decoded)
        (authenticity, authenticatedDigests) = try Self.authenticate(
            inventory, bytes: inventoryBytes, records: records, in: store, key: key, sealing: sealing)
        self.directory = directory
        self.store = store
        pagesChecked = checkPages
        taskPIDs = inventory.files.compactMap { ImageFormat.taskPID(recordName: $0.name) }.sorted()
        inventoryDigest = ImageMAC.digest(inventoryBytes)
        // A parent is a directory beside the image's: an image read from a page server has none here.
        if inventory.hasParent && store is RemoteImageStore {
            throw ImageError(
                .invalid, file: ImageFormat.inventoryName,
                detail: "an incremental image (with a parent) cannot be read from a page server")
        }
        parent = try ImageChain.parent(
            of: inventory, directory: directory, depth: depth, encryptionKey: encryptionKey)
    }

    /// Checks `inventory.mac` against the inventory and the SHA-256 of every record, which
    /// are returned when it matches. A missing or wrong code is no error: the image is then
    /// restored as unauthenticated.
    private static func authenticate(
        _ inventory: Amber_Inventory, bytes: [UInt8], records: [String: [UInt8]], in store: any ImageStore,
        key: ImageKey?, sealing: ImageSealing?
    ) throws(ImageError) -> (ImageAuthenticity, [String: [UInt8]]) {
        guard let file = try? store.open(ImageFormat.macName) else { return (.noCode, [:]) }
        guard let key else { return (.noKey, [:]) }
        guard file.size == UInt64(ImageMAC.size), let code = try? readAll(file, size: ImageMAC.size) else {
            return (.mismatch, [:])
        }
        var digests: [String: [UInt8]] = [:]
        for entry in inventory.files where ImageMAC.isRecord(entry) {
            // No writer makes a record this large: the MAC cannot cover it.
            guard entry.size <= ImageFormat.maximumRecordSize else { return (.mismatch, [:]) }
            let record: [UInt8]
            if let read = records[entry.name] {
                record = read
            } else {
                record = try readRecord(entry, in: store, sealing: sealing)
            }
            digests[entry.name] = ImageMAC.digest(record)
        }
        guard
            let expected = ImageMAC.code(key: key, inventory: bytes, entries: inventory.files, recordDigests: digests),
            ImageMAC.matches(code, expected)
        else { return (.mismatch, [:]) }
        return (.authenticated, digests)
    }

    /// Decodes and validates the record of task `pid`; errors name its file.
    ///
    /// It decodes the bytes read and checked when the image was opened (`records`), so what
    /// is decoded is exactly what was verified, whatever happened to the file since.
    public func task(pid: Int32) throws(ImageError) -> Amber_Task {
        let name = ImageFormat.taskRecordName(pid: pid)
        guard let entry = files[name] else {
            throw ImageError(.missing, file: name, detail: "the inventory lists no record for PID \(pid)")
        }
        let bytes: [UInt8]
        if let record = records[name] {
            bytes = record
        } else {
            bytes = try Self.readRecord(entry, in: store, sealing: sealing)
            if let digest = authenticatedDigests[name], !ImageMAC.matches(ImageMAC.digest(bytes), digest) {
                throw ImageError(.checksumMismatch, file: name, detail: "it changed after the image was authenticated")
            }
        }
        let task: Amber_Task
        do {
            task = try Amber_Task(serializedBytes: bytes)
        } catch {
            throw ImageError(.corrupt, file: name, detail: "cannot decode the task record: \(error)")
        }
        var validator = TaskValidator(
            file: name, pid: pid, xstateSize: inventory.xstateSize, xstateFeatures: inventory.xstateFeatures,
            files: files)
        validator.ancestorFiles = ancestorFiles
        try validator.validate(task)
        return task
    }

    /// Validates `tasks`, as written with `inventory` (the one `ImageWriter.finish` returned),
    /// as `tasks()` validates the records it reads: each task alone, then across them. For an
    /// image of its own (no parent): a dump checks what it wrote before it kills the tree.
    public static func validate(_ tasks: [Amber_Task], written inventory: Amber_Inventory) throws(ImageError) {
        let files = Dictionary(inventory.files.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for task in tasks {
            let validator = TaskValidator(
                file: ImageFormat.taskRecordName(pid: task.pid), pid: task.pid, xstateSize: inventory.xstateSize,
                xstateFeatures: inventory.xstateFeatures, files: files)
            try validator.validate(task)
        }
        try CrossRecordCheck.check(tasks)
    }

    /// Decodes and validates every task record, the root's first and then by ascending PID, and
    /// checks them against one another (`CrossRecordCheck`): the whole image, as a restore reads it.
    public func tasks() throws(ImageError) -> [Amber_Task] {
        try ImageChain.refusePreDump(inventory)
        let rootPID = inventory.rootPid
        let tasks = try ([rootPID] + taskPIDs.filter { $0 != rootPID }).map { pid throws(ImageError) in
            try task(pid: pid)
        }
        try CrossRecordCheck.check(tasks)
        return tasks
    }

    /// Maps the page file `name` read-only; it must be listed in the inventory
    /// and hold a whole number of pages.
    public func pageFile(named name: String) throws(ImageError) -> MappedPageFile {
        guard let entry = files[name] else {
            throw ImageError(.missing, file: name, detail: "the inventory lists no file of this name")
        }
        guard entry.size % ImageFormat.pageSize == 0 else {
            throw ImageError(.corrupt, file: name, detail: "its size \(entry.size) is not a whole number of pages")
        }
        if entry.isCoded {
            if let decoded = decodedPages.withLock({ $0.removeValue(forKey: name) }) { return decoded }
            return try Self.decodedPageFile(entry, file: try Self.openListed(entry, in: store), sealing: sealing)
        }
        if !pagesChecked && entry.chunkSize != 0 {
            let buffer = UnsafeMutableRawBufferPointer.allocate(
                byteCount: 1 << 20, alignment: Int(ImageFormat.pageSize))
            defer { buffer.deallocate() }
            try Self.verify(entry, in: store, buffer: buffer)
        }
        let file = try Self.openListed(entry, in: store)
        guard entry.size > 0 else {
            return MappedPageFile(name: name, bytes: UnsafeRawBufferPointer(start: nil, count: 0), backing: .mapping)
        }
        return try file.map(size: Int(entry.size))
    }

    /// The page file `name`, read a chunk at a time, each checked before any of its bytes is
    /// used (`LazyPageFile`); it must be listed in the inventory with its chunk checksums.
    public func lazyPageFile(named name: String) throws(ImageError) -> LazyPageFile {
        guard let entry = files[name], entry.chunkSize != 0 else {
            throw ImageError(.missing, file: name, detail: "the inventory lists no page file of this name")
        }
        return LazyPageFile(entry: entry, file: try Self.openListed(entry, in: store), sealing: sealing)
    }

    private static func readInventory(from store: any ImageStore, directory: String) throws(ImageError) -> (
        Amber_Inventory, [UInt8]
    ) {
        let name = ImageFormat.inventoryName
        guard let file = try store.open(name) else {
            throw ImageError(
                .missing, file: name,
                detail: "\(directory) has no inventory: it is not an image, or the dump that wrote it did not finish")
        }
        guard file.size <= ImageFormat.maximumRecordSize else {
            throw ImageError(
                .corrupt, file: name,
                detail: "its \(file.size) bytes exceed the \(ImageFormat.maximumRecordSize >> 20) MiB limit for records"
            )
        }
        let bytes = try readAll(file, size: Int(file.size))
        // Checked before decoding, so that a flipped byte is reported as such; its absence only
        // after the version, so that an image of another version is reported as that.
        let checksum = try readInventoryChecksum(from: store)
        if let checksum { try InventoryChecksum.check(checksum, inventory: bytes) }
        let inventory: Amber_Inventory
        do {
            inventory = try Amber_Inventory(serializedBytes: bytes)
        } catch {
            throw ImageError(.corrupt, file: name, detail: "cannot decode the inventory: \(error)")
        }
        guard inventory.formatVersion == ImageFormat.version else {
            throw ImageError(
                .unsupportedVersion, file: name,
                detail:
                    "the image has format version \(inventory.formatVersion), this amber reads version \(ImageFormat.version)"
            )
        }
        guard checksum != nil else {
            throw ImageError(
                .missing, file: ImageFormat.inventoryChecksumName,
                detail:
                    "every image has its inventory's XXH64 beside it: this one lost it, or amber dump did not write it")
        }
        guard inventory.xstateSize == 0 || ImageFormat.xstateSizes.contains(inventory.xstateSize) else {
            throw ImageError(
                .invalid, file: name,
                detail: "xstate_size: \(inventory.xstateSize) is neither 0 nor in \(ImageFormat.xstateSizes)")
        }
        return (inventory, bytes)
    }

    /// The contents of `inventory.xxh64`, or nil if there is none.
    private static func readInventoryChecksum(from store: any ImageStore) throws(ImageError) -> [UInt8]? {
        guard let file = try store.open(ImageFormat.inventoryChecksumName) else { return nil }
        guard file.size == UInt64(InventoryChecksum.fileSize) else {
            throw ImageError(
                .corrupt, file: file.name,
                detail: "it has \(file.size) bytes, not the \(InventoryChecksum.fileSize) of its one line")
        }
        return try readAll(file, size: InventoryChecksum.fileSize)
    }

    /// Checks the names the inventory lists, and that the root task has a
    /// record; returns the entries by name.
    private static func checkEntries(of inventory: Amber_Inventory) throws(ImageError) -> [String: Amber_ImageFile] {
        var files: [String: Amber_ImageFile] = [:]
        for (index, file) in inventory.files.enumerated() {
            let field = "files[\(index)]"
            guard ImageFormat.isPlainFileName(file.name) else {
                throw ImageError(
                    .invalid, file: ImageFormat.inventoryName,
                    detail: "\(field): name \"\(file.name)\" is empty, or contains \"/\", \"..\" or NUL")
            }
            guard file.name != ImageFormat.inventoryName, !ImageFormat.inventoryCompanionNames.contains(file.name)
            else {
                throw ImageError(
                    .invalid, file: ImageFormat.inventoryName, detail: "\(field): the inventory cannot list itself")
            }
            // One spelling per PID, so that no task can hide behind a second record name.
            if file.name.hasPrefix("task-") && file.name.hasSuffix(".pb")
                && ImageFormat.taskPID(recordName: file.name) == nil
            {
                throw ImageError(
                    .invalid, file: ImageFormat.inventoryName,
                    detail: "\(field): \(file.name) is not task-<pid>.pb with a PID in \(ImageFormat.pidRange)")
            }
            try ChecksumCheck.checkFields(of: file, field: field)
            try file.checkCodedFields(field: field, encryptedImage: inventory.hasEncryption)
            guard files.updateValue(file, forKey: file.name) == nil else {
                throw ImageError(
                    .invalid, file: ImageFormat.inventoryName, detail: "\(field): \(file.name) is listed twice")
            }
        }
        guard inventory.hasPreDump || files[ImageFormat.taskRecordName(pid: inventory.rootPid)] != nil else {
            throw ImageError(
                .invalid, file: ImageFormat.inventoryName,
                detail: "root_pid \(inventory.rootPid) has no task record in the image")
        }
        return files
    }

    /// Checks every listed file's size and checksum.
    /// Returns the records, read whole, and with `keepDecodedPages` the coded page files, decoded
    /// as they are checked; the other files are hashed through a buffer.
    private static func verifyFiles(
        of inventory: Amber_Inventory, in store: any ImageStore, checkPages: Bool, sealing: ImageSealing?,
        keepDecodedPages: Bool
    ) throws(ImageError) -> (records: [String: [UInt8]], decoded: [String: MappedPageFile]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: Int(ImageFormat.pageSize))
        defer { buffer.deallocate() }
        var records: [String: [UInt8]] = [:]
        var decoded: [String: MappedPageFile] = [:]
        for entry in inventory.files {
            if ImageMAC.isRecord(entry), entry.size <= ImageFormat.maximumRecordSize {
                records[entry.name] = try readRecord(entry, in: store, sealing: sealing)
            } else if !checkPages && entry.chunkSize != 0 {
                _ = try openListed(entry, in: store)
            } else if entry.isCoded && keepDecodedPages && entry.chunkSize != 0 {
                decoded[entry.name] = try decodedPageFile(
                    entry, file: try openListed(entry, in: store), sealing: sealing)
            } else if entry.isCoded {
                try verifyCoded(entry, file: try openListed(entry, in: store), sealing: sealing)
            } else {
                try verify(entry, in: store, buffer: buffer)
            }
        }
        return (records, decoded)
    }

    /// Opens a listed file and checks that it is a regular file of the listed size (stored size).
    static func openListed(_ entry: Amber_ImageFile, in store: any ImageStore) throws(ImageError)
        -> any ImageStoreFile
    {
        guard let file = try store.open(entry.name) else {
            throw ImageError(.missing, file: entry.name, detail: "the inventory lists it but it does not exist")
        }
        let size = entry.storedSize ?? 0
        guard file.size >= size else {
            throw ImageError(
                .truncated, file: entry.name, detail: "it has \(file.size) bytes, the inventory lists \(size)")
        }
        guard file.size == size else {
            throw ImageError(
                .corrupt, file: entry.name, detail: "it has \(file.size) bytes, the inventory lists \(size)")
        }
        return file
    }

    /// Files checksummed in chunks from this size on are hashed in two halves on two threads:
    /// a large page file's check was about a third of its restore.
    static let twoThreadVerifySize: UInt64 = 16 << 20

    /// Checks a listed file's size and hashes all of it, through `buffer` or, when it is large,
    /// in two runs of chunks at once. A mismatch in the first half is the one reported.
    private static func verify(
        _ entry: Amber_ImageFile, in store: any ImageStore, buffer: UnsafeMutableRawBufferPointer
    ) throws(ImageError) {
        let file = try openListed(entry, in: store)
        let chunks = entry.chunkSize == 0 ? 0 : (entry.size + entry.chunkSize - 1) / entry.chunkSize
        guard entry.size >= twoThreadVerifySize, chunks >= 2 else {
            try check(file, entry, bytes: 0..<entry.size, buffer: buffer)
            return
        }
        let middle = chunks / 2 * entry.chunkSize
        // Each half reads with pread into its own buffer.
        nonisolated(unsafe) let shared = file
        let bufferSize = buffer.count
        let halves = [0..<middle, middle..<entry.size].concurrentMap { bytes in
            let own = UnsafeMutableRawBufferPointer.allocate(
                byteCount: bufferSize, alignment: Int(ImageFormat.pageSize))
            defer { own.deallocate() }
            return Result { () throws(ImageError) in try check(shared, entry, bytes: bytes, buffer: own) }
        }
        for half in halves { try half.get() }
    }

    /// Hashes the listed file's `bytes`, which start a chunk, and checks them against the inventory.
    private static func check(
        _ file: any ImageStoreFile, _ entry: Amber_ImageFile, bytes: Range<UInt64>,
        buffer: UnsafeMutableRawBufferPointer
    ) throws(ImageError) {
        var check = ChecksumCheck(entry, from: bytes.lowerBound)
        var offset = bytes.lowerBound
        while offset < bytes.upperBound {
            let wanted = Int(min(bytes.upperBound - offset, UInt64(buffer.count)))
            let count = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<wanted]), at: offset)
            guard count == wanted else {
                throw ImageError(
                    .truncated, file: entry.name,
                    detail: "it ended \(entry.size - offset - UInt64(count)) bytes early while it was being read")
            }
            try check.update(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            offset += UInt64(count)
        }
        if bytes.upperBound == entry.size { try check.finish() }
    }

    /// Reads a whole record file and checks its checksum again.
    private static func readRecord(_ entry: Amber_ImageFile, in store: any ImageStore, sealing: ImageSealing?)
        throws(ImageError) -> [UInt8]
    {
        guard entry.size <= ImageFormat.maximumRecordSize else {
            throw ImageError(
                .corrupt, file: entry.name,
                detail:
                    "its \(entry.size) bytes exceed the \(ImageFormat.maximumRecordSize >> 20) MiB limit for records")
        }
        let file = try openListed(entry, in: store)
        if entry.isCoded { return try readCodedRecord(entry, file: file, sealing: sealing) }
        let bytes = try readAll(file, size: Int(entry.size))
        var check = ChecksumCheck(entry)
        try bytes.withUnsafeBytes { buffer in Result { () throws(ImageError) in try check.update(buffer) } }.get()
        try check.finish()
        return bytes
    }

    /// Reads exactly `size` bytes (a size already checked against the file and the record limit).
    static func readAll(_ file: any ImageStoreFile, size: Int) throws(ImageError) -> [UInt8] {
        var result: Result<Int, ImageError> = .success(0)
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            result = Result { () throws(ImageError) in try file.read(into: UnsafeMutableRawBufferPointer(buffer)) }
            initialized = (try? result.get()) ?? 0
        }
        let count = try result.get()
        guard count == size else {
            throw ImageError(
                .truncated, file: file.name, detail: "it ended after \(count) of \(size) bytes while it was being read")
        }
        return bytes
    }
}

/// A page file mapped read-only (or, for an image given as bytes, a copy);
/// unmapped or freed when the object is deinitialized.
///
/// The mapping never changes, so it may be read from any thread. Its size was
/// checked against the inventory when it was mapped; if the file is truncated
/// afterwards, touching the lost pages raises SIGBUS, as with any mapped file.
public final class MappedPageFile: @unchecked Sendable {
    public let name: String
    /// The whole file. Valid only while this object is alive. Read only through
    /// `pages(offset:count:)`, which checks the bounds.
    let bytes: UnsafeRawBufferPointer
    private let backing: Backing

    enum Backing {
        /// `bytes` is a mapping of the file.
        case mapping
        /// `bytes` was allocated and holds a copy.
        case allocation
    }

    init(name: String, bytes: UnsafeRawBufferPointer, backing: Backing) {
        self.name = name
        self.bytes = bytes
        self.backing = backing
    }

    deinit {
        guard let base = bytes.baseAddress else { return }
        switch backing {
        case .mapping: munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        case .allocation: base.deallocate()
        }
    }

    /// The `count` pages at byte `offset`, checked to lie inside the file. Valid only while
    /// this object is alive: keep a reference (or use `withExtendedLifetime`) for as long
    /// as the pointer is used.
    public func pages(offset: UInt64, count: UInt64) throws(ImageError) -> UnsafeRawBufferPointer {
        let size = UInt64(bytes.count)
        guard offset % ImageFormat.pageSize == 0, offset <= size, count <= (size - offset) / ImageFormat.pageSize else {
            throw ImageError(
                .invalid, file: name, detail: "\(count) pages at offset \(offset) are not inside its \(size) bytes")
        }
        return UnsafeRawBufferPointer(rebasing: bytes[Int(offset)..<Int(offset + count * ImageFormat.pageSize)])
    }
}
