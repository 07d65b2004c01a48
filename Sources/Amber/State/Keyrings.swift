import AmberImage
import Glibc
import LinuxKit

/// Keyrings (keyctl(2)). A restored process must not possess keys it did not: it never
/// inherits the restorer's session keyring unless it runs as the restorer's user and had the
/// dumper's. A process with a session keyring of its own (not its parent's, or for the root
/// not the dumper's) joins a new, empty one when it is made, owned by its own IDs, and its
/// children inherit it as before. Keys are not restored yet: a thread or process keyring, or a
/// session keyring of its own that holds keys, is refused.
enum KeyringState {
    /// Refuses a thread keyring of the thread `injector` runs in.
    static func checkThread(_ injector: any SyscallInjecting, _ session: DumpSession) throws {
        if try injector.raw(SyscallNumber.keyctl, Keyrings.getKeyringID, Keyrings.threadKeyring, 0) >= 0 {
            throw AmberError.unsupported(
                session.name,
                "has a thread keyring in thread \(injector.tracee.pid) (keyctl): keys are not restored yet")
        }
    }

    /// Refuses a process keyring and a session keyring of its own that holds keys; returns
    /// the session keyring's serial number (0 for none: a user's session keyring stands in)
    /// and whether it is the process's own, given its parent's (the dumper's for the root).
    static func dump(_ session: DumpSession, parentKeyring: Int64) throws -> (serial: Int64, own: Bool) {
        let injector = session.injector
        if try injector.raw(SyscallNumber.keyctl, Keyrings.getKeyringID, Keyrings.processKeyring, 0) >= 0 {
            throw AmberError.unsupported(session.name, "has a process keyring (keyctl): keys are not restored yet")
        }
        var serial = Int64(
            try injector.call(
                "keyctl(KEYCTL_GET_KEYRING_ID, session)", SyscallNumber.keyctl, Keyrings.getKeyringID,
                Keyrings.sessionKeyring, 0))
        var arguments = session.arguments()
        let description = try arguments.reserve(DumpSession.scratchSize)
        try injector.call(
            "keyctl(KEYCTL_DESCRIBE, \(serial))", SyscallNumber.keyctl, Keyrings.describe, UInt64(serial), description,
            UInt64(DumpSession.scratchSize))
        if Keyrings.isUserSessionKeyring(description: try arguments.read(description, count: DumpSession.scratchSize)) {
            serial = 0
        }
        guard serial != 0, serial != parentKeyring else { return (serial, false) }
        // The size of its list of keys, 4 bytes a key.
        let size = try injector.raw(SyscallNumber.keyctl, Keyrings.read, UInt64(serial), 0, 0)
        if size != 0 {
            let what =
                size > 0
                ? "holds \(size / 4) keys"
                : "cannot be read (\(LinuxError(negated: Int(size), "keyctl(KEYCTL_READ)").errno.name))"
            throw AmberError.unsupported(
                session.name, "has a session keyring of its own that \(what) (keyctl): keys are not restored yet")
        }
        return (serial, true)
    }

    /// Whether the process made from `task` (the root when `isRoot`) must join a new session
    /// keyring rather than keep the one it inherited from its parent or the restorer.
    static func needsNewSessionKeyring(_ task: Amber_Task, isRoot: Bool) -> Bool {
        guard !task.ownSessionKeyring else { return true }
        // The root inherits the restorer's: only a task of the restorer's own user may keep it.
        guard isRoot, let credentials = task.processCredentials else { return false }
        return credentials.uid != getuid() || credentials.euid != geteuid()
    }

    /// The process `injector` runs in joins a new, empty session keyring (KEYCTL_JOIN_SESSION_KEYRING
    /// with no name) owned by `task`'s filesystem IDs: it was made with the restorer's.
    static func joinNewSessionKeyring(_ injector: any SyscallInjecting, for task: Amber_Task) throws {
        let serial = try injector.call(
            "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", SyscallNumber.keyctl, Keyrings.joinSessionKeyring, 0)
        guard let credentials = task.processCredentials,
            credentials.fsuid != geteuid() || credentials.fsgid != getegid()
        else { return }
        try injector.call(
            "keyctl(KEYCTL_CHOWN, \(credentials.fsuid), \(credentials.fsgid))", SyscallNumber.keyctl, Keyrings.chown,
            serial, UInt64(credentials.fsuid), UInt64(credentials.fsgid))
    }
}

extension KeyringState: StateKind {
    /// The session keyring of each process dumped so far, by PID, and the dumper's: a process's
    /// own keyring is one that is not its parent's (the root's: not the dumper's).
    final class DumpState {
        let root: Int32
        let dumperKeyring: Int64
        var sessionKeyrings: [Int32: Int64] = [:]

        init(root: Int32, dumperKeyring: Int64) {
            self.root = root
            self.dumperKeyring = dumperKeyring
        }
    }

    static func makeDumpState(_ dump: TreeDump) throws -> DumpState {
        DumpState(root: dump.processes.first?.pid ?? 0, dumperKeyring: try Keyrings.ownSessionKeyring())
    }

    static var dumpSteps: [DumpStep<DumpState>] {
        [
            DumpStep("keyrings", .traced) { process, state in
                let parentKeyring =
                    process.pid == state.root
                    ? state.dumperKeyring : state.sessionKeyrings[process.task.ppid] ?? state.dumperKeyring
                let (serial, own) = try dump(process.session, parentKeyring: parentKeyring)
                state.sessionKeyrings[process.pid] = serial
                process.task.ownSessionKeyring = own
            }
        ]
    }

    static var threadChecks: [ThreadCheck<DumpState>] {
        [ThreadCheck { injector, session, _ in try checkThread(injector, session) }]
    }
}
