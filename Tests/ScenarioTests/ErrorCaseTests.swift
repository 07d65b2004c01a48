// Bad input: each case gets a one-line message on stderr that starts
// with "amber: " and names the object, a distinct exit code, and does no harm: the target
// keeps running untouched and still passes its own checks, a refused dump leaves the image
// directory as it was, and a refused restore leaves no process behind and the PID free.

import AmberImage
import CChecksum
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class DumpErrorTests: ScenarioTestCase {
    func testDumpOfMissingProcess() throws {
        _ = try requireAmber()
        // A PID that just ended and was reaped by us is free.
        let pid = try Spawn.start(["/bin/true"], stdout: "/dev/null")
        XCTAssertEqual(Spawn.wait(pid, timeout: 20), .exited(0))
        XCTAssertFalse(Proc.pidInUse(pid))
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(pid)", "-D", image])
        assertRefusal(r, exitCode: AmberExit.noSuchProcess, mentions: ["\(pid)"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
    }

    func testDumpWithoutPermissionToTrace() throws {
        _ = try requireAmber()
        XCTAssertEqual(geteuid(), 0, "this test runs amber as nobody against a root-owned scenario")
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(.counter)
        let image = try newDirectory("image")
        chmod(image, 0o777)
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], asNobody: true)
        assertRefusal(r, exitCode: AmberExit.permissionDenied, mentions: ["\(p.pid)"])
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        assertRunningUntraced(p.pid, "after the refused dump")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    func testDumpIntoNonEmptyDirectory() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try newDirectory("image")
        let marker = image + "/already-here"
        XCTAssertTrue(FileManager.default.createFile(atPath: marker, contents: Data("keep me\n".utf8)))
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.imageDirectoryNotEmpty, mentions: [image])
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        XCTAssertEqual(listing(image), ["already-here"], "the image directory changed")
        XCTAssertEqual(Sys.readText(marker), "keep me\n", "the file in the image directory changed")
        assertRunningUntraced(p.pid, "after the refused dump")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    /// amber runs as root: a symbolic link anywhere on -D (a user's link to a directory of
    /// root's, say) is not followed, and nothing is written where it points.
    func testDumpThroughSymbolicLinkIsRefused() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let base = try directory()
        let pointedAt = try newDirectory("pointed-at")
        XCTAssertEqual(symlink(pointedAt, base + "/link"), 0, "symlink: \(Sys.errnoString())")
        for image in [base + "/link", base + "/link/image"] {
            let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
            assertRefusal(r, exitCode: 1, mentions: [base + "/link", "symbolic link"])
            XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
            XCTAssertEqual(listing(pointedAt), [], "the dump through \(image) wrote where the link points")
            assertRunningUntraced(p.pid, "after the refused dump into \(image)")
        }
        try terminateAndExpectPass(p, "after the refused dumps")
    }

    /// A refused dump leaves no directory it made itself, and keeps an empty one that was there.
    func testRefusedDumpLeavesTheDirectoryAsItFoundIt() throws {
        _ = try requireAmber()
        let p = try start(.unsupportedSocket)
        let made = try directory() + "/new/image"
        let existing = try newDirectory("image")
        for image in [made, existing] {
            let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
            assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)"])
        }
        XCTAssertFalse(Sys.fileExists(made), "the refused dump left the directory it made")
        XCTAssertTrue(Sys.fileExists(existing), "the refused dump removed the empty directory that was there")
        XCTAssertEqual(listing(existing), [])
        assertRunningUntraced(p.pid, "after the refused dumps")
        try terminateAndExpectPass(p, "after the refused dumps")
    }

    func testDumpRefusesSocket() throws {
        try checkUnsupported(.unsupportedSocket, object: "socket")
    }

    /// Each socket is named with its address family.
    func testDumpRefusesSocketNamingItsFamily() throws {
        for family in ["unix", "inet", "inet6", "netlink", "packet"] {
            try checkUnsupported(
                .unsupportedKind("--\(family)"),
                object: "a\(family == "unix" || family == "netlink" || family == "packet" ? "" : "n") \(family) socket")
        }
    }

    /// Named as what it is, not as the deleted file "/anon_hugepage" the kernel calls it.
    func testDumpRefusesHugetlbMemory() throws {
        let pool = "/proc/sys/vm/nr_hugepages"
        func pages() -> Int? { Sys.readText(pool).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        guard let reserved = pages() else { throw XCTSkip("no \(pool)") }
        // One more huge page for the scenario, given back afterwards.
        try? Data("\(reserved + 1)\n".utf8).write(to: URL(fileURLWithPath: pool))
        defer { try? Data("\(reserved)\n".utf8).write(to: URL(fileURLWithPath: pool)) }
        guard pages() == reserved + 1 else { throw XCTSkip("the kernel could not reserve a huge page") }
        try checkUnsupported(.unsupportedKind("--hugetlb"), object: "hugetlb memory")
    }

    /// Signal-driven I/O on an fd: not restored yet.
    func testDumpRefusesSignalDrivenIO() throws {
        try checkUnsupported(.unsupportedKind("--async"), object: "O_ASYNC")
    }

    /// A directory watched by dnotify: what it watches for is shown nowhere, so it is refused.
    func testDumpRefusesDirectoryNotifications() throws {
        try checkUnsupported(.unsupportedKind("--dnotify"), object: "dnotify", mentions: ["watched"])
        try checkUnsupported(.unsupportedKind("--opath-socket"), object: "opened with O_PATH", mentions: ["sock"])
        try checkUnsupported(.unsupportedKind("--proc-thread"), object: "names thread")
        try checkUnsupported(.unsupportedKind("--proc-fdinfo"), object: "names a descriptor")
        try checkUnsupported(.unsupportedKind("--immutable"), object: "made immutable since")
        if Sys.fileExists("/proc/pressure/memory") {
            try checkUnsupported(.unsupportedKind("--psi"), object: "PSI", mentions: ["/proc/pressure/memory"])
        }
    }

    /// A pipe whose read end a process outside the tree holds, named with its PID.
    func testDumpRefusesPipeWithEndOutsideTree() throws {
        try checkUnsupported(
            .unsupportedPipeOutsideReader, object: "whose read end is held by process",
            mentions: ["pipe:[", "outside the tree"])
    }

    /// A pipe whose write end a process amber cannot see holds: here one outside amber's PID
    /// namespace (a container's parent is; on this VM, PID 1's descriptors are unreadable too).
    /// The tree's read end alone, restored, would read end-of-file.
    func testDumpRefusesPipeEndHeldWhereAmberCannotSee() throws {
        let amberPath = try requireAmber()
        let image = try newDirectory("image")
        let script = """
            exec 5< <(sleep 60)
            writer=$!
            /usr/bin/unshare --pid --fork --mount-proc /bin/bash -c '
                sleep 60 <&5 >/dev/null 2>&1 5<&- &
                exec 5<&-
                "$0" dump -t $! -D "$1" 2>&1; echo "rc=$?"
                kill -0 $! && echo "still running"' "\(amberPath)" "\(image)"
            kill $writer
            """
        let (status, output) = try Spawn.run(["/bin/bash", "-c", script], in: try Scratch.root())
        XCTAssertEqual(status, .exited(0), output)
        XCTAssertTrue(output.contains("rc=\(AmberExit.unsupportedState)"), output)
        XCTAssertTrue(output.contains("whose write end is open outside the tree where amber cannot see it"), output)
        XCTAssertTrue(output.contains("still running"), output)
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
    }

    /// A pipe holding bytes no process can read any more.
    func testDumpRefusesUnreadablePipeData() throws {
        try checkUnsupported(.unsupportedPipeUnread, object: "holding 6 bytes that no process can read")
    }

    /// A named pipe that a process outside the tree has open too, holding bytes or not: the
    /// dump's kill would close the tree's end under it.
    func testDumpRefusesFifoSharedOutsideTree() throws {
        for scenario in [Scenario.unsupportedFifoOutside, .unsupportedFifoOutsideEmpty] {
            try checkUnsupported(scenario, object: "outside the tree has open too", mentions: ["outside.fifo"])
        }
    }

    /// Named as a message queue, not as the file at the queue's name.
    func testDumpRefusesMessageQueue() throws {
        try checkUnsupported(.unsupportedKind("--mqueue"), object: "POSIX message queue")
    }

    /// Named as an AIO ring, not as the deleted file "/[aio]".
    func testDumpRefusesAIORing() throws {
        try checkUnsupported(.unsupportedKind("--aio"), object: "AIO ring")
    }

    /// An fd on shared anonymous memory (shows as "/dev/zero (deleted)").
    func testDumpRefusesSharedMemoryFile() throws {
        try checkUnsupported(.unsupportedKind("--shmem"), object: "SysV/shmem shared memory")
    }

    /// A pty slave whose master is closed (shows as "/dev/pts/N (deleted)").
    func testDumpRefusesPtyWithoutMaster() throws {
        try checkUnsupported(.unsupportedKind("--pty"), object: "the pty /dev/pts/")
    }

    /// Named: the process, the memory and the process outside the tree that maps it too.
    func testDumpRefusesMemorySharedOutsideTree() throws {
        try checkUnsupported(.unsupportedSharedMemory, object: "outside the tree maps too")
    }

    /// Named: the process and the segment.
    func testDumpRefusesSysVSharedMemory() throws {
        try checkUnsupported(.unsupportedSysVSharedMemory, object: "System V shared memory attached (shmid")
    }

    func testDumpRefusesProcessesSharingADescriptorTable() throws {
        try checkUnsupported(.unsupportedSharedFDTable, object: "file descriptor table")
    }

    /// Named: the orphan, the root of its tree, and the session.
    func testDumpRefusesSessionWhoseLeaderExited() throws {
        try checkUnsupported(.unsupportedOrphanedSession, object: "session")
    }

    /// Named: the child, and its group's leader, which left the group.
    func testDumpRefusesGroupWhoseLeaderLeftIt() throws {
        try checkUnsupported(.unsupportedGroupLeft, object: "has moved to the group")
    }

    /// A 32-bit program (its threads in compat mode) is refused before any call is injected
    /// into it (injected with 64-bit registers, the call fails and breaks off the program's
    /// own); it runs on untouched.
    /// Named: the thread and its GDT TLS entry (set_thread_area).
    func testDumpRefusesThreadWithGDTEntry() throws {
        try checkUnsupported(.unsupportedGDTEntry, object: "GDT TLS entry")
    }

    func testDumpRefuses32BitProgram() throws {
        _ = try requireAmber()
        let directory = try newDirectory("compat")
        try "void _start(void) { for (;;) __asm__ volatile(\"movl $29, %%eax; int $0x80\" ::: \"eax\", \"memory\"); }\n"
            .write(toFile: directory + "/pause32.c", atomically: true, encoding: .utf8)
        let (built, log) = try Spawn.run(
            [
                "/usr/bin/cc", "-m32", "-nostdlib", "-static", "-O2", "-o", directory + "/pause32",
                directory + "/pause32.c",
            ],
            in: directory)
        guard built == .exited(0) else { throw XCTSkip("cc -m32 cannot build a 32-bit program here: \(log)") }
        let pid = try Spawn.start([directory + "/pause32"], stdout: directory + "/log")
        track(pid)
        addTeardownBlock { kill(pid, SIGKILL) }
        let deadline = Sys.now() + Self.pidfileTimeout
        while (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8))?.hasSuffix("sys_pause") != true,
            Sys.now() < deadline
        {
            Sys.sleep(milliseconds: 10)
        }
        let process = ScenarioProcess(
            scenario: Scenario(name: "pause32"), binary: directory + "/pause32", directory: directory, pid: pid)
        let r = try amber(["dump", "-t", "\(pid)", "-D", try newDirectory("image")], reaping: [process])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(pid)", "32-bit program"])
        assertRunningUntraced(pid, "after the refused dump")
        XCTAssertEqual(
            (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8))?.hasSuffix("sys_pause"), true,
            "the program is no longer in pause()")
    }

    /// Named: the grandchild, the root of its tree, and setns.
    func testDumpRefusesTaskThatEnteredAnotherPIDNamespace() throws {
        try checkUnsupported(.unsupportedSetns, object: "setns")
    }

    /// Named: the root, whose next children would be in the PID namespace it unshared.
    func testDumpRefusesProcessThatUnsharedItsPIDNamespace() throws {
        try checkUnsupported(.unsupportedUnsharedPIDNamespace, object: "unshare(CLONE_NEWPID)")
    }

    /// Named: the process and the timer.
    func testDumpRefusesTimerOnAnotherProcessCPUClock() throws {
        try checkUnsupported(.unsupportedCPUClockTimer, object: "POSIX timer 0 on the CPU clock")
    }

    /// Named: the process and SCHED_DEADLINE.
    func testDumpRefusesDeadlineThread() throws {
        try checkUnsupported(.unsupportedDeadline, object: "SCHED_DEADLINE")
    }

    /// Named: the process and SECCOMP_RET_USER_NOTIF (the filter's listener cannot be restored).
    func testDumpRefusesSeccompUserNotification() throws {
        try checkUnsupported(.unsupportedSeccompListener, object: "SECCOMP_RET_USER_NOTIF")
    }

    /// Named: the child, the root of its tree, and the user namespace.
    func testDumpRefusesTaskInAnotherUserNamespace() throws {
        try checkUnsupported(.unsupportedUserNamespace, object: "another user namespace")
    }

    /// Named, each with what it is: state not restored yet (unsupported_state.c).
    func testDumpRefusesChroot() throws { try checkUnsupported(.unsupportedChroot, object: "chroot") }
    func testDumpRefusesControllingTerminal() throws {
        try checkUnsupported(.unsupportedControllingTerminal, object: "controlling terminal")
    }
    func testDumpRefusesAutogroup() throws { try checkUnsupported(.unsupportedAutogroup, object: "autogroup") }
    func testDumpRefusesMemoryPolicy() throws {
        try checkUnsupported(.unsupportedMemoryPolicy, object: "set_mempolicy or mbind")
    }
    func testDumpRefusesAreaPolicy() throws {
        try checkUnsupported(.unsupportedAreaPolicy, object: "set_mempolicy or mbind")
    }
    func testDumpRefusesThreadPolicy() throws {
        try checkUnsupported(.unsupportedThreadPolicy, object: "NUMA memory policy of its own")
        try checkUnsupported(.unsupportedThreadPersonality, object: "with the personality 0x40000")
    }
    /// Landlock shows nowhere in /proc: the thread's own ptrace check gives it away, for the
    /// whole process and for one thread of several.
    func testDumpRefusesLandlockSandbox() throws {
        try checkUnsupported(.unsupportedLandlock, object: "sandboxed by Landlock")
    }
    func testDumpRefusesThreadLandlockSandbox() throws {
        try checkUnsupported(.unsupportedThreadLandlock, object: "sandboxed by Landlock")
    }
    /// Refused before the freeze: seizing a vfork's parent would wait until its child exits.
    func testDumpRefusesProcessWaitingInVfork() throws {
        try checkUnsupported(.unsupportedVfork, object: "shares its address space")
    }
    func testDumpRefusesLocalDescriptorTable() throws {
        try checkUnsupported(.unsupportedLocalDescriptorTable, object: "local descriptor table")
    }
    func testDumpRefusesGuardRegions() throws {
        try checkUnsupported(.unsupportedGuardRegions, object: "guard regions")
    }
    func testDumpRefusesSyscallUserDispatch() throws {
        try checkUnsupported(.unsupportedSyscallUserDispatch, object: "PR_SET_SYSCALL_USER_DISPATCH")
    }
    func testDumpRefusesThreadKeyring() throws {
        try checkUnsupported(.unsupportedThreadKeyring, object: "thread keyring")
    }
    func testDumpRefusesProcessKeyring() throws {
        try checkUnsupported(.unsupportedProcessKeyring, object: "process keyring")
    }
    func testDumpRefusesSessionKeys() throws {
        try checkUnsupported(.unsupportedSessionKeys, object: "session keyring of its own")
    }
    /// A regular file's description shared with a process outside the tree: restored, their
    /// offsets would part.
    func testDumpRefusesRegularFileSharedOutsideTree() throws {
        try checkUnsupported(.unsupportedSharedFile, object: "outside the tree holds too", mentions: ["shared-file"])
    }
    /// A log appended to, shared so, but holding a flock: the process outside would go on
    /// holding the lock against the restored tree.
    func testDumpRefusesLockedAppendedFileSharedOutsideTree() throws {
        try checkUnsupported(
            .unsupportedSharedLockedLog, object: "outside the tree holds too", mentions: ["shared-locked-log"])
    }
    /// A directory's description shared with a process outside the tree: restored, their
    /// offsets in its entries would part.
    func testDumpRefusesDirectorySharedOutsideTree() throws {
        try checkUnsupported(
            .unsupportedSharedDirectory, object: "on the directory",
            mentions: ["shared-directory", "outside the tree holds too"])
    }
    /// A thread that left its leader's working directory and umask, or descriptor table
    /// (unshare in a thread): restored, it would share them again.
    func testDumpRefusesThreadWithItsOwnFilesystemOrTable() throws {
        try checkUnsupported(.unsupportedThreadUnshareFS, object: "working directory and umask (CLONE_FS) of its own")
        try checkUnsupported(.unsupportedThreadUnshareFiles, object: "file descriptor table (CLONE_FILES) of its own")
    }
    /// A descriptor at the last number the hard RLIMIT_NOFILE allows: a restore opens its own
    /// above the process's, and raising the hard limit needs CAP_SYS_RESOURCE.
    func testDumpRefusesDescriptorAtTheHardLimit() throws {
        try checkUnsupported(.unsupportedFdAtLimit, object: "the last the hard RLIMIT_NOFILE")
    }
    /// A deleted file with an extended attribute, or an inode flag chattr set: made again as a
    /// new file, it would have neither.
    func testDumpRefusesDeletedFileWithAttributes() throws {
        try checkUnsupported(.unsupportedDeletedXattr, object: "which has extended attributes")
        try checkUnsupported(.unsupportedDeletedNoatime, object: "with the inode flags 0x80 set by chattr")
    }
    /// A process whose main thread ended (pthread_exit) while another runs on, with a child: it
    /// shows as a zombie, and the dump failed with exit 1 reading its namespaces.
    func testDumpRefusesProcessWhoseLeaderExited() throws {
        _ = try requireAmber()
        let p = try start(.unsupportedLeaderExited)
        for _ in 0..<500 where Proc.status(p.pid)?.state != "Z" { Sys.sleep(milliseconds: 10) }
        XCTAssertEqual(Proc.status(p.pid)?.state, "Z", "the main thread did not end")
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", "of its threads run on"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        try terminateAndExpectPass(p, "after the refused dump")
    }
    /// A process that unmapped its [vvar] area: the restore's helper, a copy of amber, has one.
    func testDumpRefusesUnmappedVvar() throws {
        try checkUnsupported(.unsupportedUnmappedVvar, object: "has unmapped its [vvar] area")
    }
    /// A session whose leader is in the tree and a member outside it (a daemon's double fork):
    /// the dump's kill would leave the session's ID, the leader's PID, taken.
    func testDumpRefusesSessionWithAMemberOutside() throws {
        try checkUnsupported(.unsupportedSessionOutside, object: "leads the session", mentions: ["outside the tree"])
    }
    /// The root's parent death signal (SIGHUP, not ignored) is tied to its parent outside the
    /// tree; restored, amber would be that parent, and with --detach it exits at once.
    func testDumpRefusesRootParentDeathSignal() throws {
        try checkUnsupported(.unsupportedRootParentDeath, object: "parent death signal 1 (PR_SET_PDEATHSIG)")
    }
    /// A job stopped, then sent SIGHUP: continued, the signal ends it; a restore cannot queue it
    /// behind the stop.
    /// The same for a stop signal sent again while stopped: the dump's first injected call
    /// would take it and stop (it failed with exit 1).
    func testDumpRefusesStoppedProcessWithEndingSignalPending() throws {
        _ = try requireAmber()
        for (scenario, pending) in [
            (Scenario.unsupportedStoppedFatal, "with signal 1 pending"),
            (.unsupportedStoppedTwice, "with the stop signal 19 pending again"),
        ] {
            let p = try start(scenario)
            let image = try newDirectory("image")
            let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
            let child = try XCTUnwrap(Proc.children(p.pid).first, "the stopped child is gone")
            assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(child)", "is stopped", pending])
            XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
            assertRunningUntraced(p.pid, "after the refused dump")
            let status = Proc.status(child)
            XCTAssertEqual(status?.state, "T", "the child is no longer stopped")
            XCTAssertEqual(status?.tracerPid, 0, "the child is traced")
            try terminateAndExpectPass(p, "after the refused dump")
        }
    }
    /// An owner and a signal set without O_ASYNC wait for a later F_SETFL O_ASYNC.
    func testDumpRefusesOwnerWithoutSignalDrivenIO() throws {
        try checkUnsupported(.unsupportedOwner, object: "an owner or a signal for its notices", mentions: ["pipe:["])
    }
    /// The dump's kill would mark the mutex owner-died in the file, for any process to take.
    func testDumpRefusesRobustMutexHeldInSharedFile() throws {
        try checkUnsupported(.unsupportedRobustMutex, object: "robust mutex", mentions: ["robust-mutex"])
    }

    /// Named: the traced child and its tracer (the root); the child stays in its tracer's ptrace
    /// stop, and the root runs on untraced.
    func testDumpRefusesTracedTask() throws {
        _ = try requireAmber()
        let p = try start(.unsupportedTraced)
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        let child = try XCTUnwrap(Proc.children(p.pid).first, "the traced child is gone")
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(child)", "traced by process \(p.pid)"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        assertRunningUntraced(p.pid, "after the refused dump")
        XCTAssertEqual(Proc.status(child)?.tracerPid, p.pid, "the child's tracer changed")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    /// Named: the tracer (the root) and the process outside the tree it traces, which stays
    /// traced and stopped.
    func testDumpRefusesTracerOfProcessOutsideTree() throws {
        try checkUnsupported(.unsupportedTracedOutside, object: "outside the tree", mentions: ["traces process"])
    }

    /// Named: the child and the /proc directory of the process that has gone.
    func testDumpRefusesWorkingDirectoryOfGoneProcess() throws {
        try checkUnsupported(.unsupportedCwdGoneProc, object: "no longer reaches", mentions: ["/proc/"])
    }

    /// Named: the child and the kind of namespace (or its cgroup).
    /// A child in a UTS namespace other than its root's: a tree comes back in one.
    func testDumpRefusesUTSNamespaceOtherThanTheRoot() throws {
        try checkUnsupported(.unsupportedUTSNamespace, object: "UTS namespace", mentions: ["root's"])
    }
    func testDumpRefusesMountNamespace() throws {
        try checkUnsupported(.unsupportedMountNamespace, object: "mount namespace")
    }
    /// A child in an IPC namespace other than its root's: a tree comes back in one.
    func testDumpRefusesIPCNamespaceOtherThanTheRoot() throws {
        try checkUnsupported(.unsupportedIPCNamespace, object: "IPC namespace", mentions: ["root's"])
    }
    /// An IPC namespace is restored empty: one holding a System V or POSIX message queue is
    /// refused, naming it.
    func testDumpRefusesIPCNamespaceWithObjects() throws {
        try checkUnsupported(
            .unsupportedIPCSystemVObject, object: "System V message queue", mentions: ["IPC namespace"])
        try checkUnsupported(.unsupportedIPCMessageQueue, object: "POSIX message queue /amber-scenario")
    }
    func testDumpRefusesNetworkNamespace() throws {
        try checkUnsupported(.unsupportedNetworkNamespace, object: "network namespace")
    }
    func testDumpRefusesCgroupNamespace() throws {
        try checkUnsupported(.unsupportedCgroupNamespace, object: "cgroup namespace")
    }
    func testDumpRefusesTimeNamespace() throws {
        try checkUnsupported(.unsupportedTimeNamespace, object: "time namespace")
    }

    /// Named: the process, the kind of lock and the file.
    func testDumpRefusesLease() throws {
        try checkUnsupported(.unsupportedLease, object: "lease", mentions: ["locked-file"])
    }

    /// Named: the process, the area's flag and its file.
    func testDumpRefusesHugeTLBMapping() throws {
        try requireHugeTLBFS()
        try checkUnsupported(.unsupportedHugeTLB, object: "hugetlb", mentions: ["hugetlbfs/area"])
    }

    /// Refused at dump with exit 5, naming the process (its PID) and the object; the
    /// target keeps running, not stopped, not traced, and passes its checks afterwards.
    private func checkUnsupported(
        _ scenario: Scenario, object: String, mentions: [String] = [], file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)"] + mentions, mentionsAnyOf: [object],
            file: file, line: line)
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)", file: file, line: line)
        XCTAssertFalse(
            Sys.fileExists(image + "/inventory.pb"), "a refused dump wrote an inventory", file: file, line: line)
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory", file: file, line: line)
        assertRunningUntraced(p.pid, "after the refused dump", file: file, line: line)
        // every thread of the target and of its children, too
        for pid in [p.pid] + Proc.children(p.pid) {
            for t in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                guard let tid = pid_t(t) else { continue }
                assertRunningUntraced(
                    tid, "thread \(tid) of process \(pid) after the refused dump", file: file, line: line)
            }
        }
        try terminateAndExpectPass(p, "after the refused dump", file: file, line: line)
    }

    func testUsageErrors() throws {
        _ = try requireAmber()
        let image = try newDirectory("image")
        let noPid = try amber(["dump", "-D", image])
        XCTAssertEqual(noPid.status, .exited(AmberExit.usage), "dump without -t: \(noPid.summary)")
        let noDir = try amber(["restore"])
        XCTAssertEqual(noDir.status, .exited(AmberExit.usage), "restore without -D: \(noDir.summary)")
        let badPid = try amber(["dump", "-t", "not-a-pid", "-D", image])
        XCTAssertEqual(badPid.status, .exited(AmberExit.usage), "dump -t not-a-pid: \(badPid.summary)")
        XCTAssertEqual(listing(image), [])
    }

    /// An inotify instance with events not read: the dump would have to consume them.
    func testDumpRefusesInotifyWithQueuedEvents() throws {
        try checkUnsupported(
            .unsupportedEventFile("--inotify"), object: "an inotify instance with",
            mentions: ["bytes of events not read"])
    }

    /// Epoll watches that would not come back exactly: by an fd closed since, an edge that may
    /// or may not have been reported, a one-shot watch that fired (disarmed).
    func testDumpRefusesEpollWatches() throws {
        try checkUnsupported(
            .unsupportedEventFile("--epoll"), object: "an epoll instance watching a file by fd",
            mentions: ["the fd was closed"])
        try checkUnsupported(
            .unsupportedEventFile("--epoll-edge"), object: "an edge-triggered watch of fd",
            mentions: ["whose file is ready"])
        try checkUnsupported(
            .unsupportedEventFile("--epoll-fired"), object: "a one-shot watch of fd", mentions: ["fired"])
    }

    /// Anonymous-inode files no kind takes, each named as what it is.
    func testDumpRefusesOtherAnonymousInodeFiles() throws {
        for (flag, object) in [
            ("--userfaultfd", "a userfaultfd ([userfaultfd])"), ("--io-uring", "an io_uring ([io_uring])"),
            ("--perf", "a perf event ([perf_event])"), ("--fanotify", "a fanotify group ([fanotify])"),
            ("--bpf-map", "a BPF map (bpf-map)"), ("--kvm-vm", "a KVM virtual machine (kvm-vm)"),
        ] {
            try checkUnsupported(.unsupportedEventFile(flag), object: object)
        }
    }

    /// A pidfd of a process the restored tree would not have.
    func testDumpRefusesPidfdsOfProcessesNotInTree() throws {
        try checkUnsupported(
            .unsupportedEventFile("--pidfd-outside"), object: "a pidfd of process", mentions: ["outside the tree"])
        try checkUnsupported(
            .unsupportedEventFile("--pidfd-reaped"), object: "a pidfd of a process that has exited and was reaped")
    }

    /// A timerfd on an alarm clock needs CAP_WAKE_ALARM to make again; an eventfd with O_APPEND
    /// would come back without it.
    func testDumpRefusesAlarmTimerFDAndEventFDFlags() throws {
        try checkUnsupported(.unsupportedEventFile("--timerfd-alarm"), object: "CLOCK_BOOTTIME_ALARM")
        try checkUnsupported(
            .unsupportedEventFile("--eventfd-append"), object: "an eventfd with the status flags 0o2002")
    }

    /// An eventfd, timerfd, inotify instance or signalfd a process outside the tree holds too
    /// would come back as one of the tree's own, no longer shared.
    func testDumpRefusesEventFileSharedOutsideTree() throws {
        for (flag, object) in [
            ("--eventfd-outside", "an eventfd"), ("--timerfd-outside", "a timerfd"),
            ("--inotify-outside", "an inotify instance"), ("--signalfd-outside", "a signalfd"),
        ] {
            try checkUnsupported(
                .unsupportedEventFile(flag), object: "\(object), which process",
                mentions: ["outside the tree holds too"])
        }
    }

    /// A raw inet or inet6 socket is named raw, with its protocol.
    func testDumpRefusesRawInetSocketsByName() throws {
        try checkUnsupported(.unsupportedKind("--inet"), object: "a raw socket (SOCK_RAW)", mentions: ["ICMP (1)"])
        try checkUnsupported(.unsupportedKind("--inet6"), object: "a raw socket (SOCK_RAW)", mentions: ["ICMPv6 (58)"])
    }

    /// A netlink socket with messages queued, connected, or of a protocol other than
    /// NETLINK_ROUTE and NETLINK_SOCK_DIAG: refused, naming it and why; the target keeps it.
    func testDumpRefusesNetlinkSocketsItDoesNotRestore() throws {
        for (flag, object) in [
            ("--queued", "with messages queued"), ("--connected", "connected to port id"),
            ("--uevent", "NETLINK_KOBJECT_UEVENT (15)"),
        ] {
            try checkUnsupported(.unsupportedNetlink(flag), object: object, mentions: ["a netlink socket (socket:["])
        }
        try checkUnsupported(.unsupportedKind("--netlink"), object: "NETLINK_GENERIC (16)")
    }

    /// An inet socket with a connection, queued data or an option amber does not set again:
    /// refused, naming it and why; the target keeps its connection and data.
    func testDumpRefusesInetSocketsItDoesNotRestore() throws {
        for (flag, object) in [
            ("--established", "in state ESTABLISHED"),
            ("--udp-queued", "datagrams queued"), ("--udp-connected", "an error pending"), ("--mark", "SO_MARK"),
            ("--no-check", "SO_NO_CHECK"), ("--udp-shut-write", "shut down (shutdown(2), how 1)"),
            ("--opt-id", "SOF_TIMESTAMPING_OPT_ID"), ("--ebpf-filter", "a socket filter"),
        ] {
            try checkUnsupported(.unsupportedInet(flag), object: object, mentions: ["an inet socket (socket:["])
        }
        try checkUnsupported(
            .unsupportedInet("--ipv6-hopopts"), object: "IPV6_HOPOPTS", mentions: ["an inet6 socket (socket:["])
        try checkUnsupported(.unsupportedInet("--md5"), object: "TCP_MD5SIG", mentions: ["the TCP socket socket:["])
        try checkUnsupported(
            .unsupportedInet("--outside"), object: "outside the tree holds too", mentions: ["the inet socket socket:["])
    }

    /// A unix socket whose peer a process outside the tree holds, named with its PID and the
    /// peer's inode.
    func testDumpRefusesUnixSocketWithPeerOutsideTree() throws {
        try checkUnsupported(
            .unsupportedUnixPeerOutside, object: "is held by process", mentions: ["unix:[", "outside the tree"])
    }

    /// A unix socket whose peer no process holds (in flight in an SCM_RIGHTS message).
    func testDumpRefusesUnixSocketWithPeerInFlight() throws {
        try checkUnsupported(
            .unsupportedUnixPeerInFlight, object: "no process holds", mentions: ["unix:[", "SCM_RIGHTS"])
    }

    /// A unix stream whose queue holds an out-of-band byte: a peek reads it as an ordinary one.
    func testDumpRefusesUnixSocketHoldingOutOfBandData() throws {
        try checkUnsupported(
            .unsupportedUnixOutOfBand, object: "out-of-band byte (MSG_OOB)", mentions: ["a unix socket"])
    }

    /// A unix socket given an option only CAP_NET_ADMIN sets, a filter, or an owner.
    func testDumpRefusesUnixSocketWithUnrestoredOption() throws {
        try checkUnsupported(.unsupportedUnixMark, object: "with SO_MARK set", mentions: ["a privileged process"])
        try checkUnsupported(
            .unsupportedUnixFilter, object: "with a socket filter attached", mentions: ["a unix socket"])
        try checkUnsupported(.unsupportedUnixOwner, object: "with an owner or a signal for its notices (F_SETOWN")
    }

    /// An error waiting for a unix socket's next read (its peer closed with a byte unread): a
    /// peek would take it, and a restore cannot give it back.
    func testDumpRefusesUnixSocketWithErrorPending() throws {
        try checkUnsupported(.unsupportedUnixReset, object: "with an error pending", mentions: ["a unix socket"])
    }

    /// A connection waiting on a listener, its client closed: what the client sent is only in
    /// the connection, which only accept(2) reads.
    func testDumpRefusesWaitingConnectionWhoseClientClosed() throws {
        try checkUnsupported(.unsupportedUnixWaitingClientClosed, object: "whose client has closed")
    }

    /// A unix socket whose queue holds a descriptor in flight (SCM_RIGHTS).
    func testDumpRefusesUnixSocketHoldingDescriptorsInFlight() throws {
        try checkUnsupported(.unsupportedKind("--unix"), object: "SCM_RIGHTS", mentions: ["a unix socket"])
    }

    /// Named, each with the pty and why; what the pty holds is still there after the refusal.
    func testDumpRefusesPtyInCanonicalMode() throws {
        try checkUnsupported(.unsupportedPty("--canonical"), object: "canonical mode (ICANON)", mentions: ["/dev/pts/"])
    }
    func testDumpRefusesPtyHoldingOutput() throws {
        try checkUnsupported(
            .unsupportedPty("--queued"), object: "3 bytes the slave wrote that the master has not read",
            mentions: ["/dev/ptmx"])
    }
    func testDumpRefusesPtyHoldingInput() throws {
        try checkUnsupported(
            .unsupportedPty("--typed"), object: "3 bytes the master wrote that the slave has not read",
            mentions: ["/dev/pts/"])
    }
    func testDumpRefusesPtyWithoutSlave() throws {
        try checkUnsupported(.unsupportedPty("--hangup"), object: "whose slave no process holds open")
    }
    func testDumpRefusesControllingTerminalFileOfNoSession() throws {
        try checkUnsupported(
            .unsupportedPty("--devtty"), object: "no session's controlling terminal any more", mentions: ["/dev/tty"])
    }

    /// Queued data its reader would read with the sender's credentials (SO_PASSCRED).
    func testDumpRefusesUnixSocketQueueWithCredentials() throws {
        try checkUnsupported(.unsupportedSocket, object: "SO_PASSCRED", mentions: ["a unix socket"])
    }

    /// A socket bound to a path whose socket file was unlinked since: binding the path again
    /// would make a file that was gone.
    func testDumpRefusesUnixSocketWhoseFileIsGone() throws {
        try checkUnsupported(.unsupportedUnixUnlinked, object: "unlinked or replaced", mentions: ["bound.sock"])
    }

    /// A socket connected to a path socket a process outside the tree holds (as /dev/log).
    func testDumpRefusesUnixSocketConnectedOutside() throws {
        try checkUnsupported(
            .unsupportedUnixConnectedOutside, object: "is held by process", mentions: ["unix:[", "outside the tree"])
    }

    /// A connection accepted from a listener closed since: no listener to connect it through.
    func testDumpRefusesAcceptedUnixConnection() throws {
        try checkUnsupported(.unsupportedUnixAccepted, object: "accepted from a listener closed since")
    }

    /// A client whose server (listener and accepted socket) a process outside the tree holds:
    /// refused naming that process.
    func testDumpRefusesUnixClientWhoseServerIsOutside() throws {
        try checkUnsupported(
            .unsupportedUnixAcceptedOutside, object: "is held by process", mentions: ["unix:[", "outside the tree"])
    }

    /// An accepted socket and its client whose listener a process outside the tree holds: the
    /// connection is made again only through its listener.
    func testDumpRefusesUnixConnectionWhoseListenerIsOutside() throws {
        try checkUnsupported(
            .unsupportedUnixListenerOutside, object: "which no process of the tree holds",
            mentions: ["accepted from the listener unix:["])
    }

    /// An accepted socket whose client is closed: not restored.
    func testDumpRefusesAcceptedUnixSocketWhoseClientIsClosed() throws {
        try checkUnsupported(
            .unsupportedUnixClientClosed, object: "its client closed since",
            mentions: ["accepted from the listener at"])
    }

    /// A memfd or deleted file a process outside the tree has open or maps would come back as
    /// the tree's own, no longer shared; an O_TMPFILE file linked since cannot be reopened by the
    /// name its link shows.
    func testDumpRefusesUnnamedFileSharedOutsideTree() throws {
        try checkUnsupported(
            .unsupportedUnnamed("--memfd-outside"), object: "the memfd /memfd:held (deleted), which process",
            mentions: ["outside the tree has open too"])
        try checkUnsupported(
            .unsupportedUnnamed("--memfd-mapped-outside"), object: "the memfd /memfd:held (deleted), which process",
            mentions: ["outside the tree maps"])
        try checkUnsupported(
            .unsupportedUnnamed("--deleted-outside"), object: "the deleted file /",
            mentions: ["gone (deleted), which process", "has open too"])
        try checkUnsupported(
            .unsupportedUnnamed("--tmpfile-linked"), object: "the O_TMPFILE file /",
            mentions: ["linked since under a name its link does not show"])
        try checkUnsupported(
            .unsupportedUnnamed("--future-write-map"), object: "maps the memfd /memfd:sealed at",
            mentions: ["F_SEAL_FUTURE_WRITE"])
        try checkUnsupported(
            .unsupportedUnnamed("--deleted-in-removed"), object: "removed/gone, whose directory",
            mentions: ["is gone too"])
    }
}

