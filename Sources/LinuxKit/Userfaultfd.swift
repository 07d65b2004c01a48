internal import CLinux
import Glibc
import SystemPackage

/// userfaultfd(2) flags. The descriptor is made by the process whose memory it serves (an
/// injected `userfaultfd` call): it is bound to the mm of its maker.
public enum UserfaultfdFlags {
    /// Faults taken by the kernel on the process's behalf (a `read` into a protected buffer)
    /// are not reported; only with this may an unprivileged process make one.
    public static let userModeOnly: UInt64 = 1
}

/// UFFDIO_API features.
public struct UserfaultFeatures: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let eventFork = UserfaultFeatures(rawValue: 1 << 1)
    public static let eventRemap = UserfaultFeatures(rawValue: 1 << 2)
    public static let eventRemove = UserfaultFeatures(rawValue: 1 << 3)
    public static let missingShmem = UserfaultFeatures(rawValue: 1 << 5)
    public static let eventUnmap = UserfaultFeatures(rawValue: 1 << 6)
    /// A missing page raises SIGBUS in the process instead of waiting for a reader.
    public static let sigbus = UserfaultFeatures(rawValue: 1 << 7)
    public static let threadID = UserfaultFeatures(rawValue: 1 << 8)
    public static let exactAddress = UserfaultFeatures(rawValue: 1 << 11)
    public static let writeProtectShmem = UserfaultFeatures(rawValue: 1 << 12)
    /// Write protection marks pages not yet populated too, so a first write to one is seen.
    public static let writeProtectUnpopulated = UserfaultFeatures(rawValue: 1 << 13)
    /// A write to a protected page unprotects it at once, without a message: PAGEMAP_SCAN's
    /// `written` category then tells the pages written since they were protected.
    public static let writeProtectAsync = UserfaultFeatures(rawValue: 1 << 15)
}

/// UFFDIO_REGISTER modes.
public struct UserfaultRegistration: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let missing = UserfaultRegistration(rawValue: 1 << 0)
    public static let writeProtect = UserfaultRegistration(rawValue: 1 << 1)
    public static let minor = UserfaultRegistration(rawValue: 1 << 2)
}

/// What a userfaultfd reports (struct uffd_msg).
public enum UserfaultEvent: Sendable, Equatable {
    /// A thread faulted at `address` (page-aligned unless asked for the exact address) and
    /// waits: a missing page, or a write to a write-protected one.
    case pageFault(address: UInt64, write: Bool, writeProtect: Bool, thread: UInt32)
    /// The process forked: `descriptor` (new in the reader's table) serves the child's memory.
    case fork(descriptor: Int32)
    /// mremap moved `length` bytes from `from` to `to`.
    case remap(from: UInt64, to: UInt64, length: UInt64)
    /// madvise(MADV_DONTNEED/REMOVE) dropped the pages of the range.
    case remove(Range<UInt64>)
    /// munmap took the range away.
    case unmap(Range<UInt64>)
}

/// A userfaultfd this process holds: registers ranges of its maker's memory, write-protects
/// them, fills missing pages and reads the faults.
public final class Userfaultfd: Sendable {
    public let fd: Int32

    /// The highest API version the kernel speaks.
    private static let api: UInt64 = 0xAA

    /// Takes ownership of `fd` (closed with this object).
    public init(adopting fd: Int32) { self.fd = fd }

    /// A userfaultfd for this process's own memory (`UserfaultfdFlags`, O_CLOEXEC, O_NONBLOCK).
    public convenience init(flags: UInt64) throws(LinuxError) {
        let fd = try kernelResult(amber_userfaultfd(flags), "userfaultfd").get()
        self.init(adopting: Int32(fd))
    }

    deinit { Glibc.close(fd) }

    /// UFFDIO_API, once per descriptor before anything else; returns the features the kernel
    /// granted, which are exactly `features` (the kernel fails the call otherwise).
    public func negotiate(_ features: UserfaultFeatures) throws(LinuxError) {
        var argument = amber_uffdio_api(api: Self.api, features: features.rawValue, ioctls: 0)
        _ = try kernelResult(
            amber_uffdio_api(fd, &argument), "UFFDIO_API features 0x\(String(features.rawValue, radix: 16))"
        ).get()
    }

    /// Registers `range` (page-aligned, whole areas or parts of them) in `modes`.
    public func register(_ range: Range<UInt64>, _ modes: UserfaultRegistration) throws(LinuxError) {
        var argument = amber_uffdio_register(
            range: amber_uffdio_range(start: range.lowerBound, len: range.upperBound - range.lowerBound),
            mode: modes.rawValue, ioctls: 0)
        _ = try kernelResult(amber_uffdio_register(fd, &argument), "UFFDIO_REGISTER \(Self.describe(range))").get()
    }

    public func unregister(_ range: Range<UInt64>) throws(LinuxError) {
        var argument = amber_uffdio_range(start: range.lowerBound, len: range.upperBound - range.lowerBound)
        _ = try kernelResult(amber_uffdio_unregister(fd, &argument), "UFFDIO_UNREGISTER \(Self.describe(range))").get()
    }

    /// Write-protects `range` or lifts its protection; lifting it wakes the threads waiting on
    /// it unless `wake` is false.
    public func writeProtect(_ range: Range<UInt64>, _ protect: Bool, wake: Bool = true) throws(LinuxError) {
        var argument = amber_uffdio_writeprotect(
            range: amber_uffdio_range(start: range.lowerBound, len: range.upperBound - range.lowerBound),
            mode: (protect ? 1 : 0) | (wake ? 0 : 2))
        _ = try kernelResult(
            amber_uffdio_writeprotect(fd, &argument), "UFFDIO_WRITEPROTECT \(Self.describe(range))"
        ).get()
    }

