import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Logging

/// A process of the dumped tree, frozen: every thread seized and stopped, leader first.
/// A zombie has no threads left to seize.
struct FrozenProcess {
    let pid: Int32
    let name: ProcessName
    let threads: [Tracee]
    /// What /proc says of it, read once it was frozen: the checks and the dump all use this.
    let snapshot: ProcessSnapshot
    var zombie: Bool { threads.isEmpty }
    /// The signal of the group stop it was in when frozen, 0 if it was running.
    let stopSignal: Int32
    /// A `syscall` instruction in its vDSO, once the dump found one: killing the tree injects with it.
    var syscallInstruction: UInt64?
}

/// A frozen process's /proc stat, status (and each thread's), areas and PID namespace. Frozen,
/// it can change none of these, so each is read once rather than by every check and kind of state.
struct ProcessSnapshot: Sendable {
    let stat: ProcessStat
    let status: ProcessStatus
    /// Each thread's status by TID, the leader's too (the same as `status`).
    let threadStatuses: [Int32: ProcessStatus]
    /// Empty for a zombie.
    let maps: [MemoryMapping]
    /// The /proc/PID/ns/pid link, "?" when it cannot be read.
    let pidNamespace: String
    /// Its descriptors, probed once for the frozen checks and the dump.
    let descriptors: ProcessDescriptors

    init(pid: Int32, threads: [Tracee]) throws(LinuxError) {
        stat = try ProcFS.stat(pid: pid)
        status = try ProcFS.status(pid: pid)
        var threadStatuses = [pid: status]
        // On every CPU: a process of a thousand threads has a thousand files to read.
        let others = threads.filter { $0.pid != pid }
        let statuses = others.concurrentMap { tracee in
            Result { () throws(LinuxError) in try ProcFS.threadStatus(pid: pid, tid: tracee.pid) }
        }
        for (tracee, status) in zip(others, statuses) {
            threadStatuses[tracee.pid] = try status.get()
        }
        self.threadStatuses = threadStatuses
        maps = threads.isEmpty ? [] : try ProcFS.mapsWithFiles(pid: pid)
        pidNamespace = (try? ProcFS.link("/proc/\(pid)/ns/pid")) ?? "?"
        descriptors = ProcessDescriptors(pid: pid)
    }
}

/// The process tree: which processes, their parents, sessions and process groups, zombies and
/// PID namespaces. Dumped by walking /proc children while freezing; restored parents first, each
/// process made by a clone3 injected into its restored parent.
enum TreeState {
    // MARK: Dump

    /// The processes of the subtree rooted at `root`, parents before children, not stopped.
    static func walk(root: Int32) -> [Int32] {
        var order = [root]
        var index = 0
        while index < order.count {
            for child in (try? ProcFS.children(pid: order[index])) ?? [] where !order.contains(child) {
                order.append(child)
            }
            index += 1
        }
        return order
    }

    /// Seizes and stops every thread of every process under `root`, repeating until no new
    /// thread or child appears: a stopped process can neither fork nor start a thread.
    /// On failure every thread seized so far is let go.
    static func freeze(root: Int32, interruption: DumpInterruption, logger: Logger) throws -> [FrozenProcess] {
        var seized: [SeizedProcess] = []
        var queue = [root]
        var known: Set<Int32> = [root]
        let frozen: [FrozenProcess]
        do {
            while !queue.isEmpty {
                let pid = queue.removeFirst()
                try interruption.check(FaultPoints.seize)
                guard let process = try freezeProcess(pid, isRoot: pid == root, seized: &seized) else { continue }
                for child in try ProcFS.children(pid: process.pid) where known.insert(child).inserted {
                    queue.append(child)
                }
            }
            logger.trace("seized \(seized.count) processes")
            // Before any call is injected, and before the registers are read.
            for thread in seized.flatMap(\.threads) where try thread.abortRseqCriticalSection() {
                logger.debug("thread \(thread.pid) was in an rseq critical section: moved to its abort handler")
            }
            // A wait the freeze ended with EINTR goes on once the thread runs again, unless a
            // signal of its own would have ended it too; a process stopped before saw its own
            // stop end it.
            for process in seized where process.stopSignal == 0 {
                for thread in process.threads {
                    let noSignalPending = {
                        guard let status = try? ProcFS.threadStatus(pid: process.pid, tid: thread.pid) else {
                            return false
                        }
                        return (status.pendingThread | status.pendingShared) & ~status.blockedSignals == 0
                    }
                    if try thread.restartWaitEndedByStop(if: noSignalPending) {
                        logger.debug("thread \(thread.pid) was in a wait the freeze ended: pointed back at it")
                    }
                }
            }
            let snapshots = seized.concurrentMap { process in
                Result { () throws(LinuxError) in try ProcessSnapshot(pid: process.pid, threads: process.threads) }
            }
            frozen = try zip(seized, snapshots).map { process, snapshot in
                FrozenProcess(
                    pid: process.pid, name: process.name, threads: process.threads, snapshot: try snapshot.get(),
                    stopSignal: process.stopSignal)
            }
        } catch {
            release(seized.flatMap(\.threads))
            throw error
        }
        logger.debug("froze \(frozen.count) processes, \(frozen.reduce(0) { $0 + $1.threads.count }) threads")
        return frozen
    }

    /// A process being frozen: every thread seized so far, leader first once it is done.
    private struct SeizedProcess: Sendable {
        let pid: Int32
        let name: ProcessName
        var threads: [Tracee]
        /// The signal of the group stop it is in (stopped by SIGSTOP, SIGTSTP, ...), 0 if running.
        var stopSignal: Int32 = 0
    }

