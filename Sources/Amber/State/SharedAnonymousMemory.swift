import AmberImage
import Glibc
import LinuxKit

/// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero (deleted)" in maps): one shmem
/// object per inode, mapped by one process or by several (inherited across fork), each area at
/// its own offset in it. The dump reads the object itself once for the whole tree, through
/// /proc/PID/map_files, into a page file of its own: pages no process has in its page tables
/// (dropped by MADV_DONTNEED, or written by a process that unmapped it since) are in it too. The
/// restore makes the object once, in the restorer, writes its pages, and every area of every
/// process maps it again at its offset, so the processes share it again (`MemoryState`'s areas
/// call in here). The object's record is in every process that maps it, alike.
enum SharedAnonymousMemory {
    /// Whether a mapping of maps is shared anonymous memory.
    static func isShared(_ mapping: MemoryMapping) -> Bool {
        mapping.shared && mapping.deleted && mapping.path == "/dev/zero"
            && (mapping.fileSystem == .shmem || mapping.fileSystem == nil)
    }

    // MARK: Dump

    /// Refuses, before the tree is touched, shared anonymous memory that cannot be read whole
    /// (map_files needs CAP_CHECKPOINT_RESTORE or root) or that a process outside the tree maps
    /// or holds open too: the tree's copy would come back as an object of its own, and the two
    /// would silently stop seeing each other's writes.
    static func check(tree processes: [CheckedProcess]) throws {
        var objects: [UInt64: (process: CheckedProcess, mapping: MemoryMapping)] = [:]
        for process in processes {
            for mapping in process.maps where isShared(mapping) && objects[mapping.inode] == nil {
                objects[mapping.inode] = (process, mapping)
                let opened = Result { () throws(LinuxError) in
                    try SharedMemoryFile(pid: process.pid, start: mapping.start, end: mapping.end, writable: false)
                }
                if case .failure(let error) = opened {
                    // Unmapped since its maps were read: the frozen pass checks the areas it has then.
                    if process.beforeFreeze && error.errno == .noSuchFileOrDirectory { continue }
                    throw AmberError.unsupported(
                        process.name,
                        "maps shared anonymous memory at \(range(mapping)), whose contents amber reads through /proc/PID/map_files, which needs CAP_CHECKPOINT_RESTORE or root (\(error))",
                        tree: process.tree)
                }
            }
        }
        guard !objects.isEmpty else { return }
        for pid in try processes[0].outside.processes() {
            for mapping in (try? ProcFS.maps(pid: pid)) ?? [] where isShared(mapping) {
                guard let (process, ours) = objects[mapping.inode] else { continue }
                throw AmberError.unsupported(
                    process.name,
                    "maps shared anonymous memory at \(range(ours)), which process \(ProcessName(pid: pid)) outside the tree maps too (at \(range(mapping))): it is restored only when no process outside the tree shares it",
                    tree: process.tree)
            }
        }
        try OutsideDescriptors.forEach(outside: processes) { pid, fd, link in
            guard link == "/dev/zero (deleted)",
                let status = try? FileStatus.stat(path: "/proc/\(pid)/fd/\(fd)"),
                let (process, ours) = objects[status.inode]
            else { return }
            throw AmberError.unsupported(
                process.name,
                "maps shared anonymous memory at \(range(ours)), which process \(ProcessName(pid: pid)) outside the tree holds open (its fd \(fd)): it is restored only when no process outside the tree shares it",
                tree: process.tree)
        }
    }

    /// What one dump has read of shared anonymous memory: each object's record, by inode.
    /// Touched only by the memory step, on the outside reads' one queue.
    struct Objects {
        var records: [UInt64: Amber_SharedAnonymousMemory] = [:]
    }

    /// Gives an area of shared anonymous memory its object and its offset in it.
    static func identify(_ mapping: MemoryMapping, in area: inout Amber_MemoryArea) {
        area.sharedAnonymousID = mapping.inode
        area.fileOffset = mapping.offset
    }

    /// The records of the objects the areas of `target` map, each object read the first time
    /// a process of the tree maps it; `buffer`: the dump's page buffer, free while this runs.
    static func dump(
        _ target: DumpTarget, areas: [Amber_MemoryArea], objects: inout Objects, image: ImageWriter,
        buffer: PageReadBuffer
    ) throws -> [Amber_SharedAnonymousMemory] {
        var records: [Amber_SharedAnonymousMemory] = []
        for area in areas where area.sharedAnonymousID != 0 {
            let id = area.sharedAnonymousID
            guard !records.contains(where: { $0.id == id }) else { continue }
            if let record = objects.records[id] {
                records.append(record)
                continue
            }
            let file = try SharedMemoryFile(pid: target.pid, start: area.start, end: area.end, writable: false)
            guard file.status.inode == id, file.status.size % MemoryState.pageSize == 0 else {
                throw AmberError(
                    .failure,
                    "the shared anonymous memory process \(target.name) maps at 0x\(String(area.start, radix: 16)) is inode \(file.status.inode) of \(file.status.size) bytes, not inode \(id) of whole pages"
                )
            }
            let record = try save(file, id: id, target: target, image: image, buffer: buffer)
            objects.records[id] = record
            records.append(record)
        }
        return records
    }

