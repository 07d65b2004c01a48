internal import CLinux
import Glibc
import SystemPackage

/// ptrace(2) request numbers and options that Glibc's overlay does not export.
enum PtraceRequest {
    static let traceMe = 0
    static let peekData = 2
    static let cont = 7
    static let kill = 8
    static let syscall = 24
    static let singleStep = 9
    static let getRegs = 12
    static let setRegs = 13
    static let attach = 16
    static let detach = 17
    static let setOptions = 0x4200
    static let getEventMessage = 0x4201
    static let getSigInfo = 0x4202
    static let getRegSet = 0x4204
    static let setRegSet = 0x4205
    static let seize = 0x4206
    static let interrupt = 0x4207
    static let listen = 0x4208
    static let peekSigInfo = 0x4209
    static let getSigMask = 0x420a
    /// PTRACE_GET_THREAD_AREA.
    static let getThreadArea = 25
    static let setSigMask = 0x420b
    static let seccompGetFilter = 0x420c
    static let seccompGetMetadata = 0x420d
    static let getRseqConfiguration = 0x420f
    static let getSyscallUserDispatchConfig = 0x4211
}

/// Register sets for PTRACE_GETREGSET/SETREGSET.
public enum RegisterSet: Int {
    case general = 1  // NT_PRSTATUS
    case floatingPoint = 2  // NT_PRFPREG
    case xstate = 0x202  // NT_X86_XSTATE
}

/// ptrace options (PTRACE_O_*).
public struct PtraceOptions: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Syscall stops report SIGTRAP | 0x80, so that they cannot be taken for a signal.
    public static let traceSysGood = PtraceOptions(rawValue: 1)
    public static let traceFork = PtraceOptions(rawValue: 2)
    public static let traceVFork = PtraceOptions(rawValue: 4)
    public static let traceClone = PtraceOptions(rawValue: 8)
    /// Kill the tracee if the tracer exits: a restore that dies leaves nothing behind.
    public static let exitKill = PtraceOptions(rawValue: 1 << 20)
    /// No seccomp filter or strict mode applies to the tracee while it is set (needs
    /// CAP_SYS_ADMIN in the initial user namespace): injected syscalls pass.
    public static let suspendSeccomp = PtraceOptions(rawValue: 1 << 21)
}

/// How a waited-for task changed state.
public enum WaitStatus: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)
    /// A ptrace stop: `signal` is the stop signal and `event` the PTRACE_EVENT_* (0 for a signal-delivery stop).
    case stopped(signal: Int32, event: Int32)
    case continued

    init(raw status: Int32) {
        let low = status & 0x7f
        if low == 0 {
            self = .exited((status >> 8) & 0xff)
        } else if status & 0xff == 0x7f {
            self = .stopped(signal: (status >> 8) & 0xff, event: (status >> 16) & 0xff)
        } else if status == 0xffff {
            self = .continued
        } else {
            self = .signaled(low)
        }
    }

    /// PTRACE_EVENT_STOP: the stop PTRACE_INTERRUPT or a group stop reports to a seizing tracer.
    public static let eventStop: Int32 = 128
    /// PTRACE_EVENT_FORK, _VFORK and _CLONE: the task created a process or thread (PTRACE_GETEVENTMSG names it).
    public static let eventFork: Int32 = 1
    public static let eventVFork: Int32 = 2
    public static let eventClone: Int32 = 3
}

/// Waits for a task (any kind, threads too) and returns how it changed.
public func waitForTask(_ pid: Int32, options: Int32 = 0) throws(LinuxError) -> WaitStatus? {
    var status: Int32 = 0
    let result = libcResult("wait for task \(pid)") { Glibc.waitpid(pid, &status, options | __WALL) }
    switch result {
    case .success(0): return nil
    case .success: return WaitStatus(raw: status)
    case .failure(let error): throw error
    }
}

/// A task under ptrace. Value type: it only names the task; the kernel holds the tracing state.
public struct Tracee: Sendable {
    public let pid: Int32

    public init(pid: Int32) { self.pid = pid }

    @inline(__always)
    private func request(_ request: Int, _ addr: UInt64 = 0, _ data: UInt64 = 0, _ what: @autoclosure () -> String)
        throws(LinuxError) -> Int
    {
        try kernelResult(amber_ptrace(request, pid, addr, data), "\(what()) of task \(pid)").get()
    }

    /// Attaches without stopping the task (PTRACE_SEIZE).
    public static func seize(_ pid: Int32, options: PtraceOptions = []) throws(LinuxError) -> Tracee {
        let tracee = Tracee(pid: pid)
        _ = try tracee.request(PtraceRequest.seize, 0, options.rawValue, "PTRACE_SEIZE")
        return tracee
    }

