import Glibc
import SwiftProtobuf

/// The chain of an incremental image: each image may name a parent (`Inventory.parent`), a
/// pre-dump in a directory beside its own, and the SHA-256 of that parent's inventory. Pages a
/// task's memory takes from the chain name the image they are in by depth
/// (`Memory.page_file_depth`). Opening an image opens and checks its whole chain, every file
/// of every link against its checksums, so a restore or `amber verify` of the last image
/// follows it.
///
/// The parent is looked for only beside the image, by one path component opened with
/// O_NOFOLLOW, and must have the inventory the child recorded: an image cannot make the reader
/// open anything but a sibling directory, nor take its pages from another image than the one
/// the dump referred to.
public enum ImageChain {
    /// The longest chain followed: a pre-dump every minute for half an hour.
    static let maximumDepth = 32

    /// The record of one process of a pre-dump, e.g. "predump-123.pb".
    public static func preDumpRecordName(pid: Int32) -> String { "predump-\(pid).pb" }

    /// The PID of a pre-dump record's name in its only spelling, or nil.
    static func preDumpPID(recordName name: String) -> Int32? {
        let (prefix, suffix) = ("predump-", ".pb")
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        guard let pid = Int32(name.dropFirst(prefix.count).dropLast(suffix.count)), ImageFormat.pidRange.contains(pid),
            preDumpRecordName(pid: pid) == name
        else { return nil }
        return pid
    }