    /// Freezes one process and appends it to `seized` (so that a failure half-way lets its
    /// seized threads go too); nil if it vanished (reaped by an ancestor not yet stopped).
    /// One that exits while it is being frozen (a shell loop's `sleep`) is let go and frozen
    /// again as what it has become: a zombie, its parent being stopped already, or nothing.
    private static func freezeProcess(_ pid: Int32, isRoot: Bool, seized: inout [SeizedProcess]) throws
        -> SeizedProcess?
    {
        var attempts = 0
        while true {
            let count = seized.count
            do {
                return try freezeProcessOnce(pid, isRoot: isRoot, seized: &seized)
            } catch let error as LinuxError where error.errno == .noSuchProcess && !isRoot && attempts < 3 {
                attempts += 1
                release(seized[count...].flatMap(\.threads))
                seized.removeSubrange(count...)
            }
        }
    }

    private static func freezeProcessOnce(_ pid: Int32, isRoot: Bool, seized: inout [SeizedProcess]) throws
        -> SeizedProcess?
    {
        let name = ProcessName(pid: pid)
        guard let status = try? ProcFS.status(pid: pid) else {
            if isRoot { throw AmberError(.noSuchProcess, "no process with PID \(pid)") }
            return nil
        }
        if status.state == "Z" {
            if isRoot { throw AmberError.unsupported(name, "is a zombie") }
            if status.threads > 1 {
                throw AmberError.unsupported(
                    name, "has exited while \(status.threads - 1) of its threads run on: not supported yet")
            }
            seized.append(SeizedProcess(pid: pid, name: name, threads: []))
            return seized.last
        }
        seized.append(SeizedProcess(pid: pid, name: name, threads: []))
        let slot = seized.count - 1
        var seen: Set<Int32> = []
        while true {
            let fresh = try ProcFS.threads(pid: pid).filter { !seen.contains($0) }
            if fresh.isEmpty { break }
            var interrupted: [Tracee] = []
            for tid in fresh {
                seen.insert(tid)
                do {
                    let tracee = try Tracee.seize(tid, options: dumpOptions)
                    seized[slot].threads.append(tracee)
                    try tracee.interrupt()
                    interrupted.append(tracee)
                } catch  where error.errno == .noSuchProcess && tid != pid {
                    continue  // the thread exited meanwhile
                } catch
                    where tid == pid && seized[slot].threads.isEmpty && !isRoot
                    && (try? ProcFS.status(pid: pid))?.state ?? "Z" == "Z"
                {
                    // It exited between the status read and the seize (ptrace refuses a zombie
                    // with EPERM): dumped as the zombie it now is, or left out once reaped.
                    seized.removeLast()
                    return try freezeProcessOnce(pid, isRoot: isRoot, seized: &seized)
                } catch {
                    if error.errno == .noSuchProcess {
                        if !isRoot { throw error }
                        throw AmberError(.noSuchProcess, "process \(name) went away while it was being frozen")
                    }
                    throw AmberError(
                        .permissionDenied,
                        "may not ptrace process \(name)\(tid == pid ? "" : ", thread \(tid)"): \(error.errno.name) (dumping needs the rights to ptrace it)"
                    )
                }
            }
            for tracee in interrupted {
                let stopSignal = try stop(tracee)
                if tracee.pid == pid { seized[slot].stopSignal = stopSignal }
            }
        }
        // The leader first: it is the one syscalls are injected into for the whole process.
        seized[slot].threads.sort { ($0.pid == pid ? 0 : 1, $0.pid) < ($1.pid == pid ? 0 : 1, $1.pid) }
        guard seized[slot].threads.first?.pid == pid else {
            throw AmberError.unsupported(name, "has no leader thread left: not supported yet")
        }
        return seized[slot]
    }

    /// Interrupts a seized thread; a signal that arrives meanwhile is delivered, not lost.
    /// Returns the signal of the group stop (SIGSTOP, SIGTSTP, ...) the thread is in, 0 if none.
    /// A thread in a group stop reports it when seized and again for the interrupt, and until
    /// it has taken that second trap every resume (an injected call's too) ends in it; past it,
    /// injected calls run, and detaching puts the thread back into the group stop.
    private static func stop(_ tracee: Tracee) throws -> Int32 {
        while true {
            let stop = try tracee.waitForStop()
            if stop.event == WaitStatus.eventStop {
                guard stop.signal != SIGTRAP else { return 0 }
                // Interrupting again only makes sure the second trap is pending.
                try tracee.interrupt()
                try tracee.cont()
                while true {
                    let trap = try tracee.waitForStop()
                    if trap.event == WaitStatus.eventStop { return stop.signal }
                    try tracee.cont(signal: trap.signal)
                }
            }
            try tracee.cont(signal: stop.signal)
        }
    }

    /// Lets every frozen thread run on, untraced.
    static func release(_ processes: [FrozenProcess]) {
        release(processes.flatMap(\.threads))
    }

    private static func release(_ threads: [Tracee]) {
        for tracee in threads where (try? tracee.detach()) == nil {
            // Seized but not yet in a stop: PTRACE_DETACH needs one.
            if (try? tracee.interrupt()) != nil, (try? stop(tracee)) != nil { try? tracee.detach() }
        }
    }

    /// Refuses a controlling terminal for a session leader: a restored session leader gets none.
    /// Another process's, its session's outside the tree, is a shell job's (`ShellJobState`).
    static func checkTerminal(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        guard let stat = try? ProcFS.stat(pid: pid), stat.terminal != 0, stat.session == pid else { return }
        let terminal = stat.terminal
        throw AmberError.unsupported(
            process,
            "has the controlling terminal \(terminal >> 8 & 0xfff):\(terminal & 0xff | terminal >> 12 & 0xfff00) (major:minor) of the session it leads, not a pty whose master the tree holds: not restored",
            tree: tree)
    }

