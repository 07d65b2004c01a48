import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Logging
import SystemPackage

/// Dumps a process tree into an image directory.
public enum Checkpoint {
    /// What a dump wrote.
    public struct Summary: Sendable {
        /// The root of the dumped tree, and its command name.
        public let pid: Int32
        public let comm: String
        /// Processes (zombies included) and threads (each live process's leader included).
        public let processes: Int
        public let threads: Int
        /// Memory areas of the live processes, and the bytes of the pages written for them.
        public let areas: Int
        public let pageBytes: UInt64
        /// From the freeze until the tree was let go (`--cow`, `--leave-running`) or killed.
        public let frozenNanoseconds: UInt64
        /// Every process of the tree, parents first.
        public let pids: [Int32]
        /// How long each phase took, in order: "preflight" (checks while the tree runs),
        /// "collect" (freeze, read every process; its memory too unless `--cow`), "copy" (`--cow`:
        /// the memory, the tree running), "inventory" (the image completed), "release" (the
        /// tree killed and its PIDs free, or let go).
        public let phases: [Phase]
    }

    /// One phase of a dump and how long it took.
    public struct Phase: Sendable {
        public let name: String
        public let nanoseconds: UInt64

        init(_ name: String, from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) {
            self.name = name
            let duration = (end - start).components
            nanoseconds = UInt64(duration.seconds) * 1_000_000_000 + UInt64(duration.attoseconds / 1_000_000_000)
        }
    }

