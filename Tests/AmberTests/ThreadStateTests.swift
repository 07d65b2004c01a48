import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Testing

@testable import Amber

@Suite struct ThreadStateTests {
    @Test func threadControlRestoreSetsOnlyWhatTheThreadHad() throws {
        let task = FakeTask()
        var record = Amber_ThreadControl()
        record.childTidAddress = 0x7f00_0000_1000
        try ThreadControlState.restore(record, task.injector, childTIDSet: false)
        #expect(task.calls == [InjectedCall(SyscallNumber.setTidAddress, 0x7f00_0000_1000)])
        let cloned = FakeTask()
        try ThreadControlState.restore(record, cloned.injector, childTIDSet: true)
        #expect(cloned.calls.isEmpty)

        record.robustListHead = 0x7f00_0000_2000
        record.robustListLength = 24
        record.rseqAddress = 0x7f00_0000_3000
        record.rseqSize = 32
        record.rseqSignature = 0x5305_3053
        let all = FakeTask()
        try ThreadControlState.restore(record, all.injector, childTIDSet: false)
        #expect(
            all.calls == [
                InjectedCall(SyscallNumber.setTidAddress, 0x7f00_0000_1000),
                InjectedCall(SyscallNumber.setRobustList, 0x7f00_0000_2000, 24),
                InjectedCall(SyscallNumber.rseq, 0x7f00_0000_3000, 32, 0, 0x5305_3053),
            ])
    }

    @Test func setNameKeepsFifteenBytesAndANul() throws {
        let task = FakeTask()
        try ThreadState.setName("a-rather-long-thread-name", task.injector, task.restoreSession(Amber_Task()))
        try #require(task.calls.count == 1)
        let call = task.calls[0]
        #expect(call.number == SyscallNumber.prctl && call.arguments[0] == TaskControl.setName)
        #expect(call.load(call.arguments[1], count: 16) == Array("a-rather-long-t".utf8) + [0])
    }

    /// Every other thread is cloned by the leader with its TIDs and its clear_child_tid, then
    /// set up by an injector of its own, which the session makes.
    @Test func restoreClonesEachThreadWithItsTIDsAndSetsItsOwnState() throws {
        let task = FakeTask()
        let thread = fakePID + 1
        task.injector.createdTasks = [thread]
        var leaderThread = Amber_Thread()
        leaderThread.tid = fakePID
        leaderThread.comm = "leader"
        leaderThread.namespaceTids = [fakePID, 1]
        leaderThread.threadControl.childTidAddress = 0x1000
        leaderThread.alternateStack.flags = UInt32(SS_DISABLE)
        var other = Amber_Thread()
        other.tid = thread
        other.comm = "worker"
        other.namespaceTids = [thread, 2]
        other.threadControl.childTidAddress = 0x2000
        other.alternateStack.flags = UInt32(SS_DISABLE)
        var pending = Amber_PendingSignal()
        pending.signal = UInt32(SIGUSR1)
        pending.siginfo = Data([UInt8(SIGUSR1)] + Array(repeating: 0, count: 127))
        other.pending = [pending]
        let session = task.restoreSession(taskRecord(threads: [leaderThread, other]))
        try ThreadState.restore(session.task, session)

        #expect(session.threads.map(\.pid) == [fakePID, thread])
        let calls = task.calls
        #expect(calls.map(\.tid) == [fakePID, fakePID, fakePID, thread, thread])
        #expect(
            calls.map(\.number) == [
                SyscallNumber.setTidAddress, SyscallNumber.prctl, SyscallNumber.clone3, SyscallNumber.prctl,
                SyscallNumber.rtTgsigqueueinfo,
            ])
        // struct clone_args: flags first, child_tid at 16, exit_signal at 32, set_tid and its size at 64 and 72.
        let clone = calls[2]
        let arguments = clone.arguments[0]
        #expect(clone.arguments[1] == UInt64(CloneArguments.byteCount))
        let flags = clone.load(arguments, as: UInt64.self)
        #expect(flags & CloneFlags.thread != 0 && flags & CloneFlags.vm != 0 && flags & CloneFlags.signalHandlers != 0)
        #expect(flags & CloneFlags.childClearTID != 0 && clone.load(arguments + 16, as: UInt64.self) == 0x2000)
        #expect(clone.load(arguments + 32, as: UInt64.self) == 0)
        let tids = clone.load(arguments + 64, as: UInt64.self)
        #expect(clone.load(arguments + 72, as: UInt64.self) == 2)
        // Innermost namespace first.
        #expect(clone.load(tids, as: Int32.self) == 2 && clone.load(tids + 4, as: Int32.self) == thread)
        // Named, as its name is not the leader's, which it starts with.
        #expect(calls[3].load(calls[3].arguments[1], count: 7) == Array("worker".utf8) + [0])
        // Queued by the thread itself, to itself, as its namespace numbers both.
        #expect(calls[4].arguments[0] == 1 && calls[4].arguments[1] == 2 && calls[4].arguments[2] == UInt64(SIGUSR1))
        #expect(task.threadInjectors[thread]?.instruction == task.injector.instruction)
    }

    /// A thread whose name is the leader's keeps the one it starts with: no PR_SET_NAME.
    @Test func restoreDoesNotNameAThreadNamedAsItsLeader() throws {
        let task = FakeTask()
        let thread = fakePID + 1
        task.injector.createdTasks = [thread]
        var leaderThread = Amber_Thread()
        leaderThread.tid = fakePID
        leaderThread.comm = "server"
        leaderThread.alternateStack.flags = UInt32(SS_DISABLE)
        var other = leaderThread
        other.tid = thread
        let session = task.restoreSession(taskRecord(threads: [leaderThread, other]))
        try ThreadState.restore(session.task, session)
        #expect(task.calls.map(\.number) == [SyscallNumber.setTidAddress, SyscallNumber.prctl, SyscallNumber.clone3])
    }
}
