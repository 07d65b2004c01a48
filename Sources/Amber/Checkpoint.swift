import AmberImage
import CLinux
import FoundationEssentials
import Glibc
import LinuxKit
import Logging

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
    }

    /// Freezes the tree rooted at `pid`, writes its image, then kills it (waiting until its
    /// PIDs are free) or, with `leaveRunning`, lets it go on. `durable` fsyncs the image before
    /// the tree is killed. On any failure the tree is left running, untraced. `interruption`
    /// names the `amber dump` process a worker serves; a library caller keeps the default.
    /// Needs the rights to ptrace every process of the tree; as root, the image is
    /// authenticated with this host's key (docs/security.md).
    public static func run(pid: Int32, directory: String, leaveRunning: Bool, durable: Bool = false, interruption: DumpInterruption = DumpInterruption(supervisor: nil), logger: Logger) throws(AmberError) -> Summary {
        guard pid > 0, Signals.processExists(pid), (try? ProcFS.status(pid: pid)) != nil else {
            throw AmberError(.noSuchProcess, "no process with PID \(pid)")
        }
        guard pid != getpid() else { throw AmberError(.unsupported, "amber cannot dump itself") }
        // Root's dumps are authenticated with this host's key; a user cannot read it.
        let key = try HostImageKey.forDump()
        let writer: ImageWriter
        do {
            writer = try ImageWriter(directory: directory, durable: durable, key: key)
        } catch {
            throw AmberError(error.kind == .directoryNotEmpty ? .directoryNotEmpty : .failure, error.description)
        }
        do {
            return try run(pid: pid, writer: writer, leaveRunning: leaveRunning, interruption: interruption, logger: logger)
        } catch {
            writer.discard()
            throw error
        }
    }

    private static func run(pid: Int32, writer: ImageWriter, leaveRunning: Bool, interruption: DumpInterruption, logger: Logger) throws(AmberError) -> Summary {
        // Opening its memory needs the same rights as ptrace: refuse before anything else is looked at.
        let memory = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        if memory >= 0 {
            close(memory)
        } else if errno == EACCES || errno == EPERM {
            throw AmberError(.permissionDenied, "may not ptrace process \(ProcessName(pid: pid)): \(LinuxError.current("open /proc/\(pid)/mem").errno.name) (dumping needs the rights to ptrace it)")
        }
        let running = TreeState.walk(root: pid)
        logger.trace("found \(running.count) running processes")
        for amber in [getpid(), interruption.supervisor].compactMap(\.self) where running.contains(amber) {
            throw AmberError(.unsupported, "amber (PID \(amber)) is inside the tree of process \(pid): it cannot dump itself")
        }
        do {
            // Refusals first, while the tree runs untouched; again once it is frozen, as it may have changed.
            try Preflight.check(running, root: pid)
            logger.trace("checked each running process")
        } catch {
            throw wrap(error, pid: pid)
        }
        var processes: [FrozenProcess] = []
        do {
            processes = try TreeState.freeze(root: pid, interruption: interruption, logger: logger)
            try interruption.check(.preflight)
            try Preflight.check(processes, root: pid)
            logger.trace("checked each frozen process")
            try TreeState.check(processes)
            logger.trace("checked the frozen tree")
            let tasks = try collect(&processes, writer: writer, interruption: interruption, logger: logger)
            try interruption.check(.inventory)
            try writer.finish(inventory: inventory(for: tasks))
            logger.trace("image written")
            let live = tasks.filter { !$0.zombie }
            let summary = Summary(
                pid: pid, comm: tasks[0].comm, processes: tasks.count, threads: live.reduce(0) { $0 + $1.threads.count },
                areas: live.reduce(0) { $0 + $1.memory.areas.count },
                pageBytes: live.reduce(0) { total, task in total + task.memory.areas.reduce(0) { $0 + $1.pages.reduce(0) { $0 + $1.count } } } * 4096)
            if leaveRunning {
                TreeState.release(processes)
            } else {
                try TreeState.kill(processes, tasks: tasks, logger: logger)
            }
            return summary
        } catch {
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

    /// Writes one record (and page file) per process, parents first. This thread, the tracer,
    /// reads what needs ptrace or an injected call; what can be read from outside the process
    /// goes to `OutsideReads`, which reads it on another CPU while the tracer goes on to the next.
    private static func collect(_ processes: inout [FrozenProcess], writer: ImageWriter, interruption: DumpInterruption, logger: Logger) throws -> [Amber_Task] {
        let outside = OutsideReads(writer: writer, logger: logger)
        // Injected calls cost less when amber runs where the process last ran. Following each
        // process of a tree from CPU to CPU, though, the tracer lands on the CPU the outside
        // reads use, and a 51-process dump took 20% longer (bench tree, A/B runs).
        let followsTarget = processes.count == 1
        do {
            let areaFlags = AreaFlagsPrefetch(processes.filter { !$0.zombie }.map(\.pid))
            let stoppedChildren = Dictionary(grouping: processes.dropFirst().filter { $0.stopSignal != 0 }, by: \.snapshot.stat.ppid)
            var collectedStops: [Int32: Bool] = [:]
            var sessionKeyrings: [Int32: Int64] = [:]
            let dumperKeyring = try Keyrings.ownSessionKeyring()
            for index in processes.indices {
                let process = processes[index]
                var task = Amber_Task()
                try TreeState.dump(process, into: &task, stopCollected: collectedStops[process.pid] ?? false)
                guard !process.zombie else {
                    outside.complete(task, name: process.name, interruption: interruption)
                    continue
                }
                // Before the session maps its scratch page into the process.
                let vmFlags = try areaFlags.flags(of: process.pid)
                logger.trace("process \(process.pid): area flags read")
                try MemoryState.check(vmFlags, maps: process.snapshot.maps, process: process.name, tree: processes[0].name)
                let parentKeyring = index == 0 ? dumperKeyring : sessionKeyrings[task.ppid] ?? dumperKeyring
                let (target, brk, sessionKeyring, futureLocking) = try collect(process, into: &task, vmFlags: vmFlags, parentKeyring: parentKeyring, stoppedChildren: stoppedChildren[process.pid] ?? [], collectedStops: &collectedStops, outside: outside, followsTarget: followsTarget, interruption: interruption, logger: logger, instruction: &processes[index].syscallInstruction)
                sessionKeyrings[process.pid] = sessionKeyring
                outside.complete(task, name: process.name, interruption: interruption, reading: (target, vmFlags, brk, futureLocking))
            }
            return try outside.finish()
        } catch {
            _ = try? outside.finish()
            throw error
        }
    }

    /// Reads what needs the tracer; returns what `OutsideReads` needs, and sets the `syscall`
    /// instruction the dump injected with.
    /// `stoppedChildren`: its children in a group stop, whose stop it may have collected already
    /// (into `collectedStops`, by PID).
    /// Returns also the serial number of its session keyring (`parentKeyring`: its parent's)
    /// and whether it has mlockall(MCL_FUTURE) on.
    private static func collect(_ process: FrozenProcess, into task: inout Amber_Task, vmFlags: [UInt64: MemoryAreaFlags], parentKeyring: Int64, stoppedChildren: [FrozenProcess], collectedStops: inout [Int32: Bool], outside: OutsideReads, followsTarget: Bool, interruption: DumpInterruption, logger: Logger, instruction: inout UInt64?) throws -> (DumpTarget, UInt64, Int64, MemoryState.FutureLocking) {
        try SeccompState.suspend(process)
        let session = try DumpSession(process, interruption: interruption, logger: logger)
        logger.trace("process \(process.pid): session open")
        // Injected syscalls cost several times more across CPUs. The tracer takes its own CPUs
        // back before the outside reads start: a thread it starts inherits its affinity, and the
        // threads that read a large process's memory must run on every CPU.
        let ownAffinity = followsTarget ? try? CPUAffinity.of(0) : nil
        if followsTarget { try? CPUAffinity(cpu: session.stat.processor).apply(to: 0) }
        defer { try? ownAffinity?.apply(to: 0) }
        let brk: UInt64
        let sessionKeyring: Int64
        let futureLocking: MemoryState.FutureLocking
        do {
            // Each kind of state is one step at which an interrupted dump stops.
            func step<State>(_ kind: String, _ read: () throws -> State) throws -> State {
                try interruption.check(.collect)
                try outside.check()
                let state = try read()
                logger.trace("process \(process.pid): \(kind) read")
                return state
            }
            task.signals = try step("signals") { try SignalState.dump(session) }
            try step("threads") { try ThreadState.dump(session, into: &task) }
            try step("seccomp") { try SeccompState.dump(session, into: &task) }
            task.processFlags = try step("flags") { try FlagState.dump(session) }
            task.timers = try step("timers") { try TimerState.dump(session) }
            task.membarrier = try step("membarrier") { try MembarrierState.dump(session) }
            brk = try step("break") { try MemoryState.currentBreak(session) }
            (sessionKeyring, task.ownSessionKeyring) = try step("keyrings") { try KeyringState.dump(session, parentKeyring: parentKeyring) }
            if !stoppedChildren.isEmpty {
                collectedStops.merge(try step("stops of its children") { try TreeState.collectedStops(of: stoppedChildren, session) }) { $1 }
            }
            futureLocking = try step("future locking") { try MemoryState.futureLocking(session, vmFlags: vmFlags) }
        } catch {
            try? session.finish()
            throw error
        }
        try session.finish()
        instruction = session.injector.instruction
        return (session.target, brk, sessionKeyring, futureLocking)
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
    /// Before the tree is frozen: each process's name, status and areas are read here.
    static func check(_ pids: [Int32], root: Int32) throws {
        try check(pids, root: root) { pid throws(LinuxError) in
            guard let status = try? ProcFS.status(pid: pid) else { return nil }
            return (ProcessName(pid: pid), status, status.state == "Z" ? [] : try ProcFS.mapsWithFiles(pid: pid))
        }
    }

    /// Once it is frozen: from each process's snapshot.
    static func check(_ processes: [FrozenProcess], root: Int32) throws {
        let byPID = Dictionary(processes.map { ($0.pid, ($0.name, $0.snapshot)) }, uniquingKeysWith: { first, _ in first })
        try check(processes.map(\.pid), root: root) { pid in byPID[pid].map { ($0.0, $0.1.status, $0.1.maps) } }
    }

    /// Each process is checked on every CPU at once (only /proc is read); the first refusal in
    /// tree order is the one thrown, as if they had been checked one by one. `read` gives a
    /// process's name, status and areas, nil when it is gone.
    private static func check(_ pids: [Int32], root: Int32, read: @Sendable (Int32) throws(LinuxError) -> (ProcessName, ProcessStatus, [MemoryMapping])?) throws {
        let tree = ProcessName(pid: root)
        let results = pids.concurrentMap { pid in
            Result { () throws -> (ProcessName, [MemoryMapping])? in
                guard let (name, status, maps) = try read(pid) else { return nil }
                return try check(name, status: status, maps: maps, root: root, tree: tree).map { (name, $0) }
            }
        }
        var sharedMemory: [UInt64: ProcessName] = [:]
        for result in results {
            guard let (name, maps) = try result.get() else { continue }
            try MemoryState.checkNotShared(maps, process: name, tree: tree, seen: &sharedMemory)
        }
    }

    /// One process's refusals; returns its areas for the check across processes, nil for a zombie.
    private static func check(_ name: ProcessName, status: ProcessStatus, maps: [MemoryMapping], root: Int32, tree: ProcessName) throws -> [MemoryMapping]? {
        let pid = name.pid
        if status.state == "Z" {
            if pid == root { throw AmberError.unsupported(name, "is a zombie", tree: tree) }
            return nil
        }
        if status.tracerPID != 0 && status.tracerPID != getpid() {
            throw AmberError.unsupported(name, "is traced by process \(ProcessName(pid: status.tracerPID)) (a debugger or tracer outside amber): a task has one tracer, and the tracing cannot be restored", tree: tree)
        }
        try TreeState.checkTerminal(pid: pid, process: name, tree: tree)
        try SeccompState.check(pid: pid, status: status, process: name, tree: tree)
        try TimerState.check(pid: pid, process: name, tree: tree)
        try CredentialState.check(pid: pid, process: name, tree: tree)
        try SchedulingState.check(pid: pid, process: name, tree: tree)
        try FlagState.check(pid: pid, process: name, tree: tree)
        try FileState.check(pid: pid, process: name, tree: tree)
        try LockState.check(pid: pid, process: name, tree: tree)
        // Before the working directory: in another mount namespace its path means something else.
        try NamespaceState.check(pid: pid, process: name, tree: tree)
        try EnvironmentState.check(pid: pid, process: name, tree: tree)
        try MemoryState.check(maps, process: name, tree: tree)
        try MemoryPolicyState.check(pid: pid, process: name, tree: tree)
        return maps
    }
}

/// The version of amber (`amber --version`), recorded in every image's inventory.
public enum AmberVersion {
    public static let current = "0.1.0"
}

/// This CPU's XSAVE features (XCR0).
public enum HostCPU {
    public static var xstateFeatures: UInt64 {
        var value: UInt64 = 0
        _ = amber_xgetbv0(&value)
        return value
    }
}
