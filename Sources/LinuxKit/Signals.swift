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