    public func setOptions(_ options: PtraceOptions) throws(LinuxError) {
        _ = try request(PtraceRequest.setOptions, 0, options.rawValue, "PTRACE_SETOPTIONS")
    }

    /// Stops a seized task; it reports a PTRACE_EVENT_STOP.
    public func interrupt() throws(LinuxError) {
        _ = try request(PtraceRequest.interrupt, 0, 0, "PTRACE_INTERRUPT")
    }

    /// Waits until the task reports a ptrace stop, returning it; an exit is an error.
    public func waitForStop() throws(LinuxError) -> (signal: Int32, event: Int32) {
        while true {
            guard let status = try waitForTask(pid) else { continue }
            switch status {
            case .stopped(let signal, let event): return (signal, event)
            case .exited(let code):
                throw LinuxError(.noSuchProcess, "task \(pid) exited with status \(code) while being traced")
            case .signaled(let signal):
                throw LinuxError(.noSuchProcess, "task \(pid) was killed by signal \(signal) while being traced")
            case .continued: continue
            }
        }
    }

    /// The message of the last ptrace event stop: for a fork or clone event, the new task's TID.
    public func eventMessage() throws(LinuxError) -> UInt64 {
        var message: UInt64 = 0
        _ = try withUnsafeMutablePointer(to: &message) { pointer throws(LinuxError) in
            try request(PtraceRequest.getEventMessage, 0, UInt64(UInt(bitPattern: pointer)), "PTRACE_GETEVENTMSG")
        }
        return message
    }

    public func cont(signal: Int32 = 0) throws(LinuxError) {
        _ = try request(PtraceRequest.cont, 0, UInt64(signal), "PTRACE_CONT")
    }

    /// Resumes the task until it enters or leaves its next system call (PTRACE_SYSCALL).
    public func resumeToSyscall() throws(LinuxError) {
        _ = try request(PtraceRequest.syscall, 0, 0, "PTRACE_SYSCALL")
    }

    /// Resumes the task for one instruction (PTRACE_SINGLESTEP); it stops with a SIGTRAP the
    /// kernel forces on it.
    public func singleStep() throws(LinuxError) {
        _ = try request(PtraceRequest.singleStep, 0, 0, "PTRACE_SINGLESTEP")
    }

    public func detach(signal: Int32 = 0) throws(LinuxError) {
        _ = try request(PtraceRequest.detach, 0, UInt64(signal), "PTRACE_DETACH")
    }

    public func registers() throws(LinuxError) -> UserRegisters {
        var regs = amber_user_regs()
        var length = MemoryLayout<amber_user_regs>.size
        try kernelResult(
            amber_ptrace_getregset(pid, RegisterSet.general.rawValue, &regs, &length),
            "PTRACE_GETREGSET NT_PRSTATUS of task \(pid)"
        ).map { _ in }.get()
        return UserRegisters(regs)
    }

    public func setRegisters(_ regs: UserRegisters) throws(LinuxError) {
        var copy = regs.raw
        _ = try kernelResult(
            amber_ptrace_setregset(pid, RegisterSet.general.rawValue, &copy, MemoryLayout<amber_user_regs>.size),
            "PTRACE_SETREGSET NT_PRSTATUS of task \(pid)"
        ).get()
    }

    /// The task's full XSAVE area, as long as the kernel makes it.
    public func xstate() throws(LinuxError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var length = buffer.count
        let result = buffer.withUnsafeMutableBytes {
            amber_ptrace_getregset(pid, RegisterSet.xstate.rawValue, $0.baseAddress, &length)
        }
        _ = try kernelResult(result, "PTRACE_GETREGSET NT_X86_XSTATE of task \(pid)").get()
        return Array(buffer.prefix(length))
    }

    public func setXState(_ xstate: [UInt8]) throws(LinuxError) {
        let result = xstate.withUnsafeBytes {
            amber_ptrace_setregset(pid, RegisterSet.xstate.rawValue, $0.baseAddress, $0.count)
        }
        _ = try kernelResult(result, "PTRACE_SETREGSET NT_X86_XSTATE of task \(pid)").get()
    }

    public func signalMask() throws(LinuxError) -> UInt64 {
        var mask: UInt64 = 0
        _ = try withUnsafeMutablePointer(to: &mask) { pointer throws(LinuxError) in
            try request(PtraceRequest.getSigMask, 8, UInt64(UInt(bitPattern: pointer)), "PTRACE_GETSIGMASK")
        }
        return mask
    }

