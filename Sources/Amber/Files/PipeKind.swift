import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// One end of an anonymous pipe ("pipe:[INODE]"), as CRIU's pipes.c: each end is one open
/// file description, and both are on one pipe, made once at restore (`RestoredPipe`). What the
/// pipe holds is copied at the dump without being consumed (tee(2), `PipeBuffer.contents`) and
/// written back; its capacity, its owner, and each end's O_NONBLOCK and packet mode (O_DIRECT)
/// come back too. Every end of the pipe must be in the tree, or held by no process at all
/// (`check(tree:)`), unless the dump leaves the pipe outside the tree (`ExternalFiles`).
struct PipeKind: OpenFileKind {
    let identity: OpenFileIdentity
    let isWriteEnd: Bool

    static func classify(_ descriptor: DescriptorProbe) throws -> PipeKind? {
        guard descriptor.link.hasPrefix("pipe:") else { return nil }
        let identity = try descriptor.identity()
        switch Int32(bitPattern: try descriptor.info().flags) & O_ACCMODE {
        case O_RDONLY: return PipeKind(identity: identity, isWriteEnd: false)
        case O_WRONLY: return PipeKind(identity: identity, isWriteEnd: true)
        default: throw descriptor.refusal("\(descriptor.link) for reading and writing (reopened through /proc/PID/fd)")
        }
    }

    var externalName: String? { Self.externalName(inode: identity.inode) }

    private static func externalName(inode: UInt64) -> String { "pipe:[\(inode)]" }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        let status = try FileStatus.fstat(fd: copy.rawValue)
        var end = Amber_PipeEnd()
        end.pipeID = status.inode
        end.writeEnd = isWriteEnd
        end.ownerUid = status.uid
        end.ownerGid = status.gid
        try end.readCapacity(copy, of: descriptor)
        guard status.mode & 0o7777 == 0o600 else {
            throw AmberError.unsupported(
                descriptor.process,
                "has fd \(descriptor.fd) on \(descriptor.link) with mode 0o\(String(status.mode & 0o7777, radix: 8)) (changed by fchmod): not restored yet"
            )
        }
        // What the pipe holds is kept with its read end, which the tree has whenever the pipe
        // holds anything (`check(tree:)`).
        if !isWriteEnd { try end.readContents(copy, of: descriptor) }
        return .pipeEnd(end)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_PipeEnd? {
        guard case .pipeEnd(let end) = description.file else { return nil }
        return end
    }

    static func reopenedPath(of record: Amber_PipeEnd) -> String? { nil }

    static func make(
        _ end: Amber_PipeEnd, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let pipe = try objects.object(end.pipeID) { try RestoredPipe(end, task: task) }
        if !end.writeEnd { try pipe.fill(end, task: task) }
        let fd = try pipe.takeEnd(write: end.writeEnd, task: task)
        let flags = Int32(bitPattern: description.flags) & (O_NONBLOCK | O_APPEND | PipeBuffer.packetMode)
        guard flags == 0 || fcntl(fd.rawValue, F_SETFL, flags) == 0 else {
            let error = LinuxError.current("fcntl(F_SETFL)")
            try? fd.close()
            throw AmberError(
                .restoreFailed,
                "cannot set the flags 0o\(String(flags, radix: 8)) of pipe \(end.pipeID)'s end for process \(task.pid): \(error)"
            )
        }
        return fd.rawValue
    }
}

/// A pipe made again for the tree: both ends are the restorer's until every task has its
/// copies; an end that no description of the image is on is closed with them.
final class RestoredPipe: SharedOpenFileObject {
    let id: UInt64
    let readEnd: FileDescriptor
    let writeEnd: FileDescriptor
    private var filled = false
    private var readEndTaken = false
    private var writeEndTaken = false

    /// Makes the pipe of `end` with its capacity and owner (which `ImagePrivileges` allowed).
    init(_ end: Amber_PipeEnd, task: Amber_Task) throws {
        id = end.pipeID
        let ends = try PipeBuffer.make()
        readEnd = ends.read
        writeEnd = ends.write
        do {
            if end.capacity != UInt32(PipeBuffer.defaultCapacity) {
                try end.setCapacity(writeEnd, of: "pipe \(end.pipeID)", task: task)
            }
            guard fchown(writeEnd.rawValue, end.ownerUid, end.ownerGid) == 0 else {
                throw AmberError(
                    .restoreFailed,
                    "cannot give pipe \(end.pipeID) of process \(task.pid) its owner uid \(end.ownerUid), gid \(end.ownerGid): \(LinuxError.current("fchown"))"
                )
            }
        } catch {
            close()
            throw error
        }
    }

