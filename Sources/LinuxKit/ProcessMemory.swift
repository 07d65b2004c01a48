internal import CLinux
import Glibc

/// Another process's memory, read and written from outside.
public struct ProcessMemory: Sendable {
    public let pid: Int32

    public init(pid: Int32) { self.pid = pid }

    /// Most iovecs one process_vm_* call takes (IOV_MAX).
    public static let maxSegments = 1024

    /// Reads the remote ranges into `local`, which must be as long as their sum; returns the bytes read.
    /// A short count means the range after it is not readable.
    public func read(into local: UnsafeMutableRawBufferPointer, from remote: [(address: UInt64, length: Int)])
        throws(LinuxError) -> Int
    {
        try transfer(local: local, remote: remote, write: false)
    }

    /// Writes `local` to the remote ranges; returns the bytes written.
    public func write(_ local: UnsafeRawBufferPointer, to remote: [(address: UInt64, length: Int)]) throws(LinuxError)
        -> Int
    {
        try transfer(local: UnsafeMutableRawBufferPointer(mutating: local), remote: remote, write: true)
    }

    private func transfer(local: UnsafeMutableRawBufferPointer, remote: [(address: UInt64, length: Int)], write: Bool)
        throws(LinuxError) -> Int
    {
        var done = 0
        var segment = 0
        var skipInSegment = 0
        while segment < remote.count {
            var iovecs: [iovec] = []
            var total = 0
            var index = segment
            var skip = skipInSegment
            while index < remote.count && iovecs.count < Self.maxSegments {
                let range = remote[index]
                let base = UnsafeMutableRawPointer(bitPattern: UInt(range.address) + UInt(skip))
                iovecs.append(iovec(iov_base: base, iov_len: range.length - skip))
                total += range.length - skip
                skip = 0
                index += 1
            }
            var localVector = iovec(iov_base: local.baseAddress! + done, iov_len: total)
            let result = iovecs.withUnsafeBufferPointer { remoteVectors in
                write
                    ? amber_process_vm_writev(
                        pid, &localVector, 1, remoteVectors.baseAddress, UInt(remoteVectors.count))
                    : amber_process_vm_readv(pid, &localVector, 1, remoteVectors.baseAddress, UInt(remoteVectors.count))
            }
            let moved = try kernelResult(
                result, "\(write ? "process_vm_writev to" : "process_vm_readv from") process \(pid)"
            ).get()
            done += moved
            if moved < total {
                // Stopped at an inaccessible page: report how far we got.
                return done
            }
            segment = index
            skipInSegment = 0
        }
        return done
    }
}

/// /proc/PID/mem: reads and writes that ignore page protections (FOLL_FORCE), for areas process_vm_* cannot touch.
public struct ProcessMemoryFile: ~Copyable {
    public let fd: Int32