    /// Freezes the tree rooted at `pid`, writes its image, then kills it (waiting until its
    /// PIDs are free) or, with `leaveRunning`, lets it go on. `durable` fsyncs the image before
    /// the tree is killed. On any failure the tree is left running, untraced. `interruption`
    /// names the `amber dump` process a worker serves; a library caller keeps the default.
    /// Needs the rights to ptrace every process of the tree; as root, the image is
    /// authenticated with this host's key (docs/security.md). `externalFiles` names objects
    /// outside the tree ("pipe:[INODE]") that the image records as such, for a restore to plug
    /// in the caller's descriptors (`ExternalFiles`). `shellJob` (`-j`) dumps a program run from
    /// a shell, whose terminal is outside the tree, as a shell job (`ShellJobState`).
    /// `tcpEstablished` dumps established TCP connections under a network lock
    /// (`TcpConnectionKind`, `NetworkLock`), which stays on after a dump that kills the tree,
    /// until the restore. `copyOnWrite` (`--cow`) lets the tree run on while its pages are
    /// copied (`CopyOnWriteMemoryState`), then kills it unless `leaveRunning`. `previous`
    /// (`--prev-images-dir`) names a pre-dump beside the image whose pages not written since
    /// the image refers to (`MemoryTracking`). `pageServer` ("HOST:PORT", `--page-server`)
    /// sends the image to `amber page-server` on another host instead of into `directory`
    /// (`PageServer`): the tree is killed or let go only once the page server has the inventory.
    /// `amongOtherFiles` lets an existing `directory` hold files other than an image (`amber
    /// swrk`: the runtime's log and descriptions).
    public static func run(
        pid: Int32, directory: String, leaveRunning: Bool, durable: Bool = false, externalFiles: Set<String> = [],
        shellJob: Bool = false, interruption: DumpInterruption = DumpInterruption(supervisor: nil),
        tcpEstablished: Bool = false, copyOnWrite: Bool = false, previous: String? = nil, pageServer: String? = nil,
        amongOtherFiles: Bool = false, storage: ImageStorage = .plain, networkMadeAgain: Bool = false,
        logger: Logger
    ) throws(AmberError) -> Summary {
        if pageServer != nil && previous != nil {
            throw AmberError(
                .unsupported,
                "--page-server cannot be combined with --prev-images-dir: the image would name a pre-dump on this host, beside an image directory that is on the page server's"
            )
        }
        if pageServer != nil && copyOnWrite {
            throw AmberError(
                .unsupported,
                "--page-server cannot be combined with --cow: a copy-on-write dump over the network is not supported yet"
            )
        }
        if copyOnWrite && previous != nil {
            throw AmberError(
                .unsupported,
                "--cow cannot be combined with --prev-images-dir: a copy-on-write dump reads every page as it was at the freeze, and the pages written since the pre-dump are what an incremental dump reads while frozen"
            )
        }
        if copyOnWrite && tcpEstablished {
            throw AmberError(
                .unsupported,
                "--cow cannot be combined with --tcp-established: the connections would stay blocked by the network lock while the tree runs on, and what they carried after their queues were read would be lost to the restored copy"
            )
        }
        TcpConnectionDump.begin(asked: tcpEstablished)
        PendingConnections.begin()
        guard pid > 0, Signals.processExists(pid), (try? ProcFS.status(pid: pid)) != nil else {
            throw AmberError(.noSuchProcess, "no process with PID \(pid)")
        }
        guard pid != getpid() else { throw AmberError(.unsupported, "amber cannot dump itself") }
        try ExternalFiles.checkNames(externalFiles)
        // A dump after a pre-dump refers to it for the pages not written since (`MemoryTracking`).
        let incremental = try previous.map { previous throws(AmberError) in
            try IncrementalDump(previous: previous, directory: directory, encryptionKey: storage.encryptionKey)
        }
        // Root's dumps are authenticated with this host's key; a user cannot read it.
        let key = try HostImageKey.forDump()
        let writer: ImageWriter
        if let pageServer {
            writer = ImageWriter(
                sink: try PageServer.sink(to: pageServer), durable: durable, key: key, storage: storage)
        } else {
            do {
                writer = try ImageWriter(
                    directory: directory, durable: durable, key: key, storage: storage,
                    amongOtherFiles: amongOtherFiles)
            } catch {
                throw AmberError(error.kind == .directoryNotEmpty ? .directoryNotEmpty : .failure, error.description)
            }
        }
        // The image's records are checked as a restore checks them before the tree is killed:
        // one it would refuse fails the dump instead, the tree left as it was and the image
        // removed. An incremental
        // image is read back, with the chain it names.
        let readBack: ReadBack? =
            pageServer != nil
            ? nil
            : { (tasks: [Amber_Task], inventory: Amber_Inventory) throws(AmberError) in
                do {
                    if inventory.hasParent {
                        _ = try ImageReader(
                            directory: directory, key: key, checkPages: false, encryptionKey: storage.encryptionKey
                        ).tasks()
                    } else {
                        try ImageReader.validate(tasks, written: inventory)
                    }
                } catch {
                    throw AmberError(
                        .failure,
                        "the image written in \(directory) is not one a restore takes, and is removed: \(error)")
                }
            }
        do {
            return try run(
                pid: pid, writer: writer, leaveRunning: leaveRunning, externalFiles: externalFiles,
                shellJob: shellJob, interruption: interruption, copyOnWrite: copyOnWrite, incremental: incremental,
                networkMadeAgain: networkMadeAgain, readBack: readBack, logger: logger)
        } catch {
            writer.discard()
            throw error
        }
    }

    /// What checks an image written before the tree is killed: its tasks and its inventory.
    private typealias ReadBack = ([Amber_Task], Amber_Inventory) throws(AmberError) -> Void

