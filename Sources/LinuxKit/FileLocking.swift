/// What flock(2) and fcntl(2)'s record-lock commands take, for calls injected into a task.
public enum FileLocking {
    /// flock(2) operations.
    public static let shared: UInt64 = 1
    public static let exclusive: UInt64 = 2
    public static let nonBlocking: UInt64 = 4

    /// fcntl(2) commands.
    public static let getLock: UInt64 = 5
    public static let setLock: UInt64 = 6
    public static let getOpenFileDescriptionLock: UInt64 = 36
    public static let setOpenFileDescriptionLock: UInt64 = 37

    /// `struct flock`'s l_type.
    public static let readLock: Int16 = 0
    public static let writeLock: Int16 = 1
    public static let unlocked: Int16 = 2

    /// `struct flock` of x86_64 (32 bytes): l_type, l_whence, then l_start, l_len and l_pid
    /// each on its natural alignment. `length` 0 reaches to the end of the file, however far it grows.
    public static func recordLock(type: Int16, start: UInt64, length: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: recordLockSize)
        withUnsafeBytes(of: type.littleEndian) { bytes.replaceSubrange(0..<2, with: $0) }
        // l_whence = SEEK_SET (0): `start` is from the beginning of the file.
        withUnsafeBytes(of: start.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
        return bytes
    }

    public static let recordLockSize = 32
}

extension SyscallNumber {
    public static let flock = 73
}