final class RestoreErrorTests: ScenarioTestCase {
    /// Dump --leave-running, then restore while the original still holds the PID: exit 9,
    /// naming the PID and the holder's comm; the original is untouched and passes.
    func testRestoreWhilePidTaken() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try newDirectory("image")
        let d = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        XCTAssertEqual(d.status, .exited(0), d.summary)
        guard let comm = Proc.comm(p.pid) else {
            XCTFail("the original is gone after dump --leave-running; \(p.diagnostics)")
            return
        }
        let r = try amber(["restore", "-D", image, "--detach"], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.pidTaken, mentions: ["\(p.pid)", comm, "--new-pidns"])
        XCTAssertNil(p.exitStatus, "the original exited: \(p.diagnostics)")
        assertRunningUntraced(p.pid, "the original after the refused restore")
        XCTAssertEqual(Proc.exe(p.pid), p.binary)
        XCTAssertEqual(Proc.childrenOfSelf().filter { $0 != p.pid }, [], "the refused restore left processes behind")
        try terminateAndExpectPass(p, "the original after the refused restore")
    }

    /// A helper that cannot become traced (PTRACE_TRACEME refused, here by a seccomp filter amber
    /// inherits) exits at once: the restore reports it instead of waiting for a stop forever,
    /// with and without a new PID namespace, and leaves nothing behind.
    func testRestoreWhenHelpersCannotBeTraced() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try dumpExpectingSuccess(p)
        let wrapper = [try ScenarioBuilder.shared.binary("without_traceme")]
        for options in [[], ["--new-pidns"]] {
            try expectRestoreRefused(
                image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: ["PTRACE_TRACEME"], options: options,
                wrapper: wrapper)
        }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored after the helpers could not be traced")
    }

    /// A file the image reopens was removed after the dump: the restore names it, and leaves no
    /// task behind and the image as it was.
    func testRestoreWhenAnOpenFileIsGone() throws {
        _ = try requireAmber()
        let p = try start(.files)
        let image = try dumpExpectingSuccess(p)
        XCTAssertEqual(unlink(p.directory + "/ro.dat"), 0, "remove ro.dat: \(Sys.errnoString())")
        try expectRestoreRefused(image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: ["ro.dat"])
    }

    /// The name of a deleted file was taken after the dump (as a rotated log's is): the restore
    /// makes the file beside it, under "NAME.amber-ID", which its link then shows, and leaves the
    /// other file as it was.
    func testRestoreWhenADeletedFilesNameIsTaken() throws {
        _ = try requireAmber()
        let p = try start(.deletedFiles)
        let image = try dumpExpectingSuccess(p)
        let taken = p.directory + "/gone"
        let fd = open(taken, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0, "create \(taken): \(Sys.errnoString())")
        XCTAssertEqual(write(fd, "new", 3), 3)
        close(fd)
        try restoreDetachedExpectingSuccess(p, from: image)
        XCTAssertEqual(Sys.readText(taken), "new", "the restore changed the file that took the name")
        let links = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/fd")) ?? []).compactMap {
            Sys.readlink("/proc/\(p.pid)/fd/\($0)")
        }
        XCTAssertTrue(
            links.contains { $0.hasPrefix(taken + ".amber-") && $0.hasSuffix(" (deleted)") },
            "no descriptor on the deleted file made beside the name: \(links)")
        XCTAssertFalse(
            ((try? FileManager.default.contentsOfDirectory(atPath: p.directory)) ?? []).contains {
                $0.contains(".amber-")
            },
            "the file made beside the name was not unlinked")
        XCTAssertEqual(unlink(taken), 0)
    }

    /// The name of a removed working directory was taken after the dump: the restore names it
    /// and why, leaves no task behind, and leaves the other file as it was.
    func testRestoreWhenADeletedWorkingDirectorysNameIsTaken() throws {
        _ = try requireAmber()
        let p = try start(.deletedCwd)
        let image = try dumpExpectingSuccess(p)
        let taken = p.directory + "/removed-directory"
        XCTAssertEqual(mkdir(taken, 0o700), 0, "mkdir \(taken): \(Sys.errnoString())")
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: [taken, "another file has its name now"])
        XCTAssertEqual(rmdir(taken), 0, "the restore removed the directory that took the name")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored once the name was free")
    }

    /// The tree's processes all map their executable: it is opened once for the whole tree.
    func testRestoreWhenAFileTheTreeMapsIsGone() throws {
        _ = try requireAmber()
        var scenario = Scenario.tree
        scenario.fromCopiedBinary = true
        let p = try start(scenario)
        let image = try dumpExpectingSuccess(p)
        XCTAssertEqual(unlink(p.binary), 0, "remove \(p.binary): \(Sys.errnoString())")
        try expectRestoreRefused(image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: [p.binary])
    }

    /// A file of /proc/PID the tree has open names another process in a new PID namespace with
    /// this host's /proc: --new-pidns is refused, naming it; restored as it was, it reopens.
    func testRestoreInNewPIDNamespaceWithProcessFileOpen() throws {
        _ = try requireAmber()
        let logs = try newDirectory("proc-file")
        let pid = try Spawn.start(
            ["/bin/sh", "-c", "exec 3</proc/self/status; exec /bin/sleep 1000"], stdout: logs + "/log")
        track(pid)
        addTeardownBlock { kill(pid, SIGKILL) }
        let deadline = Sys.now() + Self.pidfileTimeout
        while Proc.exe(pid) != "/usr/bin/sleep", Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        let sleeper = ScenarioProcess(
            scenario: Scenario(name: "sleep"), binary: "/bin/sleep", directory: logs, pid: pid)
        let image = try newDirectory("image")
        let dumped = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [sleeper])
        XCTAssertEqual(dumped.status, .exited(0), "dump: \(dumped.summary)")
        try expectRestoreRefused(
            image, pid: pid, exitCode: AmberExit.unsupportedState, mentions: ["/proc/\(pid)/status", "--new-pidns"],
            options: ["--new-pidns"])
        let restored = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restored.status, .exited(0), "restore: \(restored.summary)")
        XCTAssertEqual(Proc.exe(pid), "/usr/bin/sleep", "the restored process")
    }

    /// A file the tree had open, truncated after the dump: what the process had there is gone,
    /// and the restore is refused, naming it; grown back to its size, it restores.
    func testRestoreWhenAnOpenFileShrank() throws {
        _ = try requireAmber()
        let p = try start(.files)
        let image = try dumpExpectingSuccess(p)
        let file = p.directory + "/ro.dat"
        var status = stat()
        XCTAssertEqual(stat(file, &status), 0, "stat \(file): \(Sys.errnoString())")
        let contents = try Data(contentsOf: URL(fileURLWithPath: file))
        XCTAssertEqual(truncate(file, 10), 0, "truncate \(file): \(Sys.errnoString())")
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: [file, "changed since the dump"])
        try contents.write(to: URL(fileURLWithPath: file))
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored once the file was whole again")
    }

    /// The program replaced after the dump by one of the same size (an upgrade): its new
    /// modification time refuses the restore, naming it; given back its old time, it restores.
    func testRestoreWhenTheProgramWasReplaced() throws {
        _ = try requireAmber()
        var scenario = Scenario.counter
        scenario.fromCopiedBinary = true
        let p = try start(scenario)
        var before = stat()
        XCTAssertEqual(stat(p.binary, &before), 0)
        let image = try dumpExpectingSuccess(p)
        let replacement = p.binary + ".new"
        try FileManager.default.copyItem(atPath: p.binary, toPath: replacement)
        XCTAssertEqual(rename(replacement, p.binary), 0, "replace \(p.binary): \(Sys.errnoString())")
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: [p.binary, "changed since the dump"])
        var times = [before.st_atim, before.st_mtim]
        XCTAssertEqual(utimensat(AT_FDCWD, p.binary, &times, 0), 0, "set the old times back: \(Sys.errnoString())")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored once the program had its old time")
    }

    /// Another process took a lock after the dump that conflicts with one of the tree's: the
    /// restore names the process, the file and the lock, and leaves no task behind.
    func testRestoreWhenAFileLockIsTakenMeanwhile() throws {
        _ = try requireAmber()
        let p = try start(.fileLocks)
        let image = try dumpExpectingSuccess(p)
        let fd = open(p.directory + "/flock-ex", O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0, "open flock-ex: \(Sys.errnoString())")
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_SH | LOCK_NB), 0, "flock flock-ex: \(Sys.errnoString())")
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed,
            mentions: ["flock-ex", "flock exclusive lock", "EAGAIN"])
    }

    /// A file the tree held a POSIX lock on was written after the dump, while the lock was let
    /// go: the restore names the file and the lock, and leaves no task behind.
    func testRestoreWhenALockedFileChangedMeanwhile() throws {
        _ = try requireAmber()
        let p = try start(.fileLocks)
        let image = try dumpExpectingSuccess(p)
        let fd = open(p.directory + "/records", O_WRONLY | O_APPEND | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0, "open records: \(Sys.errnoString())")
        XCTAssertEqual(write(fd, "x", 1), 1, "write records: \(Sys.errnoString())")
        close(fd)
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.restoreFailed,
            mentions: ["records", "changed since the dump", "POSIX"])
    }

    func testRestoreWithoutInventory() throws {
        let (image, pid) = try dumpedImage()
        XCTAssertEqual(unlink(image + "/inventory.pb"), 0)
        try expectRestoreRefused(image, pid: pid, exitCode: AmberExit.badImage, mentions: ["inventory.pb"])
    }

    func testRestoreFromMissingDirectory() throws {
        _ = try requireAmber()
        let image = try directory() + "/no-such-image"
        let r = try amber(["restore", "-D", image, "--detach"])
        assertRefusal(r, exitCode: AmberExit.badImage, mentions: ["no-such-image"])
        XCTAssertEqual(Proc.childrenOfSelf(), [], "the refused restore left processes behind")
    }

    func testRestoreWithTruncatedPageFile() throws {
        let (image, pid) = try dumpedImage()
        let pages = try pageFile(image, pid: pid)
        var st = stat()
        XCTAssertEqual(stat(image + "/" + pages, &st), 0)
        XCTAssertGreaterThan(st.st_size, 0, "the page file \(pages) is empty")
        XCTAssertEqual(truncate(image + "/" + pages, st.st_size / 2), 0)
        try expectRestoreRefused(image, pid: pid, exitCode: AmberExit.badImage, mentions: [pages])
    }

    func testRestoreWithCorruptTaskRecord() throws {
        let (image, pid) = try dumpedImage()
        let record = "task-\(pid).pb"
        let path = image + "/" + record
        guard var bytes = Sys.readFile(path), !bytes.isEmpty else {
            XCTFail("no task record \(record) in the image: \(listing(image))")
            return
        }
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try expectRestoreRefused(image, pid: pid, exitCode: AmberExit.badImage, mentions: [record])
    }

    /// An image of an older format (before version 5 every thread but the leader had a record of
    /// its own) or a newer one is refused, naming both versions.
    func testRestoreOfOtherFormatVersion() throws {
        let (image, pid) = try dumpedImage()
        for version in [ImageFormat.version - 1, ImageFormat.version + 1] {
            try editInventory(image) { $0.formatVersion = version }
            try expectRestoreRefused(
                image, pid: pid, exitCode: AmberExit.badImage,
                mentions: ["inventory.pb", "format version \(version)", "reads version \(ImageFormat.version)"])
        }
    }

    /// The image claims an xstate feature (bit 62) no CPU has: this host cannot restore it.
    func testRestoreNeedingMissingXstateFeature() throws {
        let (image, pid) = try dumpedImage()
        try editInventory(image) { $0.xstateFeatures |= 1 << 62 }
        try expectRestoreRefused(
            image, pid: pid, exitCode: AmberExit.hostCannotRestore, mentions: [],
            mentionsAnyOf: ["xstate", "feature", "xcr0", "cpu"])
    }

    /// An open file description child_pause's parent and child share (the child inherited its
    /// stdin, stdout and stderr) is described differently in the child's record: the image is
    /// refused when it is read, before any task is made, by `verify` as by `restore`, naming
    /// the child's record.
    func testRestoreRefusesOpenFileTheRecordsDescribeDifferently() throws {
        _ = try requireAmber()
        let p = try start(.childPause)
        let image = try dumpExpectingSuccess(p)
        let rootRecord = "task-\(p.pid).pb"
        let records = listing(image).filter { $0.hasPrefix("task-") && $0.hasSuffix(".pb") }
        XCTAssertEqual(records.count, 2, "child_pause's image holds no record of the child: \(records)")
        let childRecord = try XCTUnwrap(records.first { $0 != rootRecord })
        let root = try Amber_Task(serializedBytes: Data(try XCTUnwrap(Sys.readFile(image + "/" + rootRecord))))
        var sharedID: UInt32 = 0
        try editTask(image, record: childRecord) { task in
            let shared = try XCTUnwrap(
                task.files.descriptions.firstIndex { description in
                    root.files.descriptions.contains { $0.id == description.id }
                },
                "the child shares no open file with its parent")
            sharedID = task.files.descriptions[shared].id
            // Another of the parent's descriptions (/dev/null or the log) under the shared one's id.
            var other = try XCTUnwrap(
                root.files.descriptions.first { $0.id != sharedID }, "the parent has one open file description only")
            other.id = sharedID
            task.files.descriptions[shared] = other
        }
        let mentions = [childRecord, "open file \(sharedID) differs from the one \(rootRecord) describes"]
        assertRefusal(try amber(["verify", image]), exitCode: AmberExit.badImage, mentions: mentions)
        try expectRestoreRefused(image, pid: p.pid, exitCode: AmberExit.badImage, mentions: mentions)
    }

    /// Restore never gives a task credentials the caller does not hold: an image of
    /// credentials_tree (a root parent, a child under uids 1000-1002 with CAP_NET_BIND_SERVICE)
    /// is refused before any task is made by amber under uid 1000 without capabilities (the
    /// parent's uid 0 needs CAP_SETUID) and by root without CAP_NET_BIND_SERVICE in its bounding
    /// set, hence, after exec, in its permitted set (the parent holds it); root with both then
    /// restores it.
    func testRestoreRefusesCredentialsTheCallerLacks() throws {
        _ = try requireAmber()
        XCTAssertEqual(geteuid(), 0, "this test runs amber with fewer credentials than root's")
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(.credentialsTree)
        let image = try dumpExpectingSuccess(p)
        // amber writes images for their owner alone (0600): hand this one to uid 1000 to read.
        for name in listing(image) { XCTAssertEqual(chmod(image + "/" + name, 0o644), 0) }
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: ["process \(p.pid)", "user IDs (0, 0, 0, 0)", "CAP_SETUID"],
            setpriv: ["--reuid=1000", "--regid=1000", "--clear-groups", "--inh-caps=-all"])
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: ["process \(p.pid)", "CAP_NET_BIND_SERVICE", "permitted set"],
            setpriv: ["--bounding-set=-net_bind_service"])
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored by root after the refusals")
    }

    // MARK: helpers

    /// The (first) page file of the task: named in its task record, else "pages-<pid>.img", else the
    /// largest file that is not a record.
    private func pageFile(_ image: String, pid: pid_t) throws -> String {
        if let bytes = Sys.readFile("\(image)/task-\(pid).pb"),
            let task = try? Amber_Task(serializedBytes: Data(bytes)), let name = task.memory.pageFiles.first
        {
            return name
        }
        if Sys.fileExists("\(image)/pages-\(pid).img") { return "pages-\(pid).img" }
        let candidates = listing(image).filter { !$0.hasSuffix(".pb") }
        let sizes = candidates.map { name -> (String, Int64) in
            var st = stat()
            return (name, stat(image + "/" + name, &st) == 0 ? Int64(st.st_size) : -1)
        }
        guard let largest = sizes.max(by: { $0.1 < $1.1 }) else {
            throw RunnerError("no page file in \(image): \(listing(image))")
        }
        return largest.0
    }

    /// Changes the task record `name` through the generated type and reseals the inventory's
    /// size and XXH64 of it.
    private func editTask(_ image: String, record name: String, _ change: (inout Amber_Task) throws -> Void) throws {
        let path = image + "/" + name
        var task = try Amber_Task(serializedBytes: Data(try XCTUnwrap(Sys.readFile(path), "no \(name) in \(image)")))
        try change(&task)
        let bytes: [UInt8] = try task.serializedBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try editInventory(image) { inventory in
            for index in inventory.files.indices where inventory.files[index].name == name {
                inventory.files[index].size = UInt64(bytes.count)
                inventory.files[index].xxh64 = bytes.withUnsafeBytes { amber_xxh64($0.baseAddress, $0.count) }
            }
        }
    }

    /// Rewrite inventory.pb through the generated type, and its checksum (inventory.xxh64).
    private func editInventory(_ image: String, _ edit: (inout Amber_Inventory) -> Void) throws {
        let path = image + "/inventory.pb"
        guard let bytes = Sys.readFile(path) else { throw RunnerError("no inventory.pb in \(image)") }
        var inventory = try Amber_Inventory(serializedBytes: Data(bytes))
        edit(&inventory)
        let edited: [UInt8] = try inventory.serializedBytes()
        try Data(edited).write(to: URL(fileURLWithPath: path))
        try Data(InventoryChecksum.file(forInventory: edited)).write(
            to: URL(fileURLWithPath: image + "/" + ImageFormat.inventoryChecksumName))
    }
}

