import AmberImage
import Glibc
import LinuxKit

/// prctl flags and /proc settings: of the process (dumpable, child subreaper, THP-disable,
/// memory-deny-write-execute, personality, oom_score_adj) and of each thread (parent-death
/// signal, machine-check kill policy, no_new_privs).
enum FlagState {
    private static let setPdeathsig: UInt64 = 1, getPdeathsig: UInt64 = 2
    private static let setDumpable: UInt64 = 4
    private static let setChildSubreaper: UInt64 = 36, getChildSubreaper: UInt64 = 37
    private static let setNoNewPrivs: UInt64 = 38, getNoNewPrivs: UInt64 = 39
    private static let setTHPDisable: UInt64 = 41
    private static let machineCheckKill: UInt64 = 33
    private static let machineCheckKillClear: UInt64 = 0, machineCheckKillSet: UInt64 = 1, machineCheckKillDefault: UInt32 = 2
    private static let setMDWE: UInt64 = 65, getMDWE: UInt64 = 66
    /// PR_THP_DISABLE_EXCEPT_ADVISED, as PR_GET_THP_DISABLE reports it and PR_SET_THP_DISABLE takes it.
    private static let thpExceptAdvised: UInt32 = 2

    // MARK: Dump

    static func dump(_ session: DumpSession) throws -> Amber_ProcessFlags {
        var record = Amber_ProcessFlags()
        let injector = session.injector
        record.dumpable = UInt32(try injector.call("prctl(PR_GET_DUMPABLE)", SyscallNumber.prctl, ProcessControl.GetOption.dumpable.argument))
        if record.dumpable > 1 {
            throw AmberError.unsupported(session.name, "is dumpable only by root (PR_GET_DUMPABLE \(record.dumpable), as after a set-user-ID exec): prctl cannot set that back")
        }
        try injector.call("prctl(PR_GET_CHILD_SUBREAPER)", SyscallNumber.prctl, getChildSubreaper, session.scratch)
        record.childSubreaper = try session.readScratch(4).withUnsafeBytes { $0.loadUnaligned(as: Int32.self) } != 0
        record.thpDisable = UInt32(try injector.call("prctl(PR_GET_THP_DISABLE)", SyscallNumber.prctl, ProcessControl.GetOption.thpDisable.argument))
        record.memoryDenyWriteExecute = UInt32(try injector.call("prctl(PR_GET_MDWE)", SyscallNumber.prctl, getMDWE, 0, 0, 0, 0))
        record.personality = try ProcFS.number("/proc/\(session.pid)/personality") { UInt32($0, radix: 16) }
        record.oomScoreAdj = try ProcFS.number("/proc/\(session.pid)/oom_score_adj") { Int32($0) }
        return record
    }

