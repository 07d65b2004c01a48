import AmberImage
import Glibc
import LinuxKit

/// prctl flags and /proc settings: of the process (dumpable, child subreaper, THP-disable,
/// memory-deny-write-execute, personality, oom_score_adj, coredump_filter, the private futex
/// hash's size) and of each thread (parent-death signal, machine-check kill policy,
/// no_new_privs, rdtsc and cpuid faulting). Per-thread controls amber cannot set again
/// (speculation control, linear address masking, shadow stacks, syscall user dispatch, the
/// I/O flusher flag) and AMX permission are refused by name.
enum FlagState {
    // MARK: Dump

    static func dump(_ session: DumpSession) throws -> Amber_ProcessFlags {
        var record = Amber_ProcessFlags()
        let injector = session.injector
        record.dumpable = UInt32(
            try injector.call("prctl(PR_GET_DUMPABLE)", SyscallNumber.prctl, ProcessControl.GetOption.dumpable.argument)
        )
        if record.dumpable > 1 {
            throw AmberError.unsupported(
                session.name,
                "is dumpable only by root (PR_GET_DUMPABLE \(record.dumpable), as after a set-user-ID exec): prctl cannot set that back"
            )
        }
        var arguments = session.arguments()
        let subreaper = try arguments.reserve(4)
        try injector.call(
            "prctl(PR_GET_CHILD_SUBREAPER)", SyscallNumber.prctl, TaskControl.getChildSubreaper, subreaper)
        record.childSubreaper = try arguments.read(subreaper, as: Int32.self) != 0
        record.thpDisable = UInt32(
            try injector.call(
                "prctl(PR_GET_THP_DISABLE)", SyscallNumber.prctl, ProcessControl.GetOption.thpDisable.argument))
        record.memoryDenyWriteExecute = UInt32(
            try injector.call("prctl(PR_GET_MDWE)", SyscallNumber.prctl, TaskControl.getMDWE, 0, 0, 0, 0))
        record.personality = try session.proc.number("/proc/\(session.pid)/personality") { UInt32($0, radix: 16) }
        record.oomScoreAdj = try session.proc.number("/proc/\(session.pid)/oom_score_adj") { Int32($0) }
        record.coredumpFilter = try coredumpFilter(pid: session.pid, session.proc)
        // EINVAL on kernels before 6.16, which have one global futex hash.
        let slots = try injector.raw(SyscallNumber.prctl, TaskControl.futexHash, TaskControl.futexHashGetSlots)
        record.futexHashSlots = slots > 0 ? UInt32(clamping: slots) : 0
        // EINVAL on CPUs without dynamically enabled features.
        let permissionsAddress = try arguments.reserve(8)
        let permissions =
            try injector.raw(SyscallNumber.archPrctl, TaskControl.archGetXCompPermissions, permissionsAddress) == 0
            ? try arguments.read(permissionsAddress, as: UInt64.self) : 0
        if permissions & TaskControl.amxTileData != 0 {
            throw AmberError.unsupported(
                session.name, "has permission to use AMX tiles (arch_prctl ARCH_REQ_XCOMP_PERM): not supported yet")
        }
        return record
    }

    private static func coredumpFilter(pid: Int32, _ proc: any ProcReading) throws -> UInt32 {
        try proc.number("/proc/\(pid)/coredump_filter") { UInt32($0, radix: 16) }
    }

    /// What a thread's status shows of per-thread controls a restore cannot set again, or nil:
    /// speculation control set by PR_SET_SPECULATION_CTRL ("thread ..." and "conditional ...
    /// disabled" states), linear address masking (an untag mask) and shadow stacks.
    static func unrestorableControl(in status: ProcessStatus) -> String? {
        let fields = status.fields
        if let value = fields["Speculation_Store_Bypass"], value.hasPrefix("thread ") && value != "thread vulnerable" {
            return "speculative store bypass control \"\(value)\" (PR_SET_SPECULATION_CTRL)"
        }
        if let value = fields["SpeculationIndirectBranch"],
            value.hasPrefix("conditional") && value.hasSuffix("disabled")
        {
            return "indirect branch speculation control \"\(value)\" (PR_SET_SPECULATION_CTRL)"
        }
        if let value = fields["untag_mask"], value != "0xffffffffffffffff" {
            return "linear address masking (untag mask \(value), ARCH_ENABLE_TAGGED_ADDR)"
        }
        if let value = fields["x86_Thread_features"], !value.isEmpty {
            return "x86 thread features \"\(value)\" (shadow stack, ARCH_SHSTK_ENABLE)"
        }
        return nil
    }

