internal import CLinux
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
    /// st_mtim in nanoseconds: when its contents last changed. Kept by a copy that keeps times
    /// (cp -p, rsync -a, tar), unlike the change time.
    public var modificationTimeNs: UInt64 = 0
    /// st_nlink: 0 for a file unlinked from every directory (or never linked, as memfd and
    /// shared anonymous memory are).
    public var linkCount: UInt64
    /// st_uid and st_gid: the file's owner.
    public var uid: UInt32
    public var gid: UInt32

    public init(
        device: UInt64, inode: UInt64, mode: UInt32, size: UInt64, rdev: UInt64, changeTimeNs: UInt64 = 0,
        linkCount: UInt64 = 1, uid: UInt32 = 0, gid: UInt32 = 0
    ) {
        self.device = device
        self.inode = inode
        self.mode = mode
        self.size = size
        self.rdev = rdev
        self.changeTimeNs = changeTimeNs
        self.linkCount = linkCount
        self.uid = uid
        self.gid = gid
    }

    init(_ status: Glibc.stat) {
        self.init(
            device: UInt64(status.st_dev), inode: UInt64(status.st_ino), mode: UInt32(status.st_mode),
            size: UInt64(clamping: status.st_size), rdev: UInt64(status.st_rdev),
            changeTimeNs: UInt64(clamping: status.st_ctim.tv_sec) &* 1_000_000_000
                &+ UInt64(clamping: status.st_ctim.tv_nsec),
            linkCount: UInt64(status.st_nlink), uid: status.st_uid, gid: status.st_gid
        )
        modificationTimeNs =
            UInt64(clamping: status.st_mtim.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: status.st_mtim.tv_nsec)
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
    /// Unlinked: its name, as /proc shows it, ends in " (deleted)" added by the kernel.
    public var isDeleted: Bool { linkCount == 0 }

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

/// The file systems Amber tells apart, from statfs's f_type: they hold files that are no files
/// of a directory (shared memory, hugetlb memory, AIO rings, ptys).
public enum FileSystemKind: Sendable, Equatable {
    /// tmpfs, and the kernel's own shmem mount: memfd, System V and shared anonymous memory.
    case shmem
    case hugetlbfs
    /// The kernel's mount for AIO rings (io_setup).
    case aioRing
    case devpts
    /// POSIX message queues (mq_open): their descriptors name a queue, not a path.
    case mqueue
    case other

    init(magic: UInt64) {
        switch magic {
        case 0x0102_1994: self = .shmem
        case 0x9584_58f6: self = .hugetlbfs
        case 0xa10a_10a1: self = .aioRing
        case 0x1cd1: self = .devpts
        case 0x1980_0202: self = .mqueue
        default: self = .other
        }
    }

    /// The file system of the file at `path`, following symbolic links (so /proc's links reach the open file).
    public static func of(path: String) throws(LinuxError) -> FileSystemKind {
        var magic: UInt64 = 0
        _ = try kernelResult(amber_statfs_type(path, &magic), "statfs \(path)").get()
        return FileSystemKind(magic: magic)
    }
}

// Inside `FileStatus` the names `stat`, `lstat` and `fstat` mean its own methods
// (and `Glibc.stat` the struct), so the C functions are reached from file scope.
private func systemStat(_ path: String, _ status: UnsafeMutablePointer<stat>) -> Int32 { stat(path, status) }
private func systemLstat(_ path: String, _ status: UnsafeMutablePointer<stat>) -> Int32 { lstat(path, status) }
private func systemFstat(_ fd: Int32, _ status: UnsafeMutablePointer<stat>) -> Int32 { fstat(fd, status) }

/// A file's last access and modification times (st_atim, st_mtim), in nanoseconds since the epoch.
public struct FileTimes: Sendable, Equatable {
    public var accessNs: Int64
    public var modificationNs: Int64

    public init(accessNs: Int64, modificationNs: Int64) {
        self.accessNs = accessNs
        self.modificationNs = modificationNs
    }

    /// The times of the file our `fd` is on (fstat).
    public static func of(_ fd: FileDescriptor) throws(LinuxError) -> FileTimes {
        var status = Glibc.stat()
        _ = try libcResult("fstat of fd \(fd.rawValue)") { fstat(fd.rawValue, &status) }.get()
        return FileTimes(
            accessNs: Int64(status.st_atim.tv_sec) &* 1_000_000_000 &+ Int64(status.st_atim.tv_nsec),
            modificationNs: Int64(status.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(status.st_mtim.tv_nsec))
    }

    /// Sets them on the file our `fd` is on (futimens: its owner, or CAP_FOWNER).
    public func set(on fd: FileDescriptor) throws(LinuxError) {
        func spec(_ ns: Int64) -> timespec {
            let (seconds, remainder) = ns.quotientAndRemainder(dividingBy: 1_000_000_000)
            return remainder < 0
                ? timespec(tv_sec: Int(seconds - 1), tv_nsec: Int(remainder + 1_000_000_000))
                : timespec(tv_sec: Int(seconds), tv_nsec: Int(remainder))
        }
        let times = [spec(accessNs), spec(modificationNs)]
        _ = try libcResult("futimens of fd \(fd.rawValue)") {
            times.withUnsafeBufferPointer { futimens(fd.rawValue, $0.baseAddress) }
        }.get()
    }
}

/// What a file carries beyond its data, mode, owner and times: extended attributes and the
/// inode flags chattr(1) sets.
public enum FileAttributes {
    /// FS_IOC_GETFLAGS.
    private static let getFlags: UInt = 0x8008_6601
    /// The inode flags a file gets only from chattr (FS_SECRM_FL, FS_UNRM_FL, FS_IMMUTABLE_FL,
    /// FS_APPEND_FL): a new file never inherits them from its directory.
    public static let setByChattr: UInt32 = 0x1 | 0x2 | 0x10 | 0x20
    /// FS_IMMUTABLE_FL and FS_APPEND_FL: a file no one opens for writing, or only to append.
    public static let immutable: UInt32 = 0x10, appendOnly: UInt32 = 0x20
    /// The chattr flags a new file inherits from its directory where that has them
    /// (FS_SYNC_FL, FS_NODUMP_FL, FS_NOATIME_FL).
    public static let inheritedFromDirectory: UInt32 = 0x8 | 0x40 | 0x80

    /// The total length of the names of the extended attributes of the file our `fd` is on (0
    /// for none; flistxattr).
    public static func extendedAttributeNamesLength(_ fd: FileDescriptor) throws(LinuxError) -> Int {
        try kernelResult(amber_flistxattr_length(fd.rawValue), "flistxattr of fd \(fd.rawValue)").get()
    }

    /// Its inode flags (FS_IOC_GETFLAGS); 0 on a filesystem without them (ENOTTY).
    public static func inodeFlags(_ fd: FileDescriptor) throws(LinuxError) -> UInt32 {
        var flags: Int32 = 0
        guard ioctl(fd.rawValue, getFlags, &flags) == 0 else {
            let error = LinuxError.current("ioctl FS_IOC_GETFLAGS of fd \(fd.rawValue)")
            if error.errno == .inappropriateIOCTLForDevice || error.errno == .notSupported { return 0 }
            throw error
        }
        return UInt32(bitPattern: flags)
    }
}
