// Every scenario must pass without dump and restore: this catches scenarios that would
// pass for the wrong reason. These tests do not need amber.

import XCTest

final class PlainScenarioTests: ScenarioTestCase {
    func testCounter() throws { try runPlain(.counter) }
    func testMemory() throws { try runPlain(.memory) }
    func testMemoryFlags() throws { try runPlain(.memoryFlags) }
    func testMemoryFlagsLockFuture() throws { try runPlain(.memoryFlagsLockFuture) }
    func testMembarrier() throws { try runPlain(.membarrier) }
    func testFPU() throws { try runPlain(.fpu) }
    func testSignals() throws { try runPlain(.signals) }
    func testSignalsWithTrapHandler() throws { try runPlain(.signalsWithTrapHandler) }
    func testRestartSleep() throws { try runPlain(.restartSleep) }
    func testRestartSleepAbsoluteFirst() throws { try runPlain(.restartSleepAbsoluteFirst) }
    func testRestartRead() throws { try runPlain(.restartRead) }
    func testFiles() throws { try runPlain(.files) }
    func testEnvironment() throws { try runPlain(.environment) }
    func testUnsupportedSocket() throws { try runPlain(.unsupportedSocket) }
    func testUnsupportedSharedMemory() throws { try runPlain(.unsupportedSharedMemory) }
    func testUnsupportedSetns() throws { try runPlain(.unsupportedSetns) }
    func testUnsupportedUnsharedPIDNamespace() throws { try runPlain(.unsupportedUnsharedPIDNamespace) }
    func testUnsupportedOrphanedSession() throws { try runPlain(.unsupportedOrphanedSession) }
    func testUnsupportedSharedFDTable() throws { try runPlain(.unsupportedSharedFDTable) }
    func testSecondThread() throws { try runPlain(.secondThread) }
    func testChildPause() throws { try runPlain(.childPause) }
    func testRseqSection() throws { try runPlain(.rseqSection) }
    func testInterruptedWaits() throws { try runPlain(.interruptedWaits) }
    func testChildPauseIgnoringSIGCHLD() throws { try runPlain(.childPauseIgnoringSIGCHLD) }
    func testStopped() throws { try runPlain(.stopped) }
    func testForkChurn() throws { try runPlain(.forkChurn) }
    func testPendingInterrupt() throws { try runPlain(.pendingInterrupt) }
    func testExitSignal() throws { try runPlain(.exitSignal) }
    func testTree() throws { try runPlain(.tree) }
    func testZombies() throws { try runPlain(.zombies) }
    func testForker() throws { try runPlain(.forker) }
    func testThreads() throws { try runPlain(.threads) }
    func testFutexWait() throws { try runPlain(.futexWait) }
    func testPidNamespaces() throws { try runPlain(.pidns) }
    func testPidNamespaceReaper() throws { try runPlain(.pidnsReaper) }
    func testScheduling() throws { try runPlain(.scheduling) }
    func testFlags() throws { try runPlain(.flags) }
    func testTimers() throws { try runPlain(.timers) }
    func testUnsupportedCPUClockTimer() throws { try runPlain(.unsupportedCPUClockTimer) }
    func testUnsupportedDeadline() throws { try runPlain(.unsupportedDeadline) }
    func testUnsupportedTraced() throws { try runPlain(.unsupportedTraced) }
    func testUnsupportedTracedOutside() throws { try runPlain(.unsupportedTracedOutside) }
    func testUnchanged() throws { try runPlain(.unchanged) }
    func testSessionKeyring() throws { try runPlain(.sessionKeyring) }
    func testUnsupportedChroot() throws { try runPlain(.unsupportedChroot) }
    func testUnsupportedControllingTerminal() throws { try runPlain(.unsupportedControllingTerminal) }
    func testUnsupportedAutogroup() throws { try runPlain(.unsupportedAutogroup) }
    func testUnsupportedMemoryPolicy() throws { try runPlain(.unsupportedMemoryPolicy) }
    func testUnsupportedAreaPolicy() throws { try runPlain(.unsupportedAreaPolicy) }
    func testUnsupportedThreadPolicy() throws { try runPlain(.unsupportedThreadPolicy) }
    func testUnsupportedThreadPersonality() throws { try runPlain(.unsupportedThreadPersonality) }
    func testUnsupportedGroupLeft() throws { try runPlain(.unsupportedGroupLeft) }
    func testUnsupportedGDTEntry() throws { try runPlain(.unsupportedGDTEntry) }
    func testUnsupportedLandlock() throws { try runPlain(.unsupportedLandlock) }
    func testUnsupportedThreadLandlock() throws { try runPlain(.unsupportedThreadLandlock) }
    func testUnsupportedGuardRegions() throws { try runPlain(.unsupportedGuardRegions) }
    func testUnsupportedLocalDescriptorTable() throws { try runPlain(.unsupportedLocalDescriptorTable) }
    func testUnsupportedVfork() throws { try runPlain(.unsupportedVfork) }
    func testUnsupportedRobustMutex() throws { try runPlain(.unsupportedRobustMutex) }
    func testUnsupportedSharedFile() throws { try runPlain(.unsupportedSharedFile) }
    func testUnsupportedSharedLockedLog() throws { try runPlain(.unsupportedSharedLockedLog) }
    func testUnsupportedSharedDirectory() throws { try runPlain(.unsupportedSharedDirectory) }
    func testUnsupportedThreadUnshareFS() throws { try runPlain(.unsupportedThreadUnshareFS) }
    func testUnsupportedThreadUnshareFiles() throws { try runPlain(.unsupportedThreadUnshareFiles) }
    func testUnsupportedOwner() throws { try runPlain(.unsupportedOwner) }
    func testUnsupportedFdAtLimit() throws { try runPlain(.unsupportedFdAtLimit) }
    func testUnsupportedStoppedFatal() throws { try runPlain(.unsupportedStoppedFatal) }
    func testUnsupportedStoppedTwice() throws { try runPlain(.unsupportedStoppedTwice) }
    func testUnsupportedLeaderExited() throws { try runPlain(.unsupportedLeaderExited) }
    func testPrivatePaths() throws { try runPlain(Scenario(name: "private_paths")) }
    func testCredentialsTreePrivatePaths() throws {
        try runPlain(Scenario(name: "credentials_tree", args: ["--private-paths"]))
    }
    func testUnsupportedRootParentDeath() throws { try runPlain(.unsupportedRootParentDeath) }
    func testUnsupportedSessionOutside() throws { try runPlain(.unsupportedSessionOutside) }
    func testUnsupportedUnmappedVvar() throws { try runPlain(.unsupportedUnmappedVvar) }
    func testUnsupportedDeletedAttributes() throws {
        try runPlain(.unsupportedDeletedXattr)
        try runPlain(.unsupportedDeletedNoatime)
    }
    func testUnsupportedSyscallUserDispatch() throws { try runPlain(.unsupportedSyscallUserDispatch) }
    func testUnsupportedThreadKeyring() throws { try runPlain(.unsupportedThreadKeyring) }
    func testUnsupportedProcessKeyring() throws { try runPlain(.unsupportedProcessKeyring) }
    func testUnsupportedSessionKeys() throws { try runPlain(.unsupportedSessionKeys) }
    func testSeccomp() throws { try runPlain(.seccomp) }
    func testSeccompStrict() throws { try runPlain(.seccompStrict) }
    func testUnsupportedSeccompListener() throws { try runPlain(.unsupportedSeccompListener) }
    func testCredentialsTree() throws { try runPlain(.credentialsTree) }
    func testCredentialsThread() throws { try runPlain(.credentialsThread) }
    func testUnsupportedUserNamespace() throws { try runPlain(.unsupportedUserNamespace) }
    func testOddNames() throws { try runPlain(.oddNames) }
    func testPathFDs() throws { try runPlain(.pathFDs) }
    /// All but --hugetlb, which needs a huge page reserved (DumpErrorTests reserves one).
    func testUnsupportedKinds() throws {
        for flag in [
            "--aio", "--shmem", "--pty", "--unix", "--inet", "--inet6", "--netlink", "--packet", "--mqueue",
            "--async", "--dnotify", "--opath-socket", "--proc-thread", "--proc-fdinfo", "--immutable",
        ] {
            try runPlain(.unsupportedKind(flag))
        }
    }
    func testUnsupportedEventFiles() throws {
        for flag in [
            "--epoll", "--inotify", "--timerfd-alarm", "--eventfd-append", "--eventfd-outside", "--timerfd-outside",
            "--inotify-outside", "--signalfd-outside",
        ] {
            try runPlain(.unsupportedEventFile(flag))
        }
    }
    func testUnsupportedCwdGoneProc() throws { try runPlain(.unsupportedCwdGoneProc) }
    func testUnsupportedUTSNamespace() throws { try runPlain(.unsupportedUTSNamespace) }
    func testUnsupportedMountNamespace() throws { try runPlain(.unsupportedMountNamespace) }
    func testUnsupportedIPCNamespace() throws { try runPlain(.unsupportedIPCNamespace) }
    func testUnsupportedNetworkNamespace() throws { try runPlain(.unsupportedNetworkNamespace) }
    func testUnsupportedCgroupNamespace() throws { try runPlain(.unsupportedCgroupNamespace) }
    func testUnsupportedTimeNamespace() throws { try runPlain(.unsupportedTimeNamespace) }
    func testUnsupportedCgroup() throws { try runPlain(.unsupportedCgroup) }
    func testFileLocks() throws { try runPlain(.fileLocks) }
    func testUnsupportedLease() throws { try runPlain(.unsupportedLease) }
    func testUnsupportedHugeTLB() throws {
        try requireHugeTLBFS()
        try runPlain(.unsupportedHugeTLB)
    }

