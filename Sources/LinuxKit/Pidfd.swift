internal import CLinux
import Glibc
import SystemPackage

/// A pidfd: a stable handle to a process that cannot be confused with a later one reusing its PID.
public struct Pidfd: ~Copyable {
    public let fd: Int32
    public let pid: Int32

    public init(pid: Int32) throws(LinuxError) {
        fd = Int32(try kernelResult(amber_pidfd_open(pid), "pidfd_open(\(pid))").get())
        self.pid = pid
    }

    deinit { Glibc.close(fd) }

    /// Duplicates the process's descriptor `targetFD` into ours (pidfd_getfd), for the caller to
    /// close; needs ptrace access to it.
    public func duplicate(_ targetFD: Int32) throws(LinuxError) -> FileDescriptor {
        FileDescriptor(
            rawValue: Int32(
                try kernelResult(amber_pidfd_getfd(fd, targetFD), "pidfd_getfd of fd \(targetFD) in process \(pid)")
                    .get()))
    }

    /// A pidfd of process `pid` as a plain descriptor, for an owner that keeps it beside other
    /// state and closes it itself.
    public static func open(pid: Int32) throws(LinuxError) -> Int32 {
        Int32(try kernelResult(amber_pidfd_open(pid), "pidfd_open(\(pid))").get())
    }

    /// Duplicates the descriptor `targetFD` of process `pid` through its pidfd `pidfd` (from
    /// `open(pid:)`), for the caller to close.
    public static func duplicate(_ targetFD: Int32, of pid: Int32, through pidfd: Int32) throws(LinuxError)
        -> FileDescriptor
    {
        FileDescriptor(
            rawValue: Int32(
                try kernelResult(amber_pidfd_getfd(pidfd, targetFD), "pidfd_getfd of fd \(targetFD) in process \(pid)")
                    .get()))
    }

    /// The address family (AF_UNIX, AF_INET...) of the socket the process has open as
    /// `targetFD`: SO_DOMAIN of a copy.
    public func socketFamily(_ targetFD: Int32) throws(LinuxError) -> Int32 {
        let copy = try duplicate(targetFD)
        defer { try? copy.close() }
        return try Self.socketFamily(of: copy)
    }

    /// The address family of the socket `copy` (a copy of a process's descriptor) is on: SO_DOMAIN.
    public static func socketFamily(of copy: FileDescriptor) throws(LinuxError) -> Int32 {
        var family: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = try libcResult("getsockopt SO_DOMAIN") {
            getsockopt(copy.rawValue, SOL_SOCKET, SO_DOMAIN, &family, &size)
        }.get()
        return family
    }
}

/// How the kernel orders the open file descriptions two descriptors of two processes refer to
/// (kcmp KCMP_FILE): 0 the same one, 1 the first's sorts before the second's, 2 after.
public func openFileOrder(pid1: Int32, fd1: Int32, pid2: Int32, fd2: Int32) throws(LinuxError) -> Int {
    try kernelResult(amber_kcmp_file(pid1, pid2, fd1, fd2), "kcmp of fds \(fd1) and \(fd2)").get()
}

/// What two tasks may share that kcmp(2) compares.
public enum SharedResource: Int32, Sendable, CustomStringConvertible {
    case memory = 1  // KCMP_VM: CLONE_VM
    case fileTable = 2  // KCMP_FILES: CLONE_FILES
    case filesystem = 3  // KCMP_FS: CLONE_FS (cwd, root, umask)

    public var description: String {
        switch self {
        case .memory: "address space (CLONE_VM)"
        case .fileTable: "file descriptor table (CLONE_FILES)"
        case .filesystem: "working directory and umask (CLONE_FS)"
        }
    }
}

/// How the kernel orders the `resource` of two tasks (kcmp's result): 0 the same one, 1 the
/// first's sorts before the second's, 2 after. Sorting by it puts tasks that share next to each other.
public func kernelOrder(of resource: SharedResource, _ pid1: Int32, _ pid2: Int32) throws(LinuxError) -> Int {
    try kernelResult(amber_kcmp(pid1, pid2, resource.rawValue), "kcmp of the \(resource) of tasks \(pid1) and \(pid2)")
        .get()
}

/// What a pidfd (pidfd_open(2)) is, as its link and fdinfo show it.
public enum PidfdFile {
    /// Its /proc/PID/fd link.
    public static let link = "anon_inode:[pidfd]"
    /// PIDFD_THREAD (O_EXCL): a pidfd of one thread rather than of its process.
    public static let thread: UInt32 = 0o200
    /// The status flags one is made with: O_RDWR, and PIDFD_NONBLOCK (O_NONBLOCK) and PIDFD_THREAD if asked.
    public static let statusFlags: UInt32 = 0o2 | 0o4000 | thread

    /// "Pid:": the process's PID in the PID namespace of the /proc it is read from; -1 once it
    /// was reaped, 0 when it is not in that namespace.
    public static func pid(_ info: FileDescriptorInfo) throws(LinuxError) -> Int32 {
        guard let pid = info.fields["Pid"].flatMap({ Int32($0) }) else { throw ProcText.malformed("fdinfo field Pid") }
        return pid
    }

    /// "NSpid:": its PIDs from the /proc's namespace down to its own.
    public static func namespacePIDs(_ info: FileDescriptorInfo) -> [Int32] {
        (info.fields["NSpid"] ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int32($0) }
    }

    /// A new pidfd of `pid` with `flags` (PIDFD_NONBLOCK, PIDFD_THREAD), close-on-exec as every pidfd.
    public static func open(_ pid: Int32, flags: UInt32) throws(LinuxError) -> FileDescriptor {
        FileDescriptor(
            rawValue: Int32(try kernelResult(amber_pidfd_open_flags(pid, flags), "pidfd_open(\(pid))").get()))
    }
}
