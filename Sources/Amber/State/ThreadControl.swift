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
        if robustList.head != 0 { record.exitAddresses = walk(robustList, ProcessMemory(pid: tid)).touched }
        let rseq = try injector.tracee.rseqConfiguration()
        record.rseqAddress = rseq.address
        record.rseqSize = rseq.size
        record.rseqSignature = rseq.signature
        return record
    }

    /// Robust mutexes held in a file mapped shared, refused: at the dump's kill the kernel walks
    /// each dying thread's robust list and marks every mutex it holds owner-died in that file
    /// (FUTEX_OWNER_DIED), waking a waiter, which then takes it (EOWNERDEAD) while the restored
    /// thread still holds it. A mutex in memory the image holds (private, shared anonymous, a
    /// memfd or deleted file) is written back as it was dumped. The lists are read from the
    /// process's memory, as the kernel reads them: a word whose TID bits are set is held.
    static func checkHeldRobustMutexes(_ process: CheckedProcess) throws {
        let files = process.maps.filter { $0.shared && !$0.deleted && $0.path.hasPrefix("/") }
        guard !files.isEmpty else { return }
        let memory = ProcessMemory(pid: process.pid)
        for tid in try ProcFS.threads(pid: process.pid) {
            guard let list = try? RobustList.of(tid), list.head != 0 else { continue }
            for futex in walk(list, memory).held {
                guard let file = files.first(where: { $0.start <= futex && futex < $0.end }) else { continue }
                throw AmberError.unsupported(
                    process.name,
                    "has thread \(tid) holding a robust mutex (futex at 0x\(String(futex, radix: 16))) in \(file.path), mapped shared: the dump's kill would mark it owner-died there, and another process could take it while the restored thread still held it",
                    tree: process.tree)
            }
        }
    }

    /// Where the kernel reaches the task's memory in ways a userfaultfd does not serve (the fault
    /// is not handed to it: the call fails, or the write is lost), which a lazy restore writes
    /// and a copy-on-write dump leaves writable before the tree runs: what it walks and writes
    /// for a thread as it exits (its cleared TID, its robust list); the futex words of a
    /// priority-inheritance futex call a thread was in, taken again once it runs (with page
    /// faults disabled, then faulted in without waiting: EFAULT, on which glibc aborts); the
    /// arguments and environment, which /proc/PID/cmdline and environ read (empty, where a page
    /// is missing).
    static func unservedAddresses(of task: Amber_Task) -> [UInt64] {
        let mm = task.memory.mm
        // At most what execve takes (an image is untrusted: a range of terabytes would be billions of pages).
        let limit: UInt64 = 32 << 20
        let arguments = stride(from: mm.argStart, to: min(mm.argEnd, mm.argStart &+ limit), by: 4096)
        let environment = stride(from: mm.envStart, to: min(mm.envEnd, mm.envStart &+ limit), by: 4096)
        let futexes = task.threads.flatMap { thread -> [UInt64] in
            let registers = thread.registers
            let operation = registers.rsi & FutexOperation.commandMask
            guard registers.origRax == UInt64(SyscallNumber.futex),
                FutexOperation.priorityInheritance.contains(operation)
            else { return [] }
            return [registers.rdi] + (FutexOperation.requeue.contains(operation) ? [registers.r8] : [])
        }
        return exitAddresses(of: task.threads) + Array(arguments) + [mm.argEnd &- 1] + Array(environment)
            + [mm.envEnd &- 1] + futexes
    }

    /// The words the kernel reads and writes for each of `threads` when it exits: its
    /// clear_child_tid word, and its robust list's (`exit_addresses`).
    static func exitAddresses(of threads: [Amber_Thread]) -> [UInt64] {
        threads.flatMap { thread in
            let control = thread.threadControl
            return (control.childTidAddress == 0 ? [] : [control.childTidAddress]) + control.exitAddresses
        }
    }

    /// Walks `list` as the kernel does at the thread's exit, at most as many entries: what it
    /// reads or writes on the way (the head, each entry and its futex word, the pending one's),
    /// and the futex words whose TID bits are set. A word that cannot be read ends the walk, as
    /// it does the kernel's.
    private static func walk(_ list: RobustList, _ memory: ProcessMemory) -> (touched: [UInt64], held: [UInt64]) {
        func word(_ address: UInt64, _ length: Int) -> UInt64? {
            var value: UInt64 = 0
            let read = withUnsafeMutableBytes(of: &value) { buffer in
                try? memory.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<length]), from: [(address, length)])
            }
            return read == length ? value : nil
        }
        // struct robust_list_head: next, futex_offset, list_op_pending; bit 0 of a pointer marks a PI futex.
        var touched = [list.head]
        guard let first = word(list.head, 8), let offset = word(list.head + 8, 8), let pending = word(list.head + 16, 8)
        else { return (touched, []) }
        var held: [UInt64] = []
        func check(_ entry: UInt64) {
            let futex = (entry & ~1) &+ offset
            touched += [entry & ~1, futex]
            if let value = word(futex, 4), value & futexOwnerMask != 0 { held.append(futex) }
        }
        var entry = first & ~1
        var walked = 0
        while entry != list.head && entry != 0 && walked < robustListLimit {
            check(entry)
            guard let next = word(entry, 8) else { break }
            entry = next & ~1
            walked += 1
        }
        if pending & ~1 != 0 { check(pending) }
        return (touched, held)
    }

    /// FUTEX_TID_MASK, and the kernel's ROBUST_LIST_LIMIT.
    private static let futexOwnerMask: UInt64 = 0x3fff_ffff
    private static let robustListLimit = 2048

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
