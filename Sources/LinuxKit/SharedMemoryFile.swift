import Glibc
import SystemPackage

/// The shmem file behind shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero
/// (deleted)" in maps), opened through /proc/PID/map_files/START-END, which needs
/// CAP_CHECKPOINT_RESTORE or root. Reading it reads the object, whichever process's page
/// tables hold its pages, and maps nothing: the processes that map it see no change.
public final class SharedMemoryFile {
    public private(set) var fd: Int32
    public let status: FileStatus

    /// lseek's whence values that Glibc's Swift overlay lacks (<linux/fs.h>).
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    /// Opens the object mapped at `start`-`end` in process `pid`.
    public init(pid: Int32, start: UInt64, end: UInt64, writable: Bool) throws(LinuxError) {
        let path = "/proc/\(pid)/map_files/\(String(start, radix: 16))-\(String(end, radix: 16))"
        let fd = try libcResult("open \(path)") { Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC) }.get()
        do {
            status = try FileStatus.fstat(fd: fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        self.fd = fd
    }

    /// A new object of `size` bytes, as MAP_SHARED|MAP_ANONYMOUS makes it (so it reads
    /// "/dev/zero (deleted)" wherever it is mapped), opened for reading and writing; the
    /// mapping that made it is gone again. `noReserve`: its memory is committed page by page as
    /// it is written (MAP_NORESERVE), not all at once.
    public static func makeAnonymous(size: UInt64, noReserve: Bool) throws(LinuxError) -> SharedMemoryFile {
        let flags = MAP_SHARED | MAP_ANONYMOUS | (noReserve ? MAP_NORESERVE : 0)
        guard let address = mmap(nil, Int(size), PROT_READ | PROT_WRITE, flags, -1, 0), address != MAP_FAILED else {
            throw LinuxError(Errno(rawValue: Glibc.errno), "mmap \(size) bytes of shared anonymous memory")
        }
        defer { munmap(address, Int(size)) }
        let start = UInt64(UInt(bitPattern: address))
        return try SharedMemoryFile(pid: getpid(), start: start, end: start + size, writable: true)
    }

    deinit { close() }

    /// Closes it now rather than when it goes.
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// The byte ranges of the object that hold data (SEEK_DATA, SEEK_HOLE), ascending; the
    /// holes between them read as zeros.
    public func dataRanges() throws(LinuxError) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = []
        var position: off_t = 0
        while UInt64(position) < status.size {
            let data = lseek(fd, position, Self.seekData)
            if data < 0 {
                // ENXIO: no data from here to the end.
                if Glibc.errno == ENXIO { break }
                throw LinuxError(Errno(rawValue: Glibc.errno), "lseek SEEK_DATA in shared memory at \(position)")
            }
            let hole = try libcResult("lseek SEEK_HOLE in shared memory at \(data)") { lseek(fd, data, Self.seekHole) }
                .get()
            ranges.append(UInt64(data)..<min(UInt64(hole), status.size))
            position = hole
        }
        return ranges
    }

    /// Reads `buffer.count` bytes at `offset`; fewer only at the end of the object.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(LinuxError) -> Int {
        var done = 0
        while done < buffer.count {
            let count = try libcResult("read shared memory at \(offset + UInt64(done))") {
                Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + UInt64(done)))
            }.get()
            if count == 0 { break }
            done += count
        }
        return done
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(LinuxError) {
        var done = 0
        while done < buffer.count {
            let count = try libcResult("write shared memory at \(offset + UInt64(done))") {
                Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + UInt64(done)))
            }.get()
            if count == 0 { throw LinuxError(.ioError, "write shared memory at \(offset + UInt64(done)): no progress") }
            done += count
        }
    }
}