    private static func run(
        pid: Int32, writer: ImageWriter, leaveRunning: Bool, externalFiles: Set<String>, shellJob: Bool,
        interruption: DumpInterruption, copyOnWrite: Bool, incremental: IncrementalDump?, networkMadeAgain: Bool,
        readBack: ReadBack?, logger: Logger
    ) throws(AmberError) -> Summary {
        // Opening its memory needs the same rights as ptrace: refuse before anything else is looked at.
        let memory = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        if memory >= 0 {
            close(memory)
        } else if errno == EACCES || errno == EPERM {
            throw AmberError(
                .permissionDenied,
                "may not ptrace process \(ProcessName(pid: pid)): \(LinuxError.current("open /proc/\(pid)/mem").errno.name) (dumping needs the rights to ptrace it)"
            )
        }
        let started = ContinuousClock.now
        let running = TreeState.walk(root: pid)
        logger.trace("found \(running.count) running processes")
        for amber in [getpid(), interruption.supervisor].compactMap(\.self) where running.contains(amber) {
            throw AmberError(
                .unsupported, "amber (PID \(amber)) is inside the tree of process \(pid): it cannot dump itself")
        }
        do {
            // Refusals first, while the tree runs untouched; again once it is frozen, as it may have changed.
            try Preflight.check(running, root: pid, externalFiles: externalFiles, shellJob: shellJob)
            logger.trace("checked each running process")
        } catch {
            // The checks may have made the network lock's table (`TcpConnectionDump.prepareLock`).
            _ = try? TcpConnectionDump.finish(keepLock: false)
            throw wrap(error, pid: pid)
        }
        var processes: [FrozenProcess] = []
        let cow = copyOnWrite ? CopyOnWriteDump(logger: logger) : nil
        defer { cow?.close() }
        let freezing = ContinuousClock.now
        var frozenFor: Duration?
        do {
            processes = try TreeState.freeze(root: pid, interruption: interruption, logger: logger)
            // smaps walks every page table: read on another CPU while the frozen tree is checked.
            let areaFlags = AreaFlagsPrefetch(processes.filter { !$0.zombie }.map(\.pid))
            try interruption.check(FaultPoints.preflight)
            try Preflight.check(processes, root: pid, externalFiles: externalFiles, shellJob: shellJob)
            logger.trace("checked each frozen process")
            try TreeState.check(processes)
            logger.trace("checked the frozen tree")
            var tasks = try collect(
                &processes, writer: writer, externalFiles: externalFiles, shellJob: shellJob,
                interruption: interruption, copyOnWrite: cow, incremental: incremental, areaFlags: areaFlags,
                networkMadeAgain: networkMadeAgain, logger: logger)
            var phases = [Phase("preflight", from: started, to: freezing), Phase("collect", from: freezing, to: .now)]
            if let cow {
                try cow.startHandling()
                TreeState.release(processes)
                processes = []
                frozenFor = ContinuousClock.now - freezing
                logger.trace("tree let go, its pages write-protected")
                try cow.copy(into: &tasks)
                for task in tasks {
                    try interruption.check(FaultPoints.write)
                    try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: task.pid))
                }
                phases.append(Phase("copy", from: freezing + (frozenFor ?? .zero), to: .now))
            }
            try interruption.check(FaultPoints.inventory)
            let completing = ContinuousClock.now
            var inventory = inventory(for: tasks)
            if let incremental { inventory.parent = incremental.reference }
            let written = try writer.finish(inventory: inventory)
            logger.trace("image written")
            if !leaveRunning, let readBack {
                do throws(AmberError) {
                    try interruption.check(FaultPoints.readBack)
                    try readBack(tasks, written)
                } catch {
                    writer.withdraw()
                    throw error
                }
                logger.trace("image checked")
            }
            let releasing = ContinuousClock.now
            phases.append(Phase("inventory", from: completing, to: releasing))
            if copyOnWrite {
                if !leaveRunning { try CopyOnWriteDump.kill(root: pid, interruption: interruption, logger: logger) }
            } else if leaveRunning {
                try TcpConnectionDump.finish(keepLock: false)
                TreeState.release(processes)
                PendingConnections.report(leftRunning: true, logger: logger)
            } else {
                try TreeState.kill(processes, tasks: tasks, logger: logger)
                PendingConnections.report(leftRunning: false, logger: logger)
                if let table = try TcpConnectionDump.finish(keepLock: true) {
                    logger.notice(
                        "the TCP connections of the tree stay blocked by the nftables table inet \(table) until they are restored (nft delete table inet \(table) gives them up)"
                    )
                }
            }
            phases.append(Phase("release", from: releasing, to: .now))
            let frozen = (frozenFor ?? ContinuousClock.now - freezing).components
            let live = tasks.filter { !$0.zombie }
            // The image is complete: the tracking it relied on ends, and the areas are unregistered.
            incremental?.tracker.release()
            return Summary(
                pid: pid, comm: tasks[0].comm, processes: tasks.count,
                threads: live.reduce(0) { $0 + $1.threads.count },
                areas: live.reduce(0) { $0 + $1.memory.areas.count },
                pageBytes: live.reduce(0) { total, task in
                    total + task.memory.areas.reduce(0) { $0 + $1.pages.reduce(0) { $0 + $1.count } }
                } * 4096,
                frozenNanoseconds: UInt64(frozen.seconds) * 1_000_000_000 + UInt64(frozen.attoseconds / 1_000_000_000),
                pids: tasks.map(\.pid), phases: phases)
        } catch {
            // Its protection lifted before the tree runs again without a handler.
            cow?.close()
            _ = try? TcpConnectionDump.finish(keepLock: false)
            TreeState.release(processes)
            throw wrap(error, pid: pid)
        }
    }

    private static func wrap(_ error: any Error, pid: Int32) -> AmberError {
        if let error = error as? AmberError { return error }
        let name = ProcessName(pid: pid)
        if let error = error as? LinuxError, error.errno == .noSuchProcess {
            return AmberError(.noSuchProcess, "a process of the tree of \(name) went away during the dump: \(error)")
        }
        return AmberError(.failure, "dump of process \(name) failed: \(error)")
    }

    /// Writes one record (and page file) per process, parents first, each kind of state
    /// (`StateKinds`) by its steps: frozen and traced ones on this thread, the tracer; outside
    /// ones on `OutsideReads`, which runs them on another CPU while the tracer goes on to the next.
    private static func collect(
        _ processes: inout [FrozenProcess], writer: ImageWriter, externalFiles: Set<String>, shellJob: Bool,
        interruption: DumpInterruption, copyOnWrite: CopyOnWriteDump?, incremental: IncrementalDump?,
        areaFlags: AreaFlagsPrefetch, networkMadeAgain: Bool, logger: Logger
    ) throws -> [Amber_Task] {
        let outside = OutsideReads(writer: writer, logger: logger, deferRecords: copyOnWrite != nil)
        // Injected calls cost less when amber runs where the process last ran. Following each
        // process of a tree from CPU to CPU, though, the tracer lands on the CPU the outside
        // reads use, and a 51-process dump took 20% longer (bench tree, A/B runs).
        let followsTarget = processes.count == 1
        do {
            let tree = TreeDump(
                processes: processes, writer: writer, logger: logger, externalFiles: externalFiles,
                fileContents: FileContentsDump(writer: writer), shellJob: shellJob, copyOnWrite: copyOnWrite,
                incremental: incremental, areaFlags: areaFlags, networkMadeAgain: networkMadeAgain)
            let prepared = try StateKinds.all.map { try $0.prepareDump(tree) }
            let steps = prepared.flatMap(\.steps)
            let threadChecks = prepared.flatMap(\.threadChecks)
            let frozenSteps = steps.filter { $0.phase == .frozen }
            let tracedSteps = steps.filter { $0.phase == .traced }
            let outsideSteps = steps.filter { $0.phase == .outside }
            for index in processes.indices {
                let process = processes[index]
                let dump = ProcessDump(
                    process,
                    target: DumpTarget(
                        pid: process.pid, name: process.name, snapshot: process.snapshot, interruption: interruption),
                    tree: processes[0].name, threadChecks: threadChecks)
                for step in frozenSteps where step.zombies || !process.zombie {
                    try run(step, dump, interruption: interruption, outside: outside, logger: logger)
                }
                guard !process.zombie else {
                    outside.complete(dump, steps: [], interruption: interruption)
                    continue
                }
                processes[index].syscallInstruction = try collect(
                    dump, steps: tracedSteps, outside: outside, followsTarget: followsTarget,
                    interruption: interruption, logger: logger)
                outside.complete(dump, steps: outsideSteps, interruption: interruption)
            }
            return try outside.finish()
        } catch {
            _ = try? outside.finish()
            throw error
        }
    }

    /// Each step is a point at which an interrupted dump stops.
    static func run(
        _ step: PreparedDumpStep, _ dump: ProcessDump, interruption: DumpInterruption, outside: OutsideReads?,
        logger: Logger
    ) throws {
        try interruption.check(step.name)
        try outside?.check()
        try step.run(dump)
        logger.trace("process \(dump.pid): \(step.name) read")
    }

    /// Runs the traced steps through a session opened for them; returns the `syscall`
    /// instruction the dump injected with.
    private static func collect(
        _ dump: ProcessDump, steps: [PreparedDumpStep], outside: OutsideReads, followsTarget: Bool,
        interruption: DumpInterruption, logger: Logger
    ) throws -> UInt64 {
        let session = try DumpSession(dump.process, interruption: interruption, logger: logger)
        logger.trace("process \(dump.pid): session open")
        // Injected syscalls cost several times more across CPUs. The tracer takes its own CPUs
        // back before the outside reads start: a thread it starts inherits its affinity, and the
        // threads that read a large process's memory must run on every CPU.
        let ownAffinity = followsTarget ? try? CPUAffinity.of(0) : nil
        if followsTarget { try? CPUAffinity(cpu: session.stat.processor).apply(to: 0) }
        session.followsTarget = followsTarget
        defer { try? ownAffinity?.apply(to: 0) }
        dump.openSession = session
        defer { dump.openSession = nil }
        do {
            for step in steps {
                try run(step, dump, interruption: interruption, outside: outside, logger: logger)
            }
        } catch {
            try? session.finish()
            throw error
        }
        try session.finish()
        return session.injector.instruction
    }

    private static func inventory(for tasks: [Amber_Task]) -> Amber_Inventory {
        var inventory = Amber_Inventory()
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        inventory.amberVersion = AmberVersion.current
        inventory.kernelRelease = field(names.release)
        inventory.machine = field(names.machine)
        inventory.xstateFeatures = HostCPU.xstateFeatures
        inventory.xstateSize = UInt32(tasks.first { !$0.zombie }?.threads.first?.registers.xstate.count ?? 0)
        inventory.createdUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        inventory.rootPid = tasks[0].pid
        return inventory
    }
}

