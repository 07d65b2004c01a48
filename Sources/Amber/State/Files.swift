import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit

/// Open files: regular files, directories, the character devices of
/// `ImageFormat.reopenableDevices` and named pipes, reopened by path at restore with their flags
/// and offset; descriptors sharing one open file stay shared.
enum FileState {
    private static let closeOnExec: UInt32 = 0o2000000
    /// O_ASYNC (FASYNC).
    private static let asynchronous: UInt32 = 0o20000
    /// Sixteen pages: what a pipe holds unless F_SETPIPE_SZ changed it.
    private static let defaultPipeCapacity: Int32 = 65536
    /// O_PATH, which Glibc's module does not export.
    private static let pathOnly: Int32 = 0o10000000

    /// Refuses descriptors Amber cannot reopen, before the target is stopped.
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        for fd in try ProcFS.fileDescriptors(pid: pid) {
            _ = try classify(pid: pid, fd: fd, process: process, tree: tree)
        }
    }

    /// The kind of file `fd` is, its name and status, from the kernel: the /proc/PID/fd link
    /// names it (unescaped), and its link count, not the " (deleted)" the link then ends in, tells
    /// a deleted file from one named so.
    private static func classify(pid: Int32, fd: Int32, process: ProcessName, tree: ProcessName? = nil) throws -> (kind: Amber_FileKind, path: String, status: FileStatus) {
        let link = try ProcFS.fileDescriptorPath(pid: pid, fd: fd)
        func refuse(_ what: String) -> AmberError { .unsupported(process, "has fd \(fd) open on \(what): not supported yet", tree: tree) }
        if link.hasPrefix("socket:") { throw refuse("\(try socketFamily(pid: pid, fd: fd)) socket (\(link))") }
        if link.hasPrefix("pipe:") { throw refuse("a pipe (\(link))") }
        if link.hasPrefix("anon_inode:") { throw refuse("\(link.dropFirst("anon_inode:".count))") }
        guard link.hasPrefix("/") else { throw refuse(link) }
        let status = try FileStatus.stat(procFD: pid, fd: fd)
        if status.isDeleted {
            let path = link.hasSuffix(" (deleted)") ? String(link.dropLast(" (deleted)".count)) : link
            switch try FileSystemKind.of(path: "/proc/\(pid)/fd/\(fd)") {
            case .devpts: throw refuse("the pty \(path), whose entry in /dev/pts is gone (its master was closed)")
            case .hugetlbfs: throw refuse("hugetlb memory (\(path))")
            case .shmem where path.hasPrefix("/memfd:"): throw refuse("a memfd (\(path))")
            case .shmem where path == "/dev/zero" || path.hasPrefix("/SYSV"): throw refuse("SysV/shmem shared memory (\(path))")
            default: throw refuse("the deleted file \(path)")
            }
        }
        // Reopened by its path at restore: the path must lead to this very file. A message
        // queue's descriptor shows the queue's name, and a file of another mount namespace a
        // path of that namespace.
        if (try? FileSystemKind.of(path: "/proc/\(pid)/fd/\(fd)")) == .mqueue {
            throw refuse("the POSIX message queue \(link)")
        }
        guard let atPath = try? FileStatus.stat(path: link), atPath.device == status.device, atPath.inode == status.inode else {
            throw refuse("\(link), a file its path does not lead to")
        }
        if status.isRegular { return (.fileRegular, link, status) }
        if status.isDirectory { return (.fileDirectory, link, status) }
        if status.isFIFO { return (.fileFifo, link, status) }
        if status.isCharacterDevice && ImageFormat.reopenableDevices[link] == status.rdev { return (.fileCharacterDevice, link, status) }
        if status.isCharacterDevice { throw refuse("the device \(link)") }
        throw refuse(link)
    }

    /// "a unix", "an inet6"...: the socket's address family as `ss` names it.
    private static func socketFamily(pid: Int32, fd: Int32) throws -> String {
        let family = try Pidfd(pid: pid).socketFamily(fd)
        switch family {
        case AF_UNIX: return "a unix"
        case AF_INET: return "an inet"
        case AF_INET6: return "an inet6"
        case AF_NETLINK: return "a netlink"
        case AF_PACKET: return "a packet"
        default: return "an address family \(family)"
        }
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
                    let capacity = fcntl(copy, 1032 /* F_GETPIPE_SZ */)
                    Glibc.close(copy)
                    if result == 0 && queued > 0 {
                        throw AmberError.unsupported(target.name, "has fd \(fd) on the named pipe \(path) holding \(queued) unread bytes: pipe contents are not supported yet")
                    }
                    // A named pipe no other process holds open gets the default capacity when reopened.
                    if capacity > 0 && capacity != defaultPipeCapacity {
                        throw AmberError.unsupported(target.name, "has fd \(fd) on the named pipe \(path) with a capacity of \(capacity) bytes (F_SETPIPE_SZ): not restored yet")
                    }
                }
                // open(2) does not start signal-driven I/O, and the owner (F_SETOWN) cannot be read from outside.
                if info.flags & asynchronous != 0 {
                    throw AmberError.unsupported(target.name, "has fd \(fd) on \(path) with signal-driven I/O (O_ASYNC, F_SETOWN): not restored yet")
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
        if flags & pathOnly != 0 {
            // open(2) ignores other flags with O_PATH, but openat2 refuses them (EINVAL): keep
            // only those it takes, and those F_GETFL then shows (fdinfo adds O_LARGEFILE).
            flags &= pathOnly | O_DIRECTORY | O_NOFOLLOW
        } else if description.kind == .fileFifo {
            // Opening one end of a FIFO would wait for the other: open without waiting, then restore the flag.
            flags |= O_NONBLOCK | O_NOCTTY
        } else {
            flags |= O_NOCTTY
        }
        let fd = try RestoreSession.openAsTask(description.path, flags: flags, what: "the file", task: task, dumped: description.changeTimeNs == 0 ? nil : FileStatus(device: description.device, inode: description.inode, mode: 0, size: 0, rdev: 0, changeTimeNs: description.changeTimeNs), trusted: imageTrusted)
        // The path must still lead to a file of the kind dumped: an image naming /dev/kmsg as a
        // regular file reopens nothing.
        guard let status = try? FileStatus.fstat(fd: fd), isKind(description.kind, status, path: description.path) else {
            Glibc.close(fd)
            throw AmberError(.restoreFailed, "cannot reopen \(description.path) for process \(task.pid): it is no longer \(description.kind == .fileCharacterDevice ? "the device" : "a file of the kind") it was at the dump")
        }
        if description.kind == .fileFifo && Int32(bitPattern: description.flags) & (O_NONBLOCK | pathOnly) == 0 {
            guard fcntl(fd, F_SETFL, Int32(bitPattern: description.flags) & ~O_NONBLOCK) == 0 else {
                let error = LinuxError.current("fcntl(F_SETFL)")
                Glibc.close(fd)
                throw AmberError(.restoreFailed, "cannot make \(description.path) blocking again for process \(task.pid): \(error)")
            }
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

    private static func isKind(_ kind: Amber_FileKind, _ status: FileStatus, path: String) -> Bool {
        switch kind {
        case .fileRegular: status.isRegular
        case .fileDirectory: status.isDirectory
        case .fileFifo: status.isFIFO
        case .fileCharacterDevice: status.isCharacterDevice && ImageFormat.reopenableDevices[path] == status.rdev
        case .UNRECOGNIZED: false
        }
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

extension FileState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    /// The open file descriptions seen so far in the tree.
    final class DumpState {
        var descriptions = DescriptionTable()
    }

    static func makeDumpState(_ dump: TreeDump) -> DumpState { DumpState() }

    static var dumpSteps: [DumpStep<DumpState>] { [
        DumpStep("files", .outside) { process, state in process.task.files = try dump(process.target, table: &state.descriptions) },
    ] }

    /// Right after memory: the steps after it may need a file by descriptor.
    static var restoreSteps: [RestoreStep] { [RestoreStep("files", order: 200) { try restore($0.task.files, $0) }] }
}
