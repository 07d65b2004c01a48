// runc with amber in CRIU's place, through runc's own client of the protocol: a busybox
// container (a rootfs from Debian's busybox-static and a static program the test compiles,
// nothing downloaded) with a process tree, a counter writing into its rootfs, a pipe and a unix
// socket pair is checkpointed with `runc --criu AMBER checkpoint` and restored with
// `runc --criu AMBER restore -d`: runc ps lists the same processes, and they go on.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class RuncTests: ScenarioTestCase {
    private static let runc = "/usr/sbin/runc"
    private static let busybox = BusyboxRootfs.busybox

    /// Runs a command to its end. The container's processes are orphans this test process (a
    /// subreaper) adopts: `reaping` them as they die, as a container manager does, lets
    /// amber's checkpoint see their PIDs free.
    private func run(_ argv: [String], _ label: String, output: String? = nil, reaping: [Int] = []) throws -> (
        status: ExitStatus?, output: String
    ) {
        let output = try output ?? directory() + "/\(label).out"
        let pid = try Spawn.start(argv, stdout: output)
        track(pid)
        let deadline = Sys.now() + ScenarioTestCase.amberTimeout
        var status: ExitStatus?
        while status == nil && Sys.now() < deadline {
            if case .exited(let exit) = Spawn.poll(pid) { status = exit }
            for orphan in reaping { _ = Spawn.poll(pid_t(orphan)) }
            Sys.sleep(milliseconds: 2)
        }
        return (status, Sys.readText(output) ?? "")
    }

    /// A bundle whose container runs `script` with busybox's sh, /bin/pair (Tests/Scenarios/runc_pair.c)
    /// beside it, on a writable rootfs, without a terminal.
    private func bundle(running script: String) throws -> String {
        for tool in [Self.runc, Self.busybox] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let bundle = try newDirectory("runc-bundle")
        try BusyboxRootfs.make(at: bundle + "/rootfs", applets: ["sh", "sleep", "cat"])
        let compiled = try Spawn.run(
            [
                "/usr/bin/cc", "-static", "-O2", "-Wall", "-Werror", "-o", "\(bundle)/rootfs/bin/pair",
                "\(Locations.scenarioSources)/runc_pair.c",
            ], in: bundle)
        XCTAssertEqual(compiled.0, .exited(0), compiled.1)
        XCTAssertEqual(try run([Self.runc, "spec", "--bundle", bundle], "spec").status, .exited(0))
        let configPath = bundle + "/config.json"
        var config =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        var process = config["process"] as! [String: Any]
        process["terminal"] = false
        process["args"] = ["/bin/sh", "-c", script]
        config["process"] = process
        var root = config["root"] as! [String: Any]
        root["readonly"] = false
        config["root"] = root
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        return bundle
    }

    /// The number in the rootfs file `name`, 0 while there is none.
    private func number(_ bundle: String, _ name: String) -> Int {
        Int(Sys.readText("\(bundle)/rootfs/tmp/\(name)")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    /// Waits until the rootfs file `name` holds a number above `floor`.
    private func waitForNumber(_ bundle: String, _ name: String, above floor: Int) -> Int {
        let deadline = Sys.now() + 10
        while number(bundle, name) <= floor && Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        return number(bundle, name)
    }

    /// The container's processes as `runc ps --format json` lists them (PIDs here), sorted.
    private func processes(_ runc: [String], _ id: String, _ label: String) throws -> [Int] {
        let listed = try run(runc + ["ps", "--format", "json", id], label)
        XCTAssertEqual(listed.status, .exited(0), listed.output)
        let pids = (try? JSONSerialization.jsonObject(with: Data(listed.output.utf8))) as? [Int] ?? []
        return pids.sorted()
    }

    func testCheckpointAndRestoreThroughRunc() throws {
        let amber = try requireAmber()
        // The loop's sleep comes and goes; the tree dumped is sh, pair and pair's child.
        let bundle = try bundle(
            running: "/bin/pair & i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done")
        let state = try newDirectory("runc-state")
        let image = bundle + "/checkpoint"
        let id = "amber-runc-\(getpid())"
        let runc = [Self.runc, "--root", state]
        defer { _ = try? run(runc + ["delete", "--force", id], "delete") }
        // The container's standard output and error: /dev/null, which its own /dev/null stands
        // for (a file outside its root would be refused by path).
        let started = try run(runc + ["run", "--detach", "--bundle", bundle, id], "run", output: "/dev/null")
        XCTAssertEqual(started.status, .exited(0), started.output)
        XCTAssertGreaterThan(waitForNumber(bundle, "count", above: 0), 0, "the container's loop does not count")
        XCTAssertGreaterThan(waitForNumber(bundle, "pair", above: 0), 0, "the container's pair does not talk")
        let before = try processes(runc, id, "ps-before")
        XCTAssertGreaterThanOrEqual(before.count, 3, "sh, pair and its child: \(before)")

        let checkpoint = try run(
            runc + ["--criu", amber, "checkpoint", "--image-path", image, id], "checkpoint", reaping: before)
        XCTAssertEqual(
            checkpoint.status, .exited(0),
            "\(checkpoint.output)\namber's log: \(Sys.readText(image + "/dump.log") ?? "")")
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"))
        let counted = number(bundle, "count")
        let talked = number(bundle, "pair")

        let restored = try run(
            runc + ["--criu", amber, "restore", "--detach", "--image-path", image, "--bundle", bundle, id], "restore",
            output: "/dev/null")
        XCTAssertEqual(
            restored.status, .exited(0), "amber's log: \(Sys.readText(image + "/restore.log") ?? "")")
        let after = try processes(runc, id, "ps-after")
        // The loop's `sleep` may have been another process, or none, at either moment.
        let lasting = before.filter { after.contains($0) }
        XCTAssertGreaterThanOrEqual(lasting.count, 3, "before \(before), after \(after)")
        XCTAssertGreaterThan(waitForNumber(bundle, "count", above: counted), counted, "the counter does not go on")
        XCTAssertGreaterThan(
            waitForNumber(bundle, "pair", above: talked), talked, "the pipe and socket pair do not go on")
        XCTAssertNil(Sys.readText(bundle + "/rootfs/tmp/pair-status"), "the pair failed")
        let status = try run(runc + ["state", id], "state")
        XCTAssertTrue(status.output.contains("\"running\""), status.output)
    }
}
