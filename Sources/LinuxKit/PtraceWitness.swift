internal import CLinux
import Glibc
import SystemPackage

/// A process that a thread with the same real user and group may reach by ptrace's rules
/// unless a Landlock domain (or another security module) stops it (`amber_spawn_ptrace_witness`):
/// no capabilities, in a PID namespace of the caller's choosing, running the current program as
/// `programName`, which a constructor of CLinux ends at once (a zombie is as good a witness).
/// Killed if it still runs, and reaped, when released.
public final class PtraceWitness: @unchecked Sendable {
    /// The name the current program runs as when it is a witness, and does nothing else.
    public static let programName = AMBER_PTRACE_WITNESS_NAME

    /// Its PID as we see it.
    public let pid: Int32

    /// Starts one with real, effective and saved IDs `uid` and `gid`, running `program` (an
    /// open, close-on-exec descriptor of the current program), in the PID namespace `pidNamespace` (an open
    /// /proc/PID/ns/pid, with `ownPIDNamespace` ours), or in ours when nil.
    public init(program: Int32, pidNamespace: (theirs: Int32, ours: Int32)?, uid: UInt32, gid: UInt32)
        throws(LinuxError)
    {
        let witness = amber_spawn_ptrace_witness(
            program, Self.programName, pidNamespace?.theirs ?? -1, pidNamespace?.ours ?? -1, uid, gid)
        guard witness > 0 else {
            throw LinuxError(
                Errno(rawValue: Int32(-witness)), "start a process of user \(uid) and group \(gid) as a ptrace witness")
        }
        pid = Int32(witness)
    }

    deinit {
        kill(pid, SIGKILL)
        while waitpid(pid, nil, __WALL) < 0 && errno == EINTR {}
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
