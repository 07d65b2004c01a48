import AmberImage
import CLinux
import FoundationEssentials
import Glibc
import LinuxKit

/// Signal state: dispositions, the blocked mask, pending signals with their siginfo, sigaltstack.
enum SignalState {
    static func dump(_ session: DumpSession) throws -> Amber_Signals {
        var record = Amber_Signals()
        // Only the task itself can report handlers (and flags, which a default disposition may carry too):
        // one injected rt_sigaction per signal.
        for signal in 1...64 where signal != SIGKILL && signal != SIGSTOP {
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
        record.blocked = session.injector.savedSignalMask
        for shared in [false, true] {
            for info in try session.tracee.pendingSignals(shared: shared) {
                var pending = Amber_PendingSignal()
                pending.signal = UInt32(info.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
                pending.shared = shared
                pending.siginfo = Data(info)
                record.pending.append(pending)
            }
        }
        try session.injector.call("sigaltstack", SyscallNumber.sigaltstack, 0, session.scratch)
        let stack = try session.readScratch(24).withUnsafeBytes { (base: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), flags: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self), size: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        record.alternateStack.base = stack.base
        record.alternateStack.size = stack.size
        record.alternateStack.flags = stack.flags
        return record
    }

    /// Handlers and the alternate stack; the helper starts with every disposition at default.
    static func restoreHandlers(_ record: Amber_Signals, _ session: RestoreSession) throws {
        for entry in record.actions {
            let action = amber_kernel_sigaction(handler: entry.handler, flags: entry.flags, restorer: entry.restorer, mask: entry.mask)
            let address = try session.writeScratch(value: action)
            try session.injector.call("rt_sigaction(\(entry.signal))", SyscallNumber.rtSigaction, UInt64(entry.signal), address, 0, 8)
        }
        let stack = record.alternateStack
        if stack.flags & UInt32(SS_DISABLE) == 0 {
            var bytes = [UInt8](repeating: 0, count: 24)
            bytes.withUnsafeMutableBytes {
                $0.storeBytes(of: stack.base, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: stack.flags & ~UInt32(1), toByteOffset: 8, as: UInt32.self)
                $0.storeBytes(of: stack.size, toByteOffset: 16, as: UInt64.self)
            }
            let address = try bytes.withUnsafeBytes { try session.writeScratch($0) }
            try session.injector.call("sigaltstack", SyscallNumber.sigaltstack, address, 0)
        }
    }

    /// Pending signals go back into the queues while everything is blocked; the mask is set by `restoreMask`.
    static func restorePending(_ record: Amber_Signals, _ session: RestoreSession) throws {
        for pending in record.pending {
            let address = try pending.siginfo.withUnsafeBytes { try session.writeScratch($0) }
            if pending.shared {
                try session.injector.call("rt_sigqueueinfo(\(pending.signal))", SyscallNumber.rtSigqueueinfo, UInt64(session.pid), UInt64(pending.signal), address)
            } else {
                try session.injector.call("rt_tgsigqueueinfo(\(pending.signal))", SyscallNumber.rtTgsigqueueinfo, UInt64(session.pid), UInt64(session.pid), UInt64(pending.signal), address)
            }
        }
    }

    static func restoreMask(_ record: Amber_Signals, _ session: RestoreSession) throws {
        try session.tracee.setSignalMask(record.blocked)
    }
}
