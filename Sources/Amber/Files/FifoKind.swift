import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// A named pipe, reopened by its path. What it holds is copied without being consumed, as a
/// pipe's (`PipeContentsRecord`), from each description open for reading, and its capacity
/// from each; both are the FIFO's and come back once per FIFO (`RestoredFifo`), whichever of
/// its descriptions is made first. One is refused when a process outside the tree has it open
/// (the dump's kill would close the tree's ends under it, and its data would be there twice),
/// and one holding data when the tree only writes to it (`check(tree:)`).
struct FifoKind: ReopenedByPath {
    let path: String
    let status: FileStatus

    static func isKind(_ status: FileStatus, path: String) -> Bool { status.isFIFO }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var fifo = Amber_Fifo()
        fifo.path = path
        fifo.device = status.device
        fifo.inode = status.inode
        fifo.changeTimeNs = status.changeTimeNs
        let flags = OpenFileFlags(rawValue: try descriptor.info().flags)
        // An O_PATH descriptor is no opener of the FIFO: its capacity and data are not its own.
        if !flags.contains(.pathOnly) {
            let copy = try descriptor.duplicate()
            defer { try? copy.close() }
            try fifo.readCapacity(copy, of: descriptor)
            if Int32(bitPattern: flags.rawValue) & O_ACCMODE != O_WRONLY { try fifo.readContents(copy, of: descriptor) }
        }
        return .fifo(fifo)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Fifo? {
        guard case .fifo(let fifo) = description.file else { return nil }
        return fifo
    }

    static func make(
        _ fifo: Amber_Fifo, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        // Opening one end of a FIFO would wait for the other: open without waiting, then restore the flag.
        let flags = Int32(bitPattern: description.flags)
        // A write end opened without waiting fails (ENXIO) while no reader has the FIFO open, as
        // when the tree's reader is made later or it has none: a reader of ours is there for the open.
        let reader =
            flags & (O_ACCMODE | OpenFileFlags.pathOnly.openFlags) == O_WRONLY
            ? try reopen(
                fifo, flags: UInt32(O_RDONLY), adding: O_NONBLOCK | O_NOCTTY, as: task, imageTrusted: imageTrusted)
            : nil
        defer { if let reader { Glibc.close(reader) } }
        let fd = try reopen(
            fifo, flags: description.flags, adding: O_NONBLOCK | O_NOCTTY, as: task, imageTrusted: imageTrusted)
        do {
            if flags & OpenFileFlags.pathOnly.openFlags == 0 {
                let restored = try objects.object(fifo.inode) { RestoredFifo() }
                try restored.restore(
                    fifo, through: FileDescriptor(rawValue: fd), readable: flags & O_ACCMODE != O_WRONLY, task: task)
            }
            if flags & (O_NONBLOCK | OpenFileFlags.pathOnly.openFlags) == 0 {
                guard fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
                    throw AmberError(
                        .restoreFailed,
                        "cannot make \(fifo.path) blocking again for process \(task.pid): \(LinuxError.current("fcntl(F_SETFL)"))"
                    )
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }
}

extension Amber_Fifo: ReopenedByPathRecord {}

/// A FIFO's capacity and contents as a restore gives them back: once, by the first
/// description that can.
final class RestoredFifo: SharedOpenFileObject {
    private var capacitySet = false
    private var filled = false

    /// Sets the FIFO's capacity through our reopened `fd`, and writes back what it held through
    /// a write description of our own once a description open for reading holds it open.
    func restore(_ fifo: Amber_Fifo, through fd: FileDescriptor, readable: Bool, task: Amber_Task) throws {
        if !capacitySet, fifo.capacity != 0 {
            capacitySet = true
            if try PipeBuffer.capacity(fd) != Int32(fifo.capacity) {
                try fifo.setCapacity(fd, of: "the named pipe \(fifo.path)", task: task)
            }
        }
        guard readable, !filled, fifo.heldBytes > 0 else { return }
        filled = true
        let queued = try PipeBuffer.queuedBytes(fd)
        guard queued == 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot write back what the named pipe \(fifo.path) of process \(task.pid) held: it holds \(queued) bytes already (another process has it open)"
            )
        }
        let writer: FileDescriptor
        do {
            writer = try FileDescriptor.open(
                "/proc/self/fd/\(fd.rawValue)", .writeOnly, options: [.nonBlocking, .closeOnExec])
        } catch {
            throw AmberError(
                .restoreFailed, "cannot open the named pipe \(fifo.path) for writing back what it held: \(error)")
        }
        defer { try? writer.close() }
        try fifo.writeContents(writer, of: "the named pipe \(fifo.path)", task: task)
    }

    func close() {}
}

extension FifoKind {
    /// Refuses a FIFO of the tree that a process outside the tree has open, and one holding
    /// data that the tree only has open for writing (amber copies it from a reader's description).
    static func check(tree processes: [CheckedProcess]) throws {
        struct Held {
            let process: CheckedProcess
            let fd: Int32
            let path: String
            var readable: Bool
        }
        var fifos: [OpenFileIdentity: Held] = [:]
        for process in processes {
            for probe in try process.probes() {
                let (fd, link) = (probe.fd, probe.link)
                guard link.hasPrefix("/"), let status = try? probe.status(), status.isFIFO,
                    let flags = try? probe.info().flags, !OpenFileFlags(rawValue: flags).contains(.pathOnly)
                else { continue }
                let identity = OpenFileIdentity(device: status.device, inode: status.inode)
                var held = fifos[identity] ?? Held(process: process, fd: fd, path: link, readable: false)
                held.readable = held.readable || Int32(bitPattern: flags) & O_ACCMODE != O_WRONLY
                fifos[identity] = held
            }
        }
        for held in fifos.values where !held.readable {
            let copy = try held.process.descriptors.duplicate(held.fd)
            defer { try? copy.close() }
            let queued = try PipeBuffer.queuedBytes(copy)
            guard queued > 0 else { continue }
            throw AmberError.unsupported(
                held.process.name,
                "has fd \(held.fd) on the named pipe \(held.path) holding \(queued) bytes, which the tree has open for writing only: not restored",
                tree: held.process.tree)
        }
        guard !fifos.isEmpty else { return }
        let paths = Set(fifos.values.map(\.path))
        try OutsideDescriptors.forEach(outside: processes) { pid, fd, link in
            guard paths.contains(link), let status = try? FileStatus.stat(procFD: pid, fd: fd),
                let held = fifos[OpenFileIdentity(device: status.device, inode: status.inode)]
            else { return }
            throw AmberError.unsupported(
                held.process.name,
                "has fd \(held.fd) on the named pipe \(held.path), which process \(ProcessName(pid: pid)) outside the tree has open too (its fd \(fd)): the dump's kill would close the tree's ends under it, an end of file to its reads or EPIPE to its writes: not restored",
                tree: held.process.tree)
        }
    }
}

extension FifoKind {
    static func privilegedAsks(_ fifo: Amber_Fifo, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    {
        fifo.capacityAsks(restorer: restorer)
    }
}
