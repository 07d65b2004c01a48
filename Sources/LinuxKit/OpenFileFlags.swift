import Glibc
import SystemPackage

/// Flags of an open file as open(2) takes them and /proc/PID/fdinfo shows them, those the
/// engine names and Glibc's module does not (or not with this type).
public struct OpenFileFlags: OptionSet, Sendable {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// O_CLOEXEC: a flag of the descriptor, not of the open file description, although
    /// fdinfo shows it among the description's flags.
    public static let closeOnExec = OpenFileFlags(rawValue: 0o2000000)
    /// O_APPEND: every write goes to the end of the file, whatever the offset.
    public static let append = OpenFileFlags(rawValue: 0o2000)
    /// O_ASYNC (FASYNC): signal-driven I/O.
    public static let asynchronous = OpenFileFlags(rawValue: 0o20000)
    /// O_PATH: a descriptor that only names the file.
    public static let pathOnly = OpenFileFlags(rawValue: 0o10000000)
    /// O_NOATIME, which Glibc's module lacks.
    public static let noAccessTime = OpenFileFlags(rawValue: 0o1000000)
    /// O_TMPFILE (__O_TMPFILE | O_DIRECTORY): a file made without a name in a directory;
    /// fdinfo keeps showing both bits in the flags of the description it made.
    public static let temporaryFile = OpenFileFlags(rawValue: 0o20200000)
    /// __O_TMPFILE alone, the bit that tells O_TMPFILE from O_DIRECTORY.
    private static let temporaryFileBit: UInt32 = 0o20000000

    /// `flags` as open(2) takes them to open again the file a description open(O_TMPFILE)
    /// made: without O_TMPFILE, which would make another file.
    public static func reopening(_ flags: Int32) -> Int32 {
        UInt32(bitPattern: flags) & temporaryFileBit == 0 ? flags : flags & ~temporaryFile.openFlags
    }

    /// As open(2) and fcntl(F_SETFL) take them.
    public var openFlags: Int32 { Int32(bitPattern: rawValue) }
}

/// The owner F_SETOWN (or dnotify's F_NOTIFY, which sets the caller) gave an open file
/// description: the process, or process group (negative), that its signals go to.
public enum OpenFileOwner {
    /// The owner of the description our `fd` shares: 0 for none.
    public static func of(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        try libcResult("fcntl F_GETOWN of fd \(fd.rawValue)") { fcntl(fd.rawValue, F_GETOWN) }.get()
    }

    /// F_GETOWN_EX, which tells a process group of ID 1 from an error, unlike F_GETOWN.
    private static let getOwnerEx: Int32 = 16
    /// F_GETSIG.
    private static let getSignal: Int32 = 11

    /// Whether the description our `fd` shares has an owner of any kind (a thread, a process or
    /// a process group: F_GETOWN_EX) or a signal other than SIGIO for its notices (F_SETSIG).
    public static func isSet(_ fd: FileDescriptor) throws(LinuxError) -> Bool {
        var owner: (type: Int32, pid: Int32) = (0, 0)
        _ = try libcResult("fcntl F_GETOWN_EX of fd \(fd.rawValue)") {
            withUnsafeMutablePointer(to: &owner) { fcntl(fd.rawValue, getOwnerEx, $0) }
        }.get()
        let signal = try libcResult("fcntl F_GETSIG of fd \(fd.rawValue)") { fcntl(fd.rawValue, getSignal) }.get()
        return owner.pid != 0 || signal != 0
    }
}