    /// Refuses trees whose shape Amber cannot rebuild yet; run on the frozen tree.
    static func check(_ processes: [FrozenProcess]) throws {
        let byPID = Dictionary(processes.map { ($0.pid, $0.snapshot) }, uniquingKeysWith: { first, _ in first })
        try checkNothingShared(processes)
        try checkThreadsShareLeaders(processes)
        try checkStoppedWithSignalPending(processes)
        let root = processes[0]
        let rootInfo = root.snapshot
        let ownNamespace = try ProcFS.link("/proc/self/ns/pid")
        if rootInfo.pidNamespace != ownNamespace && !isNamespaceInit(rootInfo.status, parentLevels: 1) {
            throw AmberError.unsupported(
                root.name, "is in another PID namespace without being its init: dump that namespace's init instead")
        }
        for process in processes.dropFirst() {
            let info = process.snapshot
            guard let parent = byPID[info.stat.ppid] else {
                throw AmberError.unsupported(
                    process.name, "has the parent \(info.stat.ppid), which is not in the tree", tree: root.name)
            }
            if info.pidNamespace != parent.pidNamespace
                && !isNamespaceInit(info.status, parentLevels: parent.status.namespacePIDs.count) && !process.zombie
            {
                throw AmberError.unsupported(
                    process.name,
                    "is in a PID namespace that is not inside its parent's (it entered it with setns): not supported",
                    tree: root.name)
            }
            let sid = info.stat.session
            if sid != process.pid && sid != parent.stat.session {
                throw AmberError.unsupported(
                    process.name,
                    "is in session \(sid), which is neither its own nor its parent's (its parent left that session later): not supported yet",
                    tree: root.name)
            }
            let pgid = info.stat.pgrp
            let leaderAlive = byPID[pgid] != nil
            let inheritedFromOutside = pgid == rootInfo.stat.pgrp && pgid != root.pid
            if !leaderAlive && !inheritedFromOutside && sid == pgid {
                throw AmberError.unsupported(
                    process.name, "is in session \(sid), whose leader has exited: not supported yet", tree: root.name)
            }
        }
    }

    /// Refuses processes of the tree that share what clone3 without CLONE_THREAD does not share
    /// again: an address space, a descriptor table, or working directory and umask.
    static func checkNothingShared(_ processes: [FrozenProcess]) throws {
        try checkNothingShared(
            processes.filter { !$0.zombie }.map(\.name), [.memory, .fileTable, .filesystem], tree: processes[0].name)
    }

    /// Refuses a thread with a descriptor table, or a working directory and umask, of its own
    /// (`unshare(CLONE_FILES)` or `unshare(CLONE_FS)` in a thread): the restore makes every
    /// thread with CLONE_FILES and CLONE_FS, sharing its leader's.
    private static func checkThreadsShareLeaders(_ processes: [FrozenProcess]) throws {
        for process in processes where process.threads.count > 1 {
            for thread in process.threads where thread.pid != process.pid {
                for resource in [SharedResource.fileTable, .filesystem]
                where try kernelOrder(of: resource, process.pid, thread.pid) != 0 {
                    throw AmberError.unsupported(
                        process.name,
                        "has thread \(thread.pid) with a \(resource) of its own, not its leader's (unshare in a thread): not supported yet",
                        tree: processes[0].name)
                }
            }
        }
    }

    /// The signals whose default action ends a process (every one but SIGCHLD, SIGCONT, the four
    /// stop signals, SIGURG and SIGWINCH), as a mask of bit N-1 for signal N.
    private static let endingByDefault = ~Signals.set(
        [SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH])

    /// Refuses a stopped process with a signal pending that would end it once continued (a
    /// job stopped with ^Z, then sent SIGTERM or SIGHUP): made stopped again, the restore
    /// cannot queue it behind the stop, and the signal ends the task before it stops.
    /// A stopped process with a stop signal pending again (sent while it was stopped) is refused
    /// too: the dump's first injected call would take that signal and stop in it.
    private static func checkStoppedWithSignalPending(_ processes: [FrozenProcess]) throws {
        let stopping = Signals.set([SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU])
        for process in processes where process.stopSignal != 0 {
            let status = process.snapshot.status
            let dispositionEnds = ~status.ignoredSignals & ~status.caughtSignals & endingByDefault
            let dispositionStops = ~status.ignoredSignals & ~status.caughtSignals & stopping
            for (tid, thread) in process.snapshot.threadStatuses {
                let stops = (thread.pendingThread | status.pendingShared) & ~thread.blockedSignals & dispositionStops
                if stops != 0 {
                    throw AmberError.unsupported(
                        process.name,
                        "is stopped (signal \(process.stopSignal)) with the stop signal \(stops.trailingZeroBitCount + 1) pending again for thread \(tid): not supported yet",
                        tree: processes[0].name)
                }
                let ending = (thread.pendingThread | status.pendingShared) & ~thread.blockedSignals & dispositionEnds
                guard ending != 0 else { continue }
                let signal = ending.trailingZeroBitCount + 1
                throw AmberError.unsupported(
                    process.name,
                    "is stopped (signal \(process.stopSignal)) with signal \(signal) pending for thread \(tid), which ends it once it is continued: not restored",
                    tree: processes[0].name)
            }
        }
    }

    private static func checkNothingShared(
        _ processes: [ProcessName], _ resources: [SharedResource], tree: ProcessName
    ) throws {
        for resource in resources {
            var seen = KernelOrderedList<ProcessName>()
            for process in processes {
                if let sharer = try seen.match(
                    order: { try kernelOrder(of: resource, $0.pid, process.pid) }, orInsert: { process })
                {
                    throw AmberError.unsupported(
                        process, "shares its \(resource) with process \(sharer): not supported yet", tree: tree)
                }
            }
        }
    }

    /// Refuses a process outside the tree in a session or process group a process of the tree
    /// leads (a daemon double-forked out of the tree, still in its session): the dump's kill
    /// leaves that ID taken, and the restore would fail to make its leader again.
    static func checkSessionsAndGroupsLeftInside(_ processes: [CheckedProcess]) throws {
        guard let first = processes.first else { return }
        let pids = Set(processes.map(\.pid))
        guard let (pid, relations) = try first.outside.membersOfSessionsOrGroups(of: pids).first else { return }
        let (what, id) =
            pids.contains(relations.session)
            ? ("session", relations.session) : ("process group", relations.processGroup)
        let leader = processes.first { $0.pid == id }!
        throw AmberError.unsupported(
            leader.name,
            "leads the \(what) \(id), which process \(ProcessName(pid: pid)) outside the tree is in: the dump's kill would leave that ID taken, and the restore could not make process \(id) again",
            tree: first.tree)
    }

