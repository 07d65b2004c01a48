internal import CLinux
import Glibc
import SystemPackage

extension UnixSockets {
    /// accept4(2) of the oldest connection waiting on our listener `fd` (with SOCK_CLOEXEC),
    /// without waiting: none waiting fails with EAGAIN.
    public static func accept(_ fd: FileDescriptor) throws(LinuxError) -> FileDescriptor {
        var pollDescriptor = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&pollDescriptor, 1, 0) == 1 else {
            throw LinuxError(.wouldBlock, "accept on fd \(fd.rawValue): no connection waiting")
        }
        let result = amber_accept4(fd.rawValue, Int32(SOCK_CLOEXEC.rawValue))
        guard result >= 0 else { throw LinuxError(Errno(rawValue: Int32(-result)), "accept4 on fd \(fd.rawValue)") }
        return FileDescriptor(rawValue: Int32(result))
    }
}
