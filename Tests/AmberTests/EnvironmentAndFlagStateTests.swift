import AmberImage
import Glibc
import LinuxKit
import SystemPackage
import Testing

@testable import Amber

@Suite struct EnvironmentStateTests {
    @Test func dumpReadsTheWorkingDirectoryUmaskAndLimits() throws {
        let task = FakeTask()
        task.proc[link: "/proc/\(fakePID)/cwd"] = "/srv/work"
        task.proc[file: "/proc/\(fakePID)/limits"] = """
            Limit                     Soft Limit           Hard Limit           Units
            Max cpu time              unlimited            unlimited            seconds
            Max open files            1024                 4096                 files

            """
        let session = try task.dumpSession(status: FakeTask.status(umask: 0o027))
        let record = try EnvironmentState.dump(session.target)
        #expect(record.cwd == "/srv/work" && record.umask == 0o027)
        #expect(record.limits.map(\.resource) == [0, 7])
        #expect(record.limits[0].soft == UInt64.max && record.limits[0].hard == UInt64.max)
        #expect(record.limits[1].soft == 1024 && record.limits[1].hard == 4096)
    }

    /// The restorer's own limit `resource`, which the helper inherited.
    private func ownLimit(_ resource: Int32) -> rlimit {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(UInt32(resource)), &limit)
        return limit
    }

    /// The restore opens the working directory itself (the root directory here, which any user
    /// may open) and installs it in the task; everything else is injected.
    @Test func restoreChangesDirectoryUmaskAndTheLimitsThatDiffer() throws {
        let task = FakeTask()
        var record = Amber_Environment()
        record.cwd = "/"
        record.umask = 0o077
        let files = ownLimit(Int32(RLIMIT_NOFILE.rawValue))
        let stack = ownLimit(Int32(RLIMIT_STACK.rawValue))
        var lowered = Amber_ResourceLimit()
        lowered.resource = RLIMIT_NOFILE.rawValue
        lowered.soft = UInt64(files.rlim_cur) - 1
        lowered.hard = UInt64(files.rlim_max)
        var same = Amber_ResourceLimit()
        same.resource = RLIMIT_STACK.rawValue
        same.soft = UInt64(stack.rlim_cur)
        same.hard = UInt64(stack.rlim_max)
        record.limits = [lowered, same]
        // The restorer's pidfd moved up, then the directory's descriptor in the task.
        task.log.script = [20, 0, 21]
        try EnvironmentState.restore(record, task.restoreSession(Amber_Task()))

        let calls = task.calls
        try #require(calls.count == 7)
        #expect(calls[0] == InjectedCall(SyscallNumber.fcntl, 3, UInt64(F_DUPFD_CLOEXEC), 3))
        #expect(calls[1] == InjectedCall(SyscallNumber.close, 3))
        #expect(
            calls[2].number == SyscallNumber.pidfdGetfd && calls[2].arguments[0] == 20 && calls[2].arguments[2] == 0)
        #expect(calls[3] == InjectedCall(SyscallNumber.fchdir, 21))
        #expect(calls[4] == InjectedCall(SyscallNumber.close, 21))
        #expect(calls[5] == InjectedCall(SyscallNumber.umask, 0o077))
        #expect(
            calls[6].number == SyscallNumber.prlimit64 && calls[6].arguments[0] == 0
                && calls[6].arguments[1] == UInt64(RLIMIT_NOFILE.rawValue) && calls[6].arguments[3] == 0)
        #expect(calls[6].load(calls[6].arguments[2], as: UInt64.self) == lowered.soft)
        #expect(calls[6].load(calls[6].arguments[2] + 8, as: UInt64.self) == lowered.hard)
    }

    @Test func restoreNamesALimitItMayNotRaise() throws {
        let task = FakeTask()
        var record = Amber_Environment()
        record.cwd = "/"
        record.umask = FakeTask.baseline().umask
        var raised = Amber_ResourceLimit()
        raised.resource = RLIMIT_NOFILE.rawValue
        raised.soft = UInt64(ownLimit(Int32(RLIMIT_NOFILE.rawValue)).rlim_max) + 1
        raised.hard = raised.soft
        record.limits = [raised]
        task.log.script = [20, 0, 21, 0, 0, -Int64(EPERM)]
        let error = amberError(.restoreFailed) {
            try EnvironmentState.restore(record, task.restoreSession(Amber_Task()))
        }
        #expect(error?.message.contains("CAP_SYS_RESOURCE") == true)
        #expect(task.log.numbers.last == SyscallNumber.prlimit64)
    }
}

@Suite struct FlagStateTests {
    /// Answers the prctl and arch_prctl reads of a process's flags, writing results into its memory.
    private func respond(_ task: FakeTask, dumpable: Int64 = 1, permissions: UInt64? = nil) {
        let memory = task.memory
        task.log.respond = { call in
            switch (call.number, call.arguments[0]) {
            case (SyscallNumber.prctl, ProcessControl.GetOption.dumpable.argument): return dumpable
            case (SyscallNumber.prctl, TaskControl.getChildSubreaper):
                memory.store(Int32(1), at: call.arguments[1])
                return 0
            case (SyscallNumber.prctl, ProcessControl.GetOption.thpDisable.argument): return 0
            case (SyscallNumber.prctl, TaskControl.getMDWE): return 1
            case (SyscallNumber.prctl, TaskControl.futexHash): return 16
            case (SyscallNumber.archPrctl, TaskControl.archGetXCompPermissions):
                guard let permissions else { return -Int64(EINVAL) }
                memory.store(permissions, at: call.arguments[1])
                return 0
            default: return -Int64(ENOSYS)
            }
        }
    }

