import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit

/// Open files: regular files, directories, a few character devices and named pipes, reopened by
/// path at restore with their flags and offset; descriptors sharing one open file stay shared.
enum FileState {
    static let reopenableDevices: Set<String> = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"]
    private static let closeOnExec: UInt32 = 0o2000000

    /// Refuses descriptors Amber cannot reopen, before the target is stopped.
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        for fd in try ProcFS.fileDescriptors(pid: pid) {
            _ = try classify(pid: pid, fd: fd, process: process, tree: tree)
        }
    }

    private static func classify(pid: Int32, fd: Int32, process: ProcessName, tree: ProcessName? = nil) throws -> (kind: Amber_FileKind, path: String, status: FileStatus) {
        let path = try ProcFS.fileDescriptorPath(pid: pid, fd: fd)
        func refuse(_ what: String) -> AmberError { .unsupported(process, "has fd \(fd) open on \(what): not supported yet", tree: tree) }
        if path.hasPrefix("socket:") { throw refuse("a socket (\(path))") }
        if path.hasPrefix("pipe:") { throw refuse("a pipe (\(path))") }
        if path.hasPrefix("anon_inode:") { throw refuse("\(path.dropFirst("anon_inode:".count))") }
        guard path.hasPrefix("/") else { throw refuse(path) }
        if path.hasSuffix(" (deleted)") { throw refuse("the deleted file \(path)") }
        let status = try FileStatus.stat(procFD: pid, fd: fd)
        if status.isRegular { return (.fileRegular, path, status) }
        if status.isDirectory { return (.fileDirectory, path, status) }
        if status.isFIFO { return (.fileFifo, path, status) }
        if status.isCharacterDevice && reopenableDevices.contains(path) { return (.fileCharacterDevice, path, status) }
        if status.isCharacterDevice { throw refuse("the device \(path)") }
        throw refuse(path)
    }

    /// The open file descriptions seen so far in the tree: ids are unique across the image, so
    /// that descriptors of several processes sharing one description share it again at restore.
    struct DescriptionTable {
        private typealias Owner = (pid: Int32, fd: Int32, description: Amber_OpenFileDescription)
        private struct FileKey: Hashable {
            let device: UInt64
            let inode: UInt64
        }

        /// The first descriptor seen of each description, by file: every process of a tree may
        /// have its own description of /dev/null.
        private var owners: [FileKey: KernelOrderedList<Owner>] = [:]
        private var count = 0

        /// The description `fd` of `pid` refers to if seen before; otherwise `make` makes it from
        /// its id, and it is added. Returns it and whether it is new.
        fileprivate mutating func description(pid: Int32, fd: Int32, status: FileStatus, make: (UInt32) throws -> Amber_OpenFileDescription) throws -> (Amber_OpenFileDescription, isNew: Bool) {
            let key = FileKey(device: status.device, inode: status.inode)
            var seen = owners.removeValue(forKey: key) ?? KernelOrderedList()
            defer { owners[key] = seen }
            var made: Amber_OpenFileDescription?
            let owner = try seen.match(order: { try openFileOrder(pid1: $0.pid, fd1: $0.fd, pid2: pid, fd2: fd) }) {
                made = try make(UInt32(count + 1))
                return (pid, fd, made!)
            }
            if let owner { return (owner.description, false) }
            count += 1
            return (made!, true)
        }
    }

    static func dump(_ target: DumpTarget, table: inout DescriptionTable) throws -> Amber_Files {
        var record = Amber_Files()
        let pidfd = try Pidfd(pid: target.pid)
        for fd in try ProcFS.fileDescriptors(pid: target.pid) {
            let (kind, path, status) = try classify(pid: target.pid, fd: fd, process: target.name)
            let info = try ProcFS.fileDescriptorInfo(pid: target.pid, fd: fd)
            var descriptor = Amber_FileDescriptor()
            descriptor.fd = fd
            descriptor.closeOnExec = info.flags & closeOnExec != 0
            let (description, isNew) = try table.description(pid: target.pid, fd: fd, status: status) { id in
                if kind == .fileFifo {
                    let copy = try pidfd.duplicate(fd)
                    var queued: Int32 = 0
                    let result = ioctl(copy, UInt(FIONREAD), &queued)
                    Glibc.close(copy)
                    if result == 0 && queued > 0 {
                        throw AmberError.unsupported(target.name, "has fd \(fd) on the named pipe \(path) holding \(queued) unread bytes: pipe contents are not supported yet")
                    }
                }
                var description = Amber_OpenFileDescription()
                description.id = id
                description.kind = kind
                description.path = path
                description.flags = info.flags & ~closeOnExec
                description.offset = info.position
                description.device = status.device
                description.inode = status.inode
                description.rdev = status.rdev
                description.size = status.size
                description.changeTimeNs = status.changeTimeNs
                return description
            }
            descriptor.description_p = description.id
            record.descriptors.append(descriptor)
            if isNew || !record.descriptions.contains(where: { $0.id == description.id }) {
                record.descriptions.append(description)
            }
        }
        return record
    }

    /// Opens every description here, hands it to the task and places it at each of its numbers.
    static func restore(_ record: Amber_Files, _ session: RestoreSession) throws {
        let descriptions = Dictionary(record.descriptions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var installed: [UInt32: Int32] = [:]
        for descriptor in record.descriptors.sorted(by: { $0.fd < $1.fd }) {
            guard let description = descriptions[descriptor.description_p] else {
                throw AmberError(.badImage, "image file \(ImageFormat.taskRecordName(pid: session.task.pid)): fd \(descriptor.fd) refers to a missing open file")
            }
            let source: Int32
            var temporary = false
            if let existing = installed[description.id] {
                source = existing
            } else if let inherited = session.treeFiles?.descriptions[description.id] {
                source = inherited
            } else {
                source = try session.install(try session.openFiles.descriptor(for: description, in: session))
                temporary = source != descriptor.fd
            }
            if source == descriptor.fd {
                try session.injector.call("fcntl F_SETFD", SyscallNumber.fcntl, UInt64(source), UInt64(F_SETFD), descriptor.closeOnExec ? UInt64(FD_CLOEXEC) : 0)
            } else {
                try session.injector.call("dup3 to fd \(descriptor.fd)", SyscallNumber.dup3, UInt64(source), UInt64(descriptor.fd), descriptor.closeOnExec ? UInt64(O_CLOEXEC) : 0)
                if temporary {
                    try session.injector.call("close", SyscallNumber.close, UInt64(source))
                }
            }
            installed[description.id] = descriptor.fd
        }
    }

    /// Reopens a file as the image describes it, as `task` could have (`RestoreSession.openAsTask`).
    static func open(_ description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool) throws -> Int32 {
        var flags = Int32(bitPattern: description.flags) & ~(O_CREAT | O_TRUNC | O_EXCL)
        if description.kind == .fileFifo {
            // Opening one end of a FIFO would wait for the other: open without waiting, then restore the flag.
            flags |= O_NONBLOCK
        }
        let fd = try RestoreSession.openAsTask(description.path, flags: flags | O_NOCTTY, what: "the file", task: task, dumped: description.changeTimeNs == 0 ? nil : FileStatus(device: description.device, inode: description.inode, mode: 0, size: 0, rdev: 0, changeTimeNs: description.changeTimeNs), trusted: imageTrusted)
        if description.kind == .fileFifo && Int32(bitPattern: description.flags) & O_NONBLOCK == 0 {
            _ = fcntl(fd, F_SETFL, Int32(bitPattern: description.flags) & ~O_NONBLOCK)
        }
        if description.kind == .fileRegular || description.kind == .fileDirectory, description.offset != 0 {
            guard lseek(fd, off_t(Int64(bitPattern: description.offset)), SEEK_SET) >= 0 else {
                let error = LinuxError.current("lseek")
                Glibc.close(fd)
                throw AmberError(.restoreFailed, "cannot seek \(description.path) to \(description.offset): \(error)")
            }
        }
        return fd
    }
}

/// The files the restorer opened for the tree, one per open file description of the image,
/// kept open until every task has its copy.
final class OpenFileTable {
    private var opened: [UInt32: (description: Amber_OpenFileDescription, fd: Int32)] = [:]

    deinit {
        for entry in opened.values { Glibc.close(entry.fd) }
    }

    /// Our descriptor of `description`, opened the first time a task asks for it. Every task
    /// record that lists the description must describe it alike.
    func descriptor(for description: Amber_OpenFileDescription, in session: RestoreSession) throws -> Int32 {
        if let entry = opened[description.id] {
            guard entry.description == description else {
                throw AmberError(.badImage, "image file \(ImageFormat.taskRecordName(pid: session.task.pid)): open file \(description.id) differs from the one other task records describe")
            }
            return entry.fd
        }
        let fd = try FileState.open(description, as: session.task, imageTrusted: session.imageTrusted)
        opened[description.id] = (description, fd)
        return fd
    }
}