    /// Every process of a tree scenario is there when it is ready, and the runner's cleanup
    /// kills all of them, whatever session or group they are in.
    func testCleanupKillsWholeTree() throws {
        try assertCleanupKillsTree(.tree, expecting: 49)
    }

    /// The same for a tree in nested PID namespaces, started by a launcher that the runner reaps.
    func testCleanupKillsPidNamespaceTree() throws {
        try assertCleanupKillsTree(.pidns, expecting: 10)
    }

    private func assertCleanupKillsTree(_ scenario: Scenario, expecting count: Int) throws {
        let p = try start(scenario)
        if scenario.rootFromPidfile {
            XCTAssertNotEqual(p.pid, p.launcher, "the scenario process must be the root, not the launcher")
            XCTAssertEqual(p.launcherStatus, .exited(0), "the launcher's status")
            XCTAssertFalse(Proc.pidInUse(p.launcher ?? 0), "the launcher was not reaped")
        }
        let tree = Proc.descendants(of: p.pid)
        XCTAssertEqual(tree.count, count, "descendants of \(scenario.name)'s root: \(tree)")
        cleanUpProcesses()
        for pid in [p.pid] + tree {
            XCTAssertFalse(
                Proc.pidInUse(pid) && Proc.exe(pid) == p.binary, "\(Proc.describe(pid)) outlived the cleanup")
        }
        XCTAssertNil(p.verdict, "a killed scenario wrote a verdict")
    }

