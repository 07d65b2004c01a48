internal import CLinux
import Glibc

/// The effective user and group IDs and groups of a thread: what the kernel records as the
/// credentials of a socket the thread connects or makes (SO_PEERCRED, SO_PEERGROUPS).
public struct EffectiveIdentity: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// The calling thread's.
    public static func current() throws(LinuxError) -> EffectiveIdentity {
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(count, 0)))
        guard count >= 0, getgroups(count, &groups) == count else { throw LinuxError.current("getgroups") }
        return EffectiveIdentity(uid: geteuid(), gid: getegid(), groups: groups)
    }

    /// Runs `body` with the calling thread's effective IDs and groups switched to this
    /// identity (`what` names the work in errors), then switches them back; other threads keep
    /// theirs. Leaving euid 0 drops the thread's effective capabilities and going back raises
    /// them again. If the thread's own cannot be put back, the process aborts, as
    /// `PathOpening` does, rather than go on as another user.
    public func perform<T>(what: String, _ body: () throws(LinuxError) -> T) throws(LinuxError) -> T {
        let own = try Self.current()
        guard own != self else { return try body() }
        let groupsChange = groups.sorted() != own.groups.sorted()
        if groupsChange {
            _ = try kernelResult(amber_thread_setgroups(groups.count, groups), "setgroups(\(groups)) to \(what)").get()
        }
        let done = Result { () throws(LinuxError) -> T in
            // The group first: once the user ID is not 0, CAP_SETGID is gone.
            _ = try kernelResult(amber_thread_setegid(gid), "setresgid(-1, \(gid), -1) to \(what)").get()
            _ = try kernelResult(amber_thread_seteuid(uid), "setresuid(-1, \(uid), -1) to \(what)").get()
            return try body()
        }
        let back =
            amber_thread_seteuid(own.uid) == 0 && amber_thread_setegid(own.gid) == 0
            && (!groupsChange || amber_thread_setgroups(own.groups.count, own.groups) == 0)
        guard back else {
            fatalError(
                "cannot give this thread its own effective IDs (\(own.uid), \(own.gid)) and groups back after \(what) as another user: stopping rather than going on with that identity"
            )
        }
        return try done.get()
    }
}