    /// Refuses, before the tree is frozen, processes that share an address space: a vfork's
    /// parent and child, or a clone with CLONE_VM. Seizing a vfork's parent waits until its child
    /// execs or exits, with the rest of the tree frozen meanwhile, however long that takes. A
    /// vfork that ends within about 100 ms (its child execs) is waited for, not refused.
    static func checkNoSharedMemory(_ processes: [CheckedProcess]) throws {
        guard let tree = processes.first?.tree else { return }
        for attempt in 1...20 {
            // A process that exits meanwhile is passed over: its memory is gone (a zombie's
            // compares equal to another's), and the frozen tree's check asks again.
            let running = processes.filter { process in
                guard let state = try? ProcFS.stat(pid: process.pid).state else { return false }
                return state != "Z" && state != "X"
            }.map(\.name)
            do {
                return try checkNothingShared(running, [.memory], tree: tree)
            } catch let error as AmberError {
                if attempt == 20 { throw error }
            } catch {
                if attempt == 20 { return }
            }
            usleep(5000)
        }
    }

    /// Whether a task is PID 1 of a namespace directly below the one with `parentLevels` levels.
    private static func isNamespaceInit(_ status: ProcessStatus, parentLevels: Int) -> Bool {
        status.namespacePIDs.last == 1 && status.namespacePIDs.count == parentLevels + 1
    }

    /// Identity of one process: parent, session, group, its PID at every namespace level, and
    /// its group stop (`stopCollected`: whether its parent has collected that stop already).
    static func dump(_ process: FrozenProcess, into task: inout Amber_Task, stopCollected: Bool) throws {
        let stat = process.snapshot.stat
        let status = process.snapshot.status
        task.pid = process.pid
        task.ppid = stat.ppid
        task.pgid = stat.pgrp
        task.sid = stat.session
        task.comm = try ProcFS.comm(pid: process.pid)
        task.namespacePids = status.namespacePIDs.count > 1 ? status.namespacePIDs : []
        task.namespaceInit = status.namespacePIDs.count > 1 && status.namespacePIDs.last == 1
        task.namespacePgids = status.namespacePIDs.count > 1 ? status.namespacePGIDs : []
        task.exitSignal = UInt32(stat.exitSignal)
        task.stopSignal = UInt32(process.stopSignal)
        task.stopReported = process.stopSignal != 0 && stopCollected
        if process.zombie {
            task.zombie = true
            task.exitStatus = UInt32(bitPattern: stat.exitCode)
        }
    }

    /// Whether the process `session` dumps has collected the stop of each of its stopped
    /// `children` with wait(WUNTRACED) already, by child PID. Asked of the process itself by
    /// waitid(WSTOPPED | WNOWAIT | WNOHANG), which reports a stop not yet collected without
    /// collecting it (a child traced by amber still reports its group stop to its parent).
    static func collectedStops(of children: [FrozenProcess], _ session: DumpSession) throws -> [Int32: Bool] {
        var collected: [Int32: Bool] = [:]
        for child in children {
            let pid =
                pid(of: child.snapshot.status.namespacePIDs, inNamespaceOf: session.status.namespacePIDs) ?? child.pid
            var arguments = session.arguments()
            let info = try arguments.reserve(128)
            try session.injector.call(
                "waitid(P_PID, \(pid), WSTOPPED | WNOWAIT | WNOHANG)", SyscallNumber.waitid, WaitOption.pidType,
                UInt64(pid), info, WaitOption.stopped | WaitOption.noWait | WaitOption.noHang, 0)
            // siginfo_t's si_pid, at byte 16: 0 when there is nothing to collect.
            collected[child.pid] = try arguments.read(info, offset: 16, as: Int32.self) == 0
        }
        return collected
    }

    /// A process's PID as a process with the namespace PIDs `observer` sees it (both outermost first).
    static func pid(of levels: [Int32], inNamespaceOf observer: [Int32]) -> Int32? {
        let depth = max(observer.count, 1)
        return levels.count >= depth ? levels[depth - 1] : nil
    }

