internal import CLinux
import Glibc
import Synchronization

/// What the kernel checks a thread's file access against: its filesystem IDs and groups.
public struct FileAccessIdentity: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}

/// Opening a path on behalf of another process.
public enum PathOpening {
    /// openat2's RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS.
    private static let noLinks: UInt64 = 0x02 | 0x04

    /// Opens `path` (absolute) with no symbolic link anywhere on it (ELOOP), and with the
    /// calling thread's filesystem IDs and groups switched to `identity` meanwhile, so that the
    /// kernel grants what it would grant that identity: leaving fsuid 0 also drops the
    /// filesystem capabilities (CAP_DAC_OVERRIDE, ...) from the effective set, and going back
    /// raises them again. Only the calling thread is affected, and only during the call: if its
    /// own IDs and groups cannot be put back, the process aborts (`putBack`).
    public static func open(_ path: String, flags: Int32, as identity: FileAccessIdentity?) throws(LinuxError) -> Int32
    {
        guard let identity else { return try openWithoutLinks(path, flags: flags) }
        return try perform(as: identity, what: "open \(path)") { () throws(LinuxError) in
            try openWithoutLinks(path, flags: flags)
        }
    }

    /// Unlinks `path` (absolute; with `directory`, removes the directory) with the calling
    /// thread's filesystem IDs and groups switched to `identity`, as `open` does, only while it is
    /// still the file `fd` is open on, and only through a directory reached with no symbolic link
    /// on the way.
    public static func unlink(
        _ path: String, openAs fd: Int32, directory removing: Bool = false, as identity: FileAccessIdentity?
    ) throws(LinuxError) {
        let (directoryPath, name) = split(path)
        try perform(on: path, as: identity) { () throws(LinuxError) in
            let directory = try openWithoutLinks(directoryPath, flags: OpenFileFlags.pathOnly.openFlags | O_DIRECTORY)
            defer { close(directory) }
            var opened = stat()
            var named = stat()
            _ = try libcResult("fstat") { fstat(fd, &opened) }.get()
            _ = try libcResult("fstatat \(path)") { fstatat(directory, name, &named, AT_SYMLINK_NOFOLLOW) }.get()
            guard opened.st_dev == named.st_dev, opened.st_ino == named.st_ino else {
                throw LinuxError(.fileExists, "unlink \(path): another file took its name")
            }
            _ = try libcResult("unlink \(path)") { unlinkat(directory, name, removing ? AT_REMOVEDIR : 0) }.get()
        }
    }

    /// Unlinks `path` (absolute) only while it is the file with `device` and `inode`, through a
    /// directory reached with no symbolic link on the way, with the caller's own rights.
    public static func unlinkIfSame(_ path: String, device: UInt64, inode: UInt64) throws(LinuxError) {
        let (directoryPath, name) = split(path)
        let directory = try openWithoutLinks(directoryPath, flags: OpenFileFlags.pathOnly.openFlags | O_DIRECTORY)
        defer { close(directory) }
        var named = stat()
        _ = try libcResult("fstatat \(path)") { fstatat(directory, name, &named, AT_SYMLINK_NOFOLLOW) }.get()
        guard UInt64(named.st_dev) == device, UInt64(named.st_ino) == inode else {
            throw LinuxError(.fileExists, "unlink \(path): another file took its name")
        }
        _ = try libcResult("unlink \(path)") { unlinkat(directory, name, 0) }.get()
    }

    /// Makes the directory `path` (absolute) with `mode`, as `identity`, in a directory reached
    /// with no symbolic link on the way.
    public static func makeDirectory(_ path: String, mode: UInt32, as identity: FileAccessIdentity?)
        throws(LinuxError)
    {
        let (directoryPath, name) = split(path)
        try perform(on: path, as: identity) { () throws(LinuxError) in
            let directory = try openWithoutLinks(directoryPath, flags: OpenFileFlags.pathOnly.openFlags | O_DIRECTORY)
            defer { close(directory) }
            _ = try libcResult("mkdir \(path)") { mkdirat(directory, name, mode_t(mode)) }.get()
        }
    }

    /// The directory of `path` (absolute) and the name in it.
    private static func split(_ path: String) -> (directory: String, name: String) {
        let slash = path.utf8.lastIndex(of: UInt8(ascii: "/"))!
        return (
            slash == path.utf8.startIndex ? "/" : String(path[..<slash]), String(path[path.utf8.index(after: slash)...])
        )
    }

