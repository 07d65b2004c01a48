// What a user without root may do: dump and restore their own processes,
// with CAP_CHECKPOINT_RESTORE for the restore, and nothing more.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class PrivilegeTests: ScenarioTestCase {
    static let user: uid_t = 1000
    static let asUser = ["--reuid=\(user)", "--regid=\(user)", "--clear-groups"]

    /// uid 1000 dumps its own counter; restoring it without CAP_CHECKPOINT_RESTORE is refused,
    /// naming the capability, with nothing left behind; with that capability (ambient, as
    /// `setpriv` gives it) the same user restores it, and the process comes back under uid 1000
    /// without any capability.
    func testUserDumpsAndRestoresOwnProcess() throws {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(Scenario(name: "counter", setpriv: Self.asUser, owner: Self.user))
        let image = try newDirectory("image")
        XCTAssertEqual(chown(image, Self.user, Self.user), 0)
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], setpriv: Self.asUser)
        XCTAssertEqual(dump.status, .exited(0), "the user's dump of its own process: \(dump.summary)")
        XCTAssertNotNil(p.exitStatus, "the dumped process still runs")
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: ["\(p.pid)", "CAP_CHECKPOINT_RESTORE"], setpriv: Self.asUser)
        // In a user namespace of its own the user holds every capability, but over IDs that
        // namespace maps (here only its own, as 0): the image's uid 1000 is refused by name.
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: ["\(p.pid)", "uids (1000", "does not map"], options: ["--new-pidns"],
            setpriv: Self.asUser + ["/usr/bin/unshare", "--user", "--map-root-user", "--fork"])
        try restoreDetachedExpectingSuccess(
            p, from: image,
            setpriv: Self.asUser + ["--inh-caps=+checkpoint_restore", "--ambient-caps=+checkpoint_restore"])
        let status = Proc.status(p.pid)?.raw ?? ""
        XCTAssertTrue(status.contains("Uid:\t1000\t1000\t1000\t1000"), "restored under other uids: \(status)")
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            XCTAssertTrue(
                status.contains("\(set):\t0000000000000000"),
                "the restored process holds capabilities (\(set)): \(status)")
        }
        try terminateAndExpectPass(p, "restored by its user")
    }

    /// Without CAP_CHECKPOINT_RESTORE a user's dump cannot read map_files, and names mapped
    /// files from /proc/PID/maps' text, which escapes a newline and marks " (deleted)": such a
    /// file is refused, not dumped under a name that leads nowhere (its restore would fail,
    /// and the process be lost).
    func testUserDumpRefusesMappedFilesItCannotName() throws {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(Scenario(name: "odd_names", setpriv: Self.asUser, owner: Self.user))
        let image = try newDirectory("image")
        XCTAssertEqual(chown(image, Self.user, Self.user), 0)
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], setpriv: Self.asUser)
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)"])
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        // Its own checks read map_files, which a user may not: only that it runs on is checked.
        assertRunningUntraced(p.pid, "after the refused dump")
    }

    /// A root restore of a uid-1000 process does not hand it root's session keyring: the
    /// restorer's holds a key, and the restored process, which had no session keyring of its
    /// own, must not possess it (it joins a new, empty one).
    func testRestoredProcessDoesNotPossessTheRestorersKeys() throws {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(Scenario(name: "session_keyring", setpriv: Self.asUser, owner: Self.user))
        let image = try dumpExpectingSuccess(p)
        // Runs amber with a session keyring of its own that holds a key.
        let withKey = """
            import ctypes, os, sys
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            assert libc.syscall(250, 1, None) > 0
            assert libc.syscall(248, b"user", b"amber-restorer-secret", b"secret", 6, -3) > 0
            os.execv(sys.argv[1], sys.argv[1:])
            """
        try restoreDetachedExpectingSuccess(p, from: image, setpriv: ["python3", "-c", withKey])
        try terminateAndExpectPass(p, "restored by root with a key in its session keyring")
    }

    /// The restorer opens a file of the image as the task itself could (its filesystem IDs and
    /// groups), or, if the task may not, only the very file it had open: the log of a uid-1000
    /// process, replaced after the dump by a new root-only file (0600), is not opened for it,
    /// even by root; once that file is the user's, the image restores. (A file opened before
    /// the task gave up privilege comes back: scenario credentials_tree.)
    func testRestoreOpensFilesWithTheTasksRights() throws {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(Scenario(name: "counter", setpriv: Self.asUser, owner: Self.user))
        let image = try dumpExpectingSuccess(p)
        let log = p.directory + "/log"
        XCTAssertEqual(unlink(log), 0)
        XCTAssertTrue(
            FileManager.default.createFile(atPath: log, contents: nil, attributes: [.posixPermissions: 0o600]))
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed,
            mentions: [log, "uid 1000", "EACCES", "not the file"])
        XCTAssertEqual(chown(log, Self.user, Self.user), 0)
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored once its log was the user's")
    }

    /// Every path of an image is the kernel's resolved one, without symbolic links: a link
    /// swapped in for a file after the dump (here to a root-only file) is refused, by name.
    func testRestoreRefusesSymbolicLinkSwappedIn() throws {
        _ = try requireAmber()
        let p = try start(.files)
        let image = try dumpExpectingSuccess(p)
        let secret = try directory() + "/secret"
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: secret, contents: Data("secret".utf8), attributes: [.posixPermissions: 0o600]))
        let file = p.directory + "/ro.dat"
        XCTAssertEqual(unlink(file), 0)
        XCTAssertEqual(symlink(secret, file), 0)
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: [file, "symbolic link"])
    }

    /// Shared anonymous memory is read through map_files, which needs CAP_CHECKPOINT_RESTORE:
    /// a user's dump without it refuses the memory by name, target left running; with it (as
    /// the restore needs too) the user dumps and restores the tree, which shares it again.
    func testUserDumpsSharedMemoryOnlyWithCheckpointRestore() throws {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let withCapability = Self.asUser + ["--inh-caps=+checkpoint_restore", "--ambient-caps=+checkpoint_restore"]
        let p = try start(Scenario(name: "shared_memory", setpriv: Self.asUser, owner: Self.user))
        let image = try newDirectory("image")
        XCTAssertEqual(chown(image, Self.user, Self.user), 0)
        let refused = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], setpriv: Self.asUser)
        assertRefusal(
            refused, exitCode: AmberExit.unsupportedState,
            mentions: ["\(p.pid)", "shared anonymous memory", "CAP_CHECKPOINT_RESTORE"])
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        assertRunningUntraced(p.pid, "after the refused dump")
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], setpriv: withCapability)
        XCTAssertEqual(dump.status, .exited(0), "the user's dump with CAP_CHECKPOINT_RESTORE: \(dump.summary)")
        try restoreDetachedExpectingSuccess(p, from: image, setpriv: withCapability)
        try terminateAndExpectPass(p, "restored by its user")
    }
}
