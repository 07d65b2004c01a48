internal import CLinux

/// The kernel's struct clone_args (clone3, CLONE_ARGS_SIZE_VER2), for a clone3 injected into a task.
public struct CloneArguments: Sendable {
    public var flags: UInt64
    /// The signal the parent gets when the child ends; 0 for a thread.
    public var exitSignal: UInt64
    /// Where the PIDs to ask for are in the task (innermost namespace first), and how many.
    public var setTID: UInt64
    public var setTIDCount: UInt64
    /// The new task's clear_child_tid with CLONE_CHILD_CLEARTID, as set_tid_address would set it.
    public var childTID: UInt64

    public init(flags: UInt64, exitSignal: UInt64, setTID: UInt64, setTIDCount: UInt64, childTID: UInt64 = 0) {
        self.flags = flags
        self.exitSignal = exitSignal
        self.setTID = setTID
        self.setTIDCount = setTIDCount
        self.childTID = childTID
    }

    public static let byteCount = MemoryLayout<amber_clone_args>.size

    public var bytes: [UInt8] {
        var raw = amber_clone_args()
        raw.flags = flags
        raw.exit_signal = exitSignal
        raw.set_tid = setTID
        raw.set_tid_size = setTIDCount
        raw.child_tid = childTID
        return withUnsafeBytes(of: raw) { Array($0) }
    }
}

/// clone(2) flags.
public enum CloneFlags {
    public static let vm: UInt64 = 0x100, fs: UInt64 = 0x200, files: UInt64 = 0x400, signalHandlers: UInt64 = 0x800
    public static let thread: UInt64 = 0x10000, systemVSemaphores: UInt64 = 0x40000
    public static let childClearTID: UInt64 = 0x20_0000
    public static let newPIDNamespace: UInt64 = 0x2000_0000
}

/// The kernel's struct prctl_mm_map: the fields of a process's mm that PR_SET_MM_MAP sets in one call.
public struct PrctlMemoryMap: Sendable {
    public var startCode: UInt64 = 0, endCode: UInt64 = 0, startData: UInt64 = 0, endData: UInt64 = 0
    public var startBrk: UInt64 = 0, brk: UInt64 = 0, startStack: UInt64 = 0
    public var argStart: UInt64 = 0, argEnd: UInt64 = 0, envStart: UInt64 = 0, envEnd: UInt64 = 0
    /// Where the auxiliary vector is in the task, and its size in bytes.
    public var auxv: UInt64 = 0
    public var auxvSize: UInt32 = 0
    /// The task's descriptor of its executable.
    public var exeFD: UInt32 = 0

    public init() {}

    public static let byteCount = MemoryLayout<amber_prctl_mm_map>.size

    public var bytes: [UInt8] {
        let raw = amber_prctl_mm_map(
            start_code: startCode, end_code: endCode, start_data: startData, end_data: endData,
            start_brk: startBrk, brk: brk, start_stack: startStack,
            arg_start: argStart, arg_end: argEnd, env_start: envStart, env_end: envEnd,
            auxv: auxv, auxv_size: auxvSize, exe_fd: exeFD)
        return withUnsafeBytes(of: raw) { Array($0) }
    }
}

/// seccomp(2) operations and filter flags, and what a classic BPF filter returns.
public enum Seccomp {
    public static let setModeStrict: UInt64 = 0, setModeFilter: UInt64 = 1
    /// SECCOMP_FILTER_FLAG_TSYNC: the filter goes to every thread of the process.
    public static let filterFlagTSync: UInt64 = 1
    /// SECCOMP_FILTER_FLAG_LOG: the one flag PTRACE_SECCOMP_GET_METADATA reports.
    public static let filterFlagLog: UInt64 = 2
    /// `ret k` (BPF_RET | BPF_K): the instruction's code.
    public static let returnConstant: UInt16 = 0x06
    /// SECCOMP_RET_USER_NOTIF, and SECCOMP_RET_ACTION_FULL, the bits of a return value that are its action.
    public static let returnUserNotification: UInt32 = 0x7fc0_0000, returnActionMask: UInt32 = 0xffff_0000

    /// The kernel's struct sock_fprog: a filter of `instructionCount` struct sock_filter at `filter` in the task.
    public struct Program: Sendable {
        public var instructionCount: UInt16
        public var filter: UInt64

        public init(instructionCount: UInt16, filter: UInt64) {
            self.instructionCount = instructionCount
            self.filter = filter
        }

        /// The size of struct sock_filter.
        public static let instructionSize = 8

        public var bytes: [UInt8] {
            var bytes = [UInt8](repeating: 0, count: 16)
            bytes.withUnsafeMutableBytes {
                $0.storeBytes(of: instructionCount, toByteOffset: 0, as: UInt16.self)
                $0.storeBytes(of: filter, toByteOffset: 8, as: UInt64.self)
            }
            return bytes
        }
    }
}
