import AmberImage
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
        for signal in 1...64 where signal != SIGKILL && signal != SIGSTOP && nonDefault & (1 << UInt64(signal - 1)) != 0
        {
            var arguments = session.arguments()
            let old = try arguments.reserve(KernelSignalAction.byteCount)
            try session.injector.call(
                "rt_sigaction(\(signal))", SyscallNumber.rtSigaction, UInt64(signal), 0, old, Signals.setSize)
            let action = KernelSignalAction(bytes: try arguments.read(old, count: KernelSignalAction.byteCount))
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
    static func alternateStack(_ injector: any SyscallInjecting, _ session: DumpSession) throws -> Amber_SignalStack {
        var arguments = session.arguments()
        let old = try arguments.reserve(SignalStack.byteCount)
        try injector.call("sigaltstack", SyscallNumber.sigaltstack, 0, old)
        let stack = SignalStack(bytes: try arguments.read(old, count: SignalStack.byteCount))
        var record = Amber_SignalStack()
        record.base = stack.base
        record.size = stack.size
        record.flags = UInt32(bitPattern: stack.flags)
        return record
    }

    /// Handlers; the helper starts with every disposition at default.
    static func restoreHandlers(_ record: Amber_Signals, _ session: RestoreSession) throws {
        // A single step's forced SIGTRAP would reset a SIGTRAP handler (or SIG_IGN) and take a
        // SIGTRAP queued for the task for its own: calls stop twice from here if the image has
        // either. Otherwise the task's calls go on being stepped to the end of its restore.
        let trap = UInt32(SIGTRAP)
        if record.actions.contains(where: { $0.signal == trap })
            || record.pending.contains(where: { $0.signal == trap })
            || session.task.threads.contains(where: { $0.pending.contains { $0.signal == trap } })
        {
            try session.injector.stopSteppingOverCalls()
        }
        for entry in record.actions {
            let action = KernelSignalAction(
                handler: entry.handler, flags: entry.flags, restorer: entry.restorer, mask: entry.mask)
            var arguments = session.arguments()
            let address = try arguments.place(action.bytes)
            try session.injector.call(
                "rt_sigaction(\(entry.signal))", SyscallNumber.rtSigaction, UInt64(entry.signal), address, 0,
                Signals.setSize)
        }
    }

    /// One thread's alternate stack, set by `injector` running in that thread, unless it has
    /// it already: the leader inherited the restorer's own, another thread starts with none.
    static func restoreAlternateStack(
        _ stack: Amber_SignalStack, _ injector: any SyscallInjecting, _ session: RestoreSession
    ) throws {
        var none = Amber_SignalStack()
        none.flags = UInt32(SS_DISABLE)
        let current = injector.tracee.pid == session.pid ? session.baseline.alternateStack : none
        if stack.base == current.base, stack.size == current.size,
            stack.flags & ~UInt32(SS_ONSTACK) == current.flags & ~UInt32(SS_ONSTACK)
        {
            return
        }
        let wanted = SignalStack(
            base: stack.base, flags: Int32(bitPattern: stack.flags) & ~SignalStack.onStack, size: stack.size)
        var arguments = session.arguments()
        let address = try arguments.place(wanted.bytes)
        try injector.call("sigaltstack", SyscallNumber.sigaltstack, address, 0)
    }

    /// Pending signals go back into the queues while every thread blocks everything: to the
    /// thread `injector` runs in when `tid` (its ID in its own PID namespace) is given, which must
    /// send them itself (the kernel lets only a thread queue a kill-like siginfo to itself), else
    /// to the process. Masks are set with the registers, last.
    static func restorePending(
        _ pending: [Amber_PendingSignal], toThread tid: Int32?, _ injector: any SyscallInjecting,
        _ session: RestoreSession
    ) throws {
        let tgid = session.task.namespacePids.last ?? session.task.pid
        for signal in pending {
            var arguments = session.arguments()
            let address = try arguments.place([UInt8](signal.siginfo))
            if let tid {
                try injector.call(
                    "rt_tgsigqueueinfo(\(signal.signal))", SyscallNumber.rtTgsigqueueinfo, UInt64(tgid), UInt64(tid),
                    UInt64(signal.signal), address)
            } else {
                try injector.call(
                    "rt_sigqueueinfo(\(signal.signal))", SyscallNumber.rtSigqueueinfo, UInt64(tgid),
                    UInt64(signal.signal), address)
            }
        }
    }
}

extension SignalState: StateKind {
    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("signals", .traced) { process, _ in process.task.signals = try dump(process.session) }
        ]
    }

    static var restoreSteps: [RestoreStep] {
        [
            // Before the threads: each new thread starts with the handlers it shares.
            RestoreStep("handlers", order: 400) { try restoreHandlers($0.task.signals, $0) },
            // Once every thread exists, whose own pending signals came with it.
            RestoreStep("pending", order: 700) {
                try restorePending($0.task.signals.pending, toThread: nil, $0.injector, $0)
            },
        ]
    }
}