    /// One thread's, read by `injector` running in that thread.
    static func dump(_ injector: any SyscallInjecting, _ session: DumpSession) throws -> Amber_ThreadFlags {
        var record = Amber_ThreadFlags()
        var arguments = session.arguments()
        let parentDeathSignal = try arguments.reserve(4)
        try injector.call(
            "prctl(PR_GET_PDEATHSIG)", SyscallNumber.prctl, TaskControl.getParentDeathSignal, parentDeathSignal)
        record.parentDeathSignal = try arguments.read(parentDeathSignal, as: UInt32.self)
        // The thread's status shows it (since 4.10): one injected call fewer per thread.
        if let noNewPrivileges = try session.threadStatus(injector.tracee.pid).noNewPrivileges {
            record.noNewPrivs = noNewPrivileges
        } else {
            record.noNewPrivs =
                try injector.call("prctl(PR_GET_NO_NEW_PRIVS)", SyscallNumber.prctl, TaskControl.getNoNewPrivileges)
                != 0
        }
        record.machineCheckKill = UInt32(
            try injector.call(
                "prctl(PR_MCE_KILL_GET)", SyscallNumber.prctl, ProcessControl.GetOption.machineCheckKill.argument, 0, 0,
                0, 0))
        let tid = injector.tracee.pid
        let status = try session.threadStatus(tid)
        if let control = unrestorableControl(in: status) {
            throw AmberError.unsupported(session.name, "has thread \(tid) with \(control): not supported yet")
        }
        if try injector.tracee.syscallUserDispatchOn() {
            throw AmberError.unsupported(
                session.name,
                "has thread \(tid) with syscall user dispatch on (PR_SET_SYSCALL_USER_DISPATCH): not supported yet")
        }
        // Only readable with CAP_SYS_RESOURCE, which setting it needs too.
        let mayReadIOFlusher = (status.capabilities?.effective ?? 0) & 1 << Capability.sysResource != 0
        if mayReadIOFlusher, try injector.raw(SyscallNumber.prctl, TaskControl.getIOFlusher) == 1 {
            throw AmberError.unsupported(
                session.name, "has thread \(tid) marked as an I/O flusher (PR_SET_IO_FLUSHER): not supported yet")
        }
        let tsc = try arguments.reserve(4)
        try injector.call("prctl(PR_GET_TSC)", SyscallNumber.prctl, TaskControl.getTSC, tsc)
        record.tscSigsegv = try arguments.read(tsc, as: UInt32.self) == TaskControl.tscSigsegv
        // 1: cpuid runs; 0: it faults (ARCH_SET_CPUID 0).
        record.cpuidFaulting = try injector.raw(SyscallNumber.archPrctl, TaskControl.archGetCPUID) == 0
        return record
    }

    // MARK: Restore