    /// The verdict really depends on the checks: a scenario run without what it needs fails.
    func testEnvironmentFailsWithoutItsArguments() throws {
        var bare = Scenario.environment
        bare.args = []
        bare.env = [:]
        let p = try start(bare)
        kill(p.pid, SIGTERM)
        XCTAssertTrue(waitForEnd(p, timeout: Self.verdictTimeout), "no verdict; \(p.diagnostics)")
        XCTAssertEqual(p.exitStatus, .exited(1))
        XCTAssertTrue(p.verdict?.hasPrefix("FAIL: ") ?? false, "verdict: \(p.verdict ?? "none")")
    }

    func testPipeFull() throws { try runPlain(.pipeFull) }
    func testPipeLarge() throws { try runPlain(.pipeLarge) }
    func testPipeBlockedWriter() throws { try runPlain(.pipeBlockedWriter) }
    func testPipePackets() throws { try runPlain(.pipePackets) }
    func testPipeClosedEnds() throws { try runPlain(.pipeClosedEnds) }
    func testPipeFifo() throws { try runPlain(.pipeFifo) }
    func testPipeFifoWriter() throws { try runPlain(.pipeFifoWriter) }
    func testUnsupportedPipeOutsideReader() throws { try runPlain(.unsupportedPipeOutsideReader) }
    func testUnsupportedPipeUnread() throws { try runPlain(.unsupportedPipeUnread) }
    func testUnsupportedFifoOutside() throws { try runPlain(.unsupportedFifoOutside) }
    func testUnsupportedFifoOutsideEmpty() throws { try runPlain(.unsupportedFifoOutsideEmpty) }
    func testEventFDs() throws { try runPlain(.eventFDs) }
    func testSignalFDs() throws { try runPlain(.signalFDs) }
    func testTimerFDs() throws { try runPlain(.timerFDs) }
    func testInetSockets() throws { try runPlain(.inetSockets) }
    func testUnsupportedInet() throws {
        for flag in [
            "--established", "--udp-queued", "--udp-connected", "--mark", "--no-check", "--udp-shut-write",
            "--ipv6-hopopts", "--md5", "--outside", "--opt-id", "--ebpf-filter",
        ] {
            try runPlain(.unsupportedInet(flag))
        }
    }
    func testSharedMemory() throws { try runPlain(.sharedMemory) }
    func testUnsupportedSysVSharedMemory() throws { try runPlain(.unsupportedSysVSharedMemory) }
    func testUnixSockets() throws { try runPlain(.unixSockets) }
    func testUnsupportedUnixPeerOutside() throws { try runPlain(.unsupportedUnixPeerOutside) }
    func testUnsupportedUnixPeerInFlight() throws { try runPlain(.unsupportedUnixPeerInFlight) }
    func testUnsupportedUnixOutOfBand() throws { try runPlain(.unsupportedUnixOutOfBand) }
    func testUnixPeerCredentials() throws { try runPlain(.unixPeerCredentials) }
    func testUnsupportedUnixOptions() throws {
        try runPlain(.unsupportedUnixMark)
        try runPlain(.unsupportedUnixFilter)
        try runPlain(.unsupportedUnixOwner)
    }
    func testUnsupportedUnixReset() throws { try runPlain(.unsupportedUnixReset) }
    func testUnsupportedUnixWaitingClientClosed() throws { try runPlain(.unsupportedUnixWaitingClientClosed) }
    func testUnixBound() throws { try runPlain(.unixBound) }
    func testUnsupportedUnixUnlinked() throws { try runPlain(.unsupportedUnixUnlinked) }
    func testUnsupportedUnixConnectedOutside() throws { try runPlain(.unsupportedUnixConnectedOutside) }
    func testUnsupportedUnixAccepted() throws { try runPlain(.unsupportedUnixAccepted) }
    func testMemfd() throws { try runPlain(.memfd) }
    func testDeletedFiles() throws { try runPlain(.deletedFiles) }
    func testDeletedExecutable() throws { try runPlain(.deletedExecutable) }
    func testDeletedCwd() throws { try runPlain(.deletedCwd) }
    func testTemporaryFiles() throws { try runPlain(.temporaryFiles) }
    func testUnsupportedUnnamed() throws {
        for flag in [
            "--memfd-outside", "--memfd-mapped-outside", "--deleted-outside", "--deleted-in-removed",
            "--tmpfile-linked",
            "--future-write-map",
        ] {
            try runPlain(.unsupportedUnnamed(flag))
        }
    }
    func testEpoll() throws { try runPlain(.epoll) }
    func testPidfds() throws { try runPlain(.pidfds) }
    func testInotify() throws { try runPlain(.inotify) }
    func testUnixAccepted() throws { try runPlain(.unixAccepted) }
    func testUnsupportedUnixAcceptedOutside() throws { try runPlain(.unsupportedUnixAcceptedOutside) }
    func testUnsupportedUnixListenerOutside() throws { try runPlain(.unsupportedUnixListenerOutside) }
    func testUnsupportedUnixClientClosed() throws { try runPlain(.unsupportedUnixClientClosed) }
    func testMappedUnnamed() throws { try runPlain(.mappedUnnamed) }
    func testTcpConnections() throws { try runPlain(.tcpConnections) }
    func testTcpHalfClosed() throws { try runPlain(.tcpHalfClosed) }
    func testTcpPeekOffset() throws { try runPlain(.tcpPeekOffset) }
    func testTcpZeroCopy() throws { try runPlain(.tcpZeroCopy) }
    func testTcpStampedQueue() throws { try runPlain(.tcpStampedQueue) }
    func testTcpShared() throws { try runPlain(.tcpShared) }
    func testTcpAcceptedBelow() throws { try runPlain(.tcpAcceptedBelow) }
    func testTcpConnectionsInet6() throws { try runPlain(.tcpConnectionsInet6) }
    func testTcpConnectionsV4Mapped() throws { try runPlain(.tcpConnectionsV4Mapped) }
    func testTcpConnectionsOwnNamespace() throws { try runPlain(.tcpConnectionsOwnNamespace) }
    func testTcpReadShutDown() throws { try runPlain(.tcpReadShutDown) }
    func testPtys() throws { try runPlain(.ptys) }
    func testUnsupportedPty() throws {
        for flag in ["--canonical", "--queued", "--typed", "--hangup", "--devtty"] {
            try runPlain(.unsupportedPty(flag))
        }
    }
    func testInetDualStack() throws { try runPlain(.inetDualStack) }
    func testNetlinkSockets() throws { try runPlain(.netlinkSockets) }
    func testNetlinkSocketsOwnNamespace() throws { try runPlain(.netlinkSocketsOwnNamespace) }
    func testUnsupportedNetlink() throws {
        for flag in ["--queued", "--connected", "--uevent"] { try runPlain(.unsupportedNetlink(flag)) }
    }
    func testCowWriter() throws {
        for scenario in [
            Scenario.cowWriter, .cowWriterThreads, .cowWriterTree, .cowWriterForks, .cowWriterMoves,
            .cowWriterRobustExits,
            .cowWriterPIWaiter,
        ] {
            try runPlain(scenario)
        }
    }

    func testIncremental() throws {
        for scenario in [Scenario.incremental, .incrementalThreads, .incrementalTree] { try runPlain(scenario) }
    }

    /// lazy_pages.c in each mode, acting at SIGTERM as it does right after a restore.
    func testLazyPages() throws {
        for flags in [
            [], ["--threads"], ["--tree"], ["--fork"], ["--dontneed"], ["--kernel-read"], ["--pi-waiter"], ["--split"],
        ] {
            try runPlain(.lazyPages(flags))
        }
    }

    func testBigMemory() throws { try runPlain(.bigMemory(mib: 64)) }
    func testUTSIPCNamespace() throws { try runPlain(.utsIPCNamespace) }
    func testUnsupportedIPCObjects() throws {
        try runPlain(.unsupportedIPCSystemVObject)
        try runPlain(.unsupportedIPCMessageQueue)
    }
    func testCgroupTree() throws { try runPlain(.cgroupTree) }
    func testManyFDs() throws {
        try runPlain(.manyFDs)
        try runPlain(.unsupportedManyFDsPassingCredentials)
    }
    func testMappingRuns() throws { try runPlain(.mappingRuns) }
}