    public func setSignalMask(_ mask: UInt64) throws(LinuxError) {
        var copy = mask
        _ = try withUnsafeMutablePointer(to: &copy) { pointer throws(LinuxError) in
            try request(PtraceRequest.setSigMask, 8, UInt64(UInt(bitPattern: pointer)), "PTRACE_SETSIGMASK")
        }
    }

    /// Pending signals with their siginfo, without dequeuing them: the thread's own queue, or the process's shared one.
    public func pendingSignals(shared: Bool) throws(LinuxError) -> [[UInt8]] {
        var result: [[UInt8]] = []
        let batch = 32
        var buffer = [UInt8](repeating: 0, count: 128 * batch)
        while true {
            var args = amber_peeksiginfo_args(off: UInt64(result.count), flags: shared ? 1 : 0, nr: Int32(batch))
            let raw = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &args) { argsPointer in
                    amber_ptrace(
                        PtraceRequest.peekSigInfo, pid, UInt64(UInt(bitPattern: argsPointer)),
                        UInt64(UInt(bitPattern: bytes.baseAddress!)))
                }
            }
            let count = try kernelResult(raw, "PTRACE_PEEKSIGINFO of task \(pid)").get()
            for index in 0..<count { result.append(Array(buffer[(index * 128)..<((index + 1) * 128)])) }
            if count < batch { return result }
        }
    }

    /// The GDT TLS entries (12, 13, 14: GDT_ENTRY_TLS_MIN to MAX) the thread set with
    /// set_thread_area, as PTRACE_GET_THREAD_AREA reads them; those empty left out. An empty
    /// entry reads as base 0, limit 0, read_exec_only and seg_not_present (struct user_desc).
    public func threadAreaEntries() throws(LinuxError) -> [UInt32] {
        var used: [UInt32] = []
        for entry: UInt32 in 12...14 {
            var descriptor: (UInt32, UInt32, UInt32, UInt32) = (entry, 0, 0, 0)
            _ = try withUnsafeMutablePointer(to: &descriptor) { pointer throws(LinuxError) in
                try request(
                    PtraceRequest.getThreadArea, UInt64(entry), UInt64(UInt(bitPattern: pointer)),
                    "PTRACE_GET_THREAD_AREA")
            }
            let empty = descriptor.1 == 0 && descriptor.2 == 0 && descriptor.3 & 0x7f == (1 << 3 | 1 << 5)
            if !empty { used.append(entry) }
        }
        return used
    }

    /// The task's rseq registration (kernel 5.13).
    public func rseqConfiguration() throws(LinuxError) -> RseqConfiguration {
        var configuration = amber_rseq_configuration()
        _ = try withUnsafeMutablePointer(to: &configuration) { pointer throws(LinuxError) in
            try request(
                PtraceRequest.getRseqConfiguration, UInt64(MemoryLayout<amber_rseq_configuration>.size),
                UInt64(UInt(bitPattern: pointer)), "PTRACE_GET_RSEQ_CONFIGURATION")
        }
        return RseqConfiguration(configuration)
    }

    /// The classic BPF program of the task's `index`-th seccomp filter, counting from the oldest
    /// (0, the first installed), as struct sock_filter bytes; nil past the newest (ENOENT).
    /// Needs CAP_SYS_ADMIN and a tracer not under seccomp itself.
    public func seccompFilter(index: UInt64) throws(LinuxError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: Self.maximumSeccompInstructions * 8)
        let raw = buffer.withUnsafeMutableBytes {
            amber_ptrace(PtraceRequest.seccompGetFilter, pid, index, UInt64(UInt(bitPattern: $0.baseAddress!)))
        }
        if raw == -Int(ENOENT) { return nil }
        let count = try kernelResult(raw, "PTRACE_SECCOMP_GET_FILTER \(index) of task \(pid)").get()
        return Array(buffer.prefix(count * 8))
    }

    /// BPF_MAXINSNS: no seccomp program is longer.
    public static let maximumSeccompInstructions = 4096

    /// The SECCOMP_FILTER_FLAG_* of the task's `index`-th filter (as in `seccompFilter`) that
    /// the kernel reports: SECCOMP_FILTER_FLAG_LOG only.
    public func seccompFilterFlags(index: UInt64) throws(LinuxError) -> UInt64 {
        // struct seccomp_metadata: filter_off in, flags out.
        var metadata: (filterOffset: UInt64, flags: UInt64) = (index, 0)
        _ = try withUnsafeMutablePointer(to: &metadata) { pointer throws(LinuxError) in
            try request(
                PtraceRequest.seccompGetMetadata, 16, UInt64(UInt(bitPattern: pointer)),
                "PTRACE_SECCOMP_GET_METADATA \(index)")
        }
        return metadata.flags
    }
}
