internal import CLinux
import Glibc
import SystemPackage

/// The buffer of a pipe or named pipe, through a descriptor of ours on it.
public enum PipeBuffer {
    /// Sixteen pages: what a pipe holds unless F_SETPIPE_SZ changed it.
    public static let defaultCapacity: Int32 = 65536
    /// F_GETPIPE_SZ, which Glibc's module does not export.
    private static let getCapacity: Int32 = 1032
    /// F_SETPIPE_SZ.
    private static let setCapacityCommand: Int32 = 1031
    /// O_DIRECT on a pipe's end: packet mode (each write(2) of at most a page is one packet,
    /// and a read returns at most one packet).
    public static let packetMode: Int32 = 0o40000
    /// SPLICE_F_NONBLOCK.
    private static let spliceNonblocking: UInt32 = 2

    /// The bytes written to it and not read yet (FIONREAD).
    public static func queuedBytes(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        var queued: Int32 = 0
        _ = try libcResult("ioctl FIONREAD of fd \(fd.rawValue)") { ioctl(fd.rawValue, UInt(FIONREAD), &queued) }.get()
        return queued
    }

    /// Whether some description of the pipe's other end is open anywhere: poll(2) shows POLLHUP
    /// on a read end once no writer is left, and POLLERR on a write end once no reader is. Only
    /// for an anonymous pipe: a FIFO's read end shows no POLLHUP until a writer has come.
    public static func otherEndIsOpen(_ fd: FileDescriptor, isWriteEnd: Bool) throws(LinuxError) -> Bool {
        let closed = UInt32(isWriteEnd ? POLLERR : POLLHUP)
        return try Epoll.readyEvents(of: fd, among: closed) == 0
    }

    /// The most bytes it holds (F_GETPIPE_SZ).
    public static func capacity(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        try libcResult("fcntl F_GETPIPE_SZ of fd \(fd.rawValue)") { fcntl(fd.rawValue, getCapacity) }.get()
    }

    /// Sets the most bytes it holds (F_SETPIPE_SZ, rounded up by the kernel to a power of two pages).
    public static func setCapacity(_ fd: FileDescriptor, _ bytes: Int32) throws(LinuxError) {
        _ = try libcResult("fcntl F_SETPIPE_SZ \(bytes) of fd \(fd.rawValue)") {
            fcntl(fd.rawValue, setCapacityCommand, bytes)
        }.get()
    }

    /// The largest capacity an unprivileged process may set (/proc/sys/fs/pipe-max-size).
    public static func maximumCapacity() throws(LinuxError) -> Int64 {
        let text = try ProcFS.read("/proc/sys/fs/pipe-max-size")
        guard let value = ProcText.unsigned(text[...].prefix { $0 != UInt8(ascii: "\n") }) else {
            throw LinuxError(.invalidArgument, "parse /proc/sys/fs/pipe-max-size")
        }
        return Int64(value)
    }

    /// A new pipe (pipe2 with `flags` and O_CLOEXEC): its read end and its write end.
    public static func make(flags: Int32 = 0) throws(LinuxError) -> (read: FileDescriptor, write: FileDescriptor) {
        var ends: [Int32] = [-1, -1]
        _ = try kernelResult(amber_pipe2(&ends, flags | O_CLOEXEC), "pipe2").get()
        return (FileDescriptor(rawValue: ends[0]), FileDescriptor(rawValue: ends[1]))
    }

    /// What a pipe holds, copied without being consumed.
    public struct Contents: Sendable, Equatable {
        /// The bytes as successive reads return them: a read ends at the end of a packet (a
        /// buffer written in packet mode), so every read but the last ends with one packet.
        public var reads: [[UInt8]]
        /// Whether the last read ends with a packet too (a read shorter than it would drop
        /// the rest of it).
        public var lastEndsWithPacket: Bool
    }

    /// Copies what the pipe `readEnd` holds, leaving it there: tee(2) into a scratch pipe of
    /// ours as large as it, read back. A second copy into the same scratch pipe tells whether the
    /// last read ends with a packet: reading all of it but its last byte drops that byte only
    /// from a packet.
    public static func contents(_ readEnd: FileDescriptor) throws(LinuxError) -> Contents {
        let queued = Int(try queuedBytes(readEnd))
        guard queued > 0 else { return Contents(reads: [], lastEndsWithPacket: false) }
        // One scratch pipe for both copies: the first is read to its end.
        let scratch = try make(flags: O_NONBLOCK)
        defer {
            try? scratch.read.close()
            try? scratch.write.close()
        }
        try setCapacity(scratch.write, try capacity(readEnd))
        var reads: [[UInt8]] = []
        try copy(readEnd, queued: queued, into: scratch.write)
        var remaining = queued
        while remaining > 0 {
            var chunk = [UInt8](repeating: 0, count: remaining)
            let count = try readOnce(scratch.read, into: &chunk, count: remaining)
            guard count > 0 else {
                throw LinuxError(.ioError, "read of a copy of fd \(readEnd.rawValue): \(remaining) bytes missing")
            }
            reads.append(Array(chunk.prefix(count)))
            remaining -= count
        }
        let last = reads[reads.count - 1].count
        guard last > 1 else { return Contents(reads: reads, lastEndsWithPacket: false) }
        try copy(readEnd, queued: queued, into: scratch.write)
        var skipped = [UInt8](repeating: 0, count: queued)
        for read in reads.dropLast() { _ = try readOnce(scratch.read, into: &skipped, count: read.count) }
        _ = try readOnce(scratch.read, into: &skipped, count: last - 1)
        return Contents(reads: reads, lastEndsWithPacket: try queuedBytes(scratch.read) == 0)
    }

    /// Copies the `queued` bytes of `readEnd` into the empty scratch pipe `scratch` (tee), as large as it.
    private static func copy(_ readEnd: FileDescriptor, queued: Int, into scratch: FileDescriptor) throws(LinuxError) {
        let copied = try kernelResult(
            amber_tee(readEnd.rawValue, scratch.rawValue, queued, spliceNonblocking),
            "tee from fd \(readEnd.rawValue)"
        ).get()
        guard copied == queued else {
            throw LinuxError(.ioError, "tee from fd \(readEnd.rawValue): \(copied) of \(queued) bytes copied")
        }
    }

    private static func readOnce(_ fd: FileDescriptor, into buffer: inout [UInt8], count: Int) throws(LinuxError) -> Int
    {
        try libcResult("read of a pipe copy") {
            buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, count) }
        }.get()
    }

    /// Sets the status flags of our description (F_SETFL): O_NONBLOCK, packet mode.
    public static func setStatusFlags(_ fd: FileDescriptor, _ flags: Int32) throws(LinuxError) {
        _ = try libcResult("fcntl F_SETFL 0o\(String(flags, radix: 8)) of fd \(fd.rawValue)") {
            fcntl(fd.rawValue, F_SETFL, flags)
        }.get()
    }

    /// Writes `bytes` to the pipe, by one write(2) when they fit (one packet, when `fd` is in packet mode).
    public static func write(_ fd: FileDescriptor, _ bytes: [UInt8]) throws(LinuxError) {
        var offset = 0
        while offset < bytes.count {
            let written = try libcResult("write to a pipe") {
                bytes.withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress! + offset, bytes.count - offset) }
            }.get()
            offset += written
        }
    }
}