/// The other commands, briefly.
final class CLITests: ScenarioTestCase {
    /// `amber show DIR` prints the image as JSON.
    func testShowPrintsJSON() throws {
        let (image, pid) = try dumpedImage()
        let r = try amber(["show", image])
        XCTAssertEqual(r.status, .exited(0), r.summary)
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)), "amber show output is not JSON")
        XCTAssertTrue(r.stdout.contains("\(pid)"), "amber show does not mention the root PID \(pid)")
    }

    /// This machine has everything Amber needs: `amber check` exits 0.
    func testCheckPassesOnThisHost() throws {
        let r = try amber(["check"])
        XCTAssertEqual(r.status, .exited(0), r.summary)
        XCTAssertFalse(r.stdout.isEmpty, "amber check printed nothing")
    }

    /// `amber --version` prints the version alone, as it is recorded in an image's inventory.
    func testVersion() throws {
        let r = try amber(["--version"])
        XCTAssertEqual(r.status, .exited(0), r.summary)
        let version = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(version.wholeMatch(of: /[0-9]+\.[0-9]+\.[0-9]+/), "not a version: \(r.stdout)")
        let (image, _) = try dumpedImage()
        let show = try amber(["show", image])
        XCTAssertTrue(show.stdout.contains("\"\(version)\""), "the image's inventory does not name version \(version)")
    }

}

