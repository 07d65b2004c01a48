import AmberImage
import Glibc
import LinuxKit
import Testing

@testable import Amber

@Suite struct SchedulingStateTests {
    @Test func dumpReadsTheThreadFromOutsideAndItsTimerSlackFromInsideWithoutCapSysNice() throws {
        let task = FakeTask()
        let thread = fakePID + 1
        task.scheduling[thread] = .init(
            policy: TaskScheduling.roundRobinPolicy | TaskScheduling.resetOnFork, realtimePriority: 10, nice: 0,
            ioPriority: 2 << Int32(TaskScheduling.ioPriorityClassShift) | 4, affinity: CPUAffinity(words: [0b10]))
        task.log.script = [75_000]
        let session = try task.dumpSession(threads: [(thread, FakeTask.status(tid: thread))])
        let record = try SchedulingState.dump(session.injector(for: Tracee(pid: thread)), session)
        #expect(
            task.calls == [InjectedCall(tid: thread, SyscallNumber.prctl, ProcessControl.GetOption.timerSlack.argument)]
        )
        #expect(
            record.policy == UInt32(TaskScheduling.roundRobinPolicy) && record.resetOnFork && record.rtPriority == 10)
        #expect(record.ioPriority == 2 << 13 | 4 && record.affinity == [0b10] && record.timerSlackNs == 75_000)
    }

    @Test func dumpReadsTheTimerSlackFromOutsideWhereAllowed() throws {
        let task = FakeTask()
        let thread = fakePID + 1
        task.scheduling[thread] = .init(timerSlack: 75_000)
        let session = try task.dumpSession(threads: [(thread, FakeTask.status(tid: thread))])
        let record = try SchedulingState.dump(session.injector(for: Tracee(pid: thread)), session)
        #expect(task.calls.isEmpty && record.timerSlackNs == 75_000)
    }

    private func scheduling(
        policy: Int32 = 0, resetOnFork: Bool = false, rtPriority: UInt32 = 0, nice: Int32 = 0, ioPriority: UInt32 = 0,
        timerSlackNs: UInt64 = 50_000, affinity: [UInt64] = []
    ) -> Amber_Scheduling {
        var record = Amber_Scheduling()
        record.policy = UInt32(policy)
        record.resetOnFork = resetOnFork
        record.rtPriority = rtPriority
        record.nice = nice
        record.ioPriority = ioPriority
        record.timerSlackNs = timerSlackNs
        record.affinity = affinity
        return record
    }

    @Test func restoreSetsEveryThreadsSchedulingButItsAffinity() throws {
        let task = FakeTask()
        let thread = fakePID + 1
        task.scheduling[fakePID] = .init()
        task.scheduling[thread] = .init()
        var leaderThread = Amber_Thread()
        leaderThread.scheduling = scheduling(nice: 5, timerSlackNs: 1000, affinity: [1])
        var other = Amber_Thread()
        other.scheduling = scheduling(
            policy: TaskScheduling.fifoPolicy, resetOnFork: true, rtPriority: 20, ioPriority: 7, affinity: [2])
        let record = taskRecord(threads: [leaderThread, other])
        try SchedulingState.restore(
            record, task.restoreSession(record, baseline: FakeTask.baseline(timerSlackNs: 50_000), threads: [thread]))

        // The slack only where it differs from the helper's, before the policy.
        #expect(task.calls == [InjectedCall(tid: fakePID, SyscallNumber.prctl, TaskControl.setTimerSlack, 1000)])
        #expect(
            task.scheduling.changes == [
                .ioPriority(tid: fakePID, 0), .nice(tid: fakePID, 5),
                .policy(tid: fakePID, policy: 0, realtimePriority: 0),
                .ioPriority(tid: thread, 7), .nice(tid: thread, 0),
                .policy(
                    tid: thread, policy: TaskScheduling.fifoPolicy | TaskScheduling.resetOnFork, realtimePriority: 20),
            ])
    }

    @Test func restoreAffinityGivesEachThreadItsCPUs() throws {
        let task = FakeTask()
        let thread = fakePID + 1
        task.scheduling[fakePID] = .init()
        task.scheduling[thread] = .init()
        var leaderThread = Amber_Thread()
        leaderThread.scheduling = scheduling(affinity: [0b1100])
        var other = Amber_Thread()
        other.scheduling = scheduling()
        let record = taskRecord(threads: [leaderThread, other])
        try SchedulingState.restoreAffinity(record, task.restoreSession(record, threads: [thread]))
        // A thread with no affinity recorded keeps the one it has.
        #expect(task.scheduling.changes == [.affinity(tid: fakePID, [0b1100])])
        #expect(task.calls.isEmpty)
    }

    @Test func restoreAffinityNamesCPUsThatAreNotOnline() throws {
        let task = FakeTask()
        task.scheduling[fakePID] = .init()
        task.scheduling.failAffinity(with: .invalidArgument)
        var leaderThread = Amber_Thread()
        leaderThread.scheduling = scheduling(affinity: [1 << 40])
        let record = taskRecord(threads: [leaderThread])
        let error = amberError(.restoreFailed) {
            try SchedulingState.restoreAffinity(record, task.restoreSession(record))
        }
        #expect(error?.message.contains("none of its CPUs is online") == true)
    }
}
