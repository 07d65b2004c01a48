import AmberImage
import LinuxKit
import Logging

/// One kind of a process's state (memory, threads, timers, open files...): its refusals, its
/// dump, its restore and its place in the restore order, all declared in the kind's own file.
/// `StateKinds.all` lists the kinds; the dump, the preflight, the restore and the fault points
/// all come from it. Each requirement has a default that does nothing, so a kind declares only
/// what it has.
protocol StateKind {
    /// Refuses, from /proc alone, state of one process that the kind cannot bring back exactly:
    /// before the tree is frozen (it keeps running untouched) and again once it is frozen.
    /// Not asked of zombies.
    static func check(_ process: CheckedProcess) throws

    /// Refusals across the processes of the tree, after each was checked on its own.
    static func check(tree processes: [CheckedProcess]) throws

    /// What the kind keeps across the processes of one dump (a table of shared open files,
    /// say): made once per dump, and handed to each of its steps.
    associatedtype DumpState = Void
    static func makeDumpState(_ dump: TreeDump) throws -> DumpState

    /// The steps that read the kind from each process, in order.
    static var dumpSteps: [DumpStep<DumpState>] { get }

    /// Refusals only a thread itself can answer (its keyring, its Landlock domain, its NUMA
    /// policy): asked by calls injected into each thread, while the threads step has it.
    static var threadChecks: [ThreadCheck<DumpState>] { get }

    /// The steps that bring it back into a process, each with its place in the restore order.
    static var restoreSteps: [RestoreStep] { get }

    /// The namespace kinds under /proc/PID/ns ("net", "uts"...) this kind dumps and restores:
    /// `NamespaceState` refuses a process in another namespace than amber's of the others.
    static var namespaceKinds: [String] { get }
}

extension StateKind {
    static func check(_ process: CheckedProcess) throws {}
    static func check(tree processes: [CheckedProcess]) throws {}
    static var dumpSteps: [DumpStep<DumpState>] { [] }
    static var threadChecks: [ThreadCheck<DumpState>] { [] }
    static var restoreSteps: [RestoreStep] { [] }
    static var namespaceKinds: [String] { [] }

    /// Its dump steps and thread checks bound to a new state of its own, for one dump.
    static func prepareDump(_ dump: TreeDump) throws -> PreparedDump {
        let state = try makeDumpState(dump)
        return PreparedDump(
            steps: dumpSteps.map { step in
                PreparedDumpStep(name: step.name, phase: step.phase, zombies: step.zombies) { try step.run($0, state) }
            },
            threadChecks: threadChecks.map { check in { try check.run($0, $1, state) } })
    }

    static var dumpStepNames: [(name: String, phase: DumpPhase)] { dumpSteps.map { ($0.name, $0.phase) } }
}

extension StateKind where DumpState == Void {
    static func makeDumpState(_ dump: TreeDump) throws {}
}

/// A live process as the refusals see it: read from /proc before the tree is frozen, or from
/// its snapshot once it is.
struct CheckedProcess: Sendable {
    let name: ProcessName
    let status: ProcessStatus
    let maps: [MemoryMapping]
    /// The root of the dumped tree, which refusals name.
    let tree: ProcessName
    /// The objects outside the tree the dump records as such (`--external`), by name.
    let externalFiles: Set<String>
    /// Its descriptors, probed once for every check that asks.
    let descriptors: ProcessDescriptors
    /// The descriptors of the processes outside the tree, read once per pass for every kind.
    let outside: OutsideScan
    /// Dumped as a shell job (`-j`): its terminal outside the tree is the job's (`ShellJobState`).
    var shellJob = false
    var pid: Int32 { name.pid }
    /// Whether these are the checks before the freeze, the tree running.
    var beforeFreeze: Bool { descriptors.running }

    /// A probe of each of its descriptors, in number order.
    func probes() throws -> [DescriptorProbe] { try descriptors.probes(process: name, tree: tree) }
}

/// One dump of a tree, as its steps see it.
struct TreeDump {
    /// Every process, parents first; the root first.
    let processes: [FrozenProcess]
    let writer: ImageWriter
    let logger: Logger
    /// The objects outside the tree the dump records as such (`--external`), by name.
    let externalFiles: Set<String>
    /// What its files without a name hold, written once whether open or mapped.
    let fileContents: FileContentsDump
    /// Dumped as a shell job (`-j`): its terminal outside the tree is the job's (`ShellJobState`).
    var shellJob = false
    /// `dump --cow`: the pages are copied once the tree runs again (`CopyOnWriteMemoryState`).
    var copyOnWrite: CopyOnWriteDump? = nil
    /// A dump with `--prev-images-dir`: the pre-dump it refers to and the tracking since.
    var incremental: IncrementalDump?
    /// The areas' flags of every process, read from the freeze on (`AreaFlagsPrefetch`).
    var areaFlags: AreaFlagsPrefetch
    /// The restore will make the tree's network namespace again, having none to join (a
    /// runtime's): what a new namespace would lack refuses the dump (`NetworkNamespaceState`).
    var networkMadeAgain = false
}