/// `dump --cow` refusals: the target runs on untouched and passes, no image is written.
extension DumpErrorTests {
    /// Its connections would stay blocked while the tree runs on, and lose what they carried since.
    func testCopyOnWriteWithTcpEstablished() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try newDirectory("image")
        let r = try amber(["dump", "--cow", "--tcp-established", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["--cow", "--tcp-established"])
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "a refused dump wrote an inventory")
        assertRunningUntraced(p.pid, "after a refused dump --cow")
        try terminateAndExpectPass(p, "after a refused dump --cow")
    }

    /// A process without CAP_SYS_PTRACE may not make a userfaultfd that serves the kernel's own
    /// writes too (vm.unprivileged_userfaultfd is 0 here): refused by name.
    func testCopyOnWriteWithoutUserfaultfd() throws {
        _ = try requireAmber()
        XCTAssertEqual(
            try String(contentsOfFile: "/proc/sys/vm/unprivileged_userfaultfd", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), "0",
            "this test needs vm.unprivileged_userfaultfd=0")
        let p = try start(.cowWriterUnprivileged)
        let image = try newDirectory("image")
        let r = try amber(["dump", "--cow", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", "userfaultfd", "CAP_SYS_PTRACE"])
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "a refused dump wrote an inventory")
        XCTAssertNil(p.exitStatus, "the target exited: \(p.diagnostics)")
        assertRunningUntraced(p.pid, "after a refused dump --cow")
        try terminateAndExpectPass(p, "after a refused dump --cow")
    }
}