/// Refusals about each process on its own, made before the tree is stopped (so it keeps
/// running untouched) and again once it is frozen.
enum Preflight {
    /// Before the tree is frozen: each process's name, status and areas are read here. A
    /// descriptor the running tree closes after it was listed fails a later read of it (EBADF,
    /// ENOENT: a kind's check taking a copy, say), as a process that exits fails kcmp (ESRCH):
    /// the checks run again, from a new listing.
    static func check(_ pids: [Int32], root: Int32, externalFiles: Set<String>, shellJob: Bool = false) throws {
        var attempt = 1
        while true {
            do {
                return try check(pids, root: root, externalFiles: externalFiles, shellJob: shellJob, frozen: false) {
                    pid throws(LinuxError) in
                    guard let status = try? ProcFS.status(pid: pid) else { return nil }
                    return (
                        ProcessName(pid: pid), status, status.state == "Z" ? [] : try ProcFS.mapsWithFiles(pid: pid),
                        ProcessDescriptors(pid: pid, running: true)
                    )
                }
            } catch let error as LinuxError
                where attempt < 5
                && [Errno.badFileDescriptor, .noSuchFileOrDirectory, .noSuchProcess].contains(error.errno)
            {
                attempt += 1
            }
        }
    }

    /// Once it is frozen: from each process's snapshot.
    static func check(_ processes: [FrozenProcess], root: Int32, externalFiles: Set<String>, shellJob: Bool = false)
        throws
    {
        let byPID = Dictionary(
            processes.map { ($0.pid, ($0.name, $0.snapshot)) }, uniquingKeysWith: { first, _ in first })
        try check(processes.map(\.pid), root: root, externalFiles: externalFiles, shellJob: shellJob, frozen: true) {
            pid in
            byPID[pid].map { ($0.0, $0.1.status, $0.1.maps, $0.1.descriptors) }
        }
    }