    public init(pid: Int32, writable: Bool) throws(LinuxError) {
        fd = try libcResult("open /proc/\(pid)/mem") {
            Glibc.open("/proc/\(pid)/mem", (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        }.get()
    }

    deinit { Glibc.close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(LinuxError) -> Int {
        var done = 0
        while done < buffer.count {
            let count = try libcResult("read /proc/PID/mem at 0x\(String(address, radix: 16))") {
                Glibc.pread(
                    fd, buffer.baseAddress! + done, buffer.count - done,
                    off_t(Int64(bitPattern: address &+ UInt64(done))))
            }.get()
            if count == 0 { break }
            done += count
        }
        return done
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at address: UInt64) throws(LinuxError) {
        var done = 0
        while done < buffer.count {
            let count = try libcResult("write /proc/PID/mem at 0x\(String(address + UInt64(done), radix: 16))") {
                Glibc.pwrite(
                    fd, buffer.baseAddress! + done, buffer.count - done,
                    off_t(Int64(bitPattern: address &+ UInt64(done))))
            }.get()
            if count == 0 {
                throw LinuxError(.ioError, "write /proc/PID/mem at 0x\(String(address, radix: 16)): no progress")
            }
            done += count
        }
    }
}

/// Which pages of a range are backed, from PAGEMAP_SCAN (Linux 6.7).
public struct PageCategories: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let written = PageCategories(rawValue: 1 << 1)
    /// A page-cache or shared-anonymous page, as opposed to a private anonymous one.
    public static let file = PageCategories(rawValue: 1 << 2)
    public static let present = PageCategories(rawValue: 1 << 3)
    public static let swapped = PageCategories(rawValue: 1 << 4)
    /// The shared zero page: reads as zeros, nothing to save.
    public static let zeroPage = PageCategories(rawValue: 1 << 5)
    public static let huge = PageCategories(rawValue: 1 << 6)
    /// The area is registered for asynchronous write protection (userfaultfd WP_ASYNC).
    public static let writeProtectAllowed = PageCategories(rawValue: 1 << 0)
}

/// PAGEMAP_SCAN flags.
public struct PageScanFlags: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Write-protects the pages found, atomically with finding them (userfaultfd WP_ASYNC areas).
    public static let writeProtectMatching = PageScanFlags(rawValue: 1 << 0)
    /// Fails with EPERM on an area not registered for asynchronous write protection, rather
    /// than reporting its pages as written.
    public static let checkWriteProtectAsync = PageScanFlags(rawValue: 1 << 1)
}

public struct PageMap: ~Copyable {
    public let fd: Int32

    public init(pid: Int32) throws(LinuxError) {
        fd = try libcResult("open /proc/\(pid)/pagemap") { Glibc.open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC) }
            .get()
    }

    deinit { Glibc.close(fd) }

    /// Whether the page at `address` is present and mapped by this process alone (pagemap's
    /// bits 63 and 56): writing to it faults nothing in and breaks no sharing.
    public func isPresentAndExclusive(_ address: UInt64) throws(LinuxError) -> Bool {
        var entry: UInt64 = 0
        let offset = off_t(address / 4096 * 8)
        let count = try libcResult("read pagemap entry of 0x\(String(address, radix: 16))") {
            pread(fd, &entry, 8, offset)
        }.get()
        return count == 8 && entry & (1 << 63) != 0 && entry & (1 << 56) != 0
    }

    /// Ranges of [start, end) whose pages have every category in `required`, none in `excluded`,
    /// and (if `anyOf` is not empty) at least one of `anyOf`; `flags` may write-protect them as
    /// they are found.
    public func scan(
        start: UInt64, end: UInt64, required: PageCategories = [], excluded: PageCategories = [],
        anyOf: PageCategories = [], flags: PageScanFlags = []
    ) throws(LinuxError) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = []
        var regions = [amber_page_region](repeating: amber_page_region(), count: 512)
        var cursor = start
        while cursor < end {
            var argument = amber_pm_scan_arg()
            argument.size = UInt64(MemoryLayout<amber_pm_scan_arg>.size)
            argument.flags = flags.rawValue
            argument.start = cursor
            argument.end = end
            argument.category_inverted = excluded.rawValue
            argument.category_mask = required.rawValue | excluded.rawValue
            argument.category_anyof_mask = anyOf.rawValue
            argument.return_mask = (required.union(excluded).union(anyOf)).rawValue
            let count = regions.withUnsafeMutableBufferPointer { buffer in
                argument.vec = UInt64(UInt(bitPattern: buffer.baseAddress))
                argument.vec_len = UInt64(buffer.count)
                return amber_pagemap_scan(fd, &argument)
            }
            let found = try kernelResult(
                count, "PAGEMAP_SCAN 0x\(String(cursor, radix: 16))-0x\(String(end, radix: 16))"
            ).get()
            for region in regions.prefix(found) {
                if let last = ranges.last, last.upperBound == region.start {
                    ranges[ranges.count - 1] = last.lowerBound..<region.end
                } else {
                    ranges.append(region.start..<region.end)
                }
            }
            if argument.walk_end <= cursor { break }
            cursor = argument.walk_end
        }
        return ranges
    }
}
