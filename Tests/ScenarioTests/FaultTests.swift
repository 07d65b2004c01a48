// Interrupted and failed work does no harm. The points are armed with
// amber's test-only switch AMBER_TEST_FAULT=<point>[@<n>]=<action> (Sources/Amber/TestFault.swift),
// which only a debug build of amber has: the tests run .build/debug/amber unless AMBER_BIN says otherwise.

import Amber
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// SIGKILL to `amber dump` at any step leaves every target running, neither stopped nor traced,
/// with its state as it was (it still passes its own checks), and the image without inventory.
final class InterruptedDumpTests: ScenarioTestCase {
    /// Where the supervisor is killed: every point of a dump (Sources/Amber/StateKinds.swift), and
    /// a few chunks of memory into it.
    static let points = FaultPoints.dump + ["pages@4"]
    /// Kills after a random delay, with --leave-running: a dump that completes first leaves the target running too.
    static let randomKills = 4

    func testKilledDumperLeavesEveryTargetUntouched() throws {
        _ = try requireAmber()
        var runs = 0
        var generator = SystemRandomNumberGenerator()
        for scenario in [Scenario.counter, .signals, .threads, .files, .memory, .tree] {
            let p = try start(scenario)
            let tree = [p.pid] + Proc.descendants(of: p.pid)
            for point in Self.points {
                let run = try startAmber(
                    ["dump", "-t", "\(p.pid)", "-D", try newDirectory("image")],
                    env: ["AMBER_TEST_FAULT": "dump.\(point)=kill-supervisor"])
                try checkInterrupted(
                    run, p, tree: tree, context: "\(scenario.name), amber dump killed at \(point)", complete: false)
                runs += 1
            }
            for _ in 0..<Self.randomKills {
                let delay = Int.random(in: 0...40, using: &generator)
                let run = try startAmber(["dump", "-t", "\(p.pid)", "-D", try newDirectory("image"), "--leave-running"])
                Sys.sleep(milliseconds: delay)
                kill(run.pid, SIGKILL)
                try checkInterrupted(
                    run, p, tree: tree, context: "\(scenario.name), amber dump killed after \(delay) ms", complete: nil)
                runs += 1
            }
            try terminateAndExpectPass(
                p, "\(scenario.name) after \(Self.points.count + Self.randomKills) interrupted dumps")
        }
        XCTAssertGreaterThanOrEqual(runs, 50)
    }

    /// `complete`: whether the image must have its inventory (nil: either, as long as a complete one verifies).
    private func checkInterrupted(
        _ run: RunningAmber, _ p: ScenarioProcess, tree: [pid_t], context: String, complete: Bool?
    ) throws {
        let r = try finish(run, reaping: [p])
        if complete == false {
            XCTAssertEqual(r.status, .signaled(SIGKILL), "\(context): \(r.summary)")
        }
        try waitForOrphanedWorkers(context)
        let image = run.arguments[run.arguments.firstIndex(of: "-D")! + 1]
        let hasInventory = Sys.fileExists(image + "/inventory.pb")
        if complete == false {
            XCTAssertFalse(hasInventory, "\(context): the interrupted dump wrote an inventory")
            let stderr = Sys.readText(run.stderrPath) ?? ""
            XCTAssertTrue(
                stderr.contains("was killed during the dump"),
                "\(context): the worker did not say why it stopped: \(stderr)")
        } else if hasInventory {
            let v = try amber(["verify", image])
            XCTAssertEqual(
                v.status, .exited(0), "\(context): the dump completed but its image does not verify: \(v.summary)")
        }
        XCTAssertNil(p.exitStatus, "\(context): the target exited: \(p.diagnostics)")
        for pid in tree {
            for tid in Proc.threads(pid) {
                assertRunningUntraced(tid, "\(context): thread \(tid) of process \(pid)")
            }
        }
    }

    /// The worker of a killed `amber dump` is reparented to us (a subreaper): wait until it has let the tree go and exited.
    private func waitForOrphanedWorkers(_ context: String) throws {
        let deadline = Sys.now() + Self.amberTimeout
        while true {
            let workers = Proc.childrenOfSelf().filter { Proc.comm($0) == "amber" }
            if workers.isEmpty { return }
            for worker in workers {
                var status: Int32 = 0
                _ = waitpid(worker, &status, WNOHANG)
            }
            if Sys.now() > deadline {
                XCTFail("\(context): the dump worker did not exit in \(Int(Self.amberTimeout)) s")
                throw RunnerError("dump worker hung")
            }
            Sys.sleep(milliseconds: 1)
        }
    }
}