    /// Sets the process's flags and every thread's; memory-deny-write-execute and no_new_privs
    /// last, as they cannot be undone (and the memory is back by then).
    /// Needs every thread: personality is each thread's own, and a thread inherits no_new_privs.
    static func restore(_ task: Amber_Task, _ session: RestoreSession) throws {
        let flags = task.processFlags
        let leader = session.injector
        // A helper has the restorer's settings, but no parent-death signal and is no subreaper
        // (fork clears both); a change of credentials resets dumpable and that signal.
        let baseline = session.baseline
        if flags.dumpable != baseline.dumpable || session.credentialsChanged {
            try leader.call(
                "prctl(PR_SET_DUMPABLE, \(flags.dumpable))", SyscallNumber.prctl, TaskControl.setDumpable,
                UInt64(flags.dumpable))
        }
        if flags.childSubreaper {
            try leader.call("prctl(PR_SET_CHILD_SUBREAPER)", SyscallNumber.prctl, TaskControl.setChildSubreaper, 1)
        }
        if flags.thpDisable != baseline.thpDisable {
            try leader.call(
                "prctl(PR_SET_THP_DISABLE, \(flags.thpDisable))", SyscallNumber.prctl, TaskControl.setTHPDisable,
                UInt64(flags.thpDisable & 1), UInt64(flags.thpDisable & TaskControl.thpDisableExceptAdvised))
        }
        try writeOOMScoreAdjustment(flags.oomScoreAdj, pid: session.pid, session.proc)
        if try coredumpFilter(pid: session.pid, session.proc) != flags.coredumpFilter {
            try session.proc.write(
                "0x\(String(flags.coredumpFilter, radix: 16))\n", to: "/proc/\(session.pid)/coredump_filter")
        }
        // Its threads exist by now, which may have made the hash private at a size of the kernel's choosing.
        if flags.futexHashSlots != 0,
            try leader.raw(SyscallNumber.prctl, TaskControl.futexHash, TaskControl.futexHashGetSlots)
                != Int64(flags.futexHashSlots)
        {
            try leader.call(
                "prctl(PR_FUTEX_HASH_SET_SLOTS, \(flags.futexHashSlots))", SyscallNumber.prctl, TaskControl.futexHash,
                TaskControl.futexHashSetSlots, UInt64(flags.futexHashSlots))
        }
        let records = task.threads.map(\.threadFlags)
        let injectors = try session.threads.map { tracee throws(LinuxError) in
            try session.injector(for: tracee)
        }
        for (record, injector) in zip(records, injectors) {
            if flags.personality != baseline.personality {
                try injector.call(
                    "personality(0x\(String(flags.personality, radix: 16)))", SyscallNumber.personality,
                    UInt64(flags.personality))
            }
            if record.parentDeathSignal != 0 {
                try injector.call(
                    "prctl(PR_SET_PDEATHSIG, \(record.parentDeathSignal))", SyscallNumber.prctl,
                    TaskControl.setParentDeathSignal, UInt64(record.parentDeathSignal))
            }
            if record.machineCheckKill == TaskControl.machineCheckKillDefault,
                record.machineCheckKill != baseline.machineCheckKill
            {
                try injector.call(
                    "prctl(PR_MCE_KILL, PR_MCE_KILL_CLEAR)", SyscallNumber.prctl, TaskControl.machineCheckKill,
                    TaskControl.machineCheckKillClear, 0, 0, 0)
            } else if record.machineCheckKill != baseline.machineCheckKill {
                try injector.call(
                    "prctl(PR_MCE_KILL, PR_MCE_KILL_SET, \(record.machineCheckKill))", SyscallNumber.prctl,
                    TaskControl.machineCheckKill, TaskControl.machineCheckKillSet, UInt64(record.machineCheckKill), 0, 0
                )
            }
            if record.tscSigsegv {
                try injector.call(
                    "prctl(PR_SET_TSC, PR_TSC_SIGSEGV)", SyscallNumber.prctl, TaskControl.setTSC, TaskControl.tscSigsegv
                )
            }
            if record.cpuidFaulting {
                try injector.call("arch_prctl(ARCH_SET_CPUID, 0)", SyscallNumber.archPrctl, TaskControl.archSetCPUID, 0)
            }
        }
        if flags.memoryDenyWriteExecute != 0 {
            try leader.call(
                "prctl(PR_SET_MDWE, \(flags.memoryDenyWriteExecute))", SyscallNumber.prctl, TaskControl.setMDWE,
                UInt64(flags.memoryDenyWriteExecute), 0, 0, 0)
        }
        for (record, injector) in zip(records, injectors) where record.noNewPrivs {
            try injector.call("prctl(PR_SET_NO_NEW_PRIVS)", SyscallNumber.prctl, TaskControl.setNoNewPrivileges, 1)
        }
    }

    /// Refuses what cannot be set back without CAP_SYS_RESOURCE: KSM merging of the whole
    /// process (PR_SET_MEMORY_MERGE, which /proc/PID/ksm_stat shows as ksm_merge_any).
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        // personality is each thread's own; the restore gives every thread the leader's.
        func personality(_ path: String) -> String? {
            (try? ProcFS.readText(path)).flatMap { UInt32($0.filter { !$0.isWhitespace }, radix: 16) }
                .map { String($0, radix: 16) }
        }
        let leader = personality("/proc/\(pid)/personality")
        for thread in (try? ProcFS.threads(pid: pid)) ?? [] where thread != pid {
            guard let own = personality("/proc/\(pid)/task/\(thread)/personality"), own != leader else { continue }
            throw AmberError.unsupported(
                process,
                "has thread \(thread) with the personality 0x\(own), not its leader's 0x\(leader ?? "?"): not restored",
                tree: tree)
        }
        if ProcFS.mergesAllMemory(pid: pid) == true {
            throw AmberError.unsupported(
                process,
                "has KSM merging on for all its memory (PR_SET_MEMORY_MERGE): setting it back needs CAP_SYS_RESOURCE",
                tree: tree)
        }
    }

    /// Written from the restorer: a task may not lower its own score below what it had
    /// without CAP_SYS_RESOURCE, and neither may we.
    private static func writeOOMScoreAdjustment(_ value: Int32, pid: Int32, _ proc: any ProcReading) throws {
        let path = "/proc/\(pid)/oom_score_adj"
        do {
            try proc.write("\(value)\n", to: path)
        } catch {
            guard error.errno == .permissionDenied else { throw error }
            throw AmberError(
                .restoreFailed,
                "cannot set oom_score_adj \(value) of process \(pid): lowering it below what the restorer started with needs CAP_SYS_RESOURCE (\(error))"
            )
        }
    }
}

/// Each thread's own flags are dumped with the thread (`ThreadState`).
extension FlagState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("flags", .traced) { process, _ in process.task.processFlags = try dump(process.session) }
        ]
    }

    /// After credentials: a change of effective or filesystem ID clears the parent-death signal and resets dumpable.
    static var restoreSteps: [RestoreStep] { [RestoreStep("flags", order: 1200) { try restore($0.task, $0) }] }
}
