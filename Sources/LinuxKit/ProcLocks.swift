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

    /// Parses one line, with or without the "lock:" key; nil for a waiter ("->").
    public static func parse(_ line: String) -> FileLock? {
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if words.first == "lock:" { words.removeFirst() }
        // "N:" then kind, type, mode, pid, maj:min:inode, start, end; a waiter has "->" after "N:".
        guard words.count >= 6, words[0].hasSuffix(":"), words[1] != "->" else { return nil }
        let kind = Kind(name: words[1])
        let identity = words[5].split(separator: ":")
        guard let pid = Int32(words[4]), identity.count == 3, let inode = UInt64(identity[2]) else { return nil }
        return FileLock(kind: kind, mode: String(words[3]), pid: pid, inode: inode)
    }
}

extension ProcFS {
    /// The locks held through one open file of a process: the "lock:" lines of /proc/PID/fdinfo/FD
    /// (the flock, OFD locks and leases of that open file, and the process's POSIX locks taken through it).
    public static func fileLocks(pid: Int32, fd: Int32) throws(LinuxError) -> [FileLock] {
        try fileDescriptorInfo(pid: pid, fd: fd).lines.compactMap { $0.hasPrefix("lock:") ? FileLock.parse($0) : nil }
    }
}