/// `dump --page-server` refusals, by name, before anything is sent: the target runs on untouched.
extension DumpErrorTests {
    func testPageServerWithCopyOnWriteOrPreviousImages() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        for (flags, named) in [(["--cow"], "--cow"), (["--prev-images-dir", "/nonexistent"], "--prev-images-dir")] {
            let r = try amber(["dump", "-t", "\(p.pid)", "--page-server", "127.0.0.1:9"] + flags, reaping: [p])
            assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["--page-server", named])
        }
        let both = try amber([
            "dump", "-t", "\(p.pid)", "--page-server", "127.0.0.1:9", "-D", try newDirectory("image"),
        ])
        XCTAssertEqual(both.status, .exited(AmberExit.usage), both.summary)
        XCTAssertTrue(both.stderr.contains("not with -D"), both.stderr)
        assertRunningUntraced(p.pid, "after a refused dump --page-server")
        try terminateAndExpectPass(p, "after a refused dump --page-server")
    }

    /// Among records read on every CPU at once, the refusal of the lowest descriptor is the
    /// one given, as when they were read one by one: fd 61 queues what its peer sent with
    /// SO_PASSCRED set (fd 97 does too).
    func testDumpRefusesLowestOfManyQueuesWithCredentials() throws {
        try checkUnsupported(
            .unsupportedManyFDsPassingCredentials, object: "their sender's credentials (SO_PASSCRED)",
            mentions: ["has fd 61 "])
    }
}
