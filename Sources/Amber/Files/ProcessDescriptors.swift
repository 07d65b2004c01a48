import AmberImage
import Glibc
import LinuxKit
import Synchronization
import SystemPackage

/// The descriptors of one process, each probed once for every check and kind that asks: the
/// running checks share one set; once the tree is frozen the checks and the dump share
/// another (`ProcessSnapshot.descriptors`), since a frozen process can open and close nothing.
/// It also keeps one pidfd of the process, through which every descriptor is duplicated.
/// Used by one thread at a time (a process's checks, then its dump steps), but made on one
/// thread and used on another: its state is behind a lock.
final class ProcessDescriptors: @unchecked Sendable {
    let pid: Int32
    private let lock = Mutex(())
    private var probesRead: [DescriptorProbe]?
    /// Behind a lock of its own: the probes are read holding the other, and may duplicate.
    private let pidfd = Mutex<Int32?>(nil)

    /// Whether these are the running checks' probes. They read a pipe or socket through a copy
    /// of the descriptor rather than its fdinfo (`DescriptorProbe.init(throughCopy:)`), but
    /// where net_cls or net_prio runs on a v1 hierarchy: taking a copy of a socket gives it the
    /// taker's class and priority index, which a refused dump must not change. And a
    /// descriptor the running process closes while it is probed is not one of its own.
    let running: Bool
    private static let socketsTakeTheTakersClass = CgroupFS.classifiesSocketsByReceiver()

    init(pid: Int32, running: Bool = false) {
        self.pid = pid
        self.running = running
    }

    deinit {
        pidfd.withLock { if let pidfd = $0 { Glibc.close(pidfd) } }
    }

    /// Descriptors probed by one thread; a process with more is probed on every CPU at once.
    private static let probesPerThread = 256

    /// A probe of each descriptor, in number order, read the first time they are asked for;
    /// `process` and `tree` name them in refusals.
    func probes(process: ProcessName, tree: ProcessName?) throws -> [DescriptorProbe] {
        try lock.withLock { _ in
            if let probesRead { return probesRead }
            let fds = try ProcFS.fileDescriptors(pid: pid)
            let fdinfo = try ProcFS.openFileDescriptorInfoDirectory(pid: pid)
            defer { Glibc.close(fdinfo) }
            let chunks = stride(from: 0, to: fds.count, by: Self.probesPerThread).map {
                Array(fds[$0..<min($0 + Self.probesPerThread, fds.count)])
            }
            let throughCopy = running && !Self.socketsTakeTheTakersClass
            let probes = try chunks.concurrentMap { [pid, running] chunk in
                Result { () throws(LinuxError) -> [DescriptorProbe] in
                    var probes: [DescriptorProbe] = []
                    for fd in chunk {
                        do throws(LinuxError) {
                            probes.append(
                                try DescriptorProbe(
                                    pid: pid, fd: fd, process: process, tree: tree, owner: self,
                                    fdinfoDirectory: fdinfo, throughCopy: throughCopy))
                        } catch
                            where running && [Errno.noSuchFileOrDirectory, .badFileDescriptor].contains(error.errno)
                        {
                            continue
                        }
                    }
                    return probes
                }
            }.flatMap { try $0.get() }
            probesRead = probes
            return probes
        }
    }

    /// A descriptor of ours on the same open file description as the process's `fd`
    /// (pidfd_getfd), for the caller to close.
    func duplicate(_ fd: Int32) throws(LinuxError) -> FileDescriptor {
        let through = try pidfd.withLock { pidfd throws(LinuxError) -> Int32 in
            if let pidfd { return pidfd }
            let opened = try Pidfd.open(pid: pid)
            pidfd = opened
            return opened
        }
        return try Pidfd.duplicate(fd, of: pid, through: through)
    }

    /// What the fdinfo of `fd` shows when it is on a pipe or socket, read through a copy
    /// (`AnonymousFileMounts.info(ofCopy:)`), with its status; nil when it is on neither.
    func anonymousInfo(_ fd: Int32) throws(LinuxError) -> (FileDescriptorInfo, FileStatus)? {
        let copy = try duplicate(fd)
        defer { try? copy.close() }
        return try AnonymousFileMounts.info(ofCopy: copy)
    }
}
