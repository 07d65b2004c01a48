import AmberImage
import Glibc
import LinuxKit
import Testing

@testable import Amber

@Suite struct TimerStateTests {
    /// The four words of the struct itimerspec or itimerval that `call` takes as argument `index`.
    private func words(_ call: InjectedCall, argument index: Int) -> [UInt64] {
        (0..<4).map { call.load(call.arguments[index] + UInt64($0 * 8), as: UInt64.self) }
    }

    private func posixTimer(
        id: Int32, clock: Int32, signal: UInt32, notify: UInt32 = 0, thread: Int32 = 0, value: UInt64,
        remainingNs: UInt64, intervalNs: UInt64
    ) -> Amber_PosixTimer {
        var timer = Amber_PosixTimer()
        timer.id = id
        timer.clock = clock
        timer.signal = signal
        timer.notify = notify
        timer.thread = thread
        timer.value = value
        timer.remainingNs = remainingNs
        timer.intervalNs = intervalNs
        return timer
    }

    @Test func restoreCreatesPosixTimersWithTheirIDsThenArmsIntervalTimers() throws {
        let task = FakeTask()
        var record = Amber_Timers()
        record.posixTimers = [
            posixTimer(
                id: 3, clock: CLOCK_MONOTONIC, signal: UInt32(SIGUSR1), value: 0xabc, remainingNs: 1_500_000_000,
                intervalNs: 250_000_000),
            posixTimer(
                id: 7, clock: CLOCK_REALTIME, signal: 34, notify: 4, thread: 12, value: 0, remainingNs: 0, intervalNs: 0
            ),
        ]
        var alarm = Amber_IntervalTimer()
        alarm.which = 0
        alarm.remainingNs = 2_000_001_000
        alarm.intervalNs = 1_000_000_000
        record.intervalTimers = [alarm]
        try TimerState.restore(record, task.restoreSession(Amber_Task()))

        let calls = task.calls
        try #require(calls.count == 6)
        #expect(calls[0] == InjectedCall(SyscallNumber.prctl, TaskControl.timerCreateRestoreIDs, 1))
        #expect(calls[1].number == SyscallNumber.timerCreate && calls[1].arguments[0] == UInt64(CLOCK_MONOTONIC))
        // struct sigevent: sigev_value, sigev_signo, sigev_notify, then the thread ID.
        let event = calls[1].arguments[1]
        #expect(calls[1].load(event, as: UInt64.self) == 0xabc)
        #expect(calls[1].load(event + 8, as: Int32.self) == SIGUSR1)
        #expect(calls[1].load(event + 12, as: Int32.self) == 0)
        #expect(calls[1].load(calls[1].arguments[2], as: Int32.self) == 3)
        #expect(
            calls[2].number == SyscallNumber.timerSettime && calls[2].arguments[0] == 3 && calls[2].arguments[1] == 0
                && calls[2].arguments[3] == 0)
        #expect(words(calls[2], argument: 2) == [0, 250_000_000, 1, 500_000_000])
        // A disarmed timer is created, not set.
        #expect(calls[3].number == SyscallNumber.timerCreate && calls[3].arguments[0] == UInt64(CLOCK_REALTIME))
        #expect(calls[3].load(calls[3].arguments[1] + 12, as: Int32.self) == SignalEvent.notifyThreadID)
        #expect(calls[3].load(calls[3].arguments[1] + 16, as: Int32.self) == 12)
        #expect(calls[3].load(calls[3].arguments[2], as: Int32.self) == 7)
        #expect(calls[4] == InjectedCall(SyscallNumber.prctl, TaskControl.timerCreateRestoreIDs, 0))
        #expect(calls[5].number == SyscallNumber.setitimer && calls[5].arguments[0] == 0 && calls[5].arguments[2] == 0)
        // struct itimerval: microseconds.
        #expect(words(calls[5], argument: 1) == [1, 0, 2, 1])
    }

    @Test func restoreWithoutPosixTimersLeavesTheirPrctlAlone() throws {
        let task = FakeTask()
        var record = Amber_Timers()
        var profile = Amber_IntervalTimer()
        profile.which = 2
        profile.remainingNs = 5000
        record.intervalTimers = [profile]
        try TimerState.restore(record, task.restoreSession(Amber_Task()))
        #expect(task.log.numbers == [SyscallNumber.setitimer])
        #expect(task.calls[0].arguments[0] == 2)
        #expect(words(task.calls[0], argument: 1) == [0, 0, 0, 5])
    }

    @Test func restoreRefusesAKernelThatCannotCreateATimerWithAGivenID() throws {
        let task = FakeTask()
        var record = Amber_Timers()
        record.posixTimers = [
            posixTimer(id: 1, clock: CLOCK_MONOTONIC, signal: UInt32(SIGALRM), value: 0, remainingNs: 0, intervalNs: 0)
        ]
        task.log.script = [-Int64(EINVAL)]
        let error = amberError(.incompatibleHost) { try TimerState.restore(record, task.restoreSession(Amber_Task())) }
        #expect(error != nil)
        #expect(task.log.numbers == [SyscallNumber.prctl])
    }

    @Test func dumpTurnsTheTimersTheTaskReportsIntoTheRecord() throws {
        let task = FakeTask()
        let thread: Int32 = fakePID + 1
        task.proc[file: "/proc/\(fakePID)/timers"] = """
            ID: 3
            signal: 14/0000000000000abc
            notify: signal/pid.\(fakePID)
            ClockID: 1
            ID: 9
            signal: 34/0000000000000000
            notify: signal/tid.\(thread)
            ClockID: 0

            """
        let memory = task.memory
        task.log.respond = { call in
            let (address, values): (UInt64, [UInt64])
            switch (call.number, call.arguments[0]) {
            // ITIMER_REAL expired, its SIGALRM pending: no time left shows, only the interval.
            case (SyscallNumber.getitimer, 0): (address, values) = (call.arguments[1], [1, 0, 0, 0])
            case (SyscallNumber.getitimer, 1): (address, values) = (call.arguments[1], [0, 0, 0, 0])
            case (SyscallNumber.getitimer, 2): (address, values) = (call.arguments[1], [0, 0, 0, 500])
            case (SyscallNumber.timerGettime, 3): (address, values) = (call.arguments[1], [0, 100, 2, 5])
            case (SyscallNumber.timerGettime, 9): (address, values) = (call.arguments[1], [0, 0, 0, 0])
            default: return -Int64(ENOSYS)
            }
            for (index, value) in values.enumerated() { memory.store(value, at: address + UInt64(index * 8)) }
            return 0
        }
        let session = try task.dumpSession(threads: [
            (thread, FakeTask.status(tid: thread, extra: ["NSpid:\t\(thread)\t2"]))
        ])
        let record = try TimerState.dump(session)

        #expect(
            task.log.numbers == [
                SyscallNumber.getitimer, SyscallNumber.getitimer, SyscallNumber.getitimer, SyscallNumber.timerGettime,
                SyscallNumber.timerGettime,
            ])
        #expect(record.intervalTimers.map(\.which) == [0, 2])
        #expect(
            record.intervalTimers[0].remainingNs == 1_000_000_000
                && record.intervalTimers[0].intervalNs == 1_000_000_000)
        #expect(record.intervalTimers[1].remainingNs == 500_000 && record.intervalTimers[1].intervalNs == 0)
        try #require(record.posixTimers.count == 2)
        let first = record.posixTimers[0]
        #expect(
            first.id == 3 && first.clock == 1 && first.signal == 14 && first.value == 0xabc && first.notify == 0
                && first.thread == 0)
        #expect(first.intervalNs == 100 && first.remainingNs == 2_000_000_005)
        // Aimed at a thread: named as its own PID namespace numbers it.
        let second = record.posixTimers[1]
        #expect(second.id == 9 && second.notify == UInt32(SignalEvent.notifyThreadID) && second.thread == 2)
    }

    @Test func dumpRefusesATimerAimedAtATaskOutsideTheProcess() throws {
        let task = FakeTask()
        task.proc[file: "/proc/\(fakePID)/timers"] = "ID: 1\nsignal: 14/0\nnotify: signal/tid.4\nClockID: 0\n"
        let error = amberError(.unsupported) { _ = try TimerState.dump(task.dumpSession()) }
        #expect(error?.message.contains("aimed at task 4") == true)
    }
}
