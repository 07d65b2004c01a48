// runc with amber in CRIU's place (`runc --criu AMBER checkpoint`), through runc's own
// client of the protocol. runc's ext_mnt reach the dump and the container's UTS and IPC
// namespaces pass; its cgroup is not dumped yet: the checkpoint is refused by amber naming it,
// and the container runs on.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class RuncTests: ScenarioTestCase {
    private static let runc = "/usr/sbin/runc"
    private static let busybox = "/bin/busybox"

    private func run(_ argv: [String], _ label: String, output: String? = nil) throws -> (
        status: ExitStatus?, output: String
    ) {
        let output = try output ?? directory() + "/\(label).out"
        let pid = try Spawn.start(argv, stdout: output)
        track(pid)
        let status = Spawn.wait(pid, timeout: ScenarioTestCase.amberTimeout)
        return (status, Sys.readText(output) ?? "")
    }

    func testCheckpointRefusedNamingTheCgroup() throws {
        let amber = try requireAmber()
        for tool in [Self.runc, Self.busybox] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let bundle = try newDirectory("runc-bundle")
        let state = try newDirectory("runc-state")
        let image = bundle + "/checkpoint"
        // A busybox rootfs from Debian's busybox-static: nothing downloaded.
        for directory in ["rootfs/bin", "rootfs/proc", "rootfs/dev", "rootfs/sys", "rootfs/tmp"] {
            try FileManager.default.createDirectory(atPath: "\(bundle)/\(directory)", withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: Self.busybox, toPath: "\(bundle)/rootfs/bin/busybox")
        for applet in ["sh", "sleep", "cat"] {
            try FileManager.default.createSymbolicLink(
                atPath: "\(bundle)/rootfs/bin/\(applet)", withDestinationPath: "busybox")
        }
        XCTAssertEqual(try run([Self.runc, "spec", "--bundle", bundle], "spec").status, .exited(0))
        let configPath = bundle + "/config.json"
        var config =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        var process = config["process"] as! [String: Any]
        process["terminal"] = false
        process["args"] = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"]
        config["process"] = process
        var root = config["root"] as! [String: Any]
        root["readonly"] = false
        config["root"] = root
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))

        let id = "amber-swrk-\(getpid())"
        let runc = [Self.runc, "--root", state]
        defer { _ = try? run(runc + ["delete", "--force", id], "delete") }
        // The container's standard output and error: /dev/null, which its own /dev/null stands
        // for (a file outside its root would be refused first, by path).
        let started = try run(runc + ["run", "--detach", "--bundle", bundle, id], "run", output: "/dev/null")
        XCTAssertEqual(started.status, .exited(0), started.output)
        let count = bundle + "/rootfs/tmp/count"
        func counted() -> Int { Int(Sys.readText(count)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 }
        let deadline = Sys.now() + 10
        while counted() == 0 && Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        XCTAssertGreaterThan(counted(), 0, "the container's loop does not count")

        let checkpoint = try run(runc + ["--criu", amber, "checkpoint", "--image-path", image, id], "checkpoint")
        XCTAssertNotEqual(checkpoint.status, .exited(0), "runc checkpoint succeeded: \(checkpoint.output)")
        // runc 1.1 prints the type of the last request it sent (the answer to a notification)
        // and points at the log amber wrote in the image directory.
        XCTAssertTrue(checkpoint.output.contains("criu failed: type"), checkpoint.output)
        let log = Sys.readText(image + "/dump.log") ?? ""
        XCTAssertTrue(log.contains("has the mount /dev/pts (devpts") && log.contains("(sh)"), "amber's log: \(log)")
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"))

        let status = try run(runc + ["state", id], "state")
        XCTAssertTrue(status.output.contains("\"running\""), status.output)
        let before = counted()
        let later = Sys.now() + 10
        while counted() <= before && Sys.now() < later { Sys.sleep(milliseconds: 10) }
        XCTAssertGreaterThan(counted(), before, "the container stopped counting after the refused checkpoint")
    }
}