    /// Runs `body` as `identity` (none: as the thread is), naming `path` in errors.
    private static func perform<T>(
        on path: String, as identity: FileAccessIdentity?, _ body: () throws(LinuxError) -> T
    )
        throws(LinuxError) -> T
    {
        guard let identity else { return try body() }
        return try perform(as: identity, what: path, body)
    }

    /// Runs `body` with the calling thread's filesystem IDs and groups switched to `identity`,
    /// as `open` does (`what` names the work in errors).
    public static func perform<T>(
        as identity: FileAccessIdentity, what: String, _ body: () throws(LinuxError) -> T
    ) throws(LinuxError) -> T {
        let ownUID = UInt32(truncatingIfNeeded: amber_thread_setfsuid(UInt32.max))
        let ownGID = UInt32(truncatingIfNeeded: amber_thread_setfsgid(UInt32.max))
        let count = getgroups(0, nil)
        var ownGroups = [gid_t](repeating: 0, count: Int(max(count, 0)))
        guard count >= 0, getgroups(count, &ownGroups) == count else { throw LinuxError.current("getgroups") }
        let groupsChange = identity.groups.sorted() != ownGroups.sorted()
        if groupsChange {
            _ = try kernelResult(
                amber_thread_setgroups(identity.groups.count, identity.groups),
                "setgroups(\(identity.groups)) to \(what)"
            ).get()
        }
        let done = Result { () throws(LinuxError) -> T in
            // setfs[ug]id report no error: read the IDs back.
            _ = amber_thread_setfsgid(identity.gid)
            _ = amber_thread_setfsuid(identity.uid)
            guard amber_thread_setfsuid(UInt32.max) == Int(identity.uid),
                amber_thread_setfsgid(UInt32.max) == Int(identity.gid)
            else {
                throw LinuxError(
                    .notPermitted, "setfsuid(\(identity.uid)) and setfsgid(\(identity.gid)) to \(what)")
            }
            return try body()
        }
        putBack(uid: ownUID, gid: ownGID, groups: groupsChange ? ownGroups : nil, after: what)
        return try done.get()
    }

    /// Gives the calling thread its own filesystem IDs and groups again, or ends the process.
    /// A thread left with the image's identity would go on opening, writing and checking files
    /// with the wrong rights, and the caller may not be amber's CLI but a program using the
    /// library: an error could be caught and the thread used on. So there is no error to throw:
    /// the process aborts. Every task being restored dies with it (PTRACE_O_EXITKILL).
    private static func putBack(uid: UInt32, gid: UInt32, groups: [gid_t]?, after path: String) {
        // fsuid first: going back to 0 raises the filesystem capabilities the rest needs.
        _ = amber_thread_setfsuid(uid)
        _ = amber_thread_setfsgid(gid)
        let idsBack = amber_thread_setfsuid(UInt32.max) == Int(uid) && amber_thread_setfsgid(UInt32.max) == Int(gid)
        let groupsBack = groups.map { amber_thread_setgroups($0.count, $0) == 0 } ?? true
        guard idsBack, groupsBack else {
            fatalError(
                "cannot give this thread its own filesystem IDs (\(uid), \(gid))\(groups.map { " and groups \($0)" } ?? "") back after \(path) as another user: stopping rather than going on with that identity"
            )
        }
    }

    private static func openWithoutLinks(_ path: String, flags: Int32) throws(LinuxError) -> Int32 {
        let root = resolutionRoot.load(ordering: .acquiring)
        let how = UInt64(UInt32(bitPattern: flags | O_CLOEXEC))
        guard root >= 0 else {
            return Int32(try kernelResult(amber_openat2(path, how, 0, noLinks), "open \(path)").get())
        }
        let relative = String(path.drop { $0 == "/" })
        return Int32(
            try kernelResult(
                amber_openat2_in_root(root, relative.isEmpty ? "." : relative, how, 0, noLinks | inRoot),
                "open \(path)"
            ).get())
    }

    /// openat2's RESOLVE_IN_ROOT.
    private static let inRoot: UInt64 = 0x10

    /// The directory every path given to these functions is resolved under, as the root
    /// directory (-1: the caller's own): the root of a tree restored in a mount namespace of
    /// its own, whose paths are the tree's (`useRoot`).
    private static let resolutionRoot = Atomic<Int32>(-1)

    /// Resolves every path from now on under the directory `fd` (which the caller keeps open),
    /// or, with nil, under the caller's root directory again.
    public static func useRoot(_ fd: Int32?) {
        resolutionRoot.store(fd ?? -1, ordering: .releasing)
    }
}
