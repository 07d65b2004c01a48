internal import CLinux
import Glibc

/// A network namespace, held open by a descriptor on its file (/proc/PID/ns/net,
/// /run/netns/NAME). A network namespace belongs to a thread, not to a process: the sockets a
/// thread makes and the processes it clones or spawns are in the thread's namespace, so entering
/// one changes the calling thread alone.
public final class NetworkNamespace: Sendable {
    public let fd: Int32
    /// Its inode on nsfs, what /proc/PID/ns/net shows as net:[INODE].
    public let inode: UInt64

    /// CLONE_NEWNET, which setns takes to check that a file is a network namespace.
    static let cloneFlag: Int32 = 0x4000_0000

    /// Opens the namespace file at `path`; not yet checked to be a network namespace.
    public init(path: String) throws(LinuxError) {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError.current("open \(path)") }
        let status: FileStatus
        do {
            status = try FileStatus.fstat(fd: fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        self.fd = fd
        inode = status.inode
    }

    /// The calling thread's own.
    public static func ofThisThread() throws(LinuxError) -> NetworkNamespace {
        try NetworkNamespace(path: "/proc/thread-self/ns/net")
    }

    /// The namespace of process `pid`.
    public static func of(pid: Int32) throws(LinuxError) -> NetworkNamespace {
        try NetworkNamespace(path: "/proc/\(pid)/ns/net")
    }

    deinit { Glibc.close(fd) }

    /// Moves the calling thread into this namespace (EINVAL when the file is no network
    /// namespace; EPERM without CAP_SYS_ADMIN over it).
    public func enter() throws(LinuxError) {
        _ = try kernelResult(amber_setns(fd, Self.cloneFlag), "setns into net:[\(inode)]").get()
    }

    /// Moves the calling thread into a new, empty namespace: only a loopback device, down.
    public static func enterNew() throws(LinuxError) {
        _ = try kernelResult(amber_unshare(cloneFlag), "unshare(CLONE_NEWNET)").get()
    }

    /// Runs `body` with the calling thread in this namespace, and puts the thread back into its
    /// own after. A thread that cannot go back aborts the process: it would go on making sockets
    /// and processes in the wrong namespace.
    public func inside<T>(_ body: () throws -> T) throws -> T {
        let own = try NetworkNamespace.ofThisThread()
        if own.inode == inode { return try body() }
        try enter()
        defer { own.enterOrAbort() }
        return try body()
    }

    /// Moves the calling thread back into this namespace, its own, or aborts.
    public func enterOrAbort() {
        do throws(LinuxError) {
            try enter()
        } catch {
            fatalError("cannot put the thread back into its network namespace net:[\(inode)]: \(error)")
        }
    }
}

extension InetAddress {
    /// The 4 or 16 bytes of an IPv4 or IPv6 address written as `ip` writes it; nil when it is neither.
    public static func bytes(_ text: String) -> [UInt8]? {
        for (family, size) in [(AF_INET, 4), (AF_INET6, 16)] {
            var bytes = [UInt8](repeating: 0, count: size)
            if inet_pton(family, text, &bytes) == 1 { return bytes }
        }
        return nil
    }

    /// An IPv4 (4 bytes) or IPv6 (16) address as text, without a port.
    public static func text(_ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard bytes.count == 4 || bytes.count == 16,
            bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil
        else { return "?" }
        return String(cString: text)
    }
}