    /// Reads the object's data ranges a buffer at a time and appends its non-zero pages to a
    /// page file of its own.
    private static func save(
        _ file: SharedMemoryFile, id: UInt64, target: DumpTarget, image: ImageWriter, buffer: PageReadBuffer
    ) throws -> Amber_SharedAnonymousMemory {
        var record = Amber_SharedAnonymousMemory()
        record.id = id
        record.size = file.status.size
        let pages = try image.makePageFile(name: ImageFormat.sharedAnonymousFileName(id: id))
        record.pageFile = pages.name
        let pageSize = MemoryState.pageSize
        let bytes = buffer.bytes
        for range in try file.dataRanges() {
            var cursor = range.lowerBound / pageSize * pageSize
            let end = (range.upperBound + pageSize - 1) / pageSize * pageSize
            while cursor < end {
                try target.interruption.check(FaultPoints.pages)
                let length = Int(min(UInt64(bytes.count), end - cursor))
                let chunk = UnsafeMutableRawBufferPointer(rebasing: bytes[0..<length])
                let read = try file.read(into: chunk, at: cursor)
                guard read == length else {
                    throw AmberError(
                        .failure,
                        "the shared anonymous memory of process \(target.name) (inode \(id)) shrank while it was read")
                }
                var position = 0
                while position < length {
                    while position < length && isZeroPage(chunk, position) { position += Int(pageSize) }
                    let first = position
                    while position < length && !isZeroPage(chunk, position) { position += Int(pageSize) }
                    guard position > first else { continue }
                    let offset = try pages.append(UnsafeRawBufferPointer(rebasing: chunk[first..<position]))
                    let address = cursor + UInt64(first)
                    let count = UInt64(position - first) / pageSize
                    if let last = record.pages.last, last.address + last.count * pageSize == address,
                        last.offset + last.count * pageSize == offset
                    {
                        record.pages[record.pages.count - 1].count += count
                    } else {
                        var run = Amber_PageRun()
                        run.address = address
                        run.count = count
                        run.offset = offset
                        record.pages.append(run)
                    }
                }
                cursor += UInt64(length)
            }
        }
        return record
    }

    private static func isZeroPage(_ chunk: UnsafeMutableRawBufferPointer, _ offset: Int) -> Bool {
        let words = chunk.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt64.self)
        if words[0] != 0 { return false }
        var accumulated: UInt64 = 0
        for index in 0..<(Int(MemoryState.pageSize) / 8) { accumulated |= words[index] }
        return accumulated == 0
    }

    private static func range(_ mapping: MemoryMapping) -> String {
        "0x\(String(mapping.start, radix: 16))-0x\(String(mapping.end, radix: 16))"
    }

    // MARK: Restore

    /// The objects one process maps while its areas are made: each installed in the task once,
    /// and closed there again once its areas are mapped.
    final class TaskObjects {
        private let session: RestoreSession
        private var installed: [UInt64: Int32] = [:]

        init(_ session: RestoreSession) { self.session = session }

        /// The task's descriptor of the object `id`, which the restore makes the first time any
        /// process asks for it.
        func descriptor(of id: UInt64) throws -> Int32 {
            if let fd = installed[id] { return fd }
            guard let record = session.task.memory.sharedAnonymous.first(where: { $0.id == id }) else {
                throw AmberError(
                    .badImage,
                    "image file \(ImageFormat.taskRecordName(pid: session.task.pid)) maps shared anonymous memory \(id) it does not describe"
                )
            }
            let image = session.image!
            let object = try session.openFiles.objects.object(id) {
                try RestoredSharedAnonymousMemory(record, image: image, noReserve: noReserve(id))
            }
            let fd = try session.install(object.fd)
            installed[id] = fd
            return fd
        }

        /// Whether the object was made with MAP_NORESERVE: its areas carry it.
        private func noReserve(_ id: UInt64) -> Bool {
            session.task.memory.areas.contains { $0.sharedAnonymousID == id && $0.noReserve }
        }

        /// Closes the task's descriptors of the objects: its areas keep them.
        func close() throws(LinuxError) {
            for fd in installed.values {
                try session.injector.call("close shared anonymous memory", SyscallNumber.close, UInt64(fd))
            }
            installed = [:]
        }
    }
}

/// An object of shared anonymous memory made again by the restorer, with its pages, held open
/// until every task has mapped it.
final class RestoredSharedAnonymousMemory: SharedOpenFileObject {
    private let file: SharedMemoryFile

    init(_ record: Amber_SharedAnonymousMemory, image: ImageReader, noReserve: Bool) throws {
        let file: SharedMemoryFile
        do {
            file = try SharedMemoryFile.makeAnonymous(size: record.size, noReserve: noReserve)
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot make the \(record.size / 1024) KiB of shared anonymous memory \(record.id) again (it is opened through /proc/self/map_files, which needs CAP_CHECKPOINT_RESTORE or root): \(error)"
            )
        }
        if !record.pages.isEmpty {
            let pages = try image.pageFile(named: record.pageFile)
            try withExtendedLifetime(pages) {
                for run in record.pages {
                    try file.write(pages.pages(offset: run.offset, count: run.count), at: run.address)
                }
            }
        }
        self.file = file
    }

    /// The restorer's descriptor of the object.
    var fd: Int32 { file.fd }

    func close() { file.close() }
}
