import CLinux
import Glibc

/// prctl(2) and arch_prctl(2) options, and the ptrace request, for per-task settings a dump
/// reads and a restore sets again by calls injected into the task.
public enum TaskControl {
    /// prctl options.
    public static let getTSC: UInt64 = 25, setTSC: UInt64 = 26
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
            amber_ptrace(0x4211, pid, size, UInt64(UInt(bitPattern: pointer)))
        }
        if result == -Int(EIO) || result == -Int(EINVAL) { return false }
        _ = try kernelResult(result, "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG of task \(pid)").get()
        return config.mode != 0
    }
}
