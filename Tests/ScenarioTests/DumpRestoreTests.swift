// Every scenario dumped (killing it), restored with --detach, then checked; restore
// without --detach; dump with --leave-running.

import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class DumpRestoreTests: ScenarioTestCase {
    func testCounter() throws { try runDumped(.counter) }
    func testMemory() throws { try runDumped(.memory) }
    func testMemoryFlags() throws { try runDumped(.memoryFlags) }
    func testMemoryFlagsLockFuture() throws { try runDumped(.memoryFlagsLockFuture) }
    func testMembarrier() throws { try runDumped(.membarrier) }
    func testFPU() throws { try runDumped(.fpu) }
    func testSignals() throws { try runDumped(.signals) }
    func testSignalsWithTrapHandler() throws { try runDumped(.signalsWithTrapHandler) }
    func testRestartSleep() throws { try runDumped(.restartSleep) }
    func testRestartSleepAbsoluteFirst() throws { try runDumped(.restartSleepAbsoluteFirst) }
    func testRestartRead() throws { try runDumped(.restartRead) }
    func testFiles() throws { try runDumped(.files) }
    func testEnvironment() throws { try runDumped(.environment) }
    func testSecondThread() throws { try runDumped(.secondThread) }
    func testChildPause() throws { try runDumped(.childPause) }
    func testRseqSection() throws { try runDumped(.rseqSection) }
    func testInterruptedWaits() throws { try runDumped(.interruptedWaits) }
    /// A dump that leaves the tree running, then one that does not: the waits the first freeze
    /// ended went on as the very calls, so the second finds them as they were.
    func testInterruptedWaitsDumpedTwice() throws {
        _ = try requireAmber()
        let p = try start(.interruptedWaits)
        let first = try amber(
            ["dump", "-t", "\(p.pid)", "-D", try newDirectory("first"), "--leave-running"], reaping: [p])
        XCTAssertEqual(first.status, .exited(0), "dump --leave-running: \(first.summary)")
        let image = try newDirectory("image")
        let second = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        XCTAssertEqual(second.status, .exited(0), "dump: \(second.summary)")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after a dump --leave-running, a dump and a restore")
    }
    func testChildPauseIgnoringSIGCHLD() throws { try runDumped(.childPauseIgnoringSIGCHLD) }
    func testScheduling() throws { try runDumped(.scheduling) }
    func testFlags() throws { try runDumped(.flags) }
    func testTimers() throws { try runDumped(.timers) }
    func testSeccomp() throws { try runDumped(.seccomp) }
    func testSeccompStrict() throws { try runDumped(.seccompStrict) }
    func testUnchanged() throws { try runDumped(.unchanged) }
    /// Names come from the kernel: "x (deleted)" is no deleted file, "new\nline" is no "new\\012line".
    func testOddNames() throws { try runDumped(.oddNames) }
    func testPathFDs() throws { try runDumped(.pathFDs) }
    /// Every lock set again after the last close in each task, one on a file the tree maps shared.
    func testFileLocks() throws { try runDumped(.fileLocks) }

    /// The same image restores twice in a row (restore does not consume or alter it).
    func testImageRestoresTwice() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try dumpExpectingSuccess(p)
        let before = listing(image).map { ($0, Sys.readFile(image + "/" + $0) ?? []) }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "first restore")
        XCTAssertFalse(Proc.pidInUse(p.pid), "PID still in use after the first restored process ended")
        let after = listing(image).map { ($0, Sys.readFile(image + "/" + $0) ?? []) }
        XCTAssertTrue(before.elementsEqual(after) { $0.0 == $1.0 && $0.1 == $1.1 }, "restore changed the image")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "second restore")
    }

    // MARK: restore without --detach

    /// amber restore stays the parent and exits with the restored process's status.
    func testRestoreWithoutDetachExitsWithProcessStatus() throws {
        let (p, run) = try restoreAttached(.counter)
        kill(p.pid, SIGTERM)
        let r = try finish(run)
        XCTAssertEqual(r.status, .exited(0), "amber restore must exit with the scenario's status: \(r.summary)")
        XCTAssertEqual(p.verdict, "PASS", "verdict; log:\n\(p.logText)")
        XCTAssertFalse(Proc.pidInUse(p.pid), "amber restore exited without reaping PID \(p.pid)")
    }

    /// Killed by a signal: amber restore exits 128 + the signal.
    func testRestoreWithoutDetachReportsSignal() throws {
        let (p, run) = try restoreAttached(.counter)
        kill(p.pid, SIGKILL)
        let r = try finish(run)
        XCTAssertEqual(r.status, .exited(128 + SIGKILL), "amber restore must exit 128+9: \(r.summary)")
        XCTAssertNil(p.verdict)
        XCTAssertFalse(Proc.pidInUse(p.pid), "amber restore exited without reaping PID \(p.pid)")
    }

    /// Dump `scenario`, start `amber restore -D DIR` (no --detach) and wait until the
    /// restored process runs on its own: the scenario binary, not traced, not stopped.
    private func restoreAttached(_ scenario: Scenario) throws -> (ScenarioProcess, RunningAmber) {
        _ = try requireAmber()
        let p = try start(scenario)
        let image = try dumpExpectingSuccess(p)
        p.exitStatus = nil
        let run = try startAmber(["restore", "-D", image])
        track(p.pid)
        let deadline = Sys.now() + Self.amberTimeout
        while true {
            if case .exited(let s) = Spawn.poll(run.pid) {
                XCTFail(
                    "amber restore (without --detach) exited (\(s)) before SIGTERM; stderr: \(Sys.readText(run.stderrPath) ?? "")"
                )
                throw RunnerError("amber restore ended early")
            }
            if let st = Proc.status(p.pid), !st.isGone, !st.isStoppedOrTraced, st.tracerPid == 0,
                Proc.exe(p.pid) == p.binary
            {
                XCTAssertEqual(st.ppid, run.pid, "the restored process's parent must be amber restore")
                return (p, run)
            }
            if Sys.now() > deadline {
                XCTFail("the restored process never ran untraced; \(p.diagnostics)")
                throw RunnerError("restore did not finish")
            }
            Sys.sleep(milliseconds: 2)
        }
    }

    // MARK: --leave-running

    func testLeaveRunningCounter() throws { try runLeaveRunning(.counter) }
    func testLeaveRunningFPU() throws { try runLeaveRunning(.fpu) }
    func testLeaveRunningSignals() throws { try runLeaveRunning(.signals) }
    func testLeaveRunningRestartSleep() throws { try runLeaveRunning(.restartSleep) }
    func testLeaveRunningRestartRead() throws { try runLeaveRunning(.restartRead) }
    func testLeaveRunningFiles() throws { try runLeaveRunning(.files) }
    func testLeaveRunningSecondThread() throws { try runLeaveRunning(.secondThread) }
    func testLeaveRunningChildPause() throws { try runLeaveRunning(.childPause) }
    func testLeaveRunningRseqSection() throws { try runLeaveRunning(.rseqSection) }
    func testLeaveRunningInterruptedWaits() throws { try runLeaveRunning(.interruptedWaits) }
    func testLeaveRunningScheduling() throws { try runLeaveRunning(.scheduling) }
    func testLeaveRunningFlags() throws { try runLeaveRunning(.flags) }
    func testLeaveRunningTimers() throws { try runLeaveRunning(.timers) }
    func testLeaveRunningSeccomp() throws { try runLeaveRunning(.seccomp) }
    func testLeaveRunningSeccompStrict() throws { try runLeaveRunning(.seccompStrict) }
    func testLeaveRunningFileLocks() throws { try runLeaveRunning(.fileLocks) }

    /// An image taken with --leave-running restores once the original is gone.
    func testLeaveRunningImageRestores() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), r.summary)
        // Stop the original without letting it write a verdict, and free its PID.
        kill(p.pid, SIGKILL)
        XCTAssertTrue(waitForEnd(p, timeout: Self.verdictTimeout))
        XCTAssertNil(p.verdict)
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored from a --leave-running image")
    }

    // MARK: pipes

    func testPipeFull() throws { try runDumped(.pipeFull) }
    func testPipeLarge() throws { try runDumped(.pipeLarge) }
    /// Dumped while the child is blocked in write(2) on the full pipe.
    func testPipeBlockedWriter() throws { try runDumped(.pipeBlockedWriter) }
    func testPipePackets() throws { try runDumped(.pipePackets) }
    func testPipeClosedEnds() throws { try runDumped(.pipeClosedEnds) }
    /// A named pipe's capacity and what it holds, written back once for its three descriptions.
    func testPipeFifo() throws { try runDumped(.pipeFifo) }
    func testPipeFifoWriter() throws { try runDumped(.pipeFifoWriter) }
    /// The copy of what a pipe holds (tee) leaves it there: the original reads it all after.
    func testLeaveRunningPipeFull() throws { try runLeaveRunning(.pipeFull) }
    func testLeaveRunningPipeLarge() throws { try runLeaveRunning(.pipeLarge) }
    func testLeaveRunningPipePackets() throws { try runLeaveRunning(.pipePackets) }
    func testLeaveRunningPipeFifo() throws { try runLeaveRunning(.pipeFifo) }
    func testEventFDs() throws { try runDumped(.eventFDs) }
    func testSignalFDs() throws { try runDumped(.signalFDs) }
    func testTimerFDs() throws { try runDumped(.timerFDs) }
    func testLeaveRunningEventFDs() throws { try runLeaveRunning(.eventFDs) }
    func testLeaveRunningTimerFDs() throws { try runLeaveRunning(.timerFDs) }
    /// Listening, bound and fresh TCP and UDP sockets come back with their addresses, backlogs and options.
    func testInetSockets() throws { try runDumped(.inetSockets) }
    func testLeaveRunningInetSockets() throws { try runLeaveRunning(.inetSockets) }
    func testSharedMemory() throws { try runDumped(.sharedMemory) }
    func testLeaveRunningSharedMemory() throws { try runLeaveRunning(.sharedMemory) }
    func testUnixSockets() throws { try runDumped(.unixSockets) }
    /// The copy of every queue (peeked from offset 0, the peek offset put back) leaves it there.
    func testLeaveRunningUnixSockets() throws { try runLeaveRunning(.unixSockets) }
    func testUnixBound() throws { try runDumped(.unixBound) }
    /// SO_PEERCRED and SO_PEERGROUPS show the child's uid 1000, or root's, as before: not the restorer's.
    func testUnixPeerCredentials() throws { try runDumped(.unixPeerCredentials) }
    func testLeaveRunningUnixBound() throws { try runLeaveRunning(.unixBound) }
    func testMemfd() throws { try runDumped(.memfd) }
    func testDeletedFiles() throws { try runDumped(.deletedFiles) }
    /// A program removed while it runs: its executable is the deleted file its text maps.
    func testDeletedExecutable() throws { try runDumped(.deletedExecutable) }
    func testDeletedCwd() throws { try runDumped(.deletedCwd) }
    /// Each comes back as it was: unnamed and linkable, mapped, linked, or deleted for good.
    func testTemporaryFiles() throws { try runDumped(.temporaryFiles) }
    func testLeaveRunningTemporaryFiles() throws { try runLeaveRunning(.temporaryFiles) }
    /// Read through descriptions of amber's own: the offsets and contents the tree sees are untouched.
    func testLeaveRunningMemfd() throws { try runLeaveRunning(.memfd) }
    func testLeaveRunningDeletedFiles() throws { try runLeaveRunning(.deletedFiles) }
    /// Each watch comes back with its events and data, keyed by the same fd; what was reported
    /// already is not reported again.
    func testEpoll() throws { try runDumped(.epoll) }
    /// The dump only polls: nothing it does is seen by the instances.
    func testLeaveRunningEpoll() throws { try runLeaveRunning(.epoll) }
    func testPidfds() throws { try runDumped(.pidfds) }
    /// Each watch on its file again, at its wd.
    func testInotify() throws { try runDumped(.inotify) }
    func testLeaveRunningInotify() throws { try runLeaveRunning(.inotify) }
    /// Accepted connections come back connected through their listener, named by its address,
    /// before its pending connection; their clients in children read and answer.
    func testUnixAccepted() throws { try runDumped(.unixAccepted) }
    func testLeaveRunningUnixAccepted() throws { try runLeaveRunning(.unixAccepted) }
    /// One memfd and one deleted file for the descriptor and every mapping of both processes;
    /// the private copies are the process's own.
    func testMappedUnnamed() throws { try runDumped(.mappedUnnamed) }
    func testLeaveRunningMappedUnnamed() throws { try runLeaveRunning(.mappedUnnamed) }
    /// Both ptys with their settings; the session leader's controlling terminal and its
    /// foreground group; the peers answer through them, the grandchild through /dev/tty.
    func testPtys() throws { try runDumped(.ptys) }
    func testLeaveRunningPtys() throws { try runLeaveRunning(.ptys) }
    /// Wildcard and dual-stack listeners and UDP sockets with their options; connected UDP
    /// sockets connected again, their peers answering, strangers still filtered out.
    func testInetDualStack() throws { try runDumped(.inetDualStack) }
    func testLeaveRunningInetDualStack() throws { try runLeaveRunning(.inetDualStack) }
    /// NETLINK_ROUTE and NETLINK_SOCK_DIAG sockets with their port ids, groups and options; the
    /// kernel answers dumps on them and they reach each other by port id.
    func testNetlinkSockets() throws { try runDumped(.netlinkSockets) }
    func testNetlinkSocketsInTheirOwnNamespace() throws { try runDumped(.netlinkSocketsOwnNamespace) }
    func testLeaveRunningNetlinkSockets() throws { try runLeaveRunning(.netlinkSockets) }
    /// The incremental scenario dumped plainly: what a dump after a pre-dump must equal.
    func testIncremental() throws { try runDumped(.incrementalTree) }

    /// lazy_pages.c in each mode after a plain restore: the memory a lazy restore must match.
    func testLazyPagesScenarioPlainRestore() throws {
        for flags in [[], ["--threads"], ["--tree"], ["--fork"], ["--dontneed"], ["--kernel-read"]] {
            try runDumped(.lazyPages(flags))
        }
    }

    func testBigMemory() throws { try runDumped(.bigMemory(mib: 64)) }
    /// The tree comes back in new UTS and IPC namespaces of its own: its host and domain names,
    /// its IPC sysctls, no System V object, and a new message queue works in it.
    func testUTSIPCNamespace() throws { try runDumped(.utsIPCNamespace) }
    /// A tree in amber's own cgroups stays in them (CgroupTests moves trees between cgroups).
    func testCgroupTree() throws { try runDumped(.cgroupTree) }
    /// A child in a cgroup of its own below its root's (once refused, hence the scenario's
    /// name) comes back into it.
    func testChildInCgroupOfItsOwn() throws { try runDumped(.unsupportedCgroup) }
    /// Every queue of 24 pipes and 24 unix socket pairs, read on every CPU at once, comes back
    /// byte for byte, packets and messages apart, and the pairs and pipes still carry data.
    func testManyFDs() throws { try runDumped(.manyFDs) }
    /// The copies leave every queue where it was.
    func testLeaveRunningManyFDs() throws { try runLeaveRunning(.manyFDs) }
    /// Thread stacks, accounted and unaccounted areas and file pieces back to back come back with their flags.
    func testMappingRuns() throws { try runDumped(.mappingRuns) }
}
