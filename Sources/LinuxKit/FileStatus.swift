import Glibc
import SystemPackage

/// The identity and type of a file, from stat(2): enough to tell whether a
/// file at restore time is the one that was dumped.
public struct FileStatus: Sendable, Equatable {
    /// The device holding the file, encoded like glibc's `makedev`, so it
    /// compares equal to `MemoryMapping.device`.
    public var device: UInt64
    public var inode: UInt64
    /// st_mode: file type bits and permissions.
    public var mode: UInt32
    public var size: UInt64
    /// The device a character or block special file stands for.
    public var rdev: UInt64
    /// st_ctim in nanoseconds: when the inode last changed (contents, owner, mode, links).
    public var changeTimeNs: UInt64

    public init(device: UInt64, inode: UInt64, mode: UInt32, size: UInt64, rdev: UInt64, changeTimeNs: UInt64 = 0) {
        self.device = device
        self.inode = inode
        self.mode = mode
        self.size = size
        self.rdev = rdev
        self.changeTimeNs = changeTimeNs
    }

    init(_ status: Glibc.stat) {
        self.init(
            device: UInt64(status.st_dev), inode: UInt64(status.st_ino), mode: UInt32(status.st_mode),
            size: UInt64(clamping: status.st_size), rdev: UInt64(status.st_rdev),
            changeTimeNs: UInt64(clamping: status.st_ctim.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: status.st_ctim.tv_nsec)
        )
    }

    private var type: UInt32 { mode & 0o170000 }
    public var isRegular: Bool { type == 0o100000 }
    public var isDirectory: Bool { type == 0o040000 }
    public var isCharacterDevice: Bool { type == 0o020000 }
    public var isBlockDevice: Bool { type == 0o060000 }
    public var isFIFO: Bool { type == 0o010000 }
    public var isSocket: Bool { type == 0o140000 }
    public var isSymbolicLink: Bool { type == 0o120000 }
    /// The permission bits, including set-user-ID, set-group-ID and sticky.
    public var permissions: UInt32 { mode & 0o7777 }

    /// The status of the file at `path`, following symbolic links.
    public static func stat(path: String) throws(LinuxError) -> FileStatus {
        var status = Glibc.stat()
        _ = try libcResult("stat \(path)") { systemStat(path, &status) }.get()
        return FileStatus(status)
    }

    /// The status of the file at `path` (following links) and its st_nlink, which is 0 for a
    /// directory that was removed.
    public static func statWithLinkCount(path: String) throws(LinuxError) -> (status: FileStatus, links: UInt64) {
        var status = Glibc.stat()
        _ = try libcResult("stat \(path)") { systemStat(path, &status) }.get()
        return (FileStatus(status), UInt64(status.st_nlink))
    }

    /// The status of the file at `path` itself, not following a final symbolic link.
    public static func lstat(path: String) throws(LinuxError) -> FileStatus {
        var status = Glibc.stat()
        _ = try libcResult("lstat \(path)") { systemLstat(path, &status) }.get()
        return FileStatus(status)
    }

    /// The status of an open descriptor of this process.
    public static func fstat(fd: Int32) throws(LinuxError) -> FileStatus {
        var status = Glibc.stat()
        _ = try libcResult("fstat \(fd)") { systemFstat(fd, &status) }.get()
        return FileStatus(status)
    }

    /// The status of the file another process has open as `fd`, through
    /// /proc/PID/fd/FD. Following that link reaches the open file itself, so
    /// this works for deleted files, pipes and sockets, which no path names.
    public static func stat(procFD pid: Int32, fd: Int32) throws(LinuxError) -> FileStatus {
        try stat(path: "/proc/\(pid)/fd/\(fd)")
    }
}

// Inside `FileStatus` the names `stat`, `lstat` and `fstat` mean its own methods
// (and `Glibc.stat` the struct), so the C functions are reached from file scope.
private func systemStat(_ path: String, _ status: UnsafeMutablePointer<stat>) -> Int32 { stat(path, status) }
private func systemLstat(_ path: String, _ status: UnsafeMutablePointer<stat>) -> Int32 { lstat(path, status) }
private func systemFstat(_ fd: Int32, _ status: UnsafeMutablePointer<stat>) -> Int32 { fstat(fd, status) }
