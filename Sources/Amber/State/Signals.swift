import AmberImage
import CLinux
import FoundationEssentials
import Glibc
import LinuxKit

/// Signal state: dispositions, the blocked mask, pending signals with their siginfo, sigaltstack.
enum SignalState {
    /// What the process shares: dispositions and the process-directed queue. Each thread's own
    /// mask, queue and alternate stack are read by `ThreadState`.
    static func dump(_ session: DumpSession) throws -> Amber_Signals {
        var record = Amber_Signals()
        // Only the task itself can report handlers: one injected rt_sigaction per signal that
        // /proc shows caught or ignored, and SIGCHLD, whose SA_NOCLDWAIT acts with SIG_DFL too.
        // Flags and masks of other default dispositions change no behaviour and are not kept.
        let nonDefault = session.status.caughtSignals | session.status.ignoredSignals | 1 << UInt64(SIGCHLD - 1)
        for signal in 1...64 where signal != SIGKILL && signal != SIGSTOP && nonDefault & (1 << UInt64(signal - 1)) != 0 {
            try session.injector.call("rt_sigaction(\(signal))", SyscallNumber.rtSigaction, UInt64(signal), 0, session.scratch, 8)
            let action = try session.readScratch(MemoryLayout<amber_kernel_sigaction>.size).withUnsafeBytes { $0.loadUnaligned(as: amber_kernel_sigaction.self) }
            guard action.handler != 0 || action.flags != 0 || action.mask != 0 else { continue }
            var entry = Amber_SignalAction()
            entry.signal = UInt32(signal)
            entry.handler = action.handler
            entry.flags = action.flags
            entry.restorer = action.restorer
            entry.mask = action.mask
            record.actions.append(entry)
        }
        record.pending = try pending(of: session.tracee, shared: true)
        return record
    }

    /// The signals queued to the process (`shared`) or to one thread, with their siginfo.
    static func pending(of tracee: Tracee, shared: Bool) throws -> [Amber_PendingSignal] {
        try tracee.pendingSignals(shared: shared).map { info in
            var pending = Amber_PendingSignal()
            pending.signal = UInt32(info.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
            pending.siginfo = Data(info)
            return pending
        }
    }

    /// One thread's alternate signal stack, read by `injector` running in that thread.
    static func alternateStack(_ injector: SyscallInjector, _ session: DumpSession) throws -> Amber_SignalStack {
        try injector.call("sigaltstack", SyscallNumber.sigaltstack, 0, session.scratch)
        let stack = try session.readScratch(24).withUnsafeBytes { (base: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), flags: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self), size: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        var record = Amber_SignalStack()
        record.base = stack.base
        record.size = stack.size
        record.flags = stack.flags
        return record
    }

    /// Handlers; the helper starts with every disposition at default.
    static func restoreHandlers(_ record: Amber_Signals, _ session: RestoreSession) throws {
        for entry in record.actions {
            let action = amber_kernel_sigaction(handler: entry.handler, flags: entry.flags, restorer: entry.restorer, mask: entry.mask)
            let address = try session.writeScratch(value: action)
            try session.injector.call("rt_sigaction(\(entry.signal))", SyscallNumber.rtSigaction, UInt64(entry.signal), address, 0, 8)
        }
    }

    /// One thread's alternate stack, set by `injector` running in that thread, unless it has
    /// it already: the leader inherited the restorer's own, another thread starts with none.
    static func restoreAlternateStack(_ stack: Amber_SignalStack, _ injector: SyscallInjector, _ session: RestoreSession) throws {
        var none = Amber_SignalStack()
        none.flags = UInt32(SS_DISABLE)
        let current = injector.tracee.pid == session.pid ? session.baseline.alternateStack : none
        if stack.base == current.base, stack.size == current.size, stack.flags & ~UInt32(SS_ONSTACK) == current.flags & ~UInt32(SS_ONSTACK) { return }
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: stack.base, toByteOffset: 0, as: UInt64.self)
            // SS_ONSTACK is a state, not a flag one can set.
            $0.storeBytes(of: stack.flags & ~UInt32(SS_ONSTACK), toByteOffset: 8, as: UInt32.self)
            $0.storeBytes(of: stack.size, toByteOffset: 16, as: UInt64.self)
        }
        let address = try bytes.withUnsafeBytes { try session.writeScratch($0) }
        try injector.call("sigaltstack", SyscallNumber.sigaltstack, address, 0)
    }

    /// Pending signals go back into the queues while every thread blocks everything: to the
    /// thread `injector` runs in when `tid` (its ID in its own PID namespace) is given, which must
    /// send them itself (the kernel lets only a thread queue a kill-like siginfo to itself), else
    /// to the process. Masks are set with the registers, last.
    static func restorePending(_ pending: [Amber_PendingSignal], toThread tid: Int32?, _ injector: SyscallInjector, _ session: RestoreSession) throws {
        let tgid = session.task.namespacePids.last ?? session.task.pid
        for signal in pending {
            let address = try signal.siginfo.withUnsafeBytes { try session.writeScratch($0) }
            if let tid {
                try injector.call("rt_tgsigqueueinfo(\(signal.signal))", SyscallNumber.rtTgsigqueueinfo, UInt64(tgid), UInt64(tid), UInt64(signal.signal), address)
            } else {
                try injector.call("rt_sigqueueinfo(\(signal.signal))", SyscallNumber.rtSigqueueinfo, UInt64(tgid), UInt64(signal.signal), address)
            }
        }
    }
}
