internal import CLinux
import Glibc
import SystemPackage

/// memfd_create(2) and file seals (fcntl F_ADD_SEALS, F_GET_SEALS): the kernel's values, which
/// Glibc's overlay does not carry.
public enum MemoryFile {
    public static let closeOnExec: UInt32 = 0x1
    public static let allowSealing: UInt32 = 0x2
    public static let hugeTLB: UInt32 = 0x4
    /// MFD_NOEXEC_SEAL: mode 0666 and F_SEAL_EXEC from the start.
    public static let noExecSeal: UInt32 = 0x8
    /// MFD_EXEC: executable (mode 0777) whatever vm.memfd_noexec asks for by default.
    public static let exec: UInt32 = 0x10

    /// The flags of the description memfd_create makes, as fdinfo shows them: O_RDWR |
    /// O_LARGEFILE. It counts as no writer of the file (`i_writecount`), unlike one opened
    /// again for writing through /proc/self/fd, which makes an exec of the file fail (ETXTBSY).
    public static let createdDescriptionFlags: Int32 = O_RDWR | 0o100000

    /// The longest name memfd_create takes (the kernel's 249 bytes, without "memfd:").
    public static let nameLimit = 249

    /// The prefix of a memfd's name in /proc: "/memfd:NAME (deleted)".
    public static let linkPrefix = "/memfd:"

    /// F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_EXEC.
    public static let sealSeal: UInt32 = 0x1
    public static let allSeals: UInt32 = 0x3f
    public static let sealExec: UInt32 = 0x20
    /// F_SEAL_FUTURE_WRITE: no new writable shared mapping nor write; those made before stay.
    public static let sealFutureWrite: UInt32 = 0x10

    private static let getSeals: Int32 = 1034
    private static let addSeals: Int32 = 1033

    /// Makes a memfd named `name` with `flags` (closed on exec in any case), for the caller to close.
    public static func create(name: String, flags: UInt32) throws(LinuxError) -> FileDescriptor {
        FileDescriptor(
            rawValue: Int32(
                try kernelResult(amber_memfd_create(name, flags | closeOnExec), "memfd_create \(name)").get()))
    }

    /// The seals of the file `fd` is on (F_GET_SEALS).
    public static func seals(_ fd: FileDescriptor) throws(LinuxError) -> UInt32 {
        UInt32(bitPattern: try libcResult("fcntl F_GET_SEALS") { fcntl(fd.rawValue, getSeals) }.get())
    }

    /// Adds `seals` to the file `fd` is on (F_ADD_SEALS).
    public static func addSeals(_ fd: FileDescriptor, _ seals: UInt32) throws(LinuxError) {
        _ = try libcResult("fcntl F_ADD_SEALS 0x\(String(seals, radix: 16))") {
            fcntl(fd.rawValue, addSeals, Int32(bitPattern: seals))
        }.get()
    }
}

/// The parts of a file that hold data, as SEEK_DATA and SEEK_HOLE find them.
public enum FileData {
    /// O_NOATIME: reading a file to dump it leaves its access time as it was.
    public static let noAccessTime: Int32 = 0o1000000

    /// lseek's SEEK_DATA and SEEK_HOLE.
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    /// The byte ranges of the file `fd` is on, below `size`, that hold data, each widened to
    /// whole `unit`s; found with lseek, so `fd` must be a description of the caller's own.
    public static func extents(_ fd: FileDescriptor, size: UInt64, unit: UInt64) throws(LinuxError) -> [Range<UInt64>] {
        var extents: [Range<UInt64>] = []
        var offset: UInt64 = 0
        while offset < size {
            let data = lseek(fd.rawValue, off_t(offset), seekData)
            if data < 0 {
                // ENXIO: no data from `offset` to the end.
                guard errno == ENXIO else { throw LinuxError.current("lseek SEEK_DATA \(offset)") }
                break
            }
            let hole = lseek(fd.rawValue, data, seekHole)
            guard hole >= 0 else { throw LinuxError.current("lseek SEEK_HOLE \(data)") }
            let start = UInt64(data) / unit * unit
            let end = min((UInt64(hole) + unit - 1) / unit * unit, (size + unit - 1) / unit * unit)
            guard start < end else { break }
            if let last = extents.last, last.upperBound >= start {
                extents[extents.count - 1] = last.lowerBound..<max(last.upperBound, end)
            } else {
                extents.append(start..<end)
            }
            offset = end
        }
        return extents
    }
}