    /// Each process is checked on every CPU at once (only /proc is read); the first refusal in
    /// tree order is the one thrown, as if they had been checked one by one, then the refusals
    /// across processes. `read` gives a process's name, status and areas, nil when it is gone.
    private static func check(
        _ pids: [Int32], root: Int32, externalFiles: Set<String>, shellJob: Bool, frozen: Bool,
        read: @Sendable (Int32) throws(LinuxError) -> (ProcessName, ProcessStatus, [MemoryMapping], ProcessDescriptors)?
    ) throws {
        let tree = ProcessName(pid: root)
        let outside = OutsideScan(tree: Set(pids), frozen: frozen)
        if !frozen { outside.readTracedInBackground() }
        let results = pids.concurrentMap { pid in
            Result { () throws -> CheckedProcess? in
                guard let (name, status, maps, descriptors) = try read(pid) else { return nil }
                return try check(
                    name, status: status, maps: maps, descriptors: descriptors, outside: outside, root: root,
                    tree: tree, externalFiles: externalFiles, shellJob: shellJob)
            }
        }
        let checked = try zip(pids, results).compactMap { pid, result in
            do {
                return try result.get()
            } catch  where hasExited(pid) {
                // It exited while the running tree was checked (a child that came and went):
                // the freeze finds the tree as it is then.
                return nil
            }
        }
        for kind in StateKinds.all {
            try kind.check(tree: checked)
        }
    }

