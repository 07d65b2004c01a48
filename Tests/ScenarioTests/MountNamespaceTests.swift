// A tree in a mount namespace of its own, as a container runtime makes one (see
// Tests/Scenarios/mnt_namespace.c): dumped with its bind mount of the scenario's directory
// named external, restored with --root and --external mnt[...], it checks its mounts, its
// tmpfs files, its open files and working directory, and its /proc. The test checks the root's
// helper once its namespace is made: in the new root, as its root and working directory.

import Foundation
import XCTest

final class MountNamespaceTests: ScenarioTestCase {
    private static let key = "scenario-dir"

    func testPlain() throws { try runPlain(.mountNamespace) }

    func testDumpAndRestore() throws {
        _ = try requireAmber()
        let p = try start(.mountNamespace)
        let image = try newDirectory("image")
        let external = "mnt[\(p.directory)]:\(Self.key)"
        let unnamed = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        assertRefusal(
            unnamed, exitCode: AmberExit.unsupportedState,
            mentions: ["\(p.pid)", p.directory, "--external mnt[\(p.directory)]:KEY"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--external", external], reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("dump failed: \(r.summary); \(p.diagnostics)")
            return
        }
        try expectRestoreRefused(image, pid: p.pid, exitCode: AmberExit.otherFailure, mentions: ["--root PATH"])
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.otherFailure,
            mentions: ["--external mnt[\(Self.key)]:PATH", p.directory], options: ["--root", p.directory + "/rootfs"])
        // A mount that cannot be made (the host's directory is missing) fails the restore, naming it.
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed,
            mentions: ["cannot make the mount \(p.directory) (", "of the restored tree", "No such file"],
            options: ["--root", p.directory + "/rootfs", "--external", "mnt[\(Self.key)]:\(p.directory)/missing"])
        // Paused once the root's child is made, after the namespace: the root's helper is in the
        // new root, as its root directory and its working directory.
        try restoreDetachedExpectingSuccess(
            p, from: image,
            options: ["--root", p.directory + "/rootfs", "--external", "mnt[\(Self.key)]:\(p.directory)"],
            env: ["AMBER_TEST_FAULT": "restore.create@2=pause"]
        ) { run in
            let deadline = Sys.now() + Self.amberTimeout
            var root: pid_t?
            while root == nil && Sys.now() < deadline {
                root = Proc.children(run.pid).first { !Proc.children($0).isEmpty }
                Sys.sleep(milliseconds: 1)
            }
            guard let root else { return XCTFail("the restore made no root with a child") }
            let rootfs = Self.fileIdentity(p.directory + "/rootfs")
            XCTAssertNotNil(rootfs)
            XCTAssertEqual(Self.fileIdentity("/proc/\(root)/root"), rootfs, "the root's root directory")
            XCTAssertEqual(Self.fileIdentity("/proc/\(root)/cwd"), rootfs, "the root's working directory")
        }
        try terminateAndExpectPass(p, "after dump and restore")
    }

    /// "DEVICE:INODE" of the file at `path`.
    private static func fileIdentity(_ path: String) -> String? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return "\(status.st_dev):\(status.st_ino)"
    }

    /// An overlay mounted inside the namespace is refused, naming it; the tree runs on.
    func testDumpRefusesOverlayMount() throws {
        try checkRefused(.unsupportedOverlayMount, mentions: ["/mnt", "overlay"])
    }

    /// A mount option or a tmpfs file's state that is not restored is refused, naming it.
    func testDumpRefusesWhatItDoesNotRestore() throws {
        for (flag, mentions) in [
            ("--nosymfollow", ["/mnt", "nosymfollow"]), ("--deleted-bind", ["/mnt", "deleted since"]),
            ("--spaced-source", ["/mnt", "two words"]), ("--hard-link", ["/tmp/work/notes", "hard links"]),
            ("--xattr", ["/tmp/work/notes", "extended attributes"]), ("--chattr", ["/tmp/work/notes", "chattr"]),
        ] {
            try checkRefused(.unsupportedMountNamespace(flag), mentions: mentions)
        }
    }

    private func checkRefused(_ scenario: Scenario, mentions: [String], line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario)
        let image = try newDirectory("image")
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", image, "--external", "mnt[\(p.directory)]:\(Self.key)"], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)"] + mentions, line: line)
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory", line: line)
        assertRunningUntraced(p.pid, "after the refused dump", line: line)
        try terminateAndExpectPass(p, "after the refused dump", line: line)
    }
}