    /// Opens the parent `inventory` names, beside `directory`; nil when it names none.
    /// An encrypted chain is opened with one key, the one every image of it was dumped with.
    static func parent(
        of inventory: Amber_Inventory, directory: String, depth: Int, encryptionKey: ImageEncryptionKey? = nil
    ) throws(ImageError) -> ImageReader? {
        guard inventory.hasParent else { return nil }
        let name = inventory.parent.directory
        func invalid(_ detail: String) -> ImageError {
            ImageError(.invalid, file: ImageFormat.inventoryName, detail: "parent: \(detail)")
        }
        guard ImageFormat.isPlainFileName(name) else {
            throw invalid(
                "directory \"\(name)\" is not one path component (the parent is a directory beside the image)")
        }
        guard inventory.parent.inventorySha256.count == 32 else {
            throw invalid("inventory_sha256 has \(inventory.parent.inventorySha256.count) bytes, not 32")
        }
        guard depth + 1 < maximumDepth else {
            throw invalid("the chain of parents is longer than \(maximumDepth) images")
        }
        guard directory != "(memory)" else {
            throw ImageError(.missing, file: name, detail: "an image given as bytes has no parent directory")
        }
        let container = containingDirectory(of: directory)
        let containerFD = Glibc.open(container, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard containerFD >= 0 else { throw .system("open", file: container) }
        defer { close(containerFD) }
        let fd = openat(containerFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ELOOP || errno == ENOTDIR {
                throw ImageError(
                    .invalid, file: name, detail: "the parent image must be a directory beside the image, not a link")
            }
            throw ImageError(
                .missing, file: name,
                detail:
                    "the parent image \(container)/\(name) cannot be opened (errno \(errno)): an incremental image needs every image of its chain, in the same directory"
            )
        }
        let path = container == "/" ? "/\(name)" : "\(container)/\(name)"
        let parent = try ImageReader(
            store: DirectoryStore(descriptor: fd), directory: path, key: nil, depth: depth + 1,
            encryptionKey: encryptionKey)
        guard parent.inventoryDigest == [UInt8](inventory.parent.inventorySha256) else {
            throw ImageError(
                .checksumMismatch, file: "\(path)/\(ImageFormat.inventoryName)",
                detail:
                    "the parent image changed or is another image: its inventory's SHA-256 is not the one \(directory) records"
            )
        }
        guard parent.inventory.hasPreDump else {
            throw ImageError(
                .invalid, file: "\(path)/\(ImageFormat.inventoryName)",
                detail: "the parent image is not a pre-dump (`amber pre-dump`)")
        }
        return parent
    }

    /// The directory holding `directory` (which may end in "/").
    public static func containingDirectory(of directory: String) -> String {
        var path = directory
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The last component of `directory`: what a child image records as its parent.
    public static func directoryName(of directory: String) -> String {
        var path = directory
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func refusePreDump(_ inventory: Amber_Inventory) throws(ImageError) {
        guard !inventory.hasPreDump else {
            throw ImageError(
                .invalid, file: ImageFormat.inventoryName,
                detail:
                    "the image is a pre-dump, which holds memory only: restore the image `amber dump --prev-images-dir` wrote after it"
            )
        }
    }
}

extension ImageReader {
    /// The files each image up the chain lists, the parent's first.
    var ancestorFiles: [[String: Amber_ImageFile]] {
        var result: [[String: Amber_ImageFile]] = []
        var link = parent
        while let image = link {
            result.append(image.files)
            link = image.parent
        }
        return result
    }

    /// The image `depth` links up the chain (0: this one).
    public func ancestor(_ depth: Int) throws(ImageError) -> ImageReader {
        var image = self
        for _ in 0..<depth {
            guard let parent = image.parent else {
                throw ImageError(
                    .invalid, file: ImageFormat.inventoryName, detail: "no image \(depth) links up the chain")
            }
            image = parent
        }
        return image
    }

    /// Maps the page file `name` of the image `depth` links up the chain.
    public func pageFile(named name: String, depth: Int) throws(ImageError) -> MappedPageFile {
        try ancestor(depth).pageFile(named: name)
    }

    /// The PIDs of a pre-dump's records, ascending.
    public var preDumpPIDs: [Int32] {
        inventory.files.compactMap { ImageChain.preDumpPID(recordName: $0.name) }.sorted()
    }

    /// Decodes and validates the pre-dump record of process `pid`, nil when the image has none.
    public func preDumpProcess(pid: Int32) throws(ImageError) -> Amber_PreDumpProcess? {
        let name = ImageChain.preDumpRecordName(pid: pid)
        guard let bytes = records[name] else { return nil }
        let record: Amber_PreDumpProcess
        do {
            record = try Amber_PreDumpProcess(serializedBytes: bytes)
        } catch {
            throw ImageError(.corrupt, file: name, detail: "cannot decode the pre-dump record: \(error)")
        }
        var validator = TaskValidator(
            file: name, pid: pid, xstateSize: inventory.xstateSize, xstateFeatures: inventory.xstateFeatures,
            files: files)
        validator.ancestorFiles = ancestorFiles
        try validator.validatePreDump(record)
        return record
    }
}

extension TaskValidator {
    /// A pre-dump record: its PID, its page files and each area's page runs, as in a task's memory.
    func validatePreDump(_ record: Amber_PreDumpProcess) throws(ImageError) {
        guard record.pid == pid else { throw invalid("pid", "\(record.pid) is not the PID \(pid) of its file name") }
        let memory = record.memory
        try validatePageFileDepths(memory)
        var pageFiles: [(name: String, size: UInt64)] = []
        for (index, name) in memory.pageFiles.enumerated() {
            let depth = memory.pageFileDepth.isEmpty ? 0 : Int(memory.pageFileDepth[index])
            guard let size = (depth == 0 ? files : ancestorFiles[depth - 1])[name]?.size,
                size % ImageFormat.pageSize == 0
            else {
                throw invalid(
                    "memory.page_files[\(index)]", "\(name) is not a page file of the image \(depth) up the chain")
            }
            pageFiles.append((name, size))
        }
        var previousEnd: UInt64 = 0
        for (index, area) in memory.areas.enumerated() {
            let field = "memory.areas[\(index)]"
            guard area.start % ImageFormat.pageSize == 0, area.end % ImageFormat.pageSize == 0,
                area.start < area.end, area.start >= previousEnd, area.end <= ImageFormat.userAddressLimit
            else {
                throw invalid(
                    field, "\(hex(area.start))-\(hex(area.end)) is not a page-aligned area above the previous one")
            }
            previousEnd = area.end
            try validatePageRuns(of: area, field: field, pageFiles: pageFiles)
        }
    }
}