    /// Kills the dumped tree and waits until every one of its PIDs can be used again. Children
    /// go first, each reaped at once by its parent (stopped, and made to call wait4), so that no
    /// PID waits for a slow init to reap an orphan; the root is left to its own parent.
    /// `tasks` are the processes' records, in the same order: the tree cannot have changed.
    static func kill(_ processes: [FrozenProcess], tasks: [Amber_Task], logger: Logger) throws {
        let byPID = Dictionary(
            zip(processes, tasks).map { ($0.pid, (process: $0, task: $1)) }, uniquingKeysWith: { first, _ in first })
        // Parents come before children in `processes`, so each parent's depth is known first.
        var depth: [Int32: Int] = [:]
        for task in tasks {
            depth[task.pid] = task.pid == tasks[0].pid ? 0 : (depth[task.ppid] ?? 0) + 1
        }
        // The deepest level first, all of it at once: the kernel frees their memory side by side.
        for (_, level) in Dictionary(grouping: processes, by: { depth[$0.pid]! }).sorted(by: { $0.key > $1.key }) {
            for process in level where !process.zombie {
                try? Signals.send(SIGKILL, to: process.pid)
            }
            for process in level {
                // As its tracer we see each thread die first; only then is it its parent's zombie.
                for tracee in process.threads.reversed() {
                    while let status = try? waitForTask(tracee.pid), case .stopped = status {}
                }
            }
            for process in level where process.pid != processes[0].pid {
                guard let task = byPID[process.pid]?.task, let parent = byPID[task.ppid],
                    let leader = parent.process.threads.first, let instruction = parent.process.syscallInstruction
                else { continue }
                // The parent names the child by its PID in the parent's own namespace.
                let parentLevels = max(parent.task.namespacePids.count, 1)
                let pidInParent =
                    task.namespacePids.count >= parentLevels ? task.namespacePids[parentLevels - 1] : process.pid
                let injector = try SyscallInjector(tracee: leader, instruction: instruction)
                let reaped = try injector.raw(
                    SyscallNumber.wait4, arguments: [UInt64(pidInParent), 0, UInt64(UInt32(bitPattern: __WALL)), 0])
                // ECHILD: a parent that ignores SIGCHLD (or set SA_NOCLDWAIT) has no zombie to
                // reap; the kernel reaped the child itself (the wait below sees its PID free).
                guard reaped >= 0 || reaped == -Int64(ECHILD) else {
                    throw LinuxError(negated: Int(reaped), "wait4(\(pidInParent)) in task \(leader.pid)")
                }
            }
        }
        let start = Date()
        var announced = false
        var waitedFor: [String] = []
        for process in processes {
            if Signals.processExists(process.pid) {
                // A zombie until its parent reaps it: the tree's own parents did (wait4 above), so
                // this is the root's parent, or an init or subreaper the process was left to.
                let parent = (try? ProcFS.status(pid: process.pid))?.ppid
                let name = parent.map { "\(ProcessName(pid: $0))" } ?? "?"
                logger.debug(
                    "waiting for process \(name), the parent of killed process \(process.name), to reap it, so that PID \(process.pid) is free"
                )
                waitedFor.append("\(process.pid) (by \(name))")
            }
            while Signals.processExists(process.pid) {
                let waited = Date().timeIntervalSince(start)
                if !announced, waited > 2 {
                    logger.notice(
                        "waiting for the parent of process \(process.name) to reap it, so that PID \(process.pid) is free"
                    )
                    announced = true
                }
                if waited > 120 {
                    throw AmberError(
                        .failure,
                        "process \(process.name) was killed after the dump but its parent has not reaped it: PID \(process.pid) is still taken"
                    )
                }
                usleep(200)
            }
        }
        if !waitedFor.isEmpty {
            let tenths = Int(Date().timeIntervalSince(start) * 10_000)
            logger.debug(
                "PIDs free after \(tenths / 10).\(tenths % 10) ms of waiting for them to be reaped: \(waitedFor.joined(separator: ", "))"
            )
        }
    }

    // MARK: Restore

    /// The PIDs to ask clone3 for, innermost namespace first.
    static func requestedPIDs(_ task: Amber_Task) -> [Int32] {
        task.namespacePids.isEmpty ? [task.pid] : Array(task.namespacePids.reversed())
    }

    /// Injects a clone3 into the task `injector` runs in, with the clone_args written at the
    /// scratch area of `session`; returns the new task, traced and stopped.
    static func clone(
        in injector: any SyscallInjecting, session: some ScratchSpace, flags: UInt64, exitSignal: Int32, pids: [Int32],
        childTID: UInt64 = 0, what: String
    ) throws -> Tracee {
        var arguments = session.arguments()
        let pidsAddress = try arguments.place(pids.withUnsafeBytes { Array($0) })
        let cloneArguments = CloneArguments(
            flags: flags, exitSignal: UInt64(exitSignal), setTID: pidsAddress, setTIDCount: UInt64(pids.count),
            childTID: childTID)
        let address = try arguments.place(cloneArguments.bytes)
        return try injector.createTask(
            "clone3 for \(what) with set_tid \(pids)", cloneArguments: address, size: UInt64(CloneArguments.byteCount))
    }

    /// Creates every process of the image, parents first, each by its parent, in its session
    /// and process group; zombies exit with their status. Returns the live processes, stopped
    /// helpers each about to become its old self. Every task made is added to `created` as soon
    /// as it exists, so that a failure can kill it.
    /// Every helper inherits `restorerPidfd` at the same number. With `namespaceInit`, the root
    /// is made by that init instead of by us.
    /// The files several processes need by path go into the root's helper first (`treeFiles`).
    /// A tree dumped in a mount namespace of its own gets a new one, made in the root before
    /// any file is opened for it (`MountNamespaceState`), with `mounts`; `mountRoot` is then
    /// its root directory, under which the image's paths are resolved. With `sibling` the root
    /// is made a child of our parent (`createSiblingHelper`), with our exit signal. The root's
    /// helper starts without the bounding capabilities of `boundingDrop`
    /// (`CredentialState.helperBoundingDrop`), and every process cloned from it so.
    static func build(
        _ tasks: [Amber_Task], instruction: UInt64, restorerPidfd: Int32, imageTrusted: Bool,
        namespaceInit: NamespaceInit?, created: inout [Tracee], treeFiles: inout TreeFiles?, openFiles: OpenFileTable,
        logger: Logger, mounts: MountNamespaceRestore = MountNamespaceRestore(), mountRoot: inout Int32?,
        sibling: Bool = false, boundingDrop: UInt64 = 0
    ) throws -> [TreeTask] {
        let root = tasks[0]
        let children = Dictionary(grouping: tasks.dropFirst(), by: \.ppid)
        let rootTracee: Tracee
        do {
            let flags =
                (root.namespaceInit ? CloneFlags.newPIDNamespace : 0)
                | (root.hasMountNamespace ? CloneFlags.newMountNamespace : 0)
            if let namespaceInit {
                rootTracee = try clone(
                    in: namespaceInit.injector, session: namespaceInit, flags: flags,
                    exitSignal: Int32(root.exitSignal), pids: requestedPIDs(root), what: "process \(root.pid)")
                try namespaceInit.injector.finish()
            } else if sibling {
                rootTracee = try createSiblingHelper(
                    pids: requestedPIDs(root), flags: flags, keptDescriptor: restorerPidfd, boundingDrop: boundingDrop)
            } else {
                rootTracee = try createStoppedHelper(
                    pids: requestedPIDs(root), flags: flags, exitSignal: Int32(root.exitSignal),
                    keptDescriptor: restorerPidfd, boundingDrop: boundingDrop)
            }
        } catch let error as LinuxError {
            if error.errno == .fileExists { throw pidTaken(root.pid) }
            if error.errno == .notPermitted {
                throw AmberError(
                    .permissionDenied,
                    "may not create process \(root.pid) with its PID: clone3 with set_tid needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN over the PID namespace (run amber as root, or give it cap_checkpoint_restore)"
                )
            }
            throw AmberError(.restoreFailed, "cannot create process \(root.pid): \(error)")
        }
        created.append(rootTracee)
        try FaultPoints.reached(restore: FaultPoints.create)
        var built: [TreeTask] = [try TreeTask(record: root, tracee: rootTracee, instruction: instruction)]
        if root.hasMountNamespace {
            let fd = try MountNamespaceState.make(in: built[0], options: mounts, imageTrusted: imageTrusted)
            mountRoot = fd
            PathOpening.useRoot(fd)
            logger.debug("made the tree's mount namespace: \(root.mountNamespace.mounts.count) mounts")
        }
        try ControllingTerminals.makePtys(tasks, openFiles: openFiles, imageTrusted: imageTrusted)
        treeFiles = try TreeFiles.install(
            for: tasks, in: built[0], restorerPidfd: restorerPidfd, imageTrusted: imageTrusted, openFiles: openFiles)
        var index = 0
        while index < built.count {
            let parent = built[index]
            index += 1
            if parent.record.sid == parent.record.pid {
                try parent.injector.call("setsid", SyscallNumber.setsid)
                try ControllingTerminals.take(parent, tasks: tasks, openFiles: openFiles, restorerPidfd: restorerPidfd)
            }
            if KeyringState.needsNewSessionKeyring(parent.record, isRoot: index == 1) {
                try KeyringState.joinNewSessionKeyring(parent.injector, for: parent.record)
            }
            for child in (children[parent.record.pid] ?? []).sorted(by: { $0.pid < $1.pid }) {
                let tracee: Tracee
                do {
                    tracee = try clone(
                        in: parent.injector, session: parent,
                        flags: child.namespaceInit ? CloneFlags.newPIDNamespace : 0,
                        exitSignal: Int32(child.exitSignal), pids: requestedPIDs(child), what: "process \(child.pid)")
                } catch let error as LinuxError where error.errno == .fileExists {
                    throw pidTaken(child.pid)
                }
                created.append(tracee)
                try FaultPoints.reached(restore: FaultPoints.create)
                built.append(
                    try TreeTask(
                        record: child, tracee: tracee, instruction: parent.injector.instruction, scratch: parent.scratch
                    ))
            }
        }
        try joinGroups(built, created: &created)
        try ControllingTerminals.setForegroundGroups(
            built, tasks: tasks, openFiles: openFiles, restorerPidfd: restorerPidfd)
        for task in built where task.record.zombie {
            try exitAsZombie(task, parent: built.first { $0.record.pid == task.record.ppid }!)
        }
        logger.debug("created \(built.count) processes")
        return built.filter { !$0.record.zombie }
    }

