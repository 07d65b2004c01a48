/// Every kind of state Amber dumps and restores: the one list of them. Their refusals run in
/// this order (so a process that several would refuse is refused by the first), and so do
/// their dump steps of each phase; their restore steps run in the order each declares.
enum StateKinds {
    static let all: [any StateKind.Type] = [
        TreeState.self,
        // Before anything injected: a 32-bit program's threads take no 64-bit call.
        ExecutableClassState.self,
        SignalState.self,
        // Before seccomp: its dump fills in the thread records this one makes.
        ThreadState.self,
        SeccompState.self,
        TimerState.self,
        CredentialState.self,
        SchedulingState.self,
        FlagState.self,
        FileState.self,
        LockState.self,
        // Before the environment: in another mount namespace the working directory's path means something else.
        NamespaceState.self,
        MountNamespaceState.self,
        EnvironmentState.self,
        MemoryState.self,
        MemoryPolicyState.self,
        MembarrierState.self,
        LocalDescriptorTableState.self,
        KeyringState.self,
        LandlockState.self,
        EpollWatches.self,
        InotifyQueues.self,
        ControllingTerminals.self,
        ShellJobState.self,
        NetworkNamespaceState.self,
        // After the memory: protects the pages its step left to copy once the tree runs.
        CopyOnWriteMemoryState.self,
        UTSNamespaceState.self,
        IPCNamespaceState.self,
        CgroupState.self,
    ]

    /// Every kind's restore steps of `phase`, in their order.
    static func restoreSteps(_ phase: RestoreStep.Phase) -> [RestoreStep] {
        all.flatMap { $0.restoreSteps }.filter { $0.phase == phase }.sorted { $0.order < $1.order }
    }
}

/// The points at which a dump or a restore can be interrupted or, in a debug build, made to
/// fail by `AMBER_TEST_FAULT` (see `TestFault`): `dump.<point>` and `restore.<point>`.
public enum FaultPoints {
    /// A dump's own points around its kinds' steps.
    static let seize = "seize", preflight = "preflight", pages = "pages", write = "write", inventory = "inventory"
    /// The image read back before the tree is killed: after the inventory, so not one of
    /// `dump`'s points, before which an interrupted dump leaves no inventory.
    static let readBack = "read-back"
    /// A restore's own points around its kinds' steps.
    static let read = "read", create = "create", cleanup = "cleanup", detach = "detach"

    /// Every point of a dump, in the order a process reaches them: each process seized; the
    /// refusals run again once it is frozen; each kind's steps (`pages` at each chunk of
    /// memory read); each record written; the inventory that makes the image complete.
    public static var dump: [String] {
        let steps = StateKinds.all.flatMap { $0.dumpStepNames }
        return [seize, preflight]
            + DumpPhase.allCases.flatMap { phase in steps.filter { $0.phase == phase }.map(\.name) } + [
                pages, write, inventory,
            ]
    }

    /// Every point of a restore, in order: the image read and checked; each process created;
    /// each kind's steps; the restorer's clean-up in each process; the tree about to be let go.
    public static var restore: [String] {
        [read, create] + StateKinds.restoreSteps(.process).map(\.name) + [cleanup]
            + StateKinds.restoreSteps(.afterCleanUp).map(\.name)
            + StateKinds.restoreSteps(.tree).map(\.name) + [detach]
    }

    /// In a debug build, fails here if `AMBER_TEST_FAULT` asks for it; in a release build, nothing.
    static func reached(restore point: String) throws(AmberError) {
        #if DEBUG
        if TestFault.reached("restore.\(point)") == .fail {
            throw AmberError(.restoreFailed, "test fault at restore step \(point)")
        }
        #endif
    }
}
