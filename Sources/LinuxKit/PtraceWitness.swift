internal import CLinux
import Glibc
import SystemPackage

/// A process that a thread with the same real user and group may reach by ptrace's rules
/// unless a Landlock domain (or another security module) stops it: no capabilities, dumpable,
/// in a PID namespace of the caller's choosing (`amber_spawn_ptrace_witness`). Killed, and
/// its keeper reaped, when released.
public final class PtraceWitness: @unchecked Sendable {
    /// Its PID as we see it.
    public let pid: Int32
    private let keeper: Int32

    /// Starts one with real, effective and saved IDs `uid` and `gid`, in the PID namespace
    /// `pidNamespace` (an open /proc/PID/ns/pid), or in ours when nil.
    public init(pidNamespace: Int32?, uid: UInt32, gid: UInt32) throws(LinuxError) {
        var witness: pid_t = 0
        let keeper = amber_spawn_ptrace_witness(pidNamespace ?? -1, uid, gid, &witness)
        guard keeper > 0 else {
            throw LinuxError(
                Errno(rawValue: Int32(-keeper)), "start a process of user \(uid) and group \(gid) as a ptrace witness")
        }
        self.keeper = Int32(keeper)
        pid = witness
    }

    deinit {
        kill(pid, SIGKILL)
        while waitpid(keeper, nil, __WALL) < 0 && errno == EINTR {}
    }
}

/// Landlock, the unprivileged sandbox: its domains are in the credentials of each thread,
/// and the kernel shows them nowhere.
public enum Landlock {
    /// The Landlock ABI version this kernel runs, or nil where it has no Landlock or runs it
    /// disabled (landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION).
    public static func abiVersion() -> Int? {
        let version = amber_landlock_abi_version()
        return version > 0 ? Int(version) : nil
    }
}

/// kcmp's comparison types.
public enum ProcessComparison {
    /// KCMP_VM: whether two tasks share their memory.
    public static let memory: UInt64 = 1
}
