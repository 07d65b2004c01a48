/// One file lock as /proc/locks and the "lock:" lines of /proc/PID/fdinfo/FD show it, e.g.
/// "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF".
public struct FileLock: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// flock(2) ("FLOCK"): owned by the open file.
        case flock
        /// fcntl F_SETLK record lock ("POSIX"): owned by the process (its file table).
        case posix
        /// fcntl F_OFD_SETLK record lock ("OFDLCK"): owned by the open file.
        case openFileDescription
        /// fcntl F_SETLEASE ("LEASE").
        case lease
        /// Another kind the kernel names (a delegation, "DELEG"), kept by that name.
        case other(String)

        init(name: Substring) {
            switch name {
            case "FLOCK": self = .flock
            case "POSIX": self = .posix
            case "OFDLCK": self = .openFileDescription
            case "LEASE": self = .lease
            default: self = .other(String(name))
            }
        }
    }

    public var kind: Kind
    /// READ or WRITE (UNLCK for a lease being broken), as the kernel names it.
    public var mode: String
    /// The owner's PID; -1 for an OFD lock.
    public var pid: Int32
    public var inode: UInt64
    /// The device of the file, "major:minor" in hexadecimal as the kernel shows it.
    public var device: String = ""
    /// ADVISORY, or what else the kernel calls it (MANDATORY on kernels before 5.15, ACTIVE,
    /// BREAKING... for a lease).
    public var advice: String = "ADVISORY"
    /// The first byte locked.
    public var start: UInt64 = 0
    /// The last byte locked (inclusive); nil for "EOF": to the end of the file, however far it grows.
    public var end: UInt64? = nil

    public init(
        kind: Kind, mode: String, pid: Int32, inode: UInt64, device: String = "", advice: String = "ADVISORY",
        start: UInt64 = 0, end: UInt64? = nil
    ) {
        self.device = device
        self.kind = kind
        self.mode = mode
        self.pid = pid
        self.inode = inode
        self.advice = advice
        self.start = start
        self.end = end
    }

    /// Parses one line, with or without the "lock:" key; nil for a waiter ("->").
    public static func parse(_ line: String) -> FileLock? {
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if words.first == "lock:" { words.removeFirst() }
        // "N:" then kind, type, mode, pid, maj:min:inode, start, end (inclusive, or EOF); a waiter
        // has "->" after "N:".
        guard words.count >= 6, words[0].hasSuffix(":"), words[1] != "->" else { return nil }
        let kind = Kind(name: words[1])
        let identity = words[5].split(separator: ":")
        guard let pid = Int32(words[4]), identity.count == 3, let inode = UInt64(identity[2]) else { return nil }
        var lock = FileLock(
            kind: kind, mode: String(words[3]), pid: pid, inode: inode, device: "\(identity[0]):\(identity[1])",
            advice: String(words[2]))
        guard words.count >= 8, let start = UInt64(words[6]) else { return nil }
        lock.start = start
        if words[7] != "EOF" {
            guard let end = UInt64(words[7]) else { return nil }
            lock.end = end
        }
        return lock
    }
}

extension ProcFS {
    /// The locks held through one open file of a process: the "lock:" lines of /proc/PID/fdinfo/FD
    /// (the flock, OFD locks and leases of that open file, and the process's POSIX locks taken through it).
    public static func fileLocks(pid: Int32, fd: Int32) throws(LinuxError) -> [FileLock] {
        try fileDescriptorInfo(pid: pid, fd: fd).locks
    }
}

extension FileDescriptorInfo {
    /// The locks its "lock:" lines show.
    public var locks: [FileLock] { lines(startingWith: "lock:").compactMap { FileLock.parse($0) } }
}