    /// Writes back what the pipe held, the first time one of its read ends is made, through a
    /// write description no task has: the pipe's own write end while no task has it yet (made
    /// non-blocking for the writing, then given its status flags back), else one of our own.
    func fill(_ end: Amber_PipeEnd, task: Amber_Task) throws {
        guard !filled else { return }
        filled = true
        guard end.heldBytes > 0 else { return }
        guard writeEndTaken else {
            do {
                try PipeBuffer.setStatusFlags(writeEnd, O_NONBLOCK)
            } catch {
                throw AmberError(
                    .restoreFailed, "cannot make pipe \(id) non-blocking for process \(task.pid): \(error)")
            }
            try end.writeContents(writeEnd, of: "pipe \(end.pipeID)", task: task)
            do {
                try PipeBuffer.setStatusFlags(writeEnd, 0)
            } catch {
                throw AmberError(
                    .restoreFailed, "cannot clear the status flags of pipe \(id) for process \(task.pid): \(error)")
            }
            return
        }
        let writer = try reopen(writeEnd, flags: O_WRONLY | O_NONBLOCK, task: task)
        defer { try? writer.close() }
        try end.writeContents(writer, of: "pipe \(end.pipeID)", task: task)
    }

    /// Our descriptor of a new description of one end, for the caller to close: the pipe's own
    /// end the first time, then others opened on it (a pipe end reopened through /proc/PID/fd
    /// is a description of its own).
    func takeEnd(write: Bool, task: Amber_Task) throws -> FileDescriptor {
        let end = write ? writeEnd : readEnd
        let taken = write ? writeEndTaken : readEndTaken
        if write { writeEndTaken = true } else { readEndTaken = true }
        if taken { return try reopen(end, flags: write ? O_WRONLY : O_RDONLY, task: task) }
        do {
            return FileDescriptor(
                rawValue: try libcCall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(end.rawValue, F_DUPFD_CLOEXEC, 0) })
        } catch {
            throw AmberError(.restoreFailed, "cannot copy an end of pipe \(id) for process \(task.pid): \(error)")
        }
    }

    private func reopen(_ end: FileDescriptor, flags: Int32, task: Amber_Task) throws -> FileDescriptor {
        do {
            return FileDescriptor(
                rawValue: try libcCall("open /proc/self/fd/\(end.rawValue)") {
                    open("/proc/self/fd/\(end.rawValue)", flags | O_CLOEXEC)
                })
        } catch {
            throw AmberError(
                .restoreFailed, "cannot open another description of pipe \(id) for process \(task.pid): \(error)")
        }
    }

    func close() {
        try? readEnd.close()
        try? writeEnd.close()
    }
}

/// Runs a libc call that returns -1 and sets errno on failure.
private func libcCall(_ operation: String, _ body: () -> Int32) throws(LinuxError) -> Int32 {
    let result = body()
    guard result >= 0 else { throw LinuxError.current(operation) }
    return result
}

extension PipeKind {
    /// Where the tree holds a pipe: the first descriptor seen of each of its ends, by the
    /// index of its process (not a copy of it: a thousand pipes copied it thousands of times).
    private struct HeldEnds {
        var read: (process: Int, fd: Int32)?
        var write: (process: Int, fd: Int32)?
    }

