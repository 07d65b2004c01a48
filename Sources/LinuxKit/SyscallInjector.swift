internal import CLinux
import Glibc
import SystemPackage

/// x86_64 system call numbers used by injection.
public enum SyscallNumber {
    public static let write = 1
    public static let close = 3
    public static let mmap = 9
    public static let mprotect = 10
    public static let munmap = 11
    public static let brk = 12
    public static let rtSigaction = 13
    public static let mremap = 25
    public static let madvise = 28
    public static let mlockall = 151
    public static let membarrier = 324
    public static let mlock2 = 325
    public static let mseal = 462
    public static let getitimer = 36
    public static let setitimer = 38
    public static let setgroups = 116
    public static let setresuid = 117
    public static let setresgid = 119
    public static let setfsuid = 122
    public static let setfsgid = 123
    public static let capset = 126
    public static let getpgid = 121
    public static let personality = 135
    public static let setpgid = 109
    public static let setsid = 112
    public static let getsid = 124
    public static let kill = 62
    public static let wait4 = 61
    public static let waitid = 247
    public static let exitGroup = 231
    public static let rtSigtimedwait = 128
    public static let rtSigqueueinfo = 129
    public static let sigaltstack = 131
    public static let recvmsg = 47
    public static let fcntl = 72
    public static let fchdir = 81
    public static let umask = 95
    public static let prctl = 157
    public static let archPrctl = 158
    public static let keyctl = 250
    public static let setTidAddress = 218
    public static let timerCreate = 222
    public static let timerSettime = 223
    public static let timerGettime = 224
    public static let timerDelete = 226
    public static let setRobustList = 273
    public static let openat = 257
    public static let dup3 = 292
    public static let rtTgsigqueueinfo = 297
    public static let prlimit64 = 302
    public static let seccomp = 317
    public static let rseq = 334
    public static let pidfdOpen = 434
    public static let closeRange = 436
    public static let clone3 = 435
    public static let epollWait = 232
    public static let poll = 7
    public static let futex = 202
    public static let epollCtl = 233
    public static let epollPwait = 281, epollPwait2 = 441, semop = 65, semtimedop = 220
    public static let pidfdGetfd = 438
    public static let getMempolicy = 239
    public static let kcmp = 312
    public static let modifyLDT = 154
}

/// get_mempolicy(2)'s flag and the mode it reports for the default policy.
public enum MemoryPolicyFlags {
    /// MPOL_F_ADDR: the policy of the area at the address given, not the thread's.
    public static let address: UInt64 = 2
    /// MPOL_DEFAULT: no policy of the area's (or the thread's) own.
    public static let defaultMode: Int32 = 0
}

/// waitid(2)'s idtype and options, for calls injected into a task.
public enum WaitOption {
    /// P_PID: wait for the child with the given PID.
    public static let pidType: UInt64 = 1
    public static let noHang: UInt64 = 1
    public static let stopped: UInt64 = 2
    public static let noWait: UInt64 = 0x0100_0000
}

/// Runs single system calls inside a stopped tracee: its registers are pointed at a `syscall`
/// instruction already in its memory (in the vDSO), the task is stopped as it enters and leaves the call, and its
/// registers are put back. Nothing is written into the task's memory.
public struct SyscallInjector: SyscallInjecting {
    public let tracee: Tracee
    /// Address of a `syscall` instruction (0f 05) in the task.
    public var instruction: UInt64
    /// The registers the task had when injection began; restored by `finish()`.
    public let savedRegisters: UserRegisters
    public let savedSignalMask: UInt64
    /// Whether every call is single-stepped, one stop each: set for a thread whose SIGTRAP is
    /// at its default and not pending, as a restore helper's is (until `stopSteppingOverCalls`,
    /// before its image's SIGTRAP disposition or queued SIGTRAP comes back). The SIGTRAP each
    /// step forces is left unblocked meanwhile.
    public var stepsOverCalls = false

