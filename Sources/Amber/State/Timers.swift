import AmberImage
import Glibc
import LinuxKit

/// Timers: the interval timers (ITIMER_REAL, which alarm uses, ITIMER_VIRTUAL, ITIMER_PROF) and
/// POSIX timers with their IDs, clocks, notification, time left and interval.
enum TimerState {
    // MARK: Dump

    /// Only the task can report its timers' time left: one injected call per timer.
    static func dump(_ session: DumpSession) throws -> Amber_Timers {
        var record = Amber_Timers()
        for which in 0...2 {
            var arguments = session.arguments()
            let value = try arguments.reserve(32)
            try session.injector.call("getitimer(\(which))", SyscallNumber.getitimer, UInt64(which), value)
            // struct itimerval: the interval, then the time left, each as seconds and microseconds.
            let words = try words(at: value, arguments)
            let interval = words[0] * 1_000_000_000 + words[1] * 1000
            var remaining = words[2] * 1_000_000_000 + words[3] * 1000
            // An expired ITIMER_REAL is rearmed only when its SIGALRM is dequeued, which a stopped
            // task cannot do: it shows no time left while its signal is pending (and dumped). It
            // goes on from a whole interval, as after that dequeue.
            if which == 0, remaining == 0 { remaining = interval }
            guard remaining != 0 else { continue }
            var timer = Amber_IntervalTimer()
            timer.which = UInt32(which)
            timer.remainingNs = remaining
            timer.intervalNs = interval
            record.intervalTimers.append(timer)
        }
        for entry in try session.proc.posixTimers(pid: session.pid) {
            var timer = Amber_PosixTimer()
            timer.id = entry.id
            timer.clock = entry.clock
            timer.notify = UInt32(entry.notify)
            timer.signal = UInt32(entry.signal)
            timer.value = entry.value
            if timer.notify & UInt32(SignalEvent.notifyThreadID) != 0 {
                guard session.threads.contains(where: { $0.pid == entry.target }) else {
                    throw AmberError.unsupported(
                        session.name,
                        "has POSIX timer \(entry.id) aimed at task \(entry.target), not one of its threads")
                }
                timer.thread = try session.threadStatus(entry.target).namespacePIDs.last ?? entry.target
            }
            var arguments = session.arguments()
            let value = try arguments.reserve(32)
            try session.injector.call("timer_gettime(\(entry.id))", SyscallNumber.timerGettime, UInt64(entry.id), value)
            // struct itimerspec: the interval, then the time left, each as seconds and nanoseconds.
            let words = try words(at: value, arguments)
            timer.intervalNs = words[0] * 1_000_000_000 + words[1]
            timer.remainingNs = words[2] * 1_000_000_000 + words[3]
            record.posixTimers.append(timer)
        }
        return record
    }

    /// The four words of a struct itimerval or itimerspec an injected call left at `address`.
    private static func words(at address: UInt64, _ arguments: ScratchArena) throws -> [UInt64] {
        try arguments.read(address, count: 32).withUnsafeBytes { bytes in
            (0..<4).map { bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) }
        }
    }

    /// Refuses a POSIX timer on the CPU clock of another process: that process may be restored
    /// after this one, or not at all.
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        guard let timers = try? ProcFS.posixTimers(pid: pid), timers.contains(where: { $0.clock < 0 }) else { return }
        // A CPU clock names its task as the task's own PID namespace sees it.
        var own: Set<Int32> = [0]
        for tid in (try? ProcFS.threads(pid: pid)) ?? [pid] {
            let levels = (try? ProcFS.threadStatus(pid: pid, tid: tid).namespacePIDs) ?? []
            own.insert(levels.last ?? tid)
        }
        for timer in timers where timer.clock < 0 && !own.contains(~(timer.clock >> 3)) {
            throw AmberError.unsupported(
                process,
                "has POSIX timer \(timer.id) on the CPU clock of task \(~(timer.clock >> 3)), which is not one of its threads: not supported",
                tree: tree)
        }
    }

    // MARK: Restore

    /// Recreates the POSIX timers with their IDs, then arms the interval timers: the last thing
    /// before the registers go back, so that none fires while the task is still being made.
    static func restore(_ record: Amber_Timers, _ session: RestoreSession) throws {
        let injector = session.injector
        if !record.posixTimers.isEmpty {
            let result = try injector.raw(SyscallNumber.prctl, TaskControl.timerCreateRestoreIDs, 1, 0, 0, 0)
            if result == -Int64(EINVAL) {
                throw AmberError(
                    .incompatibleHost,
                    "process \(session.task.pid) has POSIX timers \(record.posixTimers.map(\.id)), and this kernel cannot create a timer with a given ID (prctl PR_TIMER_CREATE_RESTORE_IDS: EINVAL)"
                )
            } else if result < 0 {
                throw LinuxError(negated: Int(result), "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON) in task \(session.pid)")
            }
            for timer in record.posixTimers {
                let event = SignalEvent(
                    value: timer.value, signal: Int32(bitPattern: timer.signal),
                    notify: Int32(bitPattern: timer.notify), threadID: timer.thread)
                var arguments = session.arguments()
                let eventAddress = try arguments.place(event.bytes)
                let idAddress = try arguments.place(timer.id)
                try injector.call(
                    "timer_create(\(timer.id), clock \(timer.clock))", SyscallNumber.timerCreate,
                    UInt64(bitPattern: Int64(timer.clock)), eventAddress, idAddress)
                guard timer.remainingNs != 0 else { continue }
                arguments = session.arguments()
                let time = try arguments.place(
                    timespecPair(interval: timer.intervalNs, remaining: timer.remainingNs, unit: 1))
                try injector.call(
                    "timer_settime(\(timer.id))", SyscallNumber.timerSettime, UInt64(timer.id), 0, time, 0)
            }
            try injector.call(
                "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)", SyscallNumber.prctl, TaskControl.timerCreateRestoreIDs, 0, 0,
                0, 0)
        }
        for timer in record.intervalTimers {
            var arguments = session.arguments()
            let time = try arguments.place(
                timespecPair(interval: timer.intervalNs, remaining: timer.remainingNs, unit: 1000))
            try injector.call("setitimer(\(timer.which))", SyscallNumber.setitimer, UInt64(timer.which), time, 0)
        }
    }

    /// struct itimerspec (`unit` 1: nanoseconds) or struct itimerval (`unit` 1000: microseconds).
    private static func timespecPair(interval: UInt64, remaining: UInt64, unit: UInt64) -> (
        UInt64, UInt64, UInt64, UInt64
    ) {
        (
            interval / 1_000_000_000, interval % 1_000_000_000 / unit, remaining / 1_000_000_000,
            remaining % 1_000_000_000 / unit
        )
    }
}

extension TimerState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("timers", .traced) { process, _ in process.task.timers = try dump(process.session) }
        ]
    }

    /// Late, so that no timer fires while the process is still being made.
    static var restoreSteps: [RestoreStep] { [RestoreStep("timers", order: 900) { try restore($0.task.timers, $0) }] }
}
