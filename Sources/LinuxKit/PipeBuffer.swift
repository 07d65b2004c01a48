import Glibc
import SystemPackage

/// The buffer of a pipe or named pipe, through a descriptor of ours on it.
public enum PipeBuffer {
    /// Sixteen pages: what a pipe holds unless F_SETPIPE_SZ changed it.
    public static let defaultCapacity: Int32 = 65536
    /// F_GETPIPE_SZ, which Glibc's module does not export.
    private static let getCapacity: Int32 = 1032

    /// The bytes written to it and not read yet (FIONREAD).
    public static func queuedBytes(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        var queued: Int32 = 0
        _ = try libcResult("ioctl FIONREAD of fd \(fd.rawValue)") { ioctl(fd.rawValue, UInt(FIONREAD), &queued) }.get()
        return queued
    }

    /// The most bytes it holds (F_GETPIPE_SZ).
    public static func capacity(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        try libcResult("fcntl F_GETPIPE_SZ of fd \(fd.rawValue)") { fcntl(fd.rawValue, getCapacity) }.get()
    }
}
