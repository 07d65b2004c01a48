import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// A named pipe, reopened by its path. Its contents are not dumped: one holding unread bytes
/// is refused, and so is one whose capacity was changed, which reopening would not give back.
struct FifoKind: ReopenedByPath {
    let path: String
    let status: FileStatus

    static func isKind(_ status: FileStatus, path: String) -> Bool { status.isFIFO }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        let queued = try? PipeBuffer.queuedBytes(copy)
        let capacity = try? PipeBuffer.capacity(copy)
        if let queued, queued > 0 {
            throw AmberError.unsupported(descriptor.process, "has fd \(descriptor.fd) on the named pipe \(path) holding \(queued) unread bytes: pipe contents are not supported yet")
        }
        // A named pipe no other process holds open gets the default capacity when reopened.
        if let capacity, capacity > 0 && capacity != PipeBuffer.defaultCapacity {
            throw AmberError.unsupported(descriptor.process, "has fd \(descriptor.fd) on the named pipe \(path) with a capacity of \(capacity) bytes (F_SETPIPE_SZ): not restored yet")
        }
        var fifo = Amber_Fifo()
        fifo.path = path
        fifo.device = status.device
        fifo.inode = status.inode
        fifo.changeTimeNs = status.changeTimeNs
        return .fifo(fifo)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Fifo? {
        guard case .fifo(let fifo) = description.file else { return nil }
        return fifo
    }

    static func make(_ fifo: Amber_Fifo, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool, objects: OpenFileObjects) throws -> Int32 {
        // Opening one end of a FIFO would wait for the other: open without waiting, then restore the flag.
        let fd = try reopen(fifo, flags: description.flags, adding: O_NONBLOCK | O_NOCTTY, as: task, imageTrusted: imageTrusted)
        let flags = Int32(bitPattern: description.flags)
        if flags & (O_NONBLOCK | OpenFileFlags.pathOnly.openFlags) == 0 {
            guard fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
                let error = LinuxError.current("fcntl(F_SETFL)")
                Glibc.close(fd)
                throw AmberError(.restoreFailed, "cannot make \(fifo.path) blocking again for process \(task.pid): \(error)")
            }
        }
        return fd
    }
}

extension Amber_Fifo: ReopenedByPathRecord {}
