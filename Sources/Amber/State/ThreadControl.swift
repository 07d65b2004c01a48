import AmberImage
import CLinux
import Glibc
import LinuxKit

/// Per-thread links between the kernel and user memory: clear_child_tid, the robust futex list, rseq.
enum ThreadControlState {
    /// One thread's links, read by `injector` running in that thread.
    static func dump(_ injector: SyscallInjector, _ session: DumpSession) throws -> Amber_ThreadControl {
        var record = Amber_ThreadControl()
        let tid = injector.tracee.pid
        try injector.call("prctl(PR_GET_TID_ADDRESS)", SyscallNumber.prctl, 40 /* PR_GET_TID_ADDRESS */, session.scratch)
        record.childTidAddress = try session.readScratch(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        var head: UInt64 = 0, length: UInt64 = 0
        _ = try kernelCall(amber_get_robust_list(tid, &head, &length), "get_robust_list(\(tid))")
        record.robustListHead = head
        record.robustListLength = length
        let rseq = try injector.tracee.rseqConfiguration()
        record.rseqAddress = rseq.rseq_abi_pointer
        record.rseqSize = rseq.rseq_abi_size
        record.rseqSignature = rseq.signature
        return record
    }

    /// The helper inherited our rseq registration, pointing into memory about to be unmapped:
    /// the kernel would kill the task at its next return to user space unless it is dropped first.
    static func unregisterHelperRseq(_ injector: SyscallInjector) throws {
        let rseq = try injector.tracee.rseqConfiguration()
        guard rseq.rseq_abi_size != 0 else { return }
        try injector.call("rseq unregister", SyscallNumber.rseq, rseq.rseq_abi_pointer, UInt64(rseq.rseq_abi_size), 1 /* RSEQ_FLAG_UNREGISTER */, UInt64(rseq.signature))
    }

    /// Sets one thread's links, by `injector` running in that thread.
    static func restore(_ record: Amber_ThreadControl, _ injector: SyscallInjector) throws {
        try injector.call("set_tid_address", SyscallNumber.setTidAddress, record.childTidAddress)
        if record.robustListHead != 0 {
            try injector.call("set_robust_list", SyscallNumber.setRobustList, record.robustListHead, record.robustListLength)
        }
        if record.rseqSize != 0 {
            try injector.call("rseq register", SyscallNumber.rseq, record.rseqAddress, UInt64(record.rseqSize), 0, UInt64(record.rseqSignature))
        }
    }

    private static func kernelCall(_ value: Int, _ what: String) throws -> Int {
        if value < 0 { throw LinuxError(negated: value, what) }
        return value
    }
}
