import Dispatch
import Glibc
import LinuxKit
import Synchronization
import SystemPackage

/// Landlock sandboxes, refused: a thread in a Landlock domain would come back in none, free
/// of what its domain forbade, and the kernel shows a domain nowhere (no /proc file, no
/// ptrace request). Ptrace's own rules show it: a thread in a domain may not reach a process
/// outside it, even one it could reach otherwise. So each thread is made to ask, by one
/// injected kcmp, whether a witness shares its memory with itself: a process of the thread's
/// real user and group, with no capabilities and no domain, in its PID namespace. The kernel
/// answers for any thread outside a domain, and refuses (EPERM) one inside.
enum LandlockState {
    /// Landlock runs on this kernel: else no thread can be in a domain, and none is asked.
    fileprivate static let runs = Landlock.abiVersion() != nil

    /// Refuses the thread `injector` has taken over if it is in a Landlock domain.
    private static func check(_ injector: any SyscallInjecting, _ session: DumpSession, _ witnesses: LandlockWitnesses)
        throws
    {
        guard runs else { return }
        let tid = injector.tracee.pid
        let status = try session.threadStatus(tid)
        guard let uid = status.userIDs?.real, let gid = status.groupIDs?.real else {
            throw AmberError.unsupported(
                session.name,
                "has thread \(tid) whose status shows no user or group: cannot tell whether Landlock sandboxes it")
        }
        let witness: Int32
        do {
            witness = try witnesses.witness(for: session.pid, uid: uid, gid: gid)
        } catch {
            throw AmberError.unsupported(
                session.name, "has thread \(tid) of which amber cannot tell whether Landlock sandboxes it: \(error)")
        }
        let answer = try injector.raw(
            SyscallNumber.kcmp, UInt64(witness), UInt64(witness), UInt64(SharedResource.memory.rawValue), 0, 0)
        guard answer != 0 else { return }
        if answer == -Int64(EPERM) {
            throw AmberError.unsupported(
                session.name,
                "has thread \(tid) sandboxed by Landlock (or held by another security module): it may not reach, by ptrace's rules, a process of its own user outside any sandbox. Landlock domains are not restored; a restored thread would run free of its sandbox"
            )
        }
        throw AmberError.unsupported(
            session.name,
            "has thread \(tid) of which amber cannot tell whether Landlock sandboxes it: kcmp of a witness process from the thread gave \(Errno(rawValue: Int32(-answer)))"
        )
    }
}

extension LandlockState: StateKind {
    /// The witnesses of this dump; the root's is started now, beside the steps before the threads.
    static func makeDumpState(_ dump: TreeDump) -> LandlockWitnesses { LandlockWitnesses(root: dump.processes.first) }

    static var threadChecks: [ThreadCheck<LandlockWitnesses>] { [ThreadCheck(check)] }
}

/// The witnesses of one dump, one for each PID namespace, user and group its threads have,
/// started the first time one is asked for, reaped when the dump lets them go. The root's is
/// started when the dump's steps are prepared, on another thread, so that its exec runs beside
/// the steps before the threads are read.
final class LandlockWitnesses: @unchecked Sendable {
    private struct Key: Hashable {
        let pidNamespace: String
        let uid: UInt32
        let gid: UInt32
    }

    /// A witness being started, or started.
    private final class Start: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<(witness: PtraceWitness, pidInNamespace: Int32), any Error>?

        func run(_ key: Key, pid: Int32) {
            result = Result { try LandlockWitnesses.start(key, pid: pid) }
            done.signal()
        }

        func pidInNamespace() throws -> Int32 {
            done.wait()
            done.signal()
            return try result!.get().pidInNamespace
        }

        /// Waits for a start still running, so that its witness is reaped.
        deinit { done.wait() }
    }

    private let starts = Mutex([Key: Start]())
    private static let ownPIDNamespace = try? ProcFS.namespace(pid: getpid(), kind: "pid")

    /// Starts the witness of the root's leader, where Landlock runs.
    init(root: FrozenProcess?) {
        guard LandlockState.runs, let root, !root.zombie,
            let uid = root.snapshot.status.userIDs?.real, let gid = root.snapshot.status.groupIDs?.real,
            let pidNamespace = try? ProcFS.namespace(pid: root.pid, kind: "pid")
        else { return }
        let key = Key(pidNamespace: pidNamespace, uid: uid, gid: gid)
        let start = Start()
        starts.withLock { $0[key] = start }
        DispatchQueue.global().async { [pid = root.pid] in start.run(key, pid: pid) }
    }

    /// The PID, in the PID namespace of process `pid`, of a witness of real user `uid` and
    /// group `gid`.
    func witness(for pid: Int32, uid: UInt32, gid: UInt32) throws -> Int32 {
        let key = Key(pidNamespace: try ProcFS.namespace(pid: pid, kind: "pid"), uid: uid, gid: gid)
        let (start, isNew) = starts.withLock { starts in
            if let known = starts[key] { return (known, false) }
            let start = Start()
            starts[key] = start
            return (start, true)
        }
        if isNew { start.run(key, pid: pid) }
        return try start.pidInNamespace()
    }

    private static func start(_ key: Key, pid: Int32) throws -> (witness: PtraceWitness, pidInNamespace: Int32) {
        let program = try open("/proc/self/exe")
        defer { close(program) }
        let witness: PtraceWitness
        if key.pidNamespace == ownPIDNamespace {
            witness = try PtraceWitness(program: program, pidNamespace: nil, uid: key.uid, gid: key.gid)
        } else {
            let theirs = try open("/proc/\(pid)/ns/pid")
            defer { close(theirs) }
            let ours = try open("/proc/self/ns/pid")
            defer { close(ours) }
            witness = try PtraceWitness(program: program, pidNamespace: (theirs, ours), uid: key.uid, gid: key.gid)
        }
        guard let inNamespace = try ProcFS.status(pid: witness.pid).namespacePIDs.last else {
            throw LinuxError(.noSuchProcess, "find the PID of witness \(witness.pid) in its namespace")
        }
        return (witness, inNamespace)
    }

    private static func open(_ path: String) throws(LinuxError) -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError(Errno(rawValue: errno), "open \(path)") }
        return fd
    }
}