    /// Takes over a stopped tracee. Blocks every signal while injecting, so that no signal can
    /// be delivered (and lost) between the injected steps.
    public init(tracee: Tracee, instruction: UInt64) throws(LinuxError) {
        self.tracee = tracee
        self.instruction = instruction
        savedRegisters = try tracee.registers()
        savedSignalMask = try tracee.signalMask()
        try tracee.setSignalMask(~0)
    }

    /// Puts back the registers and signal mask the task had before injection.
    public func finish() throws(LinuxError) {
        try tracee.setRegisters(savedRegisters)
        try tracee.setSignalMask(savedSignalMask)
    }

    /// Performs the syscall and returns the kernel's raw result (negative is -errno).
    public func raw(_ number: Int, arguments: [UInt64]) throws(LinuxError) -> Int64 {
        stepsOverCalls ? try stepOver(number, arguments) : try step(number, arguments, expectingNewTask: false).result
    }

    /// Performs `calls` with one stop each rather than two, by single-stepping over the
    /// `syscall` instruction, when the SIGTRAP a single step forces costs the thread nothing:
    /// it `stepsOverCalls`, or its status says so (`maySingleStep`). Otherwise, or for one
    /// call, each call stops twice (`raw(_:arguments:)`).
    public func raw(_ calls: [Syscall]) throws(LinuxError) -> [Int64] {
        var steps = stepsOverCalls
        if !steps && calls.count > 1 { steps = Self.maySingleStep(try ProcFS.status(pid: tracee.pid)) }
        var results: [Int64] = []
        results.reserveCapacity(calls.count)
        for call in calls {
            let result =
                steps
                ? try stepOver(call.number, call.arguments)
                : try step(call.number, call.arguments, expectingNewTask: false).result
            results.append(result)
            if result < 0 && result > -4096 { break }
        }
        // The forced SIGTRAP unblocked it: every signal stays blocked while injecting.
        if steps && !stepsOverCalls { try tracee.setSignalMask(~0) }
        return results
    }

    /// Runs one syscall by a single step over the instruction: the task stops with the SIGTRAP
    /// the kernel forces as it leaves the call, and resumes without it.
    private func stepOver(_ number: Int, _ args: [UInt64]) throws(LinuxError) -> Int64 {
        try tracee.setRegisters(registers(for: number, args))
        try tracee.singleStep()
        let stop = try tracee.waitForStop()
        guard stop.signal == SIGTRAP, stop.event == 0 else {
            throw LinuxError(
                .interrupted,
                "injected syscall \(number) in task \(tracee.pid): unexpected stop with signal \(stop.signal), event \(stop.event) stepping over it"
            )
        }
        return try resultAfterInstruction(number)
    }

    /// The result in rax of the call `number` the task stopped after, checking it stopped just
    /// past the instruction.
    private func resultAfterInstruction(_ number: Int) throws(LinuxError) -> Int64 {
        let after = try tracee.registers()
        guard after.rip == instruction + 2 else {
            throw LinuxError(
                .interrupted,
                "injected syscall \(number) in task \(tracee.pid): stopped at 0x\(String(after.rip, radix: 16)), not after the syscall instruction"
            )
        }
        return Int64(bitPattern: after.rax)
    }

    /// From now on, every call stops twice, entering and leaving it, and SIGTRAP is blocked
    /// again: before the thread's SIGTRAP may be anything but its default, unblocked.
    public mutating func stopSteppingOverCalls() throws(LinuxError) {
        guard stepsOverCalls else { return }
        stepsOverCalls = false
        try tracee.setSignalMask(~0)
    }

    /// Whether a thread with `status` may be single-stepped: it has no handler for SIGTRAP,
    /// does not ignore it and has none pending, as a restored thread before its handlers and
    /// signals are back. The SIGTRAP a step forces resets the handler of a blocked SIGTRAP to
    /// SIG_DFL, which it then has already, and a SIGTRAP pending would be taken for the step's.
    static func maySingleStep(_ status: ProcessStatus) -> Bool {
        let trap: UInt64 = 1 << (UInt64(SIGTRAP) - 1)
        return (status.caughtSignals | status.ignoredSignals | status.pendingThread | status.pendingShared) & trap == 0
    }