    /// One thread's, read by `injector` running in that thread.
    static func dump(_ injector: SyscallInjector, _ session: DumpSession) throws -> Amber_ThreadFlags {
        var record = Amber_ThreadFlags()
        try injector.call("prctl(PR_GET_PDEATHSIG)", SyscallNumber.prctl, getPdeathsig, session.scratch)
        record.parentDeathSignal = try session.readScratch(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        // The thread's status shows it (since 4.10): one injected call fewer per thread.
        if let noNewPrivileges = try session.threadStatus(injector.tracee.pid).noNewPrivileges {
            record.noNewPrivs = noNewPrivileges
        } else {
            record.noNewPrivs = try injector.call("prctl(PR_GET_NO_NEW_PRIVS)", SyscallNumber.prctl, getNoNewPrivs) != 0
        }
        record.machineCheckKill = UInt32(try injector.call("prctl(PR_MCE_KILL_GET)", SyscallNumber.prctl, ProcessControl.GetOption.machineCheckKill.argument, 0, 0, 0, 0))
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
            try leader.call("prctl(PR_SET_DUMPABLE, \(flags.dumpable))", SyscallNumber.prctl, setDumpable, UInt64(flags.dumpable))
        }
        if flags.childSubreaper {
            try leader.call("prctl(PR_SET_CHILD_SUBREAPER)", SyscallNumber.prctl, setChildSubreaper, 1)
        }
        if flags.thpDisable != baseline.thpDisable {
            try leader.call("prctl(PR_SET_THP_DISABLE, \(flags.thpDisable))", SyscallNumber.prctl, setTHPDisable, UInt64(flags.thpDisable & 1), UInt64(flags.thpDisable & thpExceptAdvised))
        }
        try writeOOMScoreAdjustment(flags.oomScoreAdj, pid: session.pid)
        let records = [task.threadFlags] + task.threads.map(\.threadFlags)
        let injectors = try session.threads.map { tracee throws(LinuxError) in
            tracee.pid == session.pid ? leader : try SyscallInjector(tracee: tracee, instruction: leader.instruction)
        }
        for (record, injector) in zip(records, injectors) {
            if flags.personality != baseline.personality {
                try injector.call("personality(0x\(String(flags.personality, radix: 16)))", SyscallNumber.personality, UInt64(flags.personality))
            }
            if record.parentDeathSignal != 0 {
                try injector.call("prctl(PR_SET_PDEATHSIG, \(record.parentDeathSignal))", SyscallNumber.prctl, setPdeathsig, UInt64(record.parentDeathSignal))
            }
            if record.machineCheckKill == machineCheckKillDefault, record.machineCheckKill != baseline.machineCheckKill {
                try injector.call("prctl(PR_MCE_KILL, PR_MCE_KILL_CLEAR)", SyscallNumber.prctl, machineCheckKill, machineCheckKillClear, 0, 0, 0)
            } else if record.machineCheckKill != baseline.machineCheckKill {
                try injector.call("prctl(PR_MCE_KILL, PR_MCE_KILL_SET, \(record.machineCheckKill))", SyscallNumber.prctl, machineCheckKill, machineCheckKillSet, UInt64(record.machineCheckKill), 0, 0)
            }
        }
        if flags.memoryDenyWriteExecute != 0 {
            try leader.call("prctl(PR_SET_MDWE, \(flags.memoryDenyWriteExecute))", SyscallNumber.prctl, setMDWE, UInt64(flags.memoryDenyWriteExecute), 0, 0, 0)
        }
        for (record, injector) in zip(records, injectors) where record.noNewPrivs {
            try injector.call("prctl(PR_SET_NO_NEW_PRIVS)", SyscallNumber.prctl, setNoNewPrivs, 1)
        }
    }

    /// Refuses what cannot be set back without CAP_SYS_RESOURCE: KSM merging of the whole
    /// process (PR_SET_MEMORY_MERGE, which /proc/PID/ksm_stat shows as ksm_merge_any).
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        if ProcFS.mergesAllMemory(pid: pid) == true {
            throw AmberError.unsupported(process, "has KSM merging on for all its memory (PR_SET_MEMORY_MERGE): setting it back needs CAP_SYS_RESOURCE", tree: tree)
        }
    }

    /// Written from the restorer: a task may not lower its own score below what it had
    /// without CAP_SYS_RESOURCE, and neither may we.
    private static func writeOOMScoreAdjustment(_ value: Int32, pid: Int32) throws {
        let path = "/proc/\(pid)/oom_score_adj"
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError.current("open \(path)") }
        defer { Glibc.close(fd) }
        let text = Array("\(value)\n".utf8)
        if Glibc.write(fd, text, text.count) != text.count {
            let error = LinuxError.current("write \(value) to \(path)")
            if error.errno == .permissionDenied {
                throw AmberError(.restoreFailed, "cannot set oom_score_adj \(value) of process \(pid): lowering it below what the restorer started with needs CAP_SYS_RESOURCE (\(error))")
            }
            throw error
        }
    }
}
