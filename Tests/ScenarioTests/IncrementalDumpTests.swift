// `amber pre-dump` and `amber dump --prev-images-dir`: the incremental scenario keeps writing
// while it is pre-dumped, springs the traps of an incremental dump between the pre-dump and the
// dump (a page dropped by MADV_DONTNEED, an area mapped since, one moved by mremap), and checks
// every page of its memory after the restore.

import Foundation
import XCTest

extension Scenario {
    static let incremental = Scenario(name: "incremental")
    static let incrementalThreads = Scenario(name: "incremental", args: ["--threads", "3"])
    static let incrementalTree = Scenario(name: "incremental", args: ["--child", "--threads", "2"])
}

final class IncrementalDumpTests: ScenarioTestCase {
    func testPreDumpThenDump() throws {
        try runIncremental(.incremental, preDumps: 1)
    }

    func testThreads() throws {
        try runIncremental(.incrementalThreads, preDumps: 1)
    }

    func testTree() throws {
        try runIncremental(.incrementalTree, preDumps: 1)
    }

    /// Every kind of private area, unchanged since the pre-dump: the dump takes each page from
    /// it, a private file area's cleared page too (skipped as zero, the file would show there).
    func testEveryKindOfAreaFromThePreDump() throws {
        try runIncremental(.memory, preDumps: 1, traps: false)
    }

    func testChainOfThree() throws {
        try runIncremental(.incrementalThreads, preDumps: 2)
    }