    /// Refuses a pipe of the tree of which a process outside the tree holds an end: its half
    /// would be cut off at restore (scanning every process's descriptors, only when the tree
    /// has a pipe). A pipe whose other end no process holds is restored so, but not one
    /// holding bytes that no process can read any more (its read end closed). A pipe the dump
    /// leaves outside the tree (`--external`) may have ends outside, but not bytes the tree
    /// has yet to read: they stay in that pipe, and the caller's pipe at restore would lack them.
    static func check(tree processes: [CheckedProcess]) throws {
        var pipes: [UInt64: HeldEnds] = [:]
        for (index, process) in processes.enumerated() {
            for probe in try process.probes() {
                guard let inode = pipeInode(probe.link), let info = try? probe.info() else { continue }
                let fd = probe.fd
                let isWriteEnd = Int32(bitPattern: info.flags) & O_ACCMODE == O_WRONLY
                var ends = pipes[inode] ?? HeldEnds()
                if isWriteEnd, ends.write == nil { ends.write = (index, fd) }
                if !isWriteEnd, ends.read == nil { ends.read = (index, fd) }
                pipes[inode] = ends
            }
        }
        guard !pipes.isEmpty else { return }
        let externals = processes[0].externalFiles
        for (inode, ends) in pipes.filter({ externals.contains(externalName(inode: $0.key)) })
            .sorted(by: { $0.key < $1.key })
        {
            guard let reader = ends.read else { continue }
            let process = processes[reader.process]
            let copy = try process.descriptors.duplicate(reader.fd)
            defer { try? copy.close() }
            let queued = try PipeBuffer.queuedBytes(copy)
            if queued > 0 {
                throw AmberError.unsupported(
                    process.name,
                    "has fd \(reader.fd) on pipe:[\(inode)], named by --external, holding \(queued) bytes the tree has not read: they stay in that pipe, and the descriptor that takes its place at restore would not have them",
                    tree: process.tree)
            }
        }
        try OutsideDescriptors.forEach(outside: processes) { pid, fd, link in
            guard let inode = pipeInode(link), let ends = pipes[inode], !externals.contains(externalName(inode: inode)),
                let info = try? ProcFS.fileDescriptorInfo(pid: pid, fd: fd)
            else { return }
            let isWriteEnd = Int32(bitPattern: info.flags) & O_ACCMODE == O_WRONLY
            // Named by the tree's other end if it has it: "whose read end is held by".
            let (holder, also) =
                isWriteEnd
                ? (ends.read ?? ends.write!, ends.write != nil) : (ends.write ?? ends.read!, ends.read != nil)
            let process = processes[holder.process]
            throw AmberError.unsupported(
                process.name,
                "has fd \(holder.fd) on pipe:[\(inode)], whose \(isWriteEnd ? "write" : "read") end is \(also ? "also " : "")held by process \(ProcessName(pid: pid)) outside the tree: a pipe is restored only when no process outside the tree holds an end of it",
                tree: process.tree)
        }
        if !processes[0].beforeFreeze { try refuseEndsHeldUnseen(pipes, processes: processes) }
        for (inode, ends) in pipes.filter({ $0.value.read == nil && !externals.contains(externalName(inode: $0.key)) })
            .sorted(by: { $0.key < $1.key })
        {
            let writer = ends.write!
            let process = processes[writer.process]
            let copy = try process.descriptors.duplicate(writer.fd)
            defer { try? copy.close() }
            let queued = try PipeBuffer.queuedBytes(copy)
            if queued > 0 {
                throw AmberError.unsupported(
                    process.name,
                    "has fd \(writer.fd) on pipe:[\(inode)] holding \(queued) bytes that no process can read (its read end is closed): not restored",
                    tree: process.tree)
            }
        }
    }

    /// Refuses a pipe of which the frozen tree holds one end only while the other is open
    /// somewhere the outside scan did not see: in a process whose descriptors /proc does not
    /// show amber (a parent outside amber's PID namespace, one with capabilities amber lacks),
    /// or in flight in a unix socket's queue outside the tree. Restored, that end would be
    /// closed. Not asked before the freeze: a child forked since the walk may hold it.
    private static func refuseEndsHeldUnseen(_ pipes: [UInt64: HeldEnds], processes: [CheckedProcess]) throws {
        let externals = processes[0].externalFiles
        for (inode, ends) in pipes.sorted(by: { $0.key < $1.key })
        where (ends.read == nil) != (ends.write == nil) && !externals.contains(externalName(inode: inode)) {
            let held = (ends.read ?? ends.write)!
            let isWriteEnd = ends.read == nil
            let process = processes[held.process]
            let copy = try process.descriptors.duplicate(held.fd)
            defer { try? copy.close() }
            guard try PipeBuffer.otherEndIsOpen(copy, isWriteEnd: isWriteEnd) else { continue }
            throw AmberError.unsupported(
                process.name,
                "has fd \(held.fd) on pipe:[\(inode)], whose \(isWriteEnd ? "read" : "write") end is open outside the tree where amber cannot see it (a process outside amber's PID namespace or with capabilities amber lacks, or a unix socket's queue): a pipe is restored only when no process outside the tree holds an end of it",
                tree: process.tree)
        }
    }

    /// The pipe a descriptor with /proc `link` is on; nil when it is no pipe.
    private static func pipeInode(_ link: String) -> UInt64? {
        guard link.hasPrefix("pipe:["), link.hasSuffix("]") else { return nil }
        return UInt64(link.dropFirst("pipe:[".count).dropLast())
    }
}

extension PipeKind {
    /// The restorer makes the pipe and gives it its owner (fchown) and capacity.
    static func privilegedAsks(_ end: Amber_PipeEnd, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    {
        var asks = end.capacityAsks(restorer: restorer)
        if end.ownerUid != owner.fsuid || end.ownerGid != owner.fsgid {
            asks.append(
                PrivilegedAsk(
                    what:
                        "pipe \(end.pipeID) owned by uid \(end.ownerUid), gid \(end.ownerGid), other than its own \(owner.fsuid), \(owner.fsgid)",
                    capabilities: [Capability.chown]))
        }
        return asks
    }
}