    /// Performs a clone3 whose new task the tracer is attached to by PTRACE_O_TRACEFORK or
    /// PTRACE_O_TRACECLONE; returns the new task, stopped by the SIGSTOP the kernel sends it
    /// (or, when the tracer seized this task rather than being asked by it, at the
    /// PTRACE_EVENT_STOP a seized task's children start with).
    public func createTask(_ name: @autoclosure () -> String, cloneArguments: UInt64, size: UInt64) throws(LinuxError)
        -> Tracee
    {
        let (result, created) = try step(SyscallNumber.clone3, [cloneArguments, size], expectingNewTask: true)
        if result < 0 && result > -4096 {
            throw LinuxError(Errno(rawValue: CInt(-result)), "\(name()) in task \(tracee.pid)")
        }
        guard let created else {
            throw LinuxError(
                .interrupted, "\(name()) in task \(tracee.pid): no fork or clone event for the new task \(result)")
        }
        let child = Tracee(pid: created)
        while true {
            let stop = try child.waitForStop()
            if stop.signal == SIGSTOP || stop.event == WaitStatus.eventStop { return child }
            try child.cont()
        }
    }

    /// Starts a syscall that does not return (exit_group) and lets the task run into it.
    public func start(_ number: Int, arguments: [UInt64]) throws(LinuxError) {
        try tracee.setRegisters(registers(for: number, arguments))
        try tracee.cont()
    }

    private func registers(for number: Int, _ args: [UInt64]) -> UserRegisters {
        var regs = savedRegisters
        regs.rax = UInt64(number)
        // orig_rax = -1: otherwise the kernel's syscall-restart logic rewrites rip/rax when the
        // task was stopped inside an interrupted system call.
        regs.origRax = UInt64.max
        regs.rip = instruction
        let values = args + Array(repeating: 0, count: max(0, 6 - args.count))
        regs.rdi = values[0]
        regs.rsi = values[1]
        regs.rdx = values[2]
        regs.r10 = values[3]
        regs.r8 = values[4]
        regs.r9 = values[5]
        return regs
    }

    /// What a syscall stop reports with PTRACE_O_TRACESYSGOOD.
    public static let syscallStopSignal = SIGTRAP | 0x80

    /// Runs one syscall by stopping the task as it enters and as it leaves it (PTRACE_SYSCALL).
    /// Not by single-stepping: the trap a single step raises is a forced SIGTRAP, and forcing a
    /// signal the task blocks (as it does while injected into) resets the task's SIGTRAP handler
    /// to SIG_DFL. A syscall stop raises no signal at all.
    private func step(_ number: Int, _ args: [UInt64], expectingNewTask: Bool) throws(LinuxError) -> (
        result: Int64, created: Int32?
    ) {
        try tracee.setRegisters(registers(for: number, args))
        try tracee.resumeToSyscall()
        var stop = try tracee.waitForStop()
        guard stop.signal == Self.syscallStopSignal else {
            throw LinuxError(
                .interrupted,
                "injected syscall \(number) in task \(tracee.pid): unexpected stop with signal \(stop.signal), event \(stop.event) before it"
            )
        }
        try tracee.resumeToSyscall()
        stop = try tracee.waitForStop()
        var created: Int32?
        if expectingNewTask, stop.signal == SIGTRAP,
            [WaitStatus.eventFork, WaitStatus.eventVFork, WaitStatus.eventClone].contains(stop.event)
        {
            created = Int32(truncatingIfNeeded: try tracee.eventMessage())
            try tracee.resumeToSyscall()
            stop = try tracee.waitForStop()
        }
        guard stop.signal == Self.syscallStopSignal, stop.event == 0 else {
            throw LinuxError(
                .interrupted,
                "injected syscall \(number) in task \(tracee.pid): unexpected stop with signal \(stop.signal), event \(stop.event)"
            )
        }
        return (try resultAfterInstruction(number), created)
    }