/// A restore that fails at any step, or whose `amber restore` is killed there, leaves no task
/// behind (every PID of the image free again) and the image as it was; the image still restores.
final class FailedRestoreTests: ScenarioTestCase {
    /// Every point of a restore (Sources/Amber/StateKinds.swift), some also part-way through the tree.
    static let steps = FaultPoints.restore + ["create@25", "memory@30", "cleanup@50"]

    func testRestoreFailingOrKilledAtEachStepLeavesNothingBehind() throws {
        _ = try requireAmber()
        let p = try start(.tree)
        let pids = [p.pid] + Proc.descendants(of: p.pid)
        let image = try dumpExpectingSuccess(p)
        let snapshot = contents(of: image)
        for step in Self.steps {
            for action in ["fail", "kill"] {
                let context = "restore with \(step)=\(action)"
                let r = try amber(
                    ["restore", "-D", image, "--detach"], env: ["AMBER_TEST_FAULT": "restore.\(step)=\(action)"])
                if action == "fail" {
                    assertRefusal(
                        r, exitCode: AmberExit.restoreFailed,
                        mentions: ["test fault", step.split(separator: "@")[0].description])
                } else {
                    XCTAssertEqual(r.status, .signaled(SIGKILL), "\(context): \(r.summary)")
                }
                try waitUntilFree(pids, context)
                XCTAssertTrue(contents(of: image) == snapshot, "\(context) changed the image")
            }
        }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after restores that failed at every step")
    }

    /// A restore that fails after it bound a unix socket to its path removes the socket file it
    /// made: the next restore finds the path free, binds it again, and the scenario passes.
    func testUnbindsOnFailure() throws {
        _ = try requireAmber()
        let p = try start(.unixBound)
        let image = try dumpExpectingSuccess(p)
        let r = try amber(["restore", "-D", image, "--detach"], env: ["AMBER_TEST_FAULT": "restore.cleanup=fail"])
        assertRefusal(r, exitCode: AmberExit.restoreFailed, mentions: ["test fault", "cleanup"])
        try waitUntilFree([p.pid], "restore with cleanup=fail")
        for name in ["dgram.sock", "listener.sock"] {
            XCTAssertFalse(Sys.fileExists(p.directory + "/" + name), "the failed restore left \(name)")
        }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after a restore that failed once it had bound its sockets")
    }

    /// Reaps what comes to us (orphans of a killed restore) until no PID of the image is in use.
    private func waitUntilFree(_ pids: [pid_t], _ context: String) throws {
        let deadline = Sys.now() + 10
        while true {
            var status: Int32 = 0
            while waitpid(-1, &status, WNOHANG | __WALL) > 0 {}
            let taken = pids.filter(Proc.pidInUse)
            if taken.isEmpty { return }
            if Sys.now() > deadline {
                XCTFail(
                    "\(context): these PIDs of the image are still in use: "
                        + taken.map { Proc.describe($0) }.joined(separator: "; "))
                throw RunnerError("tasks left behind")
            }
            Sys.sleep(milliseconds: 1)
        }
    }
}

/// An image the dump cannot read back as a restore would fails the dump before the tree is
/// killed: the tree runs on as it was.
final class ReadBackTests: ScenarioTestCase {
    func testDumpThatCannotReadItsImageBackLeavesTheTree() throws {
        _ = try requireAmber()
        let p = try start(.tree)
        let tree = [p.pid] + Proc.descendants(of: p.pid)
        let image = try newDirectory("image")
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", image], reaping: [p],
            env: ["AMBER_TEST_FAULT": "dump.read-back=fail"])
        XCTAssertEqual(r.status, .exited(1), r.summary)
        XCTAssertTrue(r.stderr.contains("read-back"), r.stderr)
        // The complete image is taken back, inventory first: nothing a restore would take is left.
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: image)) ?? [], [], "left in \(image)")
        for pid in tree { assertRunningUntraced(pid, "process \(pid) after the dump failed to read its image back") }
        try terminateAndExpectPass(p, "after the dump failed to read its image back")
    }
}
