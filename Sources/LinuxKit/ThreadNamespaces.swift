internal import CLinux
import Glibc

/// A UTS or IPC namespace, held open by a descriptor on its file (/proc/PID/ns/uts,
/// /proc/PID/ns/ipc, a bind mount of one). Like a network namespace, each belongs to a thread:
/// setns and unshare of one move the calling thread alone, and the processes it clones are
/// made in it.
public final class ThreadNamespace: Sendable {
    public enum Kind: String, Sendable {
        case uts, ipc

        /// CLONE_NEWUTS, CLONE_NEWIPC: what setns takes to check a file's kind, and unshare.
        var cloneFlag: Int32 {
            switch self {
            case .uts: 0x0400_0000
            case .ipc: 0x0800_0000
            }
        }
    }

    public let kind: Kind
    public let fd: Int32
    /// Its inode on nsfs, what /proc/PID/ns/KIND shows as KIND:[INODE].
    public let inode: UInt64

    /// Opens the namespace file at `path`; not yet checked to be of `kind`.
    public init(path: String, kind: Kind) throws(LinuxError) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError.current("open \(path)") }
        let status: FileStatus
        do {
            status = try FileStatus.fstat(fd: fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        self.kind = kind
        self.fd = fd
        inode = status.inode
    }

    /// The calling thread's own.
    public static func ofThisThread(_ kind: Kind) throws(LinuxError) -> ThreadNamespace {
        try ThreadNamespace(path: "/proc/thread-self/ns/\(kind.rawValue)", kind: kind)
    }

    /// The namespace of process `pid`.
    public static func of(pid: Int32, _ kind: Kind) throws(LinuxError) -> ThreadNamespace {
        try ThreadNamespace(path: "/proc/\(pid)/ns/\(kind.rawValue)", kind: kind)
    }

    deinit { Glibc.close(fd) }

    /// Moves the calling thread into this namespace (EINVAL when the file is no namespace of
    /// its kind; EPERM without CAP_SYS_ADMIN over it).
    public func enter() throws(LinuxError) {
        _ = try kernelResult(amber_setns(fd, kind.cloneFlag), "setns into \(kind.rawValue):[\(inode)]").get()
    }

    /// Moves the calling thread into a new namespace of `kind`: a UTS one with the thread's
    /// host and domain names, an IPC one with no objects and the kernel's defaults.
    public static func enterNew(_ kind: Kind) throws(LinuxError) {
        _ = try kernelResult(amber_unshare(kind.cloneFlag), "unshare(CLONE_NEW\(kind.rawValue.uppercased()))").get()
    }

    /// Runs `body` with the calling thread in this namespace, and puts the thread back into its
    /// own after (or aborts: it would go on making processes in the wrong namespace).
    public func inside<T>(_ body: () throws -> T) throws -> T {
        let own = try ThreadNamespace.ofThisThread(kind)
        if own.inode == inode { return try body() }
        try enter()
        defer { own.enterOrAbort() }
        return try body()
    }

    /// Runs `body` with the calling thread in a new namespace of `kind`, then puts it back.
    public static func insideNew<T>(_ kind: Kind, _ body: () throws -> T) throws -> T {
        let own = try ThreadNamespace.ofThisThread(kind)
        try enterNew(kind)
        defer { own.enterOrAbort() }
        return try body()
    }

    /// Moves the calling thread back into this namespace, its own, or aborts.
    public func enterOrAbort() {
        do throws(LinuxError) {
            try enter()
        } catch {
            fatalError("cannot put the thread back into its \(kind.rawValue) namespace [\(inode)]: \(error)")
        }
    }
}

/// The host and domain names of the calling thread's UTS namespace.
public enum HostNames {
    /// The longest either may be (__NEW_UTS_LEN).
    public static let maximumLength = 64

    public static func current() -> (hostname: String, domainname: String) {
        var names = utsname()
        uname(&names)
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return (text(names.nodename), text(names.__domainname))
    }

    /// Sets both (EPERM without CAP_SYS_ADMIN over the namespace).
    public static func set(hostname: String, domainname: String) throws(LinuxError) {
        let host = Array(hostname.utf8)
        let domain = Array(domainname.utf8)
        _ = try libcResult("sethostname \(hostname)") { sethostname(host, host.count) }.get()
        _ = try libcResult("setdomainname \(domainname)") { setdomainname(domain, domain.count) }.get()
    }
}

/// The IPC objects of the calling thread's IPC namespace.
public enum IPCObjects {
    /// Its System V message queues, semaphore sets and shared memory segments, each as
    /// "KIND key K id I", from /proc/sysvipc (which shows the namespace of its reader).
    public static func systemV() throws(LinuxError) -> [String] {
        var objects: [String] = []
        for (file, kind) in [("msg", "message queue"), ("sem", "semaphore set"), ("shm", "shared memory segment")] {
            let lines = ProcText.lines(try ProcFS.read("/proc/sysvipc/\(file)")[...]).dropFirst()
            for line in lines {
                let fields = ProcText.string(line).split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 2 else { continue }
                objects.append("the System V \(kind) key \(fields[0]) id \(fields[1])")
            }
        }
        return objects
    }

    /// The names of its POSIX message queues, read from a detached mount of its mqueue file
    /// system (which needs CAP_SYS_ADMIN).
    public static func messageQueues() throws(LinuxError) -> [String] {
        let mount = try kernelResult(amber_fsmount_new("mqueue"), "mount the namespace's mqueue file system").get()
        // The mount's own descriptor is a path only: its root is read through one opened on it.
        let root = openat(Int32(mount), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        Glibc.close(Int32(mount))
        guard root >= 0, let directory = fdopendir(root) else {
            let error = LinuxError.current("open the root of the mqueue file system")
            if root >= 0 { Glibc.close(root) }
            throw error
        }
        defer { closedir(directory) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                guard errno == 0 else { throw LinuxError.current("read the mqueue file system") }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