    /// The `syscall` instruction a thread stopped in a system call entered it by (its registers'
    /// rip is just past it), so that injecting runs only code already in a page it has present:
    /// executing one in a page of the vDSO it never touched would fault that page in. Nil when
    /// the bytes before rip are not `syscall`.
    public static func syscallInstruction(before rip: UInt64, pid: Int32) -> UInt64? {
        guard rip >= 2 else { return nil }
        var bytes: (UInt8, UInt8) = (0, 0)
        let read = withUnsafeMutableBytes(of: &bytes) { buffer in
            try? ProcessMemory(pid: pid).read(into: buffer, from: [(rip - 2, 2)])
        }
        return read == 2 && bytes == (0x0f, 0x05) ? rip - 2 : nil
    }

    /// Finds a `syscall` instruction in the task's [vdso].
    public static func findSyscallInstruction(pid: Int32, vdso: Range<UInt64>) throws(LinuxError) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: Int(vdso.upperBound - vdso.lowerBound))
        let memory = ProcessMemory(pid: pid)
        let read = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(LinuxError) in try memory.read(into: buffer, from: [(vdso.lowerBound, buffer.count)]) }
        }.get()
        for index in 0..<(max(read, 1) - 1) where bytes[index] == 0x0f && bytes[index + 1] == 0x05 {
            return vdso.lowerBound + UInt64(index)
        }
        throw LinuxError(.noSuchFileOrDirectory, "find a syscall instruction in the vDSO of task \(pid)")
    }
}

/// ptrace options of every restored task: killed if the restorer dies, and every process or
/// thread it is made to create is traced from its first instruction.
public let helperOptions: PtraceOptions = [.exitKill, .traceFork, .traceClone, .traceSysGood]

/// ptrace options of every task a dump seizes: syscall stops are told apart from signals.
public let dumpOptions: PtraceOptions = [.traceSysGood]

/// Creates a helper task with chosen PIDs (innermost namespace first), traced by the caller and
/// stopped, with no descriptor but `keptDescriptor` and the capabilities of `boundingDrop` out
/// of its bounding set; resumed as it was, it reaps children and exits with the status of
/// `awaitedChild` (see amber_clone3_stopped_helper). Returns its PID as seen by the caller.
public func createStoppedHelper(
    pids: [Int32], flags: UInt64 = 0, exitSignal: Int32 = Glibc.SIGCHLD, keptDescriptor: Int32, awaitedChild: Int32 = 0,
    boundingDrop: UInt64 = 0
) throws(LinuxError) -> Tracee {
    let result = pids.withUnsafeBufferPointer {
        amber_clone3_stopped_helper(
            $0.baseAddress, $0.count, flags, exitSignal, keptDescriptor, awaitedChild, boundingDrop)
    }
    let pid = Int32(try kernelResult(result, "clone3 with set_tid \(pids)").get())
    let tracee = Tracee(pid: pid)
    while true {
        switch try waitForTask(pid) {
        case .stopped(SIGSTOP, _)?:
            try tracee.setOptions(helperOptions)
            return tracee
        case .stopped?:
            try tracee.cont()
        case .exited(Int32(AMBER_HELPER_UNTRACEABLE))?:
            // ESRCH, the helper being gone: callers read EPERM as clone3 refusing set_tid.
            throw LinuxError(
                .noSuchProcess,
                "helper task \(pid) exited as it could not become traced (PTRACE_TRACEME refused: Yama ptrace_scope 3, or a seccomp filter or security module?)"
            )
        case .exited(let code)?:
            throw LinuxError(.noSuchProcess, "helper task \(pid) exited with status \(code) before it stopped")
        case .signaled(let signal)?:
            throw LinuxError(.noSuchProcess, "helper task \(pid) was killed by signal \(signal) before it stopped")
        case .continued?, nil:
            continue
        }
    }
}