    private func procFiles(_ task: FakeTask) {
        task.proc[file: "/proc/\(fakePID)/personality"] = "00400000\n"
        task.proc[file: "/proc/\(fakePID)/oom_score_adj"] = "-500\n"
        task.proc[file: "/proc/\(fakePID)/coredump_filter"] = "00000033\n"
    }

    @Test func dumpReadsTheProcesssFlagsFromTheTaskAndItsProc() throws {
        let task = FakeTask()
        respond(task)
        procFiles(task)
        let record = try FlagState.dump(task.dumpSession())
        #expect(
            record.dumpable == 1 && record.childSubreaper && record.thpDisable == 0
                && record.memoryDenyWriteExecute == 1)
        #expect(
            record.personality == 0x40_0000 && record.oomScoreAdj == -500 && record.coredumpFilter == 0x33
                && record.futexHashSlots == 16)
        #expect(
            task.calls.filter { $0.number == SyscallNumber.prctl }.map { $0.arguments[0] } == [
                ProcessControl.GetOption.dumpable.argument, TaskControl.getChildSubreaper,
                ProcessControl.GetOption.thpDisable.argument,
                TaskControl.getMDWE, TaskControl.futexHash,
            ])
    }

    @Test func dumpRefusesWhatItCannotSetBack() throws {
        let rootOnly = FakeTask()
        respond(rootOnly, dumpable: 2)
        procFiles(rootOnly)
        #expect(amberError(.unsupported) { _ = try FlagState.dump(rootOnly.dumpSession()) } != nil)

        let amx = FakeTask()
        respond(amx, permissions: TaskControl.amxTileData)
        procFiles(amx)
        let error = amberError(.unsupported) { _ = try FlagState.dump(amx.dumpSession()) }
        #expect(error?.message.contains("AMX") == true)
    }

    @Test func restoreSetsTheProcesssFlagsThenEachThreadsThenTheIrreversibleOnes() throws {
        let task = FakeTask()
        procFiles(task)
        let thread = fakePID + 1
        var leaderThread = Amber_Thread()
        leaderThread.threadFlags.parentDeathSignal = UInt32(SIGKILL)
        leaderThread.threadFlags.tscSigsegv = true
        var other = Amber_Thread()
        other.threadFlags.machineCheckKill = TaskControl.machineCheckKillDefault
        other.threadFlags.cpuidFaulting = true
        other.threadFlags.noNewPrivs = true
        var record = taskRecord(threads: [leaderThread, other])
        record.processFlags.dumpable = 0
        record.processFlags.childSubreaper = true
        record.processFlags.oomScoreAdj = 200
        record.processFlags.coredumpFilter = 0x23
        record.processFlags.personality = 0x40_0000
        record.processFlags.memoryDenyWriteExecute = 1
        try FlagState.restore(record, task.restoreSession(record, threads: [thread]))

        let leader = fakePID
        #expect(
            task.calls == [
                InjectedCall(tid: leader, SyscallNumber.prctl, TaskControl.setDumpable, 0),
                InjectedCall(tid: leader, SyscallNumber.prctl, TaskControl.setChildSubreaper, 1),
                InjectedCall(tid: leader, SyscallNumber.personality, 0x40_0000),
                InjectedCall(tid: leader, SyscallNumber.prctl, TaskControl.setParentDeathSignal, UInt64(SIGKILL)),
                InjectedCall(tid: leader, SyscallNumber.prctl, TaskControl.setTSC, TaskControl.tscSigsegv),
                InjectedCall(tid: thread, SyscallNumber.personality, 0x40_0000),
                InjectedCall(
                    tid: thread, SyscallNumber.prctl, TaskControl.machineCheckKill, TaskControl.machineCheckKillClear),
                InjectedCall(tid: thread, SyscallNumber.archPrctl, TaskControl.archSetCPUID, 0),
                InjectedCall(tid: leader, SyscallNumber.prctl, TaskControl.setMDWE, 1),
                InjectedCall(tid: thread, SyscallNumber.prctl, TaskControl.setNoNewPrivileges, 1),
            ])
        #expect(task.proc.writes.map(\.path) == ["/proc/\(fakePID)/oom_score_adj", "/proc/\(fakePID)/coredump_filter"])
        #expect(task.proc.writes.map(\.text) == ["200\n", "0x23\n"])
    }

    @Test func restoreSetsNothingTheHelperHasAlready() throws {
        let task = FakeTask()
        procFiles(task)
        var record = Amber_Task()
        record.processFlags.dumpable = 1
        record.processFlags.oomScoreAdj = -500
        record.processFlags.coredumpFilter = 0x33
        try FlagState.restore(record, task.restoreSession(record))
        #expect(task.calls.isEmpty)
        // oom_score_adj is written whatever it was: the helper's is the restorer's.
        #expect(task.proc.writes.map(\.text) == ["-500\n"])
    }

    @Test func restoreNamesAnOOMScoreItMayNotLower() throws {
        let task = FakeTask()
        procFiles(task)
        task.proc.failWrites(to: "/proc/\(fakePID)/oom_score_adj", with: .permissionDenied)
        var record = Amber_Task()
        record.processFlags.dumpable = 1
        record.processFlags.oomScoreAdj = -1000
        let error = amberError(.restoreFailed) { try FlagState.restore(record, task.restoreSession(record)) }
        #expect(error?.message.contains("oom_score_adj -1000") == true)
    }
}