    /// Fills missing pages at `address` with `bytes` (whole pages). Returns how many bytes it
    /// placed: fewer when a page of the range was present already (`EEXIST` for the first).
    public func copy(_ bytes: UnsafeRawBufferPointer, to address: UInt64, wake: Bool = true) throws(LinuxError) -> Int {
        var argument = amber_uffdio_copy(
            dst: address, src: UInt64(UInt(bitPattern: bytes.baseAddress)), len: UInt64(bytes.count),
            mode: wake ? 0 : 1, copy: 0)
        let range = address..<address + UInt64(bytes.count)
        _ = try kernelResult(amber_uffdio_copy(fd, &argument), "UFFDIO_COPY \(Self.describe(range))").get()
        return Int(argument.copy)
    }

    /// Maps zero pages into the missing pages of `range`.
    public func zero(_ range: Range<UInt64>, wake: Bool = true) throws(LinuxError) {
        var argument = amber_uffdio_zeropage(
            range: amber_uffdio_range(start: range.lowerBound, len: range.upperBound - range.lowerBound),
            mode: wake ? 0 : 1, zeropage: 0)
        _ = try kernelResult(amber_uffdio_zeropage(fd, &argument), "UFFDIO_ZEROPAGE \(Self.describe(range))").get()
    }

    /// Wakes the threads waiting on faults in `range`.
    public func wake(_ range: Range<UInt64>) throws(LinuxError) {
        var argument = amber_uffdio_range(start: range.lowerBound, len: range.upperBound - range.lowerBound)
        _ = try kernelResult(amber_uffdio_wake(fd, &argument), "UFFDIO_WAKE \(Self.describe(range))").get()
    }

    /// The events waiting to be read, up to `limit`; none when the descriptor is non-blocking
    /// and nothing waits. A blocking descriptor waits for the first.
    public func events(limit: Int = 64) throws(LinuxError) -> [UserfaultEvent] {
        var messages = [amber_uffd_msg](repeating: amber_uffd_msg(), count: limit)
        let size = MemoryLayout<amber_uffd_msg>.size
        let count = messages.withUnsafeMutableBytes { buffer in
            Glibc.read(fd, buffer.baseAddress, buffer.count)
        }
        if count < 0 {
            let errno = Errno(rawValue: Glibc.errno)
            if errno == .wouldBlock { return [] }
            throw LinuxError(errno, "read userfaultfd")
        }
        return messages.prefix(count / size).compactMap(Self.event)
    }

    private static func event(_ message: amber_uffd_msg) -> UserfaultEvent? {
        let (first, second, third) = (message.arg.0, message.arg.1, message.arg.2)
        switch message.event {
        case 0x12:
            return .pageFault(
                address: second, write: first & 1 != 0, writeProtect: first & 2 != 0,
                thread: UInt32(truncatingIfNeeded: third))
        case 0x13: return .fork(descriptor: Int32(truncatingIfNeeded: first))
        case 0x14: return .remap(from: first, to: second, length: third)
        case 0x15: return .remove(first..<max(first, second))
        case 0x16: return .unmap(first..<max(first, second))
        default: return nil
        }
    }

    private static func describe(_ range: Range<UInt64>) -> String {
        "0x\(String(range.lowerBound, radix: 16))-0x\(String(range.upperBound, radix: 16))"
    }
}

extension SyscallNumber {
    public static let userfaultfd = 323
}

/// What one UFFDIO_COPY or UFFDIO_ZEROPAGE placed, and why it stopped short when it did.
public struct UserfaultFill: Sendable {
    /// Bytes placed from the start of the range.
    public let bytes: Int
    /// Why the rest was not: `EAGAIN` (an event such as a fork or an madvise waits to be read,
    /// or the call stopped early), `EEXIST` (the first page left was present), `ESRCH` (the
    /// process's memory is gone), or another failure.
    public let error: Errno?
}

extension Userfaultfd {
    /// UFFDIO_COPY of `bytes` to `address`, waking the threads waiting there; a short copy is
    /// reported, not thrown, for the caller to read the waiting events or skip a present page.
    public func fill(_ bytes: UnsafeRawBufferPointer, at address: UInt64) -> UserfaultFill {
        var argument = amber_uffdio_copy(
            dst: address, src: UInt64(UInt(bitPattern: bytes.baseAddress)), len: UInt64(bytes.count), mode: 0,
            copy: 0)
        let result = amber_uffdio_copy(fd, &argument)
        return Self.fill(result: result, placed: argument.copy)
    }

    /// UFFDIO_ZEROPAGE over `range`, reported as `fill(_:at:)` does.
    public func fillZeros(_ range: Range<UInt64>) -> UserfaultFill {
        var argument = amber_uffdio_zeropage(
            range: amber_uffdio_range(start: range.lowerBound, len: range.upperBound - range.lowerBound), mode: 0,
            zeropage: 0)
        let result = amber_uffdio_zeropage(fd, &argument)
        return Self.fill(result: result, placed: argument.zeropage)
    }

    /// The kernel writes the bytes placed, or the negated errno when none were, into the
    /// argument; the call fails with EAGAIN when it placed fewer than asked.
    private static func fill(result: Int, placed: Int64) -> UserfaultFill {
        if result >= 0 { return UserfaultFill(bytes: Int(placed), error: nil) }
        if placed < 0 { return UserfaultFill(bytes: 0, error: Errno(rawValue: CInt(-placed))) }
        return UserfaultFill(bytes: Int(placed), error: Errno(rawValue: CInt(-result)))
    }
}
