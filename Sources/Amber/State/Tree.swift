import AmberImage
import CLinux
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

    init(pid: Int32, threads: [Tracee]) throws(LinuxError) {
        stat = try ProcFS.stat(pid: pid)
        status = try ProcFS.status(pid: pid)
        var threadStatuses = [pid: status]
        for tracee in threads where tracee.pid != pid {
            threadStatuses[tracee.pid] = try ProcFS.threadStatus(pid: pid, tid: tracee.pid)
        }
        self.threadStatuses = threadStatuses
        maps = threads.isEmpty ? [] : try ProcFS.maps(pid: pid)
        pidNamespace = (try? ProcFS.link("/proc/\(pid)/ns/pid")) ?? "?"
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
                try interruption.check(.seize)
                guard let process = try freezeProcess(pid, isRoot: pid == root, seized: &seized) else { continue }
                for child in try ProcFS.children(pid: process.pid) where known.insert(child).inserted {
                    queue.append(child)
                }
            }
            logger.trace("seized \(seized.count) processes")
            let snapshots = seized.concurrentMap { process in Result { () throws(LinuxError) in try ProcessSnapshot(pid: process.pid, threads: process.threads) } }
            frozen = try zip(seized, snapshots).map { process, snapshot in
                FrozenProcess(pid: process.pid, name: process.name, threads: process.threads, snapshot: try snapshot.get())
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
    }

    /// Freezes one process and appends it to `seized` (so that a failure half-way lets its
    /// seized threads go too); nil if it vanished (reaped by an ancestor not yet stopped).
    private static func freezeProcess(_ pid: Int32, isRoot: Bool, seized: inout [SeizedProcess]) throws -> SeizedProcess? {
        let name = ProcessName(pid: pid)
        guard let status = try? ProcFS.status(pid: pid) else {
            if isRoot { throw AmberError(.noSuchProcess, "no process with PID \(pid)") }
            return nil
        }
        if status.state == "Z" {
            if isRoot { throw AmberError.unsupported(name, "is a zombie") }
            if status.threads > 1 {
                throw AmberError.unsupported(name, "has exited while \(status.threads - 1) of its threads run on: not supported yet")
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
                } catch where error.errno == .noSuchProcess && tid != pid {
                    continue // the thread exited meanwhile
                } catch {
                    if error.errno == .noSuchProcess { throw AmberError(.noSuchProcess, "process \(name) went away while it was being frozen") }
                    throw AmberError(.permissionDenied, "may not ptrace process \(name)\(tid == pid ? "" : ", thread \(tid)"): \(error.errno.name) (dumping needs the rights to ptrace it)")
                }
            }
            for tracee in interrupted {
                try stop(tracee)
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
    private static func stop(_ tracee: Tracee) throws {
        while true {
            let stop = try tracee.waitForStop()
            if stop.event == WaitStatus.eventStop { return }
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

    /// Refuses trees whose shape Amber cannot rebuild yet; run on the frozen tree.
    static func check(_ processes: [FrozenProcess]) throws {
        let byPID = Dictionary(processes.map { ($0.pid, $0.snapshot) }, uniquingKeysWith: { first, _ in first })
        try checkNothingShared(processes)
        let root = processes[0]
        let rootInfo = root.snapshot
        let ownNamespace = try ProcFS.link("/proc/self/ns/pid")
        if rootInfo.pidNamespace != ownNamespace && !isNamespaceInit(rootInfo.status, parentLevels: 1) {
            throw AmberError.unsupported(root.name, "is in another PID namespace without being its init: dump that namespace's init instead")
        }
        for process in processes.dropFirst() {
            let info = process.snapshot
            guard let parent = byPID[info.stat.ppid] else {
                throw AmberError.unsupported(process.name, "has the parent \(info.stat.ppid), which is not in the tree", tree: root.name)
            }
            if info.pidNamespace != parent.pidNamespace && !isNamespaceInit(info.status, parentLevels: parent.status.namespacePIDs.count) && !process.zombie {
                throw AmberError.unsupported(process.name, "is in a PID namespace that is not inside its parent's (it entered it with setns): not supported", tree: root.name)
            }
            let sid = info.stat.session
            if sid != process.pid && sid != parent.stat.session {
                throw AmberError.unsupported(process.name, "is in session \(sid), which is neither its own nor its parent's (its parent left that session later): not supported yet", tree: root.name)
            }
            let pgid = info.stat.pgrp
            let leaderAlive = byPID[pgid] != nil
            let inheritedFromOutside = pgid == rootInfo.stat.pgrp && pgid != root.pid
            if !leaderAlive && !inheritedFromOutside && sid == pgid {
                throw AmberError.unsupported(process.name, "is in session \(sid), whose leader has exited: not supported yet", tree: root.name)
            }
        }
    }

    /// Refuses processes of the tree that share what clone3 without CLONE_THREAD does not share
    /// again: an address space, a descriptor table, or working directory and umask.
    static func checkNothingShared(_ processes: [FrozenProcess]) throws {
        let live = processes.filter { !$0.zombie }
        for resource in [SharedResource.memory, .fileTable, .filesystem] {
            var seen = KernelOrderedList<FrozenProcess>()
            for process in live {
                if let sharer = try seen.match(order: { try kernelOrder(of: resource, $0.pid, process.pid) }, orInsert: { process }) {
                    throw AmberError.unsupported(process.name, "shares its \(resource) with process \(sharer.name): not supported yet", tree: processes[0].name)
                }
            }
        }
    }

    /// Whether a task is PID 1 of a namespace directly below the one with `parentLevels` levels.
    private static func isNamespaceInit(_ status: ProcessStatus, parentLevels: Int) -> Bool {
        status.namespacePIDs.last == 1 && status.namespacePIDs.count == parentLevels + 1
    }

    /// Identity of one process: parent, session, group, and its PID at every namespace level.
    static func dump(_ process: FrozenProcess, into task: inout Amber_Task) throws {
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
        if process.zombie {
            task.zombie = true
            task.exitStatus = UInt32(bitPattern: stat.exitCode)
        }
    }

    /// Kills the dumped tree and waits until every one of its PIDs can be used again. Children
    /// go first, each reaped at once by its parent (stopped, and made to call wait4), so that no
    /// PID waits for a slow init to reap an orphan; the root is left to its own parent.
    /// `tasks` are the processes' records, in the same order: the tree cannot have changed.
    static func kill(_ processes: [FrozenProcess], tasks: [Amber_Task], logger: Logger) throws {
        let byPID = Dictionary(zip(processes, tasks).map { ($0.pid, (process: $0, task: $1)) }, uniquingKeysWith: { first, _ in first })
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
                      let leader = parent.process.threads.first, let instruction = parent.process.syscallInstruction else { continue }
                // The parent names the child by its PID in the parent's own namespace.
                let parentLevels = max(parent.task.namespacePids.count, 1)
                let pidInParent = task.namespacePids.count >= parentLevels ? task.namespacePids[parentLevels - 1] : process.pid
                let injector = try SyscallInjector(tracee: leader, instruction: instruction)
                try injector.call("wait4(\(pidInParent)) in its parent", SyscallNumber.wait4, UInt64(pidInParent), 0, UInt64(UInt32(bitPattern: __WALL)), 0)
            }
        }
        let start = Date()
        var announced = false
        for process in processes {
            while Signals.processExists(process.pid) {
                let waited = Date().timeIntervalSince(start)
                if !announced, waited > 2 {
                    logger.notice("waiting for the parent of process \(process.name) to reap it, so that PID \(process.pid) is free")
                    announced = true
                }
                if waited > 120 {
                    throw AmberError(.failure, "process \(process.name) was killed after the dump but its parent has not reaped it: PID \(process.pid) is still taken")
                }
                usleep(200)
            }
        }
    }

    // MARK: Restore

    /// clone3 flags.
    static let newPIDNamespace: UInt64 = 0x2000_0000

    /// The PIDs to ask clone3 for, innermost namespace first.
    static func requestedPIDs(_ task: Amber_Task) -> [Int32] {
        task.namespacePids.isEmpty ? [task.pid] : Array(task.namespacePids.reversed())
    }

    /// Injects a clone3 into the task `injector` runs in, with the clone_args written at the
    /// scratch area of `session`; returns the new task, traced and stopped.
    static func clone(in injector: SyscallInjector, session: some ScratchSpace, flags: UInt64, exitSignal: Int32, pids: [Int32], what: String) throws -> Tracee {
        let pidsAddress = try pids.withUnsafeBytes { try session.writeScratch($0, offset: 512) }
        var arguments = amber_clone_args()
        arguments.flags = flags
        arguments.exit_signal = UInt64(exitSignal)
        arguments.set_tid = pidsAddress
        arguments.set_tid_size = UInt64(pids.count)
        let address = try session.writeScratch(value: arguments, offset: 0)
        return try injector.createTask("clone3 for \(what) with set_tid \(pids)", cloneArguments: address, size: UInt64(MemoryLayout<amber_clone_args>.size))
    }

    /// Creates every process of the image, parents first, each by its parent, in its session
    /// and process group; zombies exit with their status. Returns the live processes, stopped
    /// helpers each about to become its old self. Every task made is added to `created` as soon
    /// as it exists, so that a failure can kill it.
    /// Every helper inherits `restorerPidfd` at the same number. With `namespaceInit`, the root
    /// is made by that init instead of by us.
    /// The files several processes need by path go into the root's helper first (`treeFiles`).
    static func build(_ tasks: [Amber_Task], instruction: UInt64, restorerPidfd: Int32, imageTrusted: Bool, namespaceInit: NamespaceInit?, created: inout [Tracee], treeFiles: inout TreeFiles?, logger: Logger) throws -> [TreeTask] {
        let root = tasks[0]
        let children = Dictionary(grouping: tasks.dropFirst(), by: \.ppid)
        let rootTracee: Tracee
        do {
            let flags = root.namespaceInit ? newPIDNamespace : 0
            if let namespaceInit {
                rootTracee = try clone(in: namespaceInit.injector, session: namespaceInit, flags: flags, exitSignal: SIGCHLD, pids: requestedPIDs(root), what: "process \(root.pid)")
                try namespaceInit.injector.finish()
            } else {
                rootTracee = try createStoppedHelper(pids: requestedPIDs(root), flags: flags, keptDescriptor: restorerPidfd)
            }
        } catch let error as LinuxError {
            if error.errno == .fileExists { throw pidTaken(root.pid) }
            if error.errno == .notPermitted {
                throw AmberError(.permissionDenied, "may not create process \(root.pid) with its PID: clone3 with set_tid needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN over the PID namespace (run amber as root, or give it cap_checkpoint_restore)")
            }
            throw AmberError(.restoreFailed, "cannot create process \(root.pid): \(error)")
        }
        created.append(rootTracee)
        try RestoreStep.create.reached()
        var built: [TreeTask] = [try TreeTask(record: root, tracee: rootTracee, instruction: instruction)]
        treeFiles = try TreeFiles.install(for: tasks, in: built[0], restorerPidfd: restorerPidfd, imageTrusted: imageTrusted)
        var index = 0
        while index < built.count {
            let parent = built[index]
            index += 1
            if parent.record.sid == parent.record.pid {
                try parent.injector.call("setsid", SyscallNumber.setsid)
            }
            for child in (children[parent.record.pid] ?? []).sorted(by: { $0.pid < $1.pid }) {
                let tracee: Tracee
                do {
                    tracee = try clone(in: parent.injector, session: parent, flags: child.namespaceInit ? newPIDNamespace : 0, exitSignal: SIGCHLD, pids: requestedPIDs(child), what: "process \(child.pid)")
                } catch let error as LinuxError where error.errno == .fileExists {
                    throw pidTaken(child.pid)
                }
                created.append(tracee)
                try RestoreStep.create.reached()
                built.append(try TreeTask(record: child, tracee: tracee, instruction: parent.injector.instruction, scratch: parent.scratch))
            }
        }
        try joinGroups(built, created: &created)
        for task in built where task.record.zombie {
            try exitAsZombie(task, parent: built.first { $0.record.pid == task.record.ppid }!)
        }
        logger.debug("created \(built.count) processes")
        return built.filter { !$0.record.zombie }
    }

    static func pidTaken(_ pid: Int32) -> AmberError {
        AmberError(.pidTaken, "PID \(pid) is taken by process \(ProcessName(pid: pid)); stop that process, or restore into a new PID namespace (--new-pidns), where no PID can clash with this host's")
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
                let tracee = try clone(in: task.injector, session: task, flags: 0, exitSignal: SIGCHLD, pids: levels.filter { $0 != 0 }, what: "the exited leader of process group \(pgid)")
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
            try standIn.parent.injector.call("wait4(\(standIn.pidInParent))", SyscallNumber.wait4, UInt64(standIn.pidInParent), 0, UInt64(UInt32(bitPattern: __WALL)), 0)
            try discardChildSignal(standIn.parent)
        }
    }

    /// Names the zombie and makes it exit as the original did; its parent keeps it unreaped.
    private static func exitAsZombie(_ task: TreeTask, parent: TreeTask) throws {
        try ThreadState.setName(task.record.comm, task.injector, task)
        if task.record.exitStatus & 0x7f != 0 {
            // No core file: the original wrote its own, if any.
            let noCore = try task.writeScratch(value: rlimit(rlim_cur: 0, rlim_max: 0), offset: 64)
            try task.injector.call("prlimit64(RLIMIT_CORE)", SyscallNumber.prlimit64, 0, UInt64(RLIMIT_CORE.rawValue), noCore, 0)
        }
        try exit(task.tracee, injector: task.injector, status: task.record.exitStatus)
        try discardChildSignal(parent)
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

    /// The restorer made a child exit: take the SIGCHLD this queued off the parent.
    private static func discardChildSignal(_ parent: TreeTask) throws {
        var set: UInt64 = 1 << (UInt64(SIGCHLD) - 1)
        var timeout = timespec(tv_sec: 0, tv_nsec: 0)
        let setAddress = try withUnsafeBytes(of: &set) { try parent.writeScratch($0, offset: 1024) }
        let timeoutAddress = try withUnsafeBytes(of: &timeout) { try parent.writeScratch($0, offset: 1040) }
        _ = try parent.injector.raw(SyscallNumber.rtSigtimedwait, setAddress, 0, timeoutAddress, 8)
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

    init(root: Amber_Task, instruction: UInt64, restorerPidfd: Int32, created: inout [Tracee]) throws {
        do {
            tracee = try createStoppedHelper(pids: [1], flags: TreeState.newPIDNamespace, keptDescriptor: restorerPidfd, awaitedChild: root.namespacePids.first ?? root.pid)
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
        if let scratch {
            self.scratch = scratch
        } else {
            try MemoryState.prepareAddressSpace(for: record, &injector)
            self.scratch = try Self.mapScratch(injector)
        }
        self.injector = injector
    }

    static func mapScratch(_ injector: SyscallInjector) throws -> UInt64 {
        try injector.call("mmap scratch", SyscallNumber.mmap, 0, UInt64(scratchSize), UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
    }

    static let scratchSize = 4096
}
