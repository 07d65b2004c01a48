// A tree in UTS and IPC namespaces of its own restored with `--join-ns uts:PATH` and
// `--join-ns ipc:PATH` into existing namespaces, held by a process of the test's (`unshare`),
// that were given the same names and sysctls: the tree is in those very namespaces.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class UTSIPCNamespaceTests: ScenarioTestCase {
    private static let unshare = "/usr/bin/unshare"

    func testTreeJoinsExistingUTSAndIPCNamespaces() throws {
        _ = try requireAmber()
        guard Sys.fileExists(Self.unshare) else { throw XCTSkip("\(Self.unshare) is not installed") }
        let p = try start(.utsIPCNamespace)
        let image = try dumpExpectingSuccess(p)

        let directory = try newDirectory("holder")
        let ready = directory + "/ready"
        let setup = [
            "echo amber-uts-host > /proc/sys/kernel/hostname", "echo amber-uts-domain > /proc/sys/kernel/domainname",
            "echo 4321 > /proc/sys/kernel/msgmax", "echo 17 > /proc/sys/fs/mqueue/msg_max", "touch \(ready)",
            "exec sleep 600",
        ].joined(separator: " && ")
        let holder = try Spawn.start(
            [Self.unshare, "--uts", "--ipc", "/bin/sh", "-c", setup], stdout: directory + "/log")
        track(holder)
        addTeardownBlock { kill(holder, SIGKILL) }
        let deadline = Sys.now() + Self.pidfileTimeout
        while !Sys.fileExists(ready), Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        XCTAssertTrue(Sys.fileExists(ready), "the namespaces' holder did not set up")

        let refused = try amber(["restore", "-D", image, "--detach", "--join-ns", "uts:/proc/\(holder)/ns/ipc"])
        XCTAssertNotEqual(refused.status, .exited(0), "joining an IPC namespace as a UTS one: \(refused.summary)")
        XCTAssertTrue(refused.stderr.contains("not a UTS namespace"), refused.stderr)
        XCTAssertFalse(Proc.pidInUse(p.pid), "the refused restore left PID \(p.pid) taken")

        try restoreDetachedExpectingSuccess(
            p, from: image,
            options: ["--join-ns", "uts:/proc/\(holder)/ns/uts", "--join-ns", "ipc:/proc/\(holder)/ns/ipc"])
        for kind in ["uts", "ipc"] {
            let theirs = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p.pid)/ns/\(kind)")
            let holders = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(holder)/ns/\(kind)")
            XCTAssertEqual(theirs, holders, "the restored root is not in the joined \(kind) namespace")
        }
        try terminateAndExpectPass(p, "after a restore into the joined namespaces")
    }
}
