internal import CLinux
import Glibc
import SystemPackage

/// A process that a thread with the same real user and group may reach by ptrace's rules
/// unless a Landlock domain (or another security module) stops it (`amber_spawn_ptrace_witness`):
/// no capabilities, in a PID namespace of the caller's choosing: the current program run as
/// `amber-ptrace-witness`, which a constructor of CLinux makes so and ends (a zombie is as good a
/// witness: the kernel keeps whether it was dumpable). Reaped when released.
public final class PtraceWitness: @unchecked Sendable {
    /// Its PID as we see it.
    public let pid: Int32

    /// Starts one with real, effective and saved IDs `uid` and `gid` from `program` (an open,
    /// close-on-exec descriptor of the current program), in the PID namespace `pidNamespace.theirs`
    /// (an open /proc/PID/ns/pid; `ours` is our own), or in ours when nil; returns once it exited.
    public init(program: Int32, pidNamespace: (theirs: Int32, ours: Int32)?, uid: UInt32, gid: UInt32)
        throws(LinuxError)
    {
        let witness = ChildStarts.exclusive {
            amber_spawn_ptrace_witness(program, pidNamespace?.theirs ?? -1, pidNamespace?.ours ?? -1, uid, gid)
        }
        guard witness > 0 else {
            throw LinuxError(
                Errno(rawValue: Int32(-witness)), "start a process of user \(uid) and group \(gid) as a ptrace witness")
        }
        pid = Int32(witness)
    }

    deinit {
        while waitpid(pid, nil, __WALL) < 0 && errno == EINTR {}
    }
}