    /// Lets the processes go that were in a group stop at the dump, each back in it, before any
    /// other task runs: its stop signal is queued and every thread detached, and it stops before
    /// it runs an instruction. Its parent, still traced, then has what it had at the dump: the
    /// stop to collect with wait(WUNTRACED), or not if it had collected it (`stop_reported`),
    /// and no SIGCHLD it did not have pending. Returns the processes let go.
    static func letGoStopped(_ sessions: [RestoreSession]) throws -> [RestoreSession] {
        let stopped = sessions.filter { $0.task.stopSignal != 0 }
        // Children first: a stopped parent, once let go, can no longer collect its stopped child's stop.
        for session in stopped.reversed() {
            let task = session.task
            try Signals.send(stopSignal(of: task), to: session.pid)
            for thread in session.threads { try thread.detach() }
            guard let parent = sessions.first(where: { $0.task.pid == task.ppid }) else { continue }
            let injector = try SyscallInjector(tracee: parent.tracee, instruction: parent.injector.instruction)
            let pid =
                pid(
                    of: task.namespacePids.isEmpty ? [task.pid] : task.namespacePids,
                    inNamespaceOf: parent.task.namespacePids) ?? task.pid
            // The stop is there to collect once the last thread has stopped.
            try waitUntil("process \(task.pid) stops again") {
                try injector.raw(
                    SyscallNumber.waitid, WaitOption.pidType, UInt64(pid), 0,
                    WaitOption.stopped | WaitOption.noWait | WaitOption.noHang, 0) == 0
                    && ProcFS.stat(pid: session.pid).state == "T"
            }
            if task.stopReported {
                try injector.call(
                    "waitid(P_PID, \(pid), WSTOPPED | WNOHANG)", SyscallNumber.waitid, WaitOption.pidType, UInt64(pid),
                    0, WaitOption.stopped | WaitOption.noHang, 0)
            }
            if sendsChildStopSignal(parent.task),
                !parent.task.signals.pending.contains(where: { $0.signal == UInt32(SIGCHLD) })
            {
                try waitUntil("the SIGCHLD of the stop of process \(task.pid)") {
                    try ProcFS.status(pid: parent.pid).pendingShared & 1 << UInt64(SIGCHLD - 1) != 0
                }
                try ScratchArena.belowRedZone(of: injector, size: 32) { try discardChildSignal(SIGCHLD, injector, &$0) }
            }
            try injector.finish()
        }
        return stopped
    }

    /// The signal that stops `task` again: its own where it would stop the process (its default
    /// disposition, not blocked by the leader), else SIGSTOP.
    private static func stopSignal(of task: Amber_Task) -> Int32 {
        let signal = task.stopSignal
        let handled = task.signals.actions.contains { $0.signal == signal && $0.handler != 0 }
        let blocked = task.threads.first.map { $0.blocked & 1 << UInt64(signal - 1) != 0 } ?? false
        return handled || blocked ? SIGSTOP : Int32(signal)
    }

    /// Whether a child's stop sends its parent a SIGCHLD: not when SIGCHLD is ignored or its
    /// action has SA_NOCLDSTOP.
    private static func sendsChildStopSignal(_ parent: Amber_Task) -> Bool {
        guard let action = parent.signals.actions.first(where: { $0.signal == UInt32(SIGCHLD) }) else { return true }
        return action.handler != 1 && action.flags & UInt64(SA_NOCLDSTOP) == 0
    }