/// One process being dumped: its record, which each step fills in. The tracer hands it to the
/// outside reads once its traced steps are done, and never touches it again.
final class ProcessDump: @unchecked Sendable {
    let process: FrozenProcess
    var task: Amber_Task
    /// What its steps read from outside it (see `OutsideReads`).
    let target: DumpTarget
    /// The root of the dumped tree, which refusals name.
    let tree: ProcessName
    /// Open while its traced steps run.
    var openSession: DumpSession?
    /// Every kind's thread checks, which the threads step asks of each thread.
    let threadChecks: [PreparedThreadCheck]
    var pid: Int32 { process.pid }
    var name: ProcessName { process.name }

    init(_ process: FrozenProcess, target: DumpTarget, tree: ProcessName, threadChecks: [PreparedThreadCheck]) {
        self.process = process
        self.target = target
        self.tree = tree
        self.threadChecks = threadChecks
        task = Amber_Task()
    }

    /// The session its traced steps inject calls through; only they may ask for it.
    var session: DumpSession {
        guard let openSession else {
            preconditionFailure("a dump step that is not traced asked for the session of process \(pid)")
        }
        return openSession
    }
}

/// Where a dump step runs.
enum DumpPhase: CaseIterable {
    /// On the tracer, the process frozen, before any call is injected into it (its maps are
    /// still as it had them). Zombies are dumped here only, by the steps that take them.
    case frozen
    /// On the tracer, with calls injected through `ProcessDump.session`.
    case traced
    /// Beside the tracer, from outside the process (/proc, its memory, its files by pidfd),
    /// one process behind, in tree order.
    case outside
}

/// One step of a kind's dump: where it runs, and what it reads into the record with the
/// kind's `State` for this dump.
struct DumpStep<State> {
    /// Its name in logs and in its fault point, `dump.<name>`.
    let name: String
    let phase: DumpPhase
    /// Whether it runs for zombies too (only `frozen` steps do).
    let zombies: Bool
    let run: (ProcessDump, State) throws -> Void

    init(
        _ name: String, _ phase: DumpPhase, zombies: Bool = false, _ run: @escaping (ProcessDump, State) throws -> Void
    ) {
        precondition(!zombies || phase == .frozen, "only frozen steps read zombies")
        self.name = name
        self.phase = phase
        self.zombies = zombies
        self.run = run
    }
}

/// A dump step bound to its kind's state for one dump. The steps of a phase run on one thread
/// (frozen and traced ones on the tracer, outside ones on their queue): a state that steps of
/// both use (memory's) locks what they share.
struct PreparedDumpStep: @unchecked Sendable {
    let name: String
    let phase: DumpPhase
    let zombies: Bool
    let run: (ProcessDump) throws -> Void
}

/// One refusal a kind asks of each thread through the thread's own injector, with the kind's
/// state for this dump. The process's other threads are stopped meanwhile.
struct ThreadCheck<State> {
    let run: (any SyscallInjecting, DumpSession, State) throws -> Void

    init(_ run: @escaping (any SyscallInjecting, DumpSession, State) throws -> Void) { self.run = run }
}

/// A thread check bound to its kind's state for one dump.
typealias PreparedThreadCheck = (any SyscallInjecting, DumpSession) throws -> Void

/// A kind's dump steps and thread checks, bound to its state for one dump.
struct PreparedDump {
    let steps: [PreparedDumpStep]
    let threadChecks: [PreparedThreadCheck]
}

/// One step of a kind's restore.
struct RestoreStep {
    enum Phase {
        /// Into one process, the steps in their order, before the next process.
        case process
        /// Into the same process, once the restorer has taken back from it what it put there
        /// (its scratch memory and descriptors): what must outlast the restorer's last close in
        /// the task (locks), and the registers. A call injected here has no scratch area: its
        /// arguments go below the task's restored stack (`ScratchArena.belowRedZone`).
        case afterCleanUp
        /// Into each process once every process is restored, just before the tree is let go.
        case tree
    }

    /// Its name in logs and in its fault point, `restore.<name>`.
    let name: String
    /// Its place among the steps of its phase: lower first. Each kind's file says why its
    /// steps stand where they do.
    let order: Int
    let phase: Phase
    let run: (RestoreSession) throws -> Void

    init(_ name: String, order: Int, phase: Phase = .process, _ run: @escaping (RestoreSession) throws -> Void) {
        self.name = name
        self.order = order
        self.phase = phase
        self.run = run
    }

    /// In a debug build, fails here if `AMBER_TEST_FAULT` asks for it; in a release build, nothing.
    func reached() throws(AmberError) {
        try FaultPoints.reached(restore: name)
    }
}
