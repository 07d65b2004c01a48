import AmberImage
import LinuxKit

/// A timerfd: its clock, settime flags, time left, interval and unread expirations, made again
/// in the restorer by timerfd_create and timerfd_settime, its expirations put back with
/// TFD_IOC_SET_TICKS. As for POSIX timers (`TimerState`), the time left at the dump is the time
/// left at the restore: the time in between is not counted. An absolute CLOCK_REALTIME timer is
/// the exception: it is set to the same wall-clock time, which the time in between brought
/// nearer. An absolute timer on another clock is set to the time left from the restore's clock
/// (the monotonic and boot clocks start again at each boot). Alarm clocks need CAP_WAKE_ALARM
/// to make one: refused.
struct TimerFDKind: OpenFileKind {
    let identity: OpenFileIdentity

    static func classify(_ descriptor: DescriptorProbe) throws -> TimerFDKind? {
        guard descriptor.link == EventFiles.timerFDLink else { return nil }
        try descriptor.checkEventFileFlags("a timerfd")
        let state: TimerFDState
        do {
            state = try TimerFDState(descriptor.info())
        } catch {
            throw descriptor.refusal("a timerfd whose state its fdinfo does not show (\(error))")
        }
        switch state.clock {
        case TimerFDState.realtimeClock, TimerFDState.monotonicClock, TimerFDState.boottimeClock:
            break
        case TimerFDState.realtimeAlarmClock:
            throw descriptor.refusal("a timerfd on CLOCK_REALTIME_ALARM, which needs CAP_WAKE_ALARM to make again")
        case TimerFDState.boottimeAlarmClock:
            throw descriptor.refusal("a timerfd on CLOCK_BOOTTIME_ALARM, which needs CAP_WAKE_ALARM to make again")
        default:
            throw descriptor.refusal("a timerfd on clock \(state.clock)")
        }
        let status = try descriptor.status()
        return TimerFDKind(identity: OpenFileIdentity(device: status.device, inode: status.inode))
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        let state = try TimerFDState.read(copy, ownerPID: descriptor.pid, ownerFD: descriptor.fd)
        var record = Amber_TimerFD()
        record.clock = state.clock
        record.settimeFlags = state.settimeFlags
        record.ticks = state.ticks
        record.remainingNs = UInt64(state.remainingNs)
        record.intervalNs = UInt64(state.intervalNs)
        if state.clock == TimerFDState.realtimeClock && state.settimeFlags & TimerFDState.absoluteTime != 0
            && state.remainingNs > 0
        {
            let (expiry, overflow) = TimerFDState.now(clock: state.clock).addingReportingOverflow(state.remainingNs)
            record.realtimeExpiryNs = UInt64(overflow ? Int64.max : max(expiry, 1))
        }
        return .timerFd(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_TimerFD? {
        guard case .timerFd(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_TimerFD) -> String? { nil }

    static func make(
        _ record: Amber_TimerFD, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        do {
            let fd = try TimerFDState.create(clock: record.clock, nonBlocking: description.isNonBlocking)
            do {
                let remaining = Int64(clamping: record.remainingNs)
                var value = remaining
                if remaining > 0 && record.settimeFlags & TimerFDState.absoluteTime != 0 {
                    if record.realtimeExpiryNs != 0 {
                        value = Int64(clamping: record.realtimeExpiryNs)
                    } else {
                        let (sum, overflow) = TimerFDState.now(clock: record.clock).addingReportingOverflow(remaining)
                        value = overflow ? Int64.max : sum
                    }
                }
                try TimerFDState.set(
                    fd, flags: record.settimeFlags, valueNs: value, intervalNs: Int64(clamping: record.intervalNs))
                try TimerFDState.addTicks(fd, record.ticks)
                return fd.rawValue
            } catch {
                try? fd.close()
                throw error
            }
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot make the timerfd of open file \(description.id) for process \(task.pid): \(error)")
        }
    }
}

extension TimerFDKind {
    /// Reading a timerfd takes its expirations: one shared outside the tree is one timer for both.
    static func check(tree processes: [CheckedProcess]) throws {
        try OutsideDescriptors.refuseShared(EventFiles.timerFDLink, what: "a timerfd", processes: processes)
    }
}
