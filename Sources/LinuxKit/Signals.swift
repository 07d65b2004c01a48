internal import CLinux
import Glibc

/// Sending signals and checking for processes.
public enum Signals {
    /// The size of the kernel's sigset_t (64 signals), which rt_sig* calls take as an argument.
    public static let setSize: UInt64 = 8
    /// sigaction's SA_RESTART: a call its handler interrupts is restarted, not ended with EINTR.
    public static let restartFlag: UInt64 = 0x1000_0000
    /// The signals the kernel takes before any other of a queue (SYNCHRONOUS_MASK): SIGSEGV,
    /// SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS.
    public static let synchronous: UInt64 = set([SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS])

    /// The signals of `pending` that `blocked` lets through, in the order the kernel takes them
    /// from one queue: the synchronous ones first, then by number.
    public static func deliveryOrder(pending: UInt64, blocked: UInt64) -> [Int32] {
        let open = pending & ~blocked
        let numbers = (1...64).map { Int32($0) }.filter { open & 1 << UInt64($0 - 1) != 0 }
        return numbers.filter { synchronous & 1 << UInt64($0 - 1) != 0 }
            + numbers.filter { synchronous & 1 << UInt64($0 - 1) == 0 }
    }

    public static func send(_ signal: Int32, to pid: Int32) throws(LinuxError) {
        _ = try libcResult("send signal \(signal) to \(pid)") { Glibc.kill(pid, signal) }.get()
    }

    /// The signal set of `signals`, as /proc's SigPnd, SigBlk and the like show one: bit N-1
    /// for signal N.
    public static func set(_ signals: [Int32]) -> UInt64 {
        signals.reduce(0) { $0 | 1 << UInt64($1 - 1) }
    }

    /// Whether `signal` (1 to 64) is in the signal set `set`.
    public static func contains(_ set: UInt64, _ signal: UInt32) -> Bool {
        (1...64).contains(signal) && set & 1 << UInt64(signal - 1) != 0
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
        _ = try kernelResult(
            amber_prctl(Int32(TaskControl.setChildSubreaper), enabled ? 1 : 0, 0, 0, 0),
            "prctl(PR_SET_CHILD_SUBREAPER, \(enabled ? 1 : 0))"
        ).get()
    }

    /// One of this thread's prctl settings that PR_GET_* returns as the call's result.
    public static func value(of option: GetOption) throws(LinuxError) -> UInt64 {
        UInt64(try kernelResult(amber_prctl(option.rawValue, 0, 0, 0, 0), "prctl(\(option))").get())
    }

    /// PR_GET_* options whose value is the call's result, here and injected into a task.
    public enum GetOption: Int32, Sendable {
        case dumpable = 3
        case securebits = 27
        case timerSlack = 30
        case machineCheckKill = 34
        case thpDisable = 42

        /// The option as a syscall argument.
        public var argument: UInt64 { UInt64(rawValue) }
    }

    /// This thread's execution domain and flags (personality(0xffffffff) changes nothing).
    public static func personality() throws(LinuxError) -> UInt32 {
        UInt32(truncatingIfNeeded: try kernelResult(amber_personality(0xffff_ffff), "personality(0xffffffff)").get())
    }

    /// This thread's alternate signal stack.
    public static func alternateStack() throws(LinuxError) -> SignalStack {
        var current = stack_t()
        _ = try libcResult("sigaltstack") { Glibc.sigaltstack(nil, &current) }.get()
        return SignalStack(
            base: UInt64(UInt(bitPattern: current.ss_sp)), flags: current.ss_flags, size: UInt64(current.ss_size))
    }

    /// This thread's securebits (PR_GET_SECUREBITS): SECBIT_* flags and their locks.
    public static func securebits() throws(LinuxError) -> UInt32 {
        UInt32(try value(of: .securebits))
    }
}
