internal import CLinux
import Glibc
import SystemPackage

/// What eventfds, signalfds and timerfds have in common.
public enum EventFiles {
    /// Their /proc/PID/fd links.
    public static let eventFDLink = "anon_inode:[eventfd]"
    public static let signalFDLink = "anon_inode:[signalfd]"
    public static let timerFDLink = "anon_inode:[timerfd]"
    /// The status flags they are made with: O_RDWR, and O_NONBLOCK if asked.
    public static let statusFlags: UInt32 = 0o2 | 0o4000
}

/// An eventfd (eventfd(2)): its counter and mode, as fdinfo shows them, and how one is made.
public struct EventFDState: Sendable, Equatable {
    /// The largest counter: a write that would pass it blocks or fails with EAGAIN.
    public static let largestCount: UInt64 = 0xffff_ffff_ffff_fffe
    /// EFD_SEMAPHORE: a read takes 1 from the counter instead of all of it.
    public static let semaphoreFlag: Int32 = 1

    /// eventfd-count: the counter (hexadecimal in fdinfo).
    public var count: UInt64
    /// eventfd-semaphore: EFD_SEMAPHORE (Linux 6.6 and later show it).
    public var semaphore: Bool

    public init(count: UInt64, semaphore: Bool) {
        self.count = count
        self.semaphore = semaphore
    }

    /// The counter and mode in an eventfd's fdinfo; eventfd-id, a number the kernel hands out,
    /// is not kept: nothing sets it.
    public init(_ info: FileDescriptorInfo) throws(LinuxError) {
        guard let count = info.fields["eventfd-count"].flatMap({ UInt64($0, radix: 16) }) else {
            throw ProcText.malformed("fdinfo field eventfd-count")
        }
        guard let semaphore = info.fields["eventfd-semaphore"], semaphore == "0" || semaphore == "1" else {
            throw ProcText.malformed("fdinfo field eventfd-semaphore")
        }
        self.init(count: count, semaphore: semaphore == "1")
    }

    /// A new eventfd in this state, with O_NONBLOCK if `nonBlocking`. eventfd2 takes an
    /// unsigned int; the rest of a larger counter is written, which adds to it.
    public func make(nonBlocking: Bool) throws(LinuxError) -> FileDescriptor {
        let initial = UInt32(min(count, UInt64(UInt32.max)))
        let flags = (semaphore ? Self.semaphoreFlag : 0) | (nonBlocking ? O_NONBLOCK : 0)
        let fd = FileDescriptor(rawValue: Int32(try kernelResult(amber_eventfd2(initial, flags), "eventfd2").get()))
        var rest = count - UInt64(initial)
        guard rest > 0 else { return fd }
        let written = withUnsafeBytes(of: &rest) { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
        guard written == MemoryLayout<UInt64>.size else {
            let error = LinuxError(
                Errno(rawValue: written < 0 ? Glibc.errno : EIO), "write of \(rest) to a new eventfd")
            try? fd.close()
            throw error
        }
        return fd
    }
}

/// A signalfd (signalfd(2)): the signals it reads, as fdinfo shows them, and how one is made.
public struct SignalFDState: Sendable, Equatable {
    /// sigmask: bit n-1 for signal n (SIGKILL and SIGSTOP never: signalfd4 drops them).
    public var mask: UInt64

    public init(mask: UInt64) {
        self.mask = mask
    }

    public init(_ info: FileDescriptorInfo) throws(LinuxError) {
        guard let mask = info.fields["sigmask"].flatMap({ UInt64($0, radix: 16) }) else {
            throw ProcText.malformed("fdinfo field sigmask")
        }
        self.init(mask: mask)
    }

    /// A new signalfd on this mask: it reads the signals of whichever process reads it.
    public func make(nonBlocking: Bool) throws(LinuxError) -> FileDescriptor {
        FileDescriptor(
            rawValue: Int32(try kernelResult(amber_signalfd4(mask, nonBlocking ? O_NONBLOCK : 0), "signalfd4").get()))
    }
}

/// A timerfd (timerfd_create(2)): its clock, how it was last set, its time left and interval,
/// and the expirations not yet read, as fdinfo shows them.
public struct TimerFDState: Sendable, Equatable {
    public static let realtimeClock: Int32 = 0
    public static let monotonicClock: Int32 = 1
    public static let boottimeClock: Int32 = 7
    /// CLOCK_REALTIME_ALARM and CLOCK_BOOTTIME_ALARM: creating one needs CAP_WAKE_ALARM.
    public static let realtimeAlarmClock: Int32 = 8
    public static let boottimeAlarmClock: Int32 = 9
    /// TFD_TIMER_ABSTIME: it_value was an absolute time on the clock.
    public static let absoluteTime: UInt32 = 1
    /// TFD_TIMER_CANCEL_ON_SET: a read fails with ECANCELED once the realtime clock is set.
    public static let cancelOnSet: UInt32 = 2

