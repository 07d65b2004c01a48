import CLinux
import Glibc

/// Sending signals and checking for processes.
public enum Signals {
    public static func send(_ signal: Int32, to pid: Int32) throws(LinuxError) {
        _ = try libcResult("send signal \(signal) to \(pid)") { Glibc.kill(pid, signal) }.get()
    }

    /// Whether a process with this PID exists (zombies included), in our PID namespace.
    public static func processExists(_ pid: Int32) -> Bool {
        Glibc.kill(pid, 0) == 0 || Glibc.errno == EPERM
    }
}

/// Process attributes set with prctl(2).
public enum ProcessControl {
    /// Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): orphaned descendants are
    /// reparented to it instead of init.
    public static func setChildSubreaper(_ enabled: Bool) throws(LinuxError) {
        _ = try kernelResult(amber_prctl(36 /* PR_SET_CHILD_SUBREAPER */, enabled ? 1 : 0, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER, \(enabled ? 1 : 0))").get()
    }

    /// This thread's securebits (PR_GET_SECUREBITS): SECBIT_* flags and their locks.
    public static func securebits() throws(LinuxError) -> UInt32 {
        UInt32(try kernelResult(amber_prctl(27 /* PR_GET_SECUREBITS */, 0, 0, 0, 0), "prctl(PR_GET_SECUREBITS)").get())
    }
}
