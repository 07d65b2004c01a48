import CLinux
import Glibc

/// A pidfd: a stable handle to a process that cannot be confused with a later one reusing its PID.
public struct Pidfd: ~Copyable {
    public let fd: Int32
    public let pid: Int32

    public init(pid: Int32) throws(LinuxError) {
        fd = Int32(try kernelResult(amber_pidfd_open(pid), "pidfd_open(\(pid))").get())
        self.pid = pid
    }

    deinit { Glibc.close(fd) }

    /// Duplicates the process's descriptor `targetFD` into ours (pidfd_getfd); needs ptrace access to it.
    public func duplicate(_ targetFD: Int32) throws(LinuxError) -> Int32 {
        Int32(try kernelResult(amber_pidfd_getfd(fd, targetFD), "pidfd_getfd of fd \(targetFD) in process \(pid)").get())
    }
}

/// Whether two descriptors of two processes refer to one open file description (kcmp KCMP_FILE).
public func sameOpenFile(pid1: Int32, fd1: Int32, pid2: Int32, fd2: Int32) throws(LinuxError) -> Bool {
    let result = try kernelResult(amber_kcmp_file(pid1, pid2, fd1, fd2), "kcmp of fds \(fd1) and \(fd2)").get()
    return result == 0
}
