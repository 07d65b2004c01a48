internal import CLinux
import Glibc

/// A thread's rseq registration (the kernel's struct ptrace_rseq_configuration).
public struct RseqConfiguration: Sendable, Equatable {
    /// Where the thread's struct rseq is; 0 with `size` 0 when it has none.
    public var address: UInt64
    public var size: UInt32
    public var signature: UInt32
    public var flags: UInt32

    init(_ raw: amber_rseq_configuration) {
        address = raw.rseq_abi_pointer
        size = raw.rseq_abi_size
        signature = raw.signature
        flags = raw.flags
    }

    /// RSEQ_FLAG_UNREGISTER: rseq(2) drops the registration.
    public static let flagUnregister: UInt64 = 1
}

/// A thread's robust futex list, as get_robust_list(2) reports it.
public struct RobustList: Sendable, Equatable {
    public var head: UInt64
    public var length: UInt64

    /// The list of the task `tid`.
    public static func of(_ tid: Int32) throws(LinuxError) -> RobustList {
        var head: UInt64 = 0
        var length: UInt64 = 0
        _ = try kernelResult(amber_get_robust_list(tid, &head, &length), "get_robust_list(\(tid))").get()
        return RobustList(head: head, length: length)
    }
}

extension Tracee {
    /// Does for the stopped thread what the kernel does when it returns to user space after a
    /// preemption inside an rseq critical section: moves it to the section's abort handler and
    /// clears the struct rseq's rseq_cs. A call injected into the thread returns to user space
    /// elsewhere, where the kernel only clears rseq_cs, and once its registers were put back the
    /// section would go on, no longer protected. Returns whether the thread was in a section.
    public func abortRseqCriticalSection() throws(LinuxError) -> Bool {
        let registration = try rseqConfiguration()
        // struct rseq: cpu_id_start, cpu_id, then the u64 rseq_cs pointer at offset 8.
        guard registration.address != 0, registration.size >= 16,
            let pointer = try word(at: registration.address + 8), pointer != 0,
            // struct rseq_cs: version, flags (u32 each), start_ip, post_commit_offset, abort_ip.
            let start = try word(at: pointer + 8), let length = try word(at: pointer + 16),
            let abort = try word(at: pointer + 24)
        else { return false }
        var registers = try registers()
        guard registers.rip >= start, registers.rip - start < length else { return false }
        registers.rip = abort
        try setRegisters(registers)
        let zero = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { zero.deallocate() }
        zero.storeBytes(of: UInt64(0), as: UInt64.self)
        // A short write leaves rseq_cs set, which the kernel clears itself once the thread
        // returns to user space at the abort handler, outside the section.
        _ = try ProcessMemory(pid: pid).write(UnsafeRawBufferPointer(zero), to: [(registration.address + 8, 8)])
        return true
    }

    /// The u64 at `address` of the thread's memory, or nil where none can be read.
    private func word(at address: UInt64) throws(LinuxError) -> UInt64? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { buffer.deallocate() }
        guard try ProcessMemory(pid: pid).read(into: buffer, from: [(address, 8)]) == 8 else { return nil }
        return buffer.loadUnaligned(as: UInt64.self)
    }
}

extension Tracee {
    /// Points the stopped thread back at a wait the stop ended with EINTR, as if it had not
    /// left it; returns whether it did. The kernel never restarts these calls after a stop
    /// (ptrace's or SIGSTOP's: signal(7)): epoll_wait and epoll_pwait without a time limit
    /// (-1), epoll_pwait2, rt_sigtimedwait (sigwaitinfo) and semtimedop without one (NULL),
    /// and semop; and poll without one, which the kernel would resume as restart_syscall. Only when `mayRestart` (asked only of such a call) says so: a thread with a
    /// signal of its own to take would have ended the call all the same.
    public func restartWaitEndedByStop(if mayRestart: () -> Bool) throws(LinuxError) -> Bool {
        var registers = try registers()
        let interrupted = Int64(bitPattern: registers.rax) == -Int64(EINTR)
        let waitsForever =
            switch Int(truncatingIfNeeded: registers.origRax) {
            case SyscallNumber.epollWait, SyscallNumber.epollPwait:
                interrupted && Int32(truncatingIfNeeded: registers.r10) == -1
            case SyscallNumber.epollPwait2, SyscallNumber.semtimedop: interrupted && registers.r10 == 0
            case SyscallNumber.rtSigtimedwait: interrupted && registers.rdx == 0
            case SyscallNumber.semop: interrupted
            // poll ends in a restart block, which the kernel resumes as restart_syscall: that
            // is not poll to a later dump, which then ends it with EINTR. Without a time limit
            // (a negative one) the same call again is all its restart block would do.
            case SyscallNumber.poll:
                Int64(bitPattern: registers.rax) == UserRegisters.restartRestartBlock
                    && Int32(truncatingIfNeeded: registers.rdx) < 0
            default: false
            }
        guard waitsForever, registers.rip >= 2, mayRestart() else { return false }
        // The call was made by the two-byte syscall instruction just before the thread's IP.
        let instruction = UnsafeMutableRawBufferPointer.allocate(byteCount: 2, alignment: 1)
        defer { instruction.deallocate() }
        guard try ProcessMemory(pid: pid).read(into: instruction, from: [(registers.rip - 2, 2)]) == 2,
            instruction[0] == 0x0f, instruction[1] == 0x05
        else { return false }
        registers.rip -= 2
        registers.rax = registers.origRax
        try setRegisters(registers)
        return true
    }
}

/// futex(2)'s priority-inheritance operations, by the number in its op argument (FUTEX_CMD_MASK
/// applied): the kernel takes their futex words with page faults disabled and faults them in
/// without waiting for a userfaultfd (EFAULT), unlike FUTEX_WAIT's.
public enum FutexOperation {
    public static let commandMask: UInt64 = 0x7f
    /// FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI,
    /// FUTEX_LOCK_PI2.
    public static let priorityInheritance: Set<UInt64> = [6, 7, 8, 11, 12, 13]
    /// Those of them with a second futex word (uaddr2, the fifth argument).
    public static let requeue: Set<UInt64> = [11, 12]
}
