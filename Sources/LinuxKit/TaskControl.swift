internal import CLinux
import Glibc

/// prctl(2) and arch_prctl(2) options, and the ptrace request, for per-task settings a dump
/// reads and a restore sets again by calls injected into the task.
public enum TaskControl {
    /// prctl options.
    public static let setParentDeathSignal: UInt64 = 1, getParentDeathSignal: UInt64 = 2
    public static let setDumpable: UInt64 = 4
    public static let setKeepCapabilities: UInt64 = 8
    public static let setName: UInt64 = 15
    public static let capabilityBoundingSetDrop: UInt64 = 24
    public static let getTSC: UInt64 = 25, setTSC: UInt64 = 26
    public static let setSecurebits: UInt64 = 28
    public static let setTimerSlack: UInt64 = 29
    /// PR_MCE_KILL with PR_MCE_KILL_CLEAR or _SET; PR_MCE_KILL_DEFAULT, the policy a thread
    /// has until it sets one.
    public static let machineCheckKill: UInt64 = 33
    public static let machineCheckKillClear: UInt64 = 0, machineCheckKillSet: UInt64 = 1,
        machineCheckKillDefault: UInt32 = 2
    /// PR_SET_MM with PR_SET_MM_MAP (a struct prctl_mm_map, `PrctlMemoryMap`).
    public static let setMM: UInt64 = 35, setMMMap: UInt64 = 14
    public static let setChildSubreaper: UInt64 = 36, getChildSubreaper: UInt64 = 37
    public static let setNoNewPrivileges: UInt64 = 38, getNoNewPrivileges: UInt64 = 39
    public static let getTIDAddress: UInt64 = 40
    public static let setTHPDisable: UInt64 = 41
    /// PR_THP_DISABLE_EXCEPT_ADVISED, as PR_GET_THP_DISABLE reports it and PR_SET_THP_DISABLE takes it.
    public static let thpDisableExceptAdvised: UInt32 = 2
    /// PR_CAP_AMBIENT with PR_CAP_AMBIENT_RAISE or _CLEAR_ALL.
    public static let capabilityAmbient: UInt64 = 47, ambientRaise: UInt64 = 2, ambientClearAll: UInt64 = 4
    /// PR_SCHED_CORE with PR_SCHED_CORE_GET, for one task (PIDTYPE_PID).
    public static let schedulingCore: UInt64 = 62, schedulingCoreGet: UInt64 = 0, schedulingCoreOfTask: UInt64 = 0
    /// Memory-deny-write-execute.
    public static let setMDWE: UInt64 = 65, getMDWE: UInt64 = 66
    /// PR_TIMER_CREATE_RESTORE_IDS: while on, timer_create takes the ID to use from where it
    /// would store the new one.
    public static let timerCreateRestoreIDs: UInt64 = 77
    /// PR_TSC_SIGSEGV: rdtsc raises SIGSEGV.
    public static let tscSigsegv: UInt64 = 2
    public static let getIOFlusher: UInt64 = 58
    /// PR_FUTEX_HASH and its PR_FUTEX_HASH_SET_SLOTS / _GET_SLOTS.
    public static let futexHash: UInt64 = 78, futexHashSetSlots: UInt64 = 1, futexHashGetSlots: UInt64 = 2

    /// arch_prctl codes.
    public static let archGetCPUID: UInt64 = 0x1011, archSetCPUID: UInt64 = 0x1012
    public static let archGetXCompPermissions: UInt64 = 0x1022
    /// XFEATURE_XTILEDATA: AMX tile data, a feature a process must ask permission for.
    public static let amxTileData: UInt64 = 1 << 18
}

extension Tracee {
    /// PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG: whether the thread has syscall user dispatch
    /// on (PR_SET_SYSCALL_USER_DISPATCH); false on kernels without the request.
    public func syscallUserDispatchOn() throws(LinuxError) -> Bool {
        // struct ptrace_sud_config: mode, selector, offset, len.
        var config: (mode: UInt64, selector: UInt64, offset: UInt64, length: UInt64) = (0, 0, 0, 0)
        let size = UInt64(MemoryLayout.size(ofValue: config))
        let result = withUnsafeMutablePointer(to: &config) { pointer in
            amber_ptrace(PtraceRequest.getSyscallUserDispatchConfig, pid, size, UInt64(UInt(bitPattern: pointer)))
        }
        if result == -Int(EIO) || result == -Int(EINVAL) { return false }
        _ = try kernelResult(result, "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG of task \(pid)").get()
        return config.mode != 0
    }
}

/// modify_ldt's functions (x86).
public enum LocalDescriptorTable {
    /// Reads the table's entries into a buffer; returns the bytes read, 0 without a table.
    public static let read: UInt64 = 0
}