    /// A later pre-dump protects the pages again, so the tracker's bits are no longer those of
    /// the first: a dump referring to the first reads every page (else pages written between
    /// the two pre-dumps would come from the first, stale).
    func testDumpReferringToAnOlderPreDump() throws {
        _ = try requireAmber()
        let p = try start(.incrementalThreads)
        let first = try newDirectory("pre")
        try preDump(p, into: first)
        kill(p.pid, SIGUSR1)
        XCTAssertTrue(waitForFile(p.directory + "/traps-done"), "the scenario did not spring its traps")
        try preDump(p, into: try newDirectory("pre"), previous: first)
        Sys.sleep(milliseconds: 100)
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--prev-images-dir", first], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump: \(r.summary)")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after a dump referring to the older pre-dump, and restore")
    }

    /// After `dump --prev-images-dir --leave-running` nothing of the tracking is left in the
    /// process: no registration (VmFlags uw), no userfaultfd, no tracker; it runs on and passes.
    func testNothingLeftAfterTheDump() throws {
        _ = try requireAmber()
        let p = try start(.incremental)
        let first = try newDirectory("pre")
        try preDump(p, into: first)
        XCTAssertTrue(
            Sys.readText("/proc/\(p.pid)/smaps")?.contains(" uw") == true, "the pre-dump registered no area")
        let image = try newDirectory("image")
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", image, "--prev-images-dir", first, "--leave-running"], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump: \(r.summary)")
        XCTAssertFalse(
            Sys.readText("/proc/\(p.pid)/smaps")?.contains(" uw") == true, "an area is still registered after the dump")
        let links = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/fd")) ?? []).compactMap {
            Sys.readlink("/proc/\(p.pid)/fd/\($0)")
        }
        XCTAssertFalse(links.contains("anon_inode:[userfaultfd]"), "the process holds a userfaultfd: \(links)")
        XCTAssertEqual(trackers(), [], "a memory tracker is still running after the dump")
        try terminateAndExpectPass(p, "after dump --prev-images-dir --leave-running")
    }

    /// A process using userfaultfd itself is refused at pre-dump, and left running.
    func testPreDumpRefusesAUserfaultfdUser() throws {
        _ = try requireAmber()
        let p = try start(.unsupportedEventFile("--userfaultfd"))
        let image = try newDirectory("pre")
        let r = try amber(["pre-dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", "userfaultfd"])
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "a refused pre-dump wrote an inventory")
        assertRunningUntraced(p.pid, "after the refused pre-dump")
        try terminateAndExpectPass(p, "after the refused pre-dump")
    }

    /// The parent is named by its directory and its inventory's SHA-256: a parent swapped for
    /// another pre-dump, or missing, is refused by restore and verify, naming it; and a parent
    /// that is not beside the image is refused at dump.
    func testChainLinksAreChecked() throws {
        _ = try requireAmber()
        let p = try start(.incremental)
        let first = try newDirectory("pre")
        try preDump(p, into: first)
        let elsewhere = try newDirectory("elsewhere")
        let nested = elsewhere + "/image"
        let refused = try amber(["dump", "-t", "\(p.pid)", "-D", nested, "--prev-images-dir", first], reaping: [p])
        assertRefusal(refused, exitCode: 1, mentions: ["--prev-images-dir", "beside"])
        XCTAssertNil(p.exitStatus, "the target exited after a refused dump")
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--prev-images-dir", first], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump: \(r.summary)")
        let verified = try amber(["verify", image])
        XCTAssertEqual(verified.status, .exited(0), "verify: \(verified.summary)")
        // Another pre-dump in the parent's place.
        let other = try start(.incremental)
        let swapped = try newDirectory("swapped")
        try preDump(other, into: swapped)
        let kept = first + ".kept"
        XCTAssertEqual(rename(first, kept), 0)
        XCTAssertEqual(rename(swapped, first), 0)
        let mismatch = try amber(["verify", image])
        assertRefusal(mismatch, exitCode: AmberExit.badImage, mentions: ["SHA-256", "parent"])
        let restored = try amber(["restore", "-D", image, "--detach"])
        track(p.pid)
        assertRefusal(restored, exitCode: AmberExit.badImage, mentions: ["parent"])
        XCTAssertFalse(Proc.pidInUse(p.pid), "after a refused restore PID \(p.pid) is in use")
        // A link in the parent's place.
        XCTAssertEqual(rename(first, swapped), 0)
        XCTAssertEqual(symlink(kept, first), 0)
        let linked = try amber(["verify", image])
        assertRefusal(linked, exitCode: AmberExit.badImage, mentions: ["not a link"])
        // No parent at all.
        XCTAssertEqual(unlink(first), 0)
        let missing = try amber(["verify", image])
        assertRefusal(missing, exitCode: AmberExit.badImage, mentions: ["parent image"])
        // A pre-dump is not restored on its own.
        let alone = try amber(["restore", "-D", kept, "--detach"])
        assertRefusal(alone, exitCode: AmberExit.badImage, mentions: ["pre-dump"])
    }

    // MARK: helpers

    /// Starts `scenario`, pre-dumps it `preDumps` times (each after the previous, the traps
    /// sprung after the first), dumps it with --prev-images-dir, restores it and expects PASS.
    /// A copy-on-write dump cannot refer to a pre-dump: refused by name before the tree is
    /// touched; the tracking goes on, and a plain incremental dump follows.
    func testCopyOnWriteWithPrevImagesDirRefused() throws {
        _ = try requireAmber()
        let p = try start(.incremental)
        let first = try newDirectory("pre")
        try preDump(p, into: first)
        let refused = try newDirectory("image")
        let r = try amber(["dump", "--cow", "-t", "\(p.pid)", "-D", refused, "--prev-images-dir", first], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["--cow", "--prev-images-dir"])
        XCTAssertFalse(Sys.fileExists(refused + "/inventory.pb"), "a refused dump wrote an inventory")
        assertRunningUntraced(p.pid, "after the refused dump --cow --prev-images-dir")
        let image = try newDirectory("image")
        let dumped = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--prev-images-dir", first], reaping: [p])
        XCTAssertEqual(dumped.status, .exited(0), "dump: \(dumped.summary)")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after a refused dump --cow and an incremental dump")
    }

    /// The lazy restore serves an image's own page files only: an incremental image is refused
    /// by name, with no process made, and restores without --lazy-pages.
    func testLazyRestoreOfAnIncrementalImageRefused() throws {
        _ = try requireAmber()
        let p = try start(.incremental)
        let first = try newDirectory("pre")
        try preDump(p, into: first)
        let image = try newDirectory("image")
        let dumped = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--prev-images-dir", first], reaping: [p])
        XCTAssertEqual(dumped.status, .exited(0), "dump: \(dumped.summary)")
        let r = try amber(["restore", "-D", image, "--detach", "--lazy-pages"])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["--lazy-pages", "incremental"])
        XCTAssertFalse(Sys.fileExists("/proc/\(p.pid)"), "the refused lazy restore left process \(p.pid)")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after a refused lazy restore and a plain one")
    }

    private func runIncremental(_ scenario: Scenario, preDumps: Int, traps: Bool = true) throws {
        _ = try requireAmber()
        let p = try start(scenario)
        var previous: String?
        for index in 0..<preDumps {
            let directory = try newDirectory("pre")
            try preDump(p, into: directory, previous: previous)
            previous = directory
            if index == 0 && traps {
                kill(p.pid, SIGUSR1)
                XCTAssertTrue(waitForFile(p.directory + "/traps-done"), "the scenario did not spring its traps")
            }
        }
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--prev-images-dir", previous!, "-v"], reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("dump --prev-images-dir failed: \(r.summary); \(p.diagnostics)")
            throw RunnerError("dump failed")
        }
        XCTAssertTrue(r.stderr.contains("frozen for"), "the dump's summary gives no frozen time: \(r.stderr)")
        let verified = try amber(["verify", image])
        XCTAssertEqual(verified.status, .exited(0), "verify: \(verified.summary)")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after pre-dump, dump --prev-images-dir and restore")
        XCTAssertTrue(waitFor { self.trackers().isEmpty }, "a memory tracker is still running after the dump")
    }

    private func preDump(_ p: ScenarioProcess, into directory: String, previous: String? = nil) throws {
        let r = try amber(
            ["pre-dump", "-t", "\(p.pid)", "-D", directory] + (previous.map { ["--prev-images-dir", $0] } ?? []),
            reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("pre-dump failed: \(r.summary); \(p.diagnostics)")
            throw RunnerError("pre-dump failed")
        }
        XCTAssertNil(p.exitStatus, "the target exited during the pre-dump")
        assertRunningUntraced(p.pid, "after the pre-dump")
    }

    /// The memory trackers running, by PID.
    private func trackers() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = pid_t(entry), let line = Sys.readText("/proc/\(pid)/cmdline") else { return nil }
            return line.contains("--memory-tracker") ? pid : nil
        }
    }

    private func waitForFile(_ path: String) -> Bool { waitFor { Sys.fileExists(path) } }

    private func waitFor(_ condition: () -> Bool) -> Bool {
        let deadline = Sys.now() + 10
        while Sys.now() < deadline {
            if condition() { return true }
            Sys.sleep(milliseconds: 10)
        }
        return condition()
    }
}
