// `amber dump --cow`: the tree runs on while its pages are copied. Each scenario writes its
// memory without pause during the dump and checks, page by page, that what it finds is what
// it wrote last: after restore the memory is the freeze's, bit for bit.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class CopyOnWriteTests: ScenarioTestCase {
    func testWriterDumpedAndRestored() throws { try dumpAndRestore(.cowWriter) }

    /// Every thread faults while the handler runs, and the kernel writes pages for one (read()).
    func testThreadsAndKernelWrites() throws { try dumpAndRestore(.cowWriterThreads) }

    func testTree() throws { try dumpAndRestore(.cowWriterTree) }

    /// A child forked during the copy has areas without the registration; the parent's stay protected.
    func testForksDuringTheCopy() throws { try dumpAndRestore(.cowWriterForks) }

    /// --leave-running: the original goes on with no registration (no "uw" in smaps), no extra
    /// descriptor, untraced, and passes; the image restores (once the original is gone).
    func testLeaveRunningLeavesNothingBehind() throws {
        _ = try requireAmber()
        let p = try start(.cowWriterThreads)
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/fd").sorted()
        let image = try newDirectory("image")
        let r = try amber(["dump", "--cow", "--leave-running", "-v", "-t", "\(p.pid)", "-D", image], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump --cow --leave-running: \(r.summary)")
        XCTAssertTrue(r.stderr.contains("frozen for"), "no frozen time in the summary: \(r.summary)")
        XCTAssertNil(p.exitStatus, "the original exited: \(p.diagnostics)")
        assertRunningUntraced(p.pid, "after dump --cow --leave-running")
        let smaps = try String(contentsOfFile: "/proc/\(p.pid)/smaps", encoding: .utf8)
        let registered = smaps.split(separator: "\n").filter {
            $0.hasPrefix("VmFlags:") && $0.split(separator: " ").contains { ["uw", "um", "ui"].contains($0) }
        }
        XCTAssertEqual(registered, [], "areas still registered with a userfaultfd after the dump")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/fd").sorted(), descriptors,
            "the descriptors changed")
        try terminateAndExpectPass(p, "original after dump --cow --leave-running")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after dump --cow --leave-running and restore")
    }

    /// Threads exit while the copy runs, each holding a robust mutex on a page written only
    /// before the freeze: the kernel's owner-died mark and cleared TID (a fault of an exiting
    /// task, which userfaultfd does not take) still land in the original, and in the copy.
    func testThreadsExitingDuringTheCopy() throws { try dumpLeftRunningThenRestore(.cowWriterRobustExits) }

    /// A thread waits for a PI mutex: the kernel takes its futex word again once the tree runs,
    /// without waiting for a protection to be lifted, so that page is left writable.
    func testPriorityInheritanceMutexWaiter() throws { try dumpLeftRunningThenRestore(.cowWriterPIWaiter) }

    /// dump --cow --leave-running: the original passes; then the image, restored, passes too.
    private func dumpLeftRunningThenRestore(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        _ = try requireAmber()
        let p = try start(scenario)
        let image = try newDirectory("image")
        let r = try amber(["dump", "--cow", "--leave-running", "-t", "\(p.pid)", "-D", image], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump --cow --leave-running: \(r.summary)", file: file, line: line)
        try terminateAndExpectPass(p, "original after dump --cow --leave-running", file: file, line: line)
        try restoreDetachedExpectingSuccess(p, from: image, file: file, line: line)
        try terminateAndExpectPass(p, "after dump --cow --leave-running and restore", file: file, line: line)
    }

    /// A process that does not write: its page files from --cow are byte for byte a plain dump's.
    /// It is kept on one CPU: the kernel writes the CPU a thread returns to user space on into
    /// its rseq area (glibc's, in the TLS block), which a dump would otherwise catch changing.
    func testPageFilesAreAPlainDumps() throws {
        _ = try requireAmber()
        let p = try start(.memory)
        let (pinned, output) = try Spawn.run(["/usr/bin/taskset", "-a", "-p", "1", "\(p.pid)"], in: try Scratch.root())
        XCTAssertEqual(pinned, .exited(0), "taskset: \(output)")
        var images: [String] = []
        for flags in [[], ["--cow"]] {
            let image = try newDirectory("image")
            let r = try amber(["dump", "--leave-running", "-t", "\(p.pid)", "-D", image] + flags, reaping: [p])
            XCTAssertEqual(r.status, .exited(0), "dump \(flags): \(r.summary)")
            images.append(image)
        }
        let pageFiles = try FileManager.default.contentsOfDirectory(atPath: images[0]).filter { $0.hasPrefix("pages-") }
        XCTAssertFalse(pageFiles.isEmpty, "the plain dump wrote no page file")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: images[1]).filter { $0.hasPrefix("pages-") }.sorted(),
            pageFiles.sorted())
        for name in pageFiles {
            XCTAssertEqual(
                FileManager.default.contents(atPath: images[0] + "/" + name),
                FileManager.default.contents(atPath: images[1] + "/" + name), "\(name) differs")
        }
        try terminateAndExpectPass(p, "original after two dumps --leave-running")
    }

    /// Memory moved (mremap) before amber copied it: the dump fails naming the process and the
    /// range, writes no image, and the process runs on unharmed.
    func testMovedBeforeCopiedFailsTheDump() throws {
        _ = try requireAmber()
        let p = try start(.cowWriterMoves)
        let image = try newDirectory("image")
        let r = try amber(["dump", "--cow", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", "moved (mremap) memory", "--cow"])
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "a failed dump wrote an inventory")
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        assertRunningUntraced(p.pid, "after a failed dump --cow")
        try terminateAndExpectPass(p, "after a failed dump --cow")
    }

    /// `amber dump --cow` killed while the pages are copied (a few MiB in): the worker stops, lifts
    /// every protection, writes no inventory, and the tree runs on unharmed.
    func testInterruptedDuringTheCopyLeavesTheTreeRunning() throws {
        _ = try requireAmber()
        let p = try start(.cowWriterThreads)
        let image = try newDirectory("image")
        let run = try startAmber(
            ["dump", "--cow", "-t", "\(p.pid)", "-D", image], env: ["AMBER_TEST_FAULT": "dump.pages@8=kill-supervisor"])
        let r = try finish(run, reaping: [p])
        XCTAssertEqual(r.status, .signaled(SIGKILL), "amber dump --cow killed during the copy: \(r.summary)")
        let deadline = Sys.now() + Self.amberTimeout
        while Proc.childrenOfSelf().contains(where: { Proc.comm($0) == "amber" }) && Sys.now() < deadline {
            for worker in Proc.childrenOfSelf() where Proc.comm(worker) == "amber" {
                var status: Int32 = 0
                _ = waitpid(worker, &status, WNOHANG)
            }
            Sys.sleep(milliseconds: 1)
        }
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "the interrupted dump wrote an inventory")
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        assertRunningUntraced(p.pid, "after an interrupted dump --cow")
        let smaps = try String(contentsOfFile: "/proc/\(p.pid)/smaps", encoding: .utf8)
        XCTAssertFalse(smaps.contains(" uw"), "an area is still write-protect registered")
        try terminateAndExpectPass(p, "after an interrupted dump --cow")
    }

    /// Dumped with --cow (and killed once the copy is complete), restored, checked.
    private func dumpAndRestore(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        let image = try newDirectory("image")
        let r = try amber(["dump", "--cow", "-t", "\(p.pid)", "-D", image], reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("dump --cow failed: \(r.summary); \(p.diagnostics)", file: file, line: line)
            throw RunnerError("dump failed")
        }
        XCTAssertNotNil(p.exitStatus, "the dumped process still runs after dump --cow", file: file, line: line)
        XCTAssertNil(p.verdict, "the dumped process wrote a verdict: \(p.diagnostics)", file: file, line: line)
        XCTAssertFalse(Proc.pidInUse(p.pid), "PID \(p.pid) still in use after dump --cow", file: file, line: line)
        try restoreDetachedExpectingSuccess(p, from: image, file: file, line: line)
        try terminateAndExpectPass(p, "after dump --cow and restore", file: file, line: line)
    }
}