    /// Polls `done` every 100 µs for up to 10 s.
    private static func waitUntil(_ what: String, _ done: () throws -> Bool) throws {
        for _ in 0..<100_000 {
            if try done() { return }
            usleep(100)
        }
        throw AmberError(.restoreFailed, "gave up waiting for \(what)")
    }

    static func pidTaken(_ pid: Int32) -> AmberError {
        AmberError(
            .pidTaken,
            "PID \(pid) is taken by process \(ProcessName(pid: pid)); stop that process, or restore into a new PID namespace (--new-pidns), where no PID can clash with this host's"
        )
    }

    /// Puts every process into its group: leaders first, then the members. A group whose leader
    /// has exited is made by a stand-in with the leader's PID that exits once the members joined.
    private static func joinGroups(_ tasks: [TreeTask], created: inout [Tracee]) throws {
        let root = tasks[0].record
        let pids = Set(tasks.map(\.record.pid))
        // The root's group and the members it shares it with stay in the group amber runs in.
        let outsideGroup = root.pgid != root.pid ? root.pgid : nil
        for task in tasks where task.record.pgid == task.record.pid && task.record.sid != task.record.pid {
            try task.injector.call("setpgid(0, 0)", SyscallNumber.setpgid, 0, 0)
        }
        var standIns: [Int32: (tracee: Tracee, injector: SyscallInjector, parent: TreeTask, pidInParent: Int32)] = [:]
        for task in tasks {
            let pgid = task.record.pgid
            guard pgid != task.record.pid, pgid != outsideGroup else { continue }
            // The group as the task's own PID namespace numbers it; 0: a group from outside that namespace, inherited.
            let pgidInside = task.record.namespacePgids.last ?? pgid
            guard pgidInside != 0 else { continue }
            if !pids.contains(pgid), standIns[pgid] == nil {
                let levels = task.record.namespacePgids.isEmpty ? [pgid] : Array(task.record.namespacePgids.reversed())
                let tracee = try clone(
                    in: task.injector, session: task, flags: 0, exitSignal: SIGCHLD, pids: levels.filter { $0 != 0 },
                    what: "the exited leader of process group \(pgid)")
                created.append(tracee)
                let injector = try SyscallInjector(tracee: tracee, instruction: task.injector.instruction)
                try injector.call("setpgid(0, 0) in the stand-in leader", SyscallNumber.setpgid, 0, 0)
                standIns[pgid] = (tracee, injector, task, pgidInside)
            }
            try task.injector.call("setpgid(0, \(pgidInside))", SyscallNumber.setpgid, 0, UInt64(pgidInside))
        }
        for standIn in standIns.values {
            try exit(standIn.tracee, injector: standIn.injector, status: 0)
            // Its parent reaps it at once, so no stray child is left behind in the restored process.
            try standIn.parent.injector.call(
                "wait4(\(standIn.pidInParent))", SyscallNumber.wait4, UInt64(standIn.pidInParent), 0,
                UInt64(UInt32(bitPattern: __WALL)), 0)
            var arguments = standIn.parent.arguments()
            try discardChildSignal(SIGCHLD, standIn.parent.injector, &arguments)
        }
    }

    /// Names the zombie and makes it exit as the original did; its parent keeps it unreaped.
    private static func exitAsZombie(_ task: TreeTask, parent: TreeTask) throws {
        try ThreadState.setName(task.record.comm, task.injector, task)
        if task.record.exitStatus & 0x7f != 0 {
            // No core file: the original wrote its own, if any.
            var arguments = task.arguments()
            let noCore = try arguments.place(rlimit(rlim_cur: 0, rlim_max: 0))
            try task.injector.call(
                "prlimit64(RLIMIT_CORE)", SyscallNumber.prlimit64, 0, UInt64(RLIMIT_CORE.rawValue), noCore, 0)
        }
        try exit(task.tracee, injector: task.injector, status: task.record.exitStatus)
        var arguments = parent.arguments()
        try discardChildSignal(Int32(task.record.exitSignal), parent.injector, &arguments)
    }

    /// Ends a stopped helper with a wait status: exit_group for an exit code, the signal for a death by signal.
    private static func exit(_ tracee: Tracee, injector: SyscallInjector, status: UInt32) throws {
        let signal = Int32(status & 0x7f)
        if signal == 0 {
            try injector.start(SyscallNumber.exitGroup, UInt64(status >> 8 & 0xff))
        } else {
            try tracee.setSignalMask(0)
            try tracee.cont(signal: signal)
        }
        // As its tracer we see it die first; then it is its parent's zombie.
        while let state = try waitForTask(tracee.pid) {
            if case .stopped(let stopSignal, _) = state {
                try tracee.cont(signal: stopSignal == SIGTRAP ? 0 : stopSignal)
                continue
            }
            break
        }
    }

    /// The restorer made a child exit or stop: take the signal this queued its parent (SIGCHLD,
    /// or the one the child was cloned with) off the parent `injector` runs in, with the signal
    /// set and a zero timeout in `arguments`: its scratch page while the tree is built, below its
    /// stack's red zone once that page is gone.
    private static func discardChildSignal(
        _ signal: Int32, _ injector: SyscallInjector, _ arguments: inout ScratchArena
    ) throws {
        guard signal != 0 else { return }
        let set = try arguments.place(UInt64(1) << (UInt64(signal) - 1))
        let timeout = try arguments.place(timespec(tv_sec: 0, tv_nsec: 0))
        _ = try injector.raw(SyscallNumber.rtSigtimedwait, set, 0, timeout, Signals.setSize)
    }
}

/// The init of a new PID namespace the tree is restored into (`--new-pidns`): a helper that is
/// PID 1 there, makes the tree's root and, once let go, reaps orphans until the root ends, then
/// exits with the root's status.
final class NamespaceInit: ScratchSpace {
    let tracee: Tracee
    let injector: SyscallInjector
    let scratch: UInt64
    var pid: Int32 { tracee.pid }
    static let scratchSize = TreeTask.scratchSize

