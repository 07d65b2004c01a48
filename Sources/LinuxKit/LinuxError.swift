import Glibc
import SystemPackage

/// A failed kernel call: the errno the kernel gave and what was being attempted.
public struct LinuxError: Error, CustomStringConvertible, Sendable {
    public let errno: Errno
    public let operation: String

    public init(_ errno: Errno, _ operation: String) {
        self.errno = errno
        self.operation = operation
    }

    public var description: String { "\(operation): \(errno) (\(errno.name))" }
}

extension Errno {
    /// The symbolic name, e.g. "ESRCH".
    public var name: String {
        switch rawValue {
        case 1: "EPERM"
        case 2: "ENOENT"
        case 3: "ESRCH"
        case 4: "EINTR"
        case 5: "EIO"
        case 9: "EBADF"
        case 11: "EAGAIN"
        case 12: "ENOMEM"
        case 13: "EACCES"
        case 14: "EFAULT"
        case 16: "EBUSY"
        case 17: "EEXIST"
        case 20: "ENOTDIR"
        case 21: "EISDIR"
        case 22: "EINVAL"
        case 24: "EMFILE"
        case 28: "ENOSPC"
        case 38: "ENOSYS"
        case 95: "EOPNOTSUPP"
        default: "errno \(rawValue)"
        }
    }
}

/// Turns a raw shim result (>= 0, or -errno) into a Result.
@inline(__always)
func kernelResult(_ value: Int, _ operation: @autoclosure () -> String) -> Result<Int, LinuxError> {
    value < 0 ? .failure(LinuxError(Errno(rawValue: CInt(-value)), operation())) : .success(value)
}

/// Retries a libc call on EINTR and turns -1/errno into a Result.
@inline(__always)
func libcResult<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) -> Result<T, LinuxError>
{
    while true {
        let value = body()
        if value != -1 { return .success(value) }
        let err = Errno(rawValue: Glibc.errno)
        if err == .interrupted { continue }
        return .failure(LinuxError(err, operation()))
    }
}

extension LinuxError {
    /// The error libc just left in errno.
    public static func current(_ operation: String) -> LinuxError {
        LinuxError(Errno(rawValue: Glibc.errno), operation)
    }

    /// From a raw kernel result: -errno.
    public init(negated value: Int, _ operation: String) {
        self.init(Errno(rawValue: CInt(-value)), operation)
    }
}