    /// clockid.
    public var clock: Int32
    /// ticks: expirations not yet read.
    public var ticks: UInt64
    /// settime flags (octal in fdinfo): those of the last timerfd_settime.
    public var settimeFlags: UInt32
    /// it_value: the time left until it fires next, 0 when disarmed (or expired and not yet
    /// moved on, see `read`).
    public var remainingNs: Int64
    /// it_interval: 0 for a one-shot timer.
    public var intervalNs: Int64

    public init(clock: Int32, ticks: UInt64, settimeFlags: UInt32, remainingNs: Int64, intervalNs: Int64) {
        self.clock = clock
        self.ticks = ticks
        self.settimeFlags = settimeFlags
        self.remainingNs = remainingNs
        self.intervalNs = intervalNs
    }

    public init(_ info: FileDescriptorInfo) throws(LinuxError) {
        func field<T>(_ key: String, _ parse: (String) -> T?) throws(LinuxError) -> T {
            guard let text = info.fields[key], let value = parse(text) else {
                throw ProcText.malformed("fdinfo field \(key)")
            }
            return value
        }
        self.init(
            clock: try field("clockid") { Int32($0) },
            ticks: try field("ticks") { UInt64($0) },
            settimeFlags: try field("settime flags") { UInt32($0, radix: 8) },
            remainingNs: try field("it_value", Self.nanoseconds),
            intervalNs: try field("it_interval", Self.nanoseconds))
    }

    /// "(SECONDS, NANOSECONDS)" in nanoseconds.
    static func nanoseconds(_ text: String) -> Int64? {
        guard text.hasPrefix("("), text.hasSuffix(")") else { return nil }
        let parts = text.dropFirst().dropLast().split(separator: ",").map { String($0.filter { $0 != " " }) }
        guard parts.count == 2, let seconds = Int64(parts[0]), let nanoseconds = Int64(parts[1]), seconds >= 0,
            (0..<1_000_000_000).contains(nanoseconds)
        else { return nil }
        let (total, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow, total <= Int64.max - nanoseconds else { return nil }
        return total + nanoseconds
    }

    /// The state of the timerfd `fd` (ours, or a copy of a process's). A periodic timer that
    /// expired and was not read since stays expired in the kernel with it_value 0 and one tick,
    /// whatever the expirations since: timerfd_gettime moves it on to its next expiration and
    /// counts them into ticks, as a read would without taking them; fdinfo, read after it, then
    /// shows them with the time left to the next. An expiration between the two leaves it_value
    /// 0 again: the next is then one interval away. (A disarmed timer keeps its interval, and
    /// it_value 0 in both.)
    public static func read(_ fd: FileDescriptor, ownerPID: Int32, ownerFD: Int32) throws(LinuxError) -> TimerFDState {
        var interval: Int64 = 0
        var value: Int64 = 0
        _ = try kernelResult(
            amber_timerfd_gettime(fd.rawValue, &interval, &value),
            "timerfd_gettime of fd \(ownerFD) of process \(ownerPID)"
        ).get()
        var state = try TimerFDState(ProcFS.fileDescriptorInfo(pid: ownerPID, fd: ownerFD))
        if state.remainingNs == 0 && value > 0 && state.intervalNs > 0 { state.remainingNs = state.intervalNs }
        return state
    }

    /// A new timerfd on `clock`, with O_NONBLOCK if `nonBlocking`, disarmed.
    public static func create(clock: Int32, nonBlocking: Bool) throws(LinuxError) -> FileDescriptor {
        FileDescriptor(
            rawValue: Int32(
                try kernelResult(
                    amber_timerfd_create(clock, nonBlocking ? O_NONBLOCK : 0), "timerfd_create on clock \(clock)"
                ).get()))
    }

    /// timerfd_settime: fires at `valueNs` (absolute with `absoluteTime` in `flags`, else
    /// from now; 0 disarms), then every `intervalNs`. Sets the ticks to 0.
    public static func set(_ fd: FileDescriptor, flags: UInt32, valueNs: Int64, intervalNs: Int64) throws(LinuxError) {
        _ = try kernelResult(
            amber_timerfd_settime(fd.rawValue, Int32(bitPattern: flags), intervalNs, valueNs), "timerfd_settime"
        ).get()
    }

    /// Adds `ticks` to the expirations a read of our timerfd `fd` returns: TFD_IOC_SET_TICKS
    /// sets them, so those counted since `set` (a timer set to a time already past) are read
    /// from our fdinfo first and kept.
    public static func addTicks(_ fd: FileDescriptor, _ ticks: UInt64) throws(LinuxError) {
        guard ticks > 0 else { return }
        let counted = try TimerFDState(ProcFS.fileDescriptorInfo(pid: getpid(), fd: fd.rawValue)).ticks
        let (total, overflow) = ticks.addingReportingOverflow(counted)
        _ = try kernelResult(
            amber_timerfd_set_ticks(fd.rawValue, overflow ? UInt64.max : total), "ioctl TFD_IOC_SET_TICKS"
        ).get()
    }

    /// The clock's time now, in nanoseconds.
    public static func now(clock: Int32) -> Int64 {
        var time = timespec()
        clock_gettime(clockid_t(clock), &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