    /// The root is cloned from it: it starts without the bounding capabilities of `boundingDrop`.
    init(root: Amber_Task, instruction: UInt64, restorerPidfd: Int32, created: inout [Tracee], boundingDrop: UInt64)
        throws
    {
        do {
            tracee = try createStoppedHelper(
                pids: [1], flags: CloneFlags.newPIDNamespace, keptDescriptor: restorerPidfd,
                awaitedChild: root.namespacePids.first ?? root.pid, boundingDrop: boundingDrop)
        } catch {
            throw AmberError(.restoreFailed, "cannot create the init of a new PID namespace: \(error)")
        }
        created.append(tracee)
        injector = try SyscallInjector(tracee: tracee, instruction: instruction)
        scratch = try TreeTask.mapScratch(injector)
        try ThreadState.setName("amber-init", injector, self)
    }
}

/// A process being rebuilt: its helper task, stopped and traced, and a scratch page mapped in it
/// for the arguments of injected calls until its memory is restored.
final class TreeTask: ScratchSpace {
    let record: Amber_Task
    let tracee: Tracee
    let injector: SyscallInjector
    let scratch: UInt64
    var pid: Int32 { tracee.pid }

    /// `scratch` is the parent's page, which a cloned child has at the same address. Without
    /// one, the task is the root, a copy of amber or of its namespace init: its address space
    /// is prepared first, before any process is cloned from it.
    init(record: Amber_Task, tracee: Tracee, instruction: UInt64, scratch: UInt64? = nil) throws {
        self.record = record
        self.tracee = tracee
        var injector = try SyscallInjector(tracee: tracee, instruction: instruction)
        // A helper has every signal at its default and none pending: a single step's SIGTRAP
        // costs it nothing until the image's own SIGTRAP state comes back (`SignalState`).
        injector.stepsOverCalls = true
        if let scratch {
            self.scratch = scratch
        } else {
            try MemoryState.prepareAddressSpace(for: record, &injector)
            self.scratch = try Self.mapScratch(injector)
        }
        self.injector = injector
    }

    static func mapScratch(_ injector: SyscallInjector) throws -> UInt64 {
        try injector.call(
            "mmap scratch", SyscallNumber.mmap, 0, UInt64(scratchSize), UInt64(PROT_READ | PROT_WRITE),
            UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
    }

    static let scratchSize = 4096
}

extension TreeState: StateKind {
    /// A controlling terminal that is a pty whose master the tree holds is restored
    /// (`ControllingTerminals`); any other is refused for a session leader (`checkTerminal`).
    static func check(tree processes: [CheckedProcess]) throws {
        // Once frozen, `check(_:)` compares the address spaces again, without waiting.
        if processes.first?.beforeFreeze == true {
            try checkNoSharedMemory(processes)
            try checkTracesNothingOutside(processes)
            try checkSessionsAndGroupsLeftInside(processes)
        }
        try checkGroupsKeepTheirLeaders(processes)
        let terminalsOfTree = try ControllingTerminals.terminalsOfTree(processes)
        for process in processes {
            if let stat = try? ProcFS.stat(pid: process.pid), terminalsOfTree.contains(stat.terminal) { continue }
            try checkTerminal(pid: process.pid, process: process.name, tree: process.tree)
        }
    }

    /// Refuses a process in a group whose leader, alive in the tree, has moved to another group
    /// since (setpgid): a restored group is made by its leader, which then is in it.
    private static func checkGroupsKeepTheirLeaders(_ processes: [CheckedProcess]) throws {
        let groups = Dictionary(
            processes.compactMap { process in (try? ProcFS.stat(pid: process.pid)).map { (process.pid, $0.pgrp) } },
            uniquingKeysWith: { first, _ in first })
        for process in processes {
            guard let group = groups[process.pid], group != process.pid, let leaders = groups[group], leaders != group
            else { continue }
            throw AmberError.unsupported(
                process.name,
                "is in the process group \(group), whose leader, process \(group), has moved to the group \(leaders): not restored",
                tree: process.tree)
        }
    }

    /// A task outside the tree that a process of the tree traces (a debugger or strace in the
    /// tree) is refused: the dump's kill would detach it, letting it run on if it was stopped,
    /// and the restored process would trace nothing. Asked before the freeze: a frozen tree
    /// attaches to no one.
    private static func checkTracesNothingOutside(_ processes: [CheckedProcess]) throws {
        guard let traced = try processes.first?.outside.tracedByTree().first,
            let tracer = processes.first(where: { $0.pid == traced.tracer })
        else { return }
        let task = traced.tid == traced.pid ? "" : "thread \(traced.tid) of "
        throw AmberError.unsupported(
            tracer.name,
            "traces \(task)process \(ProcessName(pid: traced.pid)), outside the tree: the dump's kill would detach it (running on if it was stopped), and the restored process would trace nothing",
            tree: tracer.tree)
    }

    /// The group stops of the tree: a parent's traced step finds which of its stopped children's
    /// stops it collected already, and each child's identity, dumped after it, records that.
    final class DumpState {
        let stoppedChildren: [Int32: [FrozenProcess]]
        var collectedStops: [Int32: Bool] = [:]

        init(_ processes: [FrozenProcess]) {
            stoppedChildren = Dictionary(
                grouping: processes.dropFirst().filter { $0.stopSignal != 0 }, by: \.snapshot.stat.ppid)
        }
    }

    static func makeDumpState(_ dump: TreeDump) -> DumpState { DumpState(dump.processes) }

    static var dumpSteps: [DumpStep<DumpState>] {
        [
            DumpStep("identity", .frozen, zombies: true) { process, state in
                try dump(
                    process.process, into: &process.task, stopCollected: state.collectedStops[process.pid] ?? false)
            },
            DumpStep("child-stops", .traced) { process, state in
                guard let children = state.stoppedChildren[process.pid] else { return }
                state.collectedStops.merge(try collectedStops(of: children, process.session)) { $1 }
            },
        ]
    }
}
