import AmberImage
import Glibc
import LinuxKit

/// Threads: what each thread has of its own — TID, name, registers, signal mask, thread-directed
/// signals, alternate stack, clear_child_tid, robust list, rseq, credentials. Every thread, the
/// leader first, has its record in `task.threads`; every other thread is recreated by a clone3
/// injected into the leader.
enum ThreadState {
    // MARK: Dump

    /// Every thread of the process into `task.threads`, the leader first.
    static func dump(_ session: DumpSession, checks: [PreparedThreadCheck], into task: inout Amber_Task) throws {
        let others = session.threads.filter { $0.pid != session.pid }
        // Injected calls cost several times more across CPUs: the tracer follows each thread to
        // its CPU, as it followed the leader (`DumpSession.followsTarget`), taking the threads of
        // one CPU together (the leader's first) so that it moves once a CPU, not once a thread.
        let cpus = others.map { tracee in
            session.followsTarget ? try? ProcFS.threadStat(pid: session.pid, tid: tracee.pid).processor : nil
        }
        let leaderCPU = session.followsTarget ? session.stat.processor : nil
        let order = others.indices.sorted { first, second in
            func key(_ index: Int) -> (Int32, Int) { (cpus[index] == leaderCPU ? -1 : cpus[index] ?? -1, index) }
            return key(first) < key(second)
        }
        var current = leaderCPU
        // Set once, in the threads' order: appending to `task.threads` one by one copies the whole array each time.
        var records = [Amber_Thread](repeating: Amber_Thread(), count: others.count)
        let leader = try dump(session.injector, session, checks: checks)
        for index in order {
            if let cpu = cpus[index], cpu != current {
                try? CPUAffinity(cpu: cpu).apply(to: 0)
                current = cpu
            }
            let injector = try session.injector(for: others[index])
            do {
                records[index] = try dump(injector, session, checks: checks)
            } catch {
                try? injector.finish()
                throw error
            }
            try injector.finish()
        }
        task.threads = [leader] + records
    }

    /// Checks and reads the thread `injector` has taken over; the caller finishes the injector.
    private static func dump(_ injector: any SyscallInjecting, _ session: DumpSession, checks: [PreparedThreadCheck])
        throws -> Amber_Thread
    {
        let tid = injector.tracee.pid
        for check in checks {
            try check(injector, session)
        }
        var record = Amber_Thread()
        record.tid = tid
        record.comm = try ProcFS.comm(pid: session.pid, tid: tid)
        record.registers = try RegisterState.dump(injector)
        record.blocked = injector.savedSignalMask
        record.pending = try SignalState.pending(of: injector.tracee, shared: false)
        record.alternateStack = try SignalState.alternateStack(injector, session)
        record.threadControl = try ThreadControlState.dump(injector, session)
        let status = try session.threadStatus(tid)
        record.namespaceTids = status.namespacePIDs.count > 1 ? status.namespacePIDs : []
        record.scheduling = try SchedulingState.dump(injector, session)
        record.threadFlags = try FlagState.dump(injector, session)
        record.credentials = try CredentialState.dump(injector, status: status, session)
        return record
    }

    // MARK: Restore

    /// clone3 flags of a thread as pthread_create makes it (TLS, TID words and stack come back with its state).
    private static let threadFlags =
        CloneFlags.vm | CloneFlags.fs | CloneFlags.files | CloneFlags.signalHandlers | CloneFlags.thread
        | CloneFlags.systemVSemaphores

    /// Recreates every thread but the leader with its TID and sets each thread's own state but
    /// for its registers and mask, which `finish` sets last. Needs the memory and the scratch area.
    static func restore(_ task: Amber_Task, _ session: RestoreSession) throws {
        // A new thread starts with its creator's name: the leader's, once that is set.
        var leaderName: [UInt8]?
        for record in task.threads {
            let name = Array(record.comm.utf8.prefix(15))
            if record.tid == task.pid {
                // The leader is the helper itself, made with the process (clone3 without CLONE_THREAD).
                try restoreOwnState(record, session.injector, session, childTIDSet: false, named: false)
                leaderName = name
            } else {
                // clone3 sets clear_child_tid as set_tid_address would: one injected call fewer.
                let childTID = record.threadControl.childTidAddress
                let tids = record.namespaceTids.isEmpty ? [record.tid] : Array(record.namespaceTids.reversed())
                let tracee = try TreeState.clone(
                    in: session.injector, session: session,
                    flags: threadFlags | (childTID != 0 ? CloneFlags.childClearTID : 0), exitSignal: 0, pids: tids,
                    childTID: childTID, what: "thread \(record.tid)")
                session.threads.append(tracee)
                try restoreOwnState(
                    record, try session.injector(for: tracee), session, childTIDSet: true, named: name == leaderName)
            }
        }
    }

