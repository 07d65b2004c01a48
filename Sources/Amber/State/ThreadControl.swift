import AmberImage
import Glibc
import LinuxKit

/// Per-thread links between the kernel and user memory: clear_child_tid, the robust futex list, rseq.
enum ThreadControlState {
    /// One thread's links, read by `injector` running in that thread.
    static func dump(_ injector: any SyscallInjecting, _ session: DumpSession) throws -> Amber_ThreadControl {
        var record = Amber_ThreadControl()
        let tid = injector.tracee.pid
        var arguments = session.arguments()
        let address = try arguments.reserve(8)
        try injector.call("prctl(PR_GET_TID_ADDRESS)", SyscallNumber.prctl, TaskControl.getTIDAddress, address)
        record.childTidAddress = try arguments.read(address, as: UInt64.self)
        let robustList = try RobustList.of(tid)
        record.robustListHead = robustList.head
        record.robustListLength = robustList.length
        let rseq = try injector.tracee.rseqConfiguration()
        record.rseqAddress = rseq.address
        record.rseqSize = rseq.size
        record.rseqSignature = rseq.signature
        return record
    }

    /// The helper inherited our rseq registration, pointing into memory about to be unmapped:
    /// the kernel would kill the task at its next return to user space unless it is dropped first.
    static func unregisterHelperRseq(_ injector: any SyscallInjecting) throws {
        let rseq = try injector.tracee.rseqConfiguration()
        guard rseq.size != 0 else { return }
        try injector.call(
            "rseq unregister", SyscallNumber.rseq, rseq.address, UInt64(rseq.size), RseqConfiguration.flagUnregister,
            UInt64(rseq.signature))
    }

    /// Sets one thread's links, by `injector` running in that thread; its clear_child_tid
    /// already when the clone3 that made it set it (`childTIDSet`).
    static func restore(_ record: Amber_ThreadControl, _ injector: any SyscallInjecting, childTIDSet: Bool) throws {
        if !childTIDSet {
            try injector.call("set_tid_address", SyscallNumber.setTidAddress, record.childTidAddress)
        }
        if record.robustListHead != 0 {
            try injector.call(
                "set_robust_list", SyscallNumber.setRobustList, record.robustListHead, record.robustListLength)
        }
        if record.rseqSize != 0 {
            try injector.call(
                "rseq register", SyscallNumber.rseq, record.rseqAddress, UInt64(record.rseqSize), 0,
                UInt64(record.rseqSignature))
        }
    }
}