    /// Gone, or a zombie within a few milliseconds (an exiting process loses its files and
    /// namespaces before it is a zombie).
    private static func hasExited(_ pid: Int32) -> Bool {
        for _ in 0..<10 {
            guard let status = try? ProcFS.status(pid: pid) else { return true }
            // A group whose leader alone exited (pthread_exit) shows as a zombie and runs on.
            if status.state == "Z" { return status.threads <= 1 }
            usleep(1000)
        }
        return false
    }

    /// One process's refusals; returns it for the checks across processes, nil for a zombie.
    private static func check(
        _ name: ProcessName, status: ProcessStatus, maps: [MemoryMapping], descriptors: ProcessDescriptors,
        outside: OutsideScan, root: Int32, tree: ProcessName, externalFiles: Set<String>, shellJob: Bool
    ) throws -> CheckedProcess? {
        let pid = name.pid
        if status.state == "Z" {
            if status.threads > 1 {
                throw AmberError.unsupported(
                    name, "has exited while \(status.threads - 1) of its threads run on: not supported yet", tree: tree)
            }
            if pid == root { throw AmberError.unsupported(name, "is a zombie", tree: tree) }
            return nil
        }
        if status.tracerPID != 0 && status.tracerPID != getpid() {
            throw AmberError.unsupported(
                name,
                "is traced by process \(ProcessName(pid: status.tracerPID)) (a debugger or tracer outside amber): a task has one tracer, and the tracing cannot be restored",
                tree: tree)
        }
        let process = CheckedProcess(
            name: name, status: status, maps: maps, tree: tree, externalFiles: externalFiles, descriptors: descriptors,
            outside: outside, shellJob: shellJob)
        for kind in StateKinds.all {
            try kind.check(process)
        }
        return process
    }
}

/// The version of amber (`amber --version`), recorded in every image's inventory.
public enum AmberVersion {
    public static let current = "0.1.0"
}

/// This CPU's XSAVE features (XCR0).
public enum HostCPU {
    public static var xstateFeatures: UInt64 {
        XState.enabledFeatures
    }
}
