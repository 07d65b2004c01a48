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
    private static let runs = Landlock.abiVersion() != nil

    /// Refuses the thread `injector` has taken over if it is in a Landlock domain.
    static func checkThread(_ injector: any SyscallInjecting, _ session: DumpSession, _ witnesses: LandlockWitnesses)
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
            SyscallNumber.kcmp, UInt64(witness), UInt64(witness), ProcessComparison.memory, 0, 0)
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

/// The witnesses of one dump, one for each PID namespace, user and group its threads have,
/// started the first time one is asked for, killed and reaped when the dump lets them go.
final class LandlockWitnesses: @unchecked Sendable {
    private struct Key: Hashable {
        let pidNamespace: String
        let uid: UInt32
        let gid: UInt32
    }

    private let started = Mutex([Key: (witness: PtraceWitness, pidInNamespace: Int32)]())
    private static let ownPIDNamespace = try? ProcFS.namespace(pid: getpid(), kind: "pid")

    /// The PID, in the PID namespace of process `pid`, of a witness of real user `uid` and
    /// group `gid`.
    func witness(for pid: Int32, uid: UInt32, gid: UInt32) throws -> Int32 {
        let pidNamespace = try ProcFS.namespace(pid: pid, kind: "pid")
        let key = Key(pidNamespace: pidNamespace, uid: uid, gid: gid)
        if let known = started.withLock({ $0[key] }) { return known.pidInNamespace }
        let program = try Self.open("/proc/self/exe")
        defer { close(program) }
        let witness: PtraceWitness
        if pidNamespace == Self.ownPIDNamespace {
            witness = try PtraceWitness(program: program, pidNamespace: nil, uid: uid, gid: gid)
        } else {
            let theirs = try Self.open("/proc/\(pid)/ns/pid")
            defer { close(theirs) }
            let ours = try Self.open("/proc/self/ns/pid")
            defer { close(ours) }
            witness = try PtraceWitness(program: program, pidNamespace: (theirs, ours), uid: uid, gid: gid)
        }
        guard let inNamespace = try ProcFS.status(pid: witness.pid).namespacePIDs.last else {
            throw LinuxError(.noSuchProcess, "find the PID of witness \(witness.pid) in its namespace")
        }
        started.withLock { $0[key] = (witness, inNamespace) }
        return inNamespace
    }

    private static func open(_ path: String) throws(LinuxError) -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError(Errno(rawValue: errno), "open \(path)") }
        return fd
    }
}