    private static func restoreOwnState(
        _ record: Amber_Thread, _ injector: any SyscallInjecting, _ session: RestoreSession, childTIDSet: Bool,
        named: Bool
    ) throws {
        try ThreadControlState.restore(record.threadControl, injector, childTIDSet: childTIDSet)
        try SignalState.restoreAlternateStack(record.alternateStack, injector, session)
        if !named {
            try setName(record.comm, injector, session)
        }
        try SignalState.restorePending(
            record.pending, toThread: record.namespaceTids.last ?? record.tid, injector, session)
    }

    /// Names the thread `injector` runs in (PR_SET_NAME keeps at most 15 bytes).
    static func setName(_ name: String, _ injector: any SyscallInjecting, _ scratch: some ScratchSpace) throws {
        var arguments = scratch.arguments()
        let address = try arguments.place(Array(name.utf8.prefix(15)) + [0])
        try injector.call("prctl(PR_SET_NAME)", SyscallNumber.prctl, TaskControl.setName, address)
    }

    /// Sets every thread's registers and signal mask: the last thing before the tasks are let go.
    static func finish(_ task: Amber_Task, _ session: RestoreSession) throws {
        let shared = task.signals.pending.reduce(UInt64(0)) { $0 | 1 << UInt64($1.signal - 1) }
        // A signal queued to the process goes to the first thread that lets it through (the
        // leader's first, as the kernel picks), once.
        var sharedTaker: [Int32: Int] = [:]
        for signal in Signals.deliveryOrder(pending: shared, blocked: 0) {
            sharedTaker[signal] = task.threads.firstIndex { $0.blocked & 1 << UInt64(signal - 1) == 0 }
        }
        for (index, (record, tracee)) in zip(task.threads, session.threads).enumerated() {
            let own = record.pending.reduce(UInt64(0)) { $0 | 1 << UInt64($1.signal - 1) }
            let taken =
                Signals.deliveryOrder(pending: own, blocked: record.blocked)
                + Signals.deliveryOrder(pending: shared, blocked: record.blocked).filter { sharedTaker[$0] == index }
            // The first it takes that runs a handler decides: ignored ones are passed over.
            let handler = taken.lazy.compactMap { signal in
                task.signals.actions.first { $0.signal == UInt32(signal) && $0.handler > 1 }
            }.first
            try RegisterState.restore(record.registers, tracee, handlerFlags: handler?.flags)
            try tracee.setSignalMask(record.blocked)
        }
    }
}

extension ThreadState {
    /// The signals ignored when at their default action.
    private static let ignoredByDefault = Signals.set([SIGCHLD, SIGURG, SIGWINCH])

    /// Refuses a parent death signal (PR_SET_PDEATHSIG) on a thread of the tree's root that
    /// would do anything: it is tied to the root's parent outside the tree, which a restore does
    /// not give back (amber is the root's parent, and with --detach it exits at once, sending
    /// the signal). One the process ignores, or leaves at a default that ignores it, is restored.
    static func refuseParentDeathSignal(of process: ProcessDump) throws {
        let status = process.process.snapshot.status
        let ignored = status.ignoredSignals | (ignoredByDefault & ~status.caughtSignals)
        for thread in process.task.threads {
            let signal = thread.threadFlags.parentDeathSignal
            guard signal != 0, !Signals.contains(ignored, signal) else { continue }
            throw AmberError.unsupported(
                process.name,
                "has thread \(thread.tid) with the parent death signal \(thread.threadFlags.parentDeathSignal) (PR_SET_PDEATHSIG), tied to the tree's parent outside it, which a restore does not give back",
                tree: process.tree)
        }
    }
}

extension ThreadState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try ThreadControlState.checkHeldRobustMutexes(process)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("threads", .traced) { process, _ in
                try dump(process.session, checks: process.threadChecks, into: &process.task)
                if process.pid == process.tree.pid { try refuseParentDeathSignal(of: process) }
            }
        ]
    }

    static var restoreSteps: [RestoreStep] {
        [
            // Once memory, files and handlers are there: a thread starts with what its process has.
            RestoreStep("threads", order: 600) { try restore($0.task, $0) },
            // Once the restorer has taken back what it put in the process; only the file locks follow.
            RestoreStep("registers", order: 100, phase: .afterCleanUp) { try finish($0.task, $0) },
        ]
    }
}
