// The scenario runner's test base class: start a scenario, dump it, restore it, terminate
// it and read its verdict, keeping track of every process so none outlives its test.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A scenario program (Tests/Scenarios/<name>.c) and how to run it.
struct Scenario: Sendable {
    let name: String
    var args: [String] = []
    var env: [String: String] = [:]
    /// Dump only once /proc/PID/syscall shows the process blocked in this system call.
    var dumpInSyscall: Int? = nil
    /// Dump only once every thread but the main one is blocked in this system call
    /// (per /proc/PID/task/TID/syscall).
    var dumpInThreadSyscall: Int? = nil
    /// The started process is a launcher: it writes the PID of the real scenario root (the
    /// init of a new PID namespace, say) to the pidfile and exits 0. The runner reaps the
    /// launcher and treats the PID from the pidfile as the scenario process (reparented to
    /// the runner, a child subreaper): it dumps, restores, signals and cleans up that one.
    /// After a restore the root may have another PID (only the PIDs inside its namespaces
    /// must be the same): the runner then takes the one restored child of its own that runs
    /// the scenario binary.
    var rootFromPidfile = false
    /// Runs under `setpriv` with these options (its directory and log then belong to `owner`).
    var setpriv: [String] = []
    var owner: uid_t = 0
    /// Runs from a copy of its binary in its own directory, which a test may change after the dump.
    var fromCopiedBinary = false
    /// Runs itself again from a copy of its binary that it then removes: its restored executable
    /// is that deleted copy, not the scenario binary.
    var runsDeletedCopy = false

    static let counter = Scenario(name: "counter")
    /// A session on a pty whose leader forks a short-lived child every millisecond.
    static let forkChurn = Scenario(name: "fork_churn")
    /// A stopped child with a signal pending whose handler ends the read it interrupts.
    static let pendingInterrupt = Scenario(name: "pending_interrupt")
    static let memory = Scenario(name: "memory")
    static let fpu = Scenario(name: "fpu")
    static let signals = Scenario(name: "signals")
    /// The same with a handler for the SIGTRAP queued to it.
    static let signalsWithTrapHandler = Scenario(name: "signals", args: ["--trap-handler"])
    /// Dumped inside the nanosleep system call (35); the absolute clock_nanosleep follows.
    static let restartSleep = Scenario(name: "restart_sleep", dumpInSyscall: 35)
    /// Dumped inside clock_nanosleep(TIMER_ABSTIME) (230); the relative nanosleep follows.
    static let restartSleepAbsoluteFirst = Scenario(name: "restart_sleep", args: ["--abs-first"], dumpInSyscall: 230)
    /// Dumped inside read (0) on the empty FIFO.
    static let restartRead = Scenario(name: "restart_read", dumpInSyscall: 0)
    static let files = Scenario(name: "files")
    static let environment = Scenario(
        name: "environment", args: ["--extra", "two words", "--utf8", "ü€"],
        env: ["AMBER_SCENARIO_VAR": "hello world"])
    static let unsupportedSocket = Scenario(name: "unsupported_socket")
    /// Shared anonymous memory a process outside the tree maps too.
    static let unsupportedSharedMemory = Scenario(name: "unsupported_shared_memory", args: ["--outside"])
    /// A System V shared memory segment attached.
    static let unsupportedSysVSharedMemory = Scenario(name: "unsupported_shared_memory", args: ["--sysv"])
    /// Shared anonymous memory across fork (see shared_memory.c).
    static let sharedMemory = Scenario(name: "shared_memory")
    /// A child sharing its parent's descriptor table (clone(CLONE_FILES)).
    static let unsupportedSharedFDTable = Scenario(name: "unsupported_shared_fd_table")
    /// An orphan adopted by the root (a subreaper) in a session whose leader has exited.
    static let unsupportedOrphanedSession = Scenario(name: "unsupported_orphaned_session")
    /// A grandchild in a PID namespace its parent entered with setns.
    static let unsupportedSetns = Scenario(name: "unsupported_setns")
    static let unsupportedUnsharedPIDNamespace = Scenario(name: "unsupported_setns", args: ["--unshare"])
    static let secondThread = Scenario(name: "second_thread")
    static let childPause = Scenario(name: "child_pause")
    /// A thread always in a restartable sequence (rseq critical section).
    static let rseqSection = Scenario(name: "rseq_section")
    /// Threads waiting without a time limit in calls a stop ends with EINTR.
    static let interruptedWaits = Scenario(name: "interrupted_waits")
    static let childPauseIgnoringSIGCHLD = Scenario(name: "child_pause", args: ["--ignore-sigchld"])
    /// Three stopped children, one stop collected by the parent, one by SIGTSTP with two threads.
    static let stopped = Scenario(name: "stopped")
    /// Children cloned with exit signal SIGUSR1 and with none.
    static let exitSignal = Scenario(name: "exit_signal")
    /// 50 processes in 3 sessions and 6 process groups, one group without its leader.
    static let tree = Scenario(name: "tree")
    /// Unreaped children with distinct exit statuses.
    static let zombies = Scenario(name: "zombies")
    /// Forks and reaps short-lived children all the time, also while dumped.
    static let forker = Scenario(name: "forker")
    /// 8 threads, each with its own registers, TLS, mask and name.
    static let threads = Scenario(name: "threads")
    /// Threads blocked in futex (202) waits at dump time.
    static let futexWait = Scenario(name: "futex_wait", dumpInThreadSyscall: 202)
    /// Three nested PID namespaces; the root is the init of the outermost, started by a launcher.
    static let pidns = Scenario(name: "pidns", rootFromPidfile: true)
    /// A PID namespace init with an orphan and an orphaned zombie to reap.
    static let pidnsReaper = Scenario(name: "pidns_reaper", rootFromPidfile: true)
    /// Policy, nice, affinity, timer slack and I/O priority per thread; oom_score_adj.
    static let scheduling = Scenario(name: "scheduling")
    /// prctl flags of the process and of each thread, personality, thread names.
    static let flags = Scenario(name: "flags")
    /// Interval timers and POSIX timers with chosen IDs, firing on after restore.
    static let timers = Scenario(name: "timers")
    /// A POSIX timer on the CPU clock of a child process.
    static let unsupportedCPUClockTimer = Scenario(name: "unsupported_cpu_clock_timer")
    /// Handlers for every signal, masks, pending signals, timers, a thread, files and areas,
    /// for a dump --leave-running to leave as they were.
    static let unchanged = Scenario(name: "unchanged")
    /// Looks for a key of the restorer's in its session keyring after restore.
    static let sessionKeyring = Scenario(name: "session_keyring")
    /// One kind of state not restored yet (unsupported_state.c), by its flag.
    static let unsupportedChroot = Scenario(name: "unsupported_state", args: ["--chroot"])
    /// A tree in a mount namespace of its own, pivot_root'ed into a root directory of the test's.
    static let mountNamespace = Scenario(name: "mnt_namespace", rootFromPidfile: true, fromCopiedBinary: true)
    /// The same with an overlay mounted at /mnt inside.
    static let unsupportedOverlayMount = Scenario(
        name: "mnt_namespace", args: ["--overlay"], rootFromPidfile: true, fromCopiedBinary: true)
    /// The same with a mount or a tmpfs file a dump refuses, by its flag (mnt_namespace.c).
    static func unsupportedMountNamespace(_ flag: String) -> Scenario {
        Scenario(name: "mnt_namespace", args: [flag], rootFromPidfile: true, fromCopiedBinary: true)
    }
    static let unsupportedControllingTerminal = Scenario(name: "unsupported_state", args: ["--ctty"])
    static let unsupportedAutogroup = Scenario(name: "unsupported_state", args: ["--autogroup"])
    static let unsupportedMemoryPolicy = Scenario(name: "unsupported_state", args: ["--mempolicy"])
    static let unsupportedAreaPolicy = Scenario(name: "unsupported_state", args: ["--mbind"])
    static let unsupportedThreadPolicy = Scenario(name: "unsupported_state", args: ["--thread-mempolicy"])
    static let unsupportedThreadPersonality = Scenario(name: "unsupported_state", args: ["--thread-personality"])
    static let unsupportedGroupLeft = Scenario(name: "unsupported_state", args: ["--group-left"])
    static let unsupportedGDTEntry = Scenario(name: "unsupported_state", args: ["--gdt-tls"])
    static let unsupportedLandlock = Scenario(name: "unsupported_state", args: ["--landlock"])
    static let unsupportedGuardRegions = Scenario(name: "unsupported_state", args: ["--guard-regions"])
    static let unsupportedLocalDescriptorTable = Scenario(name: "unsupported_state", args: ["--ldt"])
    static let unsupportedVfork = Scenario(name: "unsupported_state", args: ["--vfork"])
    static let unsupportedThreadLandlock = Scenario(name: "unsupported_state", args: ["--thread-landlock"])
    static let unsupportedSyscallUserDispatch = Scenario(name: "unsupported_state", args: ["--user-dispatch"])
    static let unsupportedThreadKeyring = Scenario(name: "unsupported_state", args: ["--thread-keyring"])
    static let unsupportedProcessKeyring = Scenario(name: "unsupported_state", args: ["--process-keyring"])
    static let unsupportedSessionKeys = Scenario(name: "unsupported_state", args: ["--session-keys"])
    static let unsupportedRobustMutex = Scenario(name: "unsupported_state", args: ["--robust-mutex"])
    static let unsupportedSharedFile = Scenario(name: "unsupported_state", args: ["--shared-file"])
    static let unsupportedSharedLockedLog = Scenario(name: "unsupported_state", args: ["--shared-locked-log"])
    static let unsupportedSharedDirectory = Scenario(name: "unsupported_state", args: ["--shared-directory"])
    static let unsupportedThreadUnshareFS = Scenario(name: "unsupported_state", args: ["--thread-unshare-fs"])
    static let unsupportedThreadUnshareFiles = Scenario(name: "unsupported_state", args: ["--thread-unshare-files"])
    static let unsupportedOwner = Scenario(name: "unsupported_state", args: ["--owner"])
    static let unsupportedFdAtLimit = Scenario(name: "unsupported_state", args: ["--fd-at-limit"])
    static let unsupportedStoppedFatal = Scenario(name: "unsupported_state", args: ["--stopped-fatal"])
    static let unsupportedStoppedTwice = Scenario(name: "unsupported_state", args: ["--stopped-twice"])
    static let unsupportedLeaderExited = Scenario(name: "unsupported_state", args: ["--leader-exited"])
    static let unsupportedRootParentDeath = Scenario(name: "unsupported_state", args: ["--root-pdeath"])
    static let unsupportedSessionOutside = Scenario(name: "unsupported_state", args: ["--session-outside"])
    static let unsupportedUnmappedVvar = Scenario(name: "unsupported_state", args: ["--unmapped-vvar"])
    static let unsupportedDeletedXattr = Scenario(name: "unsupported_state", args: ["--deleted-xattr"])
    static let unsupportedDeletedNoatime = Scenario(name: "unsupported_state", args: ["--deleted-noatime"])
    /// A child the root traces, in a ptrace stop.
    static let unsupportedTraced = Scenario(name: "unsupported_traced")
    /// The root tracing a process outside the tree (a grandchild whose parent exited), stopped.
    static let unsupportedTracedOutside = Scenario(name: "unsupported_traced", args: ["--outside"])
    /// A thread under SCHED_DEADLINE.
    static let unsupportedDeadline = Scenario(name: "unsupported_deadline")
    /// Seccomp filter chains: two shared by both threads, one of the second thread's own.
    static let seccomp = Scenario(name: "seccomp")
    /// A thread in seccomp strict mode, blocked in read on a FIFO.
    static let seccompStrict = Scenario(name: "seccomp_strict")
    /// A seccomp filter that returns SECCOMP_RET_USER_NOTIF.
    static let unsupportedSeccompListener = Scenario(name: "unsupported_seccomp_listener")
    /// A root parent and a child under uids and gids 1000-1002 with only CAP_NET_BIND_SERVICE
    /// (also ambient), a smaller bounding set and securebits.
    static let credentialsTree = Scenario(name: "credentials_tree")
    /// A thread under other uids, gids, groups and capabilities than the main thread.
    static let credentialsThread = Scenario(name: "credentials_thread")
    /// A child in a user namespace of its own.
    static let unsupportedUserNamespace = Scenario(name: "unsupported_userns")
    /// Files named "x (deleted)" and "new\nline", each open and mapped.
    static let oddNames = Scenario(name: "odd_names")
    /// O_PATH descriptors on a file and on a directory.
    static let pathFDs = Scenario(name: "path_fds")
    /// One object Amber cannot restore, by kind (see unsupported_kind.c).
    static func unsupportedKind(_ flag: String) -> Scenario { Scenario(name: "unsupported_kind", args: [flag]) }

    /// A child whose working directory is /proc/PID of a process that has gone.
    static let unsupportedCwdGoneProc = Scenario(name: "unsupported_cwd", args: ["--gone-proc"])
    /// A child in a namespace of its own of one kind, or in another cgroup.
    static let unsupportedUTSNamespace = Scenario(name: "unsupported_namespace", args: ["--uts"])
    static let unsupportedMountNamespace = Scenario(name: "unsupported_namespace", args: ["--mnt"])
    static let unsupportedIPCNamespace = Scenario(name: "unsupported_namespace", args: ["--ipc"])
    static let unsupportedNetworkNamespace = Scenario(name: "unsupported_namespace", args: ["--net"])
    static let unsupportedCgroupNamespace = Scenario(name: "unsupported_namespace", args: ["--cgroupns"])
    static let unsupportedTimeNamespace = Scenario(name: "unsupported_namespace", args: ["--time"])
    static let unsupportedCgroup = Scenario(name: "unsupported_namespace", args: ["--cgroup"])
    /// A process holding a read lease.
    static let unsupportedLease = Scenario(name: "unsupported_lock")
    /// flock, POSIX and OFD locks of a root and its child, one on a file both map shared.
    static let fileLocks = Scenario(name: "file_locks")
    /// A shared mapping of a file on a hugetlbfs the process mounted.
    static let unsupportedHugeTLB = Scenario(name: "unsupported_hugetlb")

    /// Areas that differ only by madvise advice, locks or mmap flags, and a shared file mapping
    /// that may become writable; with --lock-future, mlockall(MCL_FUTURE | MCL_ONFAULT).
    static let memoryFlags = Scenario(name: "memory_flags")
    static let memoryFlagsLockFuture = Scenario(name: "memory_flags", args: ["--lock-future"])

    /// Registered for the private expedited membarrier commands.
    static let membarrier = Scenario(name: "membarrier")

    /// Anonymous pipes holding data, by flag (see pipes.c).
    static let pipeFull = Scenario(name: "pipes", args: ["--full"])
    static let pipeLarge = Scenario(name: "pipes", args: ["--large"])
    static let pipeBlockedWriter = Scenario(name: "pipes", args: ["--blocked-writer"])
    static let pipePackets = Scenario(name: "pipes", args: ["--packets"])
    static let pipeClosedEnds = Scenario(name: "pipes", args: ["--closed-ends"])
    static let pipeFifo = Scenario(name: "pipes", args: ["--fifo"])
    static let pipeFifoWriter = Scenario(name: "pipes", args: ["--fifo-writer"])
    /// A pipe amber refuses (see unsupported_pipe.c).
    /// stdin and stdout pipes of the test's, outside the tree (ExternalPipeTests starts it).
    static let externalPipe = Scenario(name: "external_pipe")
    static let unsupportedPipeOutsideReader = Scenario(name: "unsupported_pipe", args: ["--outside-reader"])
    static let unsupportedPipeUnread = Scenario(name: "unsupported_pipe", args: ["--unread"])
    static let unsupportedFifoOutside = Scenario(name: "unsupported_pipe", args: ["--fifo-outside"])
    static let unsupportedFifoOutsideEmpty = Scenario(name: "unsupported_pipe", args: ["--fifo-outside-empty"])
    /// eventfds with small, large and the largest counters, in semaphore mode, one shared with a child.
    static let eventFDs = Scenario(name: "event_fds")
    /// signalfds on blocked signals, pending at the dump.
    static let signalFDs = Scenario(name: "signal_fds")
    /// timerfds: periodic, one-shot far away, expired unread, absolute on the realtime and monotonic clocks.
    static let timerFDs = Scenario(name: "timer_fds")
    /// An epoll or inotify instance, an alarm-clock timerfd or an eventfd with O_APPEND: refused.
    static func unsupportedEventFile(_ flag: String) -> Scenario {
        Scenario(name: "unsupported_event_files", args: [flag])
    }

    /// Unix socket pairs of each type holding data both ways, with options, shutdowns, closed
    /// peers, and one split with a child (unix_sockets.c).
    static let unixSockets = Scenario(name: "unix_sockets")
    /// A unix socket pair whose other socket a process outside the tree holds, or none (in flight).
    static let unsupportedUnixPeerOutside = Scenario(name: "unsupported_unix_socket", args: ["--peer-outside"])
    static let unsupportedUnixPeerInFlight = Scenario(name: "unsupported_unix_socket", args: ["--peer-in-flight"])
    /// A stream pair whose queue holds an out-of-band byte (MSG_OOB).
    static let unsupportedUnixOutOfBand = Scenario(name: "unsupported_unix_socket", args: ["--oob"])
    /// A stream pair with SO_MARK set on one socket.
    static let unsupportedUnixMark = Scenario(name: "unsupported_unix_socket", args: ["--mark"])
    /// A stream pair with a classic BPF filter on one socket.
    static let unsupportedUnixFilter = Scenario(name: "unsupported_unix_socket", args: ["--filter"])
    /// A stream pair, one socket owned by its process for SIGURG (F_SETOWN).
    static let unsupportedUnixOwner = Scenario(name: "unsupported_unix_socket", args: ["--owner"])
    /// A socket whose peer was closed with a byte unread: an error (ECONNRESET) waits for its next read.
    static let unsupportedUnixReset = Scenario(name: "unsupported_unix_socket", args: ["--reset"])
    /// A listener with a connection waiting whose client closed since.
    static let unsupportedUnixWaitingClientClosed = Scenario(
        name: "unsupported_unix_socket", args: ["--waiting-client-closed"])
    /// Connections and a pair made by a child that became uid 1000, to a listener of root's.
    static let unixPeerCredentials = Scenario(name: "unix_peer_credentials")
    /// Two ptys with both ends in the tree, one a session's controlling terminal (see ptys.c).
    static let ptys = Scenario(name: "ptys")
    /// A pty amber refuses (see unsupported_pty.c).
    static func unsupportedPty(_ flag: String) -> Scenario { Scenario(name: "unsupported_pty", args: [flag]) }
    /// Unix sockets bound to paths and abstract names, listeners with connections not accepted yet.
    static let unixBound = Scenario(name: "unix_bound")
    static let unsupportedUnixUnlinked = Scenario(name: "unsupported_unix_socket", args: ["--unlinked"])
    static let unsupportedUnixConnectedOutside = Scenario(
        name: "unsupported_unix_socket", args: ["--connected-outside"])
    /// A connection accepted from a listener closed since.
    static let unsupportedUnixAccepted = Scenario(name: "unsupported_unix_socket", args: ["--accepted"])
    /// memfds with data, holes, a sparse tail, modes and seals, two descriptions of one, shared with a child.
    static let memfd = Scenario(name: "memfd")
    /// Deleted files with data, holes, a sparse tail and mode, two descriptions of one, shared with a child.
    static let deletedFiles = Scenario(name: "deleted_files")
    static let deletedExecutable = Scenario(name: "deleted_files", args: ["--deleted-exe"], runsDeletedCopy: true)
    /// This process and a child in a directory that was removed.
    static let deletedCwd = Scenario(name: "deleted_cwd")
    /// O_TMPFILE files: open and shared with a child, mapped, linked, and linked and unlinked again.
    static let temporaryFiles = Scenario(name: "tmpfile")
    /// A memfd and a deleted file mapped shared and privately by a parent and a child (see mapped_unnamed.c).
    static let mappedUnnamed = Scenario(name: "mapped_unnamed")
    /// A memfd or deleted file amber refuses (see unsupported_unnamed.c).
    static func unsupportedUnnamed(_ flag: String) -> Scenario { Scenario(name: "unsupported_unnamed", args: [flag]) }
    /// Two epoll instances, one watching the other, shared with a child (see epoll.c).
    static let epoll = Scenario(name: "epoll")
    /// pidfds of the tree's processes (see pidfds.c).
    static let pidfds = Scenario(name: "pidfds")
    /// Two inotify instances, a wd skipped (see inotify.c).
    static let inotify = Scenario(name: "inotify")
    /// stdin and stdout one unix socket whose peer the test holds (ExternalUnixSocketTests starts it).
    static let externalSocket = Scenario(name: "external_pipe", args: ["--socket"])
    /// Connections accepted from unix listeners, their clients in children (see unix_accepted.c).
    static let unixAccepted = Scenario(name: "unix_accepted")
    /// A unix client whose listener and accepted socket a process outside the tree holds.
    static let unsupportedUnixAcceptedOutside = Scenario(name: "unsupported_unix_socket", args: ["--accepted-outside"])
    /// An accepted unix socket and its client whose listener a process outside the tree holds.
    static let unsupportedUnixListenerOutside = Scenario(
        name: "unsupported_unix_socket", args: ["--accepted-listener-outside"])
    /// A connection accepted from a unix listener of the tree, its client closed since.
    static let unsupportedUnixClientClosed = Scenario(
        name: "unsupported_unix_socket", args: ["--accepted-client-closed"])
    /// A program run from a shell on a terminal, a shell job (ShellJobTests types it into tmux).
    static let shellJob = Scenario(name: "shell_job")
    /// Writes its memory without pause, checking each page's previous pass (see cow_writer.c).
    static let cowWriter = Scenario(name: "cow_writer", args: ["--heap"])
    /// Three writer threads and a fourth that fills its pages by read() from a pipe.
    static let cowWriterThreads = Scenario(name: "cow_writer", args: ["--threads", "3", "--kernel-write", "--heap"])
    /// A tree: a child writes its copy of the memory too.
    static let cowWriterTree = Scenario(name: "cow_writer", args: ["--tree", "--threads", "2"])
    /// A thread forks a child every few milliseconds.
    static let cowWriterForks = Scenario(name: "cow_writer", args: ["--fork", "--threads", "2"])
    /// Threads that exit holding robust mutexes while a dump --cow copies.
    static let cowWriterRobustExits = Scenario(name: "cow_writer", args: ["--robust-exits", "--threads", "2"])
    /// A thread waiting in the kernel for a PI mutex while a dump --cow copies.
    static let cowWriterPIWaiter = Scenario(name: "cow_writer", args: ["--pi-waiter"])
    /// A thread moves a filled area by mremap every millisecond.
    static let cowWriterMoves = Scenario(name: "cow_writer", args: ["--move"])
    /// Run as nobody, without CAP_SYS_PTRACE: it may not make a userfaultfd.
    static let cowWriterUnprivileged = Scenario(
        name: "cow_writer", setpriv: ["--reuid=65534", "--regid=65534", "--clear-groups"], owner: 65534)
    /// Memory whose pages arrive after the process runs again (restore --lazy-pages), touched
    /// at once; `flags` choose how (lazy_pages.c).
    static func lazyPages(_ flags: [String]) -> Scenario { Scenario(name: "lazy_pages", args: flags) }
    /// `mib` MiB of memory, every page filled: a dump long enough to watch or interrupt (big_memory.c).
    static func bigMemory(mib: Int) -> Scenario { Scenario(name: "big_memory", args: ["--mib", "\(mib)"]) }
    /// A root and its child in a UTS and an IPC namespace of their own, named, with IPC sysctls changed.
    static let utsIPCNamespace = Scenario(name: "uts_ipc_namespace", args: ["--uts", "--ipc"])
    /// The same in an IPC namespace that holds a System V message queue, or a POSIX one.
    static let unsupportedIPCSystemVObject = Scenario(name: "uts_ipc_namespace", args: ["--ipc", "--sysv-object"])
    static let unsupportedIPCMessageQueue = Scenario(name: "uts_ipc_namespace", args: ["--ipc", "--mqueue-object"])
    /// A process and its child, in the cgroups (and cgroup namespace) its arguments say (see cgroup_tree.c).
    static let cgroupTree = Scenario(name: "cgroup_tree")

    /// Areas back to back that differ in protection and accounting, as a restore maps them in runs (mapping_runs.c).
    static let mappingRuns = Scenario(name: "mapping_runs")
}

/// One started scenario. After a dump and restore the same object stands for the restored
/// process: same PID, same pidfile, outfile and log paths.
final class ScenarioProcess {
    let scenario: Scenario
    let binary: String
    let directory: String
    let pidfile: String
    let outfile: String
    let log: String
    /// The scenario root. With `rootFromPidfile` it may change at restore (see there).
    var pid: pid_t
    /// With `rootFromPidfile`: the launcher the runner started (already reaped), and its status.
    var launcher: pid_t?
    var launcherStatus: ExitStatus?
    /// Set once this process (original or restored) has been reaped by the runner.
    var exitStatus: ExitStatus?
    /// Set once it is known to be gone without the runner reaping it.
    var gone = false

    init(scenario: Scenario, binary: String, directory: String, pid: pid_t) {
        self.scenario = scenario
        self.binary = binary
        self.directory = directory
        self.pidfile = directory + "/pid"
        self.outfile = directory + "/verdict"
        self.log = directory + "/log"
        self.pid = pid
    }

    var logText: String { Sys.readText(log) ?? "(no log)" }
    var verdict: String? { Sys.readText(outfile)?.trimmingCharacters(in: .whitespacesAndNewlines) }

    var diagnostics: String {
        "\(scenario.name) \(Proc.describe(pid)); verdict: \(verdict ?? "none"); log:\n\(logText)"
    }
}

/// One run of amber.
struct AmberResult {
    let arguments: [String]
    let status: ExitStatus
    let stdout: String
    let stderr: String

    var summary: String {
        "`amber \(arguments.joined(separator: " "))` → \(status); stderr: \(stderr.isEmpty ? "(empty)" : stderr)"
    }
}

struct RunningAmber {
    let pid: pid_t
    let arguments: [String]
    let stdoutPath: String
    let stderrPath: String
}

class ScenarioTestCase: XCTestCase {
    /// Processes started by this test that may still need killing and reaping.
    private var tracked: Set<pid_t> = []
    private var testDirectory: String?
    private var amberRuns = 0

    static let pidfileTimeout = 20.0
    static let verdictTimeout = 30.0
    /// Only a guard against hangs; never a performance threshold.
    static let amberTimeout = 120.0

    override func setUpWithError() throws {
        try super.setUpWithError()
        try Sys.becomeSubreaper()
    }

    override func tearDown() {
        cleanUpProcesses()
        if let testDirectory, (testRun?.totalFailureCount ?? 1) == 0 {
            Scratch.remove(testDirectory)
        }
        super.tearDown()
    }

    /// Kill whatever this test started, with all its descendants (scenario trees, restored
    /// or not), and reap it, and any orphan reparented to us.
    func cleanUpProcesses() {
        let ours = ((try? Scratch.root()) ?? "/nonexistent") + "/"
        var roots: [pid_t] = []
        for pid in tracked {
            switch Spawn.poll(pid) {
            case .running:
                roots.append(pid)
            case .notMyChild:
                // a restored scenario that is not (yet) our child: kill it only if it still
                // runs one of our scenario binaries or amber
                if let exe = Proc.exe(pid), exe.hasPrefix(ours) || exe == Locations.amberBinary() {
                    roots.append(pid)
                }
            case .exited:
                break
            }
        }
        Self.killTrees(roots)
        let deadline = Sys.now() + 10
        while Sys.now() < deadline {
            var status: Int32 = 0
            while waitpid(-1, &status, WNOHANG) > 0 {}
            let children = Proc.childrenOfSelf()
            if children.isEmpty { break }
            Self.killTrees(children)
            Sys.sleep(milliseconds: 5)
        }
        tracked.removeAll()
    }

    /// SIGKILL each root and then its descendants, parents before children (a process that
    /// forks is stopped first; what it forked meanwhile is reparented to us and caught later).
    private static func killTrees(_ roots: [pid_t]) {
        guard !roots.isEmpty else { return }
        let parents = Proc.parentMap()
        for root in roots {
            kill(root, SIGKILL)
            for d in Proc.descendants(of: root, parents: parents) { kill(d, SIGKILL) }
        }
    }

    // MARK: helpers for tests

    /// Skips a test whose scenario mounts a hugetlbfs on a kernel without one.
    func requireHugeTLBFS() throws {
        guard Sys.readText("/proc/filesystems")?.contains("hugetlbfs") == true else {
            throw XCTSkip("this kernel has no hugetlbfs")
        }
    }

    func requireAmber() throws -> String {
        guard let amber = Locations.amberBinary() else { throw XCTSkip(Locations.amberSkipMessage) }
        return amber
    }

    func directory() throws -> String {
        if let testDirectory { return testDirectory }
        let d = try Scratch.makeDirectory(name)
        testDirectory = d
        return d
    }

    func newDirectory(_ label: String) throws -> String {
        let base = try directory()
        var n = 1
        while Sys.fileExists("\(base)/\(label)\(n == 1 ? "" : "-\(n)")") { n += 1 }
        let path = "\(base)/\(label)\(n == 1 ? "" : "-\(n)")"
        guard mkdir(path, 0o755) == 0 else { throw RunnerError("mkdir \(path): \(Sys.errnoString())") }
        return path
    }

    func track(_ pid: pid_t) { tracked.insert(pid) }

    /// Start a scenario and wait (up to 20 s) for its pidfile.
    func start(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws -> ScenarioProcess {
        let built = try ScenarioBuilder.shared.binary(scenario.name)
        let dir = try newDirectory(scenario.name)
        let binary = scenario.fromCopiedBinary ? dir + "/" + scenario.name : built
        if scenario.fromCopiedBinary {
            try FileManager.default.copyItem(atPath: built, toPath: binary)
        }
        let pidfile = dir + "/pid"
        let outfile = dir + "/verdict"
        let log = dir + "/log"
        let command = [binary, "--pidfile", pidfile, "--outfile", outfile] + scenario.args
        if !scenario.setpriv.isEmpty {
            // the log is created by the runner; a restore by the owner reopens it
            let fd = open(log, O_CREAT | O_WRONLY, 0o644)
            if fd >= 0 { close(fd) }
            guard fd >= 0, chown(dir, scenario.owner, scenario.owner) == 0,
                chown(log, scenario.owner, scenario.owner) == 0
            else {
                throw RunnerError("give \(dir) to uid \(scenario.owner): \(Sys.errnoString())")
            }
        }
        let pid = try Spawn.start(
            scenario.setpriv.isEmpty ? command : ["/usr/bin/setpriv"] + scenario.setpriv + command, stdout: log,
            env: scenario.env)
        tracked.insert(pid)
        let p = ScenarioProcess(scenario: scenario, binary: binary, directory: dir, pid: pid)
        let deadline = Sys.now() + Self.pidfileTimeout
        func writtenPid() -> pid_t? {
            Sys.readText(pidfile).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        while true {
            if scenario.rootFromPidfile {
                // the launcher writes the root's PID, then exits 0
                let launcherState = Spawn.poll(pid)
                if let written = writtenPid() {
                    return try adoptRoot(p, root: written, launcherState: launcherState, file: file, line: line)
                }
                if case .exited(let s) = launcherState {
                    p.launcherStatus = s
                    tracked.remove(pid)
                    XCTFail(
                        "\(scenario.name)'s launcher exited (\(s)) without writing a pidfile; log:\n\(p.logText)",
                        file: file, line: line)
                    throw RunnerError("launcher died during setup")
                }
                if Sys.now() > deadline {
                    XCTFail(
                        "\(scenario.name) wrote no pidfile within \(Int(Self.pidfileTimeout)) s; \(p.diagnostics)",
                        file: file, line: line)
                    throw RunnerError("no pidfile")
                }
                Sys.sleep(milliseconds: 5)
                continue
            }
            if let written = writtenPid() {
                guard written == pid else {
                    XCTFail(
                        "\(scenario.name) wrote PID \(written) to its pidfile, but it is \(pid)", file: file, line: line
                    )
                    throw RunnerError("bad pidfile")
                }
                return p
            }
            if case .exited(let s) = Spawn.poll(pid) {
                p.exitStatus = s
                tracked.remove(pid)
                XCTFail(
                    "\(scenario.name) exited (\(s)) before writing its pidfile; log:\n\(p.logText)", file: file,
                    line: line)
                throw RunnerError("scenario died during setup")
            }
            if Sys.now() > deadline {
                XCTFail(
                    "\(scenario.name) wrote no pidfile within \(Int(Self.pidfileTimeout)) s; \(p.diagnostics)",
                    file: file, line: line)
                throw RunnerError("no pidfile")
            }
            Sys.sleep(milliseconds: 5)
        }
    }

    /// `rootFromPidfile`: the launcher `p.pid` wrote `root` to the pidfile. Reap the launcher
    /// (it must exit 0), check the root is now our child, and make it the scenario process.
    private func adoptRoot(
        _ p: ScenarioProcess, root: pid_t, launcherState: Spawn.ChildState, file: StaticString,
        line: UInt
    ) throws -> ScenarioProcess {
        let launcher = p.pid
        p.launcher = launcher
        if root > 0, root != launcher, root != getpid() { tracked.insert(root) }
        var status: ExitStatus?
        if case .exited(let s) = launcherState {
            status = s
        } else {
            status = Spawn.wait(launcher, timeout: Self.pidfileTimeout)
        }
        guard let status else {
            XCTFail(
                "\(p.scenario.name)'s launcher \(launcher) wrote the pidfile but did not exit; \(p.diagnostics)",
                file: file, line: line)
            throw RunnerError("launcher did not exit")
        }
        tracked.remove(launcher)
        p.launcherStatus = status
        guard status == .exited(0) else {
            XCTFail("\(p.scenario.name)'s launcher ended with \(status); log:\n\(p.logText)", file: file, line: line)
            throw RunnerError("launcher failed")
        }
        guard root > 0, root != launcher else {
            XCTFail(
                "\(p.scenario.name)'s launcher \(launcher) wrote PID \(root) to its pidfile", file: file, line: line)
            throw RunnerError("bad pidfile")
        }
        p.pid = root
        guard case .running = Spawn.poll(root) else {
            XCTFail(
                "\(p.scenario.name)'s root \(root) is not a running child of the runner after its launcher exited; "
                    + p.diagnostics, file: file, line: line)
            throw RunnerError("root not adopted")
        }
        return p
    }

    /// Wait until every thread of the process except the main one is blocked in system call
    /// `number` (per /proc/PID/task/TID/syscall).
    func waitForThreadSyscall(_ p: ScenarioProcess, _ number: Int, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.now() < deadline {
            let others = Proc.threads(p.pid).filter { $0 != p.pid }
            if !others.isEmpty, others.allSatisfy({ Proc.syscall(p.pid, thread: $0) == String(number) }) { return }
            Sys.sleep(milliseconds: 2)
        }
        let states = Proc.threads(p.pid).map { "\($0): \(Proc.syscall(p.pid, thread: $0) ?? "?")" }
        XCTFail(
            "\(p.scenario.name): its threads never all blocked in system call \(number) (\(states)); \(p.diagnostics)",
            file: file, line: line)
        throw RunnerError("threads not in the expected system call")
    }

    /// Wait until the process is blocked in system call `number` (per /proc/PID/syscall).
    func waitForSyscall(_ p: ScenarioProcess, _ number: Int, file: StaticString = #filePath, line: UInt = #line) throws
    {
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.now() < deadline {
            if Proc.syscall(p.pid) == String(number) { return }
            Sys.sleep(milliseconds: 2)
        }
        XCTFail("\(p.scenario.name) never blocked in system call \(number); \(p.diagnostics)", file: file, line: line)
        throw RunnerError("not in the expected system call")
    }

    /// Wait until `p` has ended: reaped if it is our child, else gone or a zombie.
    /// Returns false on timeout.
    func waitForEnd(_ p: ScenarioProcess, timeout: Double) -> Bool {
        let deadline = Sys.now() + timeout
        while true {
            switch Spawn.poll(p.pid) {
            case .exited(let s):
                p.exitStatus = s
                tracked.remove(p.pid)
                return true
            case .notMyChild:
                if let s = Proc.status(p.pid), !s.isGone {
                    break
                }
                p.gone = true
                return true
            case .running:
                break
            }
            if Sys.now() > deadline { return false }
            Sys.sleep(milliseconds: 2)
        }
    }

    /// SIGTERM the scenario, wait for it to end (up to 30 s), and expect PASS and exit 0.
    func terminateAndExpectPass(
        _ p: ScenarioProcess, _ context: String, file: StaticString = #filePath, line: UInt = #line
    )
        throws
    {
        guard kill(p.pid, SIGTERM) == 0 else {
            XCTFail(
                "\(context): cannot signal \(p.scenario.name) \(p.pid): \(Sys.errnoString()); \(p.diagnostics)",
                file: file, line: line)
            throw RunnerError("kill failed")
        }
        guard waitForEnd(p, timeout: Self.verdictTimeout) else {
            let diag = p.diagnostics
            kill(p.pid, SIGKILL)
            _ = waitForEnd(p, timeout: 10)
            XCTFail(
                "\(context): \(p.scenario.name) did not finish within \(Int(Self.verdictTimeout)) s of SIGTERM; \(diag)",
                file: file, line: line)
            throw RunnerError("no verdict")
        }
        XCTAssertEqual(
            p.verdict, "PASS", "\(context): \(p.scenario.name) verdict; log:\n\(p.logText)", file: file, line: line)
        if let s = p.exitStatus {
            XCTAssertEqual(s, .exited(0), "\(context): \(p.scenario.name) exit status", file: file, line: line)
        }
    }

    /// The process runs, neither stopped nor traced.
    func assertRunningUntraced(_ pid: pid_t, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let s = Proc.status(pid) else {
            XCTFail("\(context): PID \(pid) does not exist", file: file, line: line)
            return
        }
        XCTAssertFalse(s.isGone, "\(context): PID \(pid) is a zombie", file: file, line: line)
        XCTAssertFalse(
            s.isStoppedOrTraced, "\(context): PID \(pid) is stopped or traced: \(Proc.describe(pid))",
            file: file, line: line)
        XCTAssertEqual(
            s.tracerPid, 0, "\(context): PID \(pid) is traced: \(Proc.describe(pid))", file: file, line: line)
    }

    // MARK: running amber

    /// This test process's image key (`AMBER_IMAGE_KEY`), made by the first dump as root:
    /// the tests never touch the host's key in /var/lib/amber.
    static func imageKeyPath() throws -> String { try Scratch.root() + "/image-key" }

    /// `setpriv` runs amber with other credentials: `asNobody` as uid and gid 65534, else
    /// with the `setpriv` options given; `env` is added to its environment, after the test
    /// image key. `wrapper`, a command line, runs amber as its last arguments.
    func startAmber(
        _ arguments: [String], asNobody: Bool = false, setpriv: [String] = [], env: [String: String] = [:],
        wrapper: [String] = []
    ) throws -> RunningAmber {
        let amber = try requireAmber()
        amberRuns += 1
        let env = ["AMBER_IMAGE_KEY": try Self.imageKeyPath()].merging(env) { _, given in given }
        let base = try directory()
        let out = "\(base)/amber-\(amberRuns).stdout"
        let err = "\(base)/amber-\(amberRuns).stderr"
        var argv = wrapper + [amber] + arguments
        if asNobody {
            argv = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        } else if !setpriv.isEmpty {
            argv = ["/usr/bin/setpriv"] + setpriv + argv
        }
        let pid = try Spawn.start(argv, stdout: out, stderr: err, env: env)
        tracked.insert(pid)
        return RunningAmber(pid: pid, arguments: arguments, stdoutPath: out, stderrPath: err)
    }

    /// Wait for amber to finish, reaping the given scenarios whenever they exit meanwhile
    /// (amber dump waits until the dumped PID is free, and the runner is the parent).
    func finish(_ run: RunningAmber, reaping: [ScenarioProcess] = [], timeout: Double = ScenarioTestCase.amberTimeout)
        throws -> AmberResult
    {
        let deadline = Sys.now() + timeout
        var status: ExitStatus?
        while status == nil {
            for p in reaping where p.exitStatus == nil {
                if case .exited(let s) = Spawn.poll(p.pid) {
                    p.exitStatus = s
                    tracked.remove(p.pid)
                }
            }
            switch Spawn.poll(run.pid) {
            case .exited(let s):
                status = s
                tracked.remove(run.pid)
            case .notMyChild:
                throw RunnerError("amber \(run.pid) is not our child")
            case .running:
                if Sys.now() > deadline {
                    kill(run.pid, SIGKILL)
                    _ = Spawn.wait(run.pid, timeout: 10)
                    tracked.remove(run.pid)
                    let err = Sys.readText(run.stderrPath) ?? ""
                    XCTFail(
                        "`amber \(run.arguments.joined(separator: " "))` did not finish in \(Int(timeout)) s; stderr: \(err)"
                    )
                    throw RunnerError("amber hung")
                }
                Sys.sleep(milliseconds: 1)
            }
        }
        for p in reaping where p.exitStatus == nil {
            if case .exited(let s) = Spawn.poll(p.pid) {
                p.exitStatus = s
                tracked.remove(p.pid)
            }
        }
        return AmberResult(
            arguments: run.arguments, status: status!, stdout: Sys.readText(run.stdoutPath) ?? "",
            stderr: Sys.readText(run.stderrPath) ?? "")
    }

    func amber(
        _ arguments: [String], reaping: [ScenarioProcess] = [], asNobody: Bool = false, setpriv: [String] = [],
        env: [String: String] = [:], wrapper: [String] = []
    ) throws -> AmberResult {
        try finish(
            try startAmber(arguments, asNobody: asNobody, setpriv: setpriv, env: env, wrapper: wrapper),
            reaping: reaping)
    }

    /// `amber dump -t PID -D DIR`: exit 0, the process gone and its PID free when amber
    /// returns, an inventory in the image. Returns the image directory.
    @discardableResult
    func dumpExpectingSuccess(_ p: ScenarioProcess, file: StaticString = #filePath, line: UInt = #line) throws -> String
    {
        let image = try newDirectory("image")
        let tree = Proc.descendants(of: p.pid)
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("dump failed: \(r.summary); \(p.diagnostics)", file: file, line: line)
            throw RunnerError("dump failed")
        }
        // the whole tree is gone, not only its root (zombies reparented to us do not count)
        let survivors = tree.filter { pid in
            guard let s = Proc.status(pid), !s.isGone else { return false }
            return Proc.exe(pid) == p.binary
        }
        XCTAssertEqual(
            survivors, [],
            "amber dump returned but these processes of the dumped tree still run: "
                + survivors.map { Proc.describe($0) }.joined(separator: "; "), file: file, line: line)
        XCTAssertNotNil(
            p.exitStatus, "amber dump returned but the dumped process \(p.pid) had not exited",
            file: file, line: line)
        XCTAssertFalse(
            Proc.pidInUse(p.pid),
            "amber dump returned but PID \(p.pid) is still in use: \(Proc.describe(p.pid))", file: file, line: line)
        XCTAssertNil(
            p.verdict, "the dumped process wrote a verdict: it saw SIGTERM or ran its checks", file: file, line: line)
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"), "no inventory.pb in the image", file: file, line: line)
        if Proc.pidInUse(p.pid) { throw RunnerError("PID not free after dump") }
        return image
    }

    /// A complete image of a counter scenario (dumped and killed); its PID is free.
    func dumpedImage(file: StaticString = #filePath, line: UInt = #line) throws -> (String, pid_t) {
        _ = try requireAmber()
        let p = try start(.counter, file: file, line: line)
        let image = try dumpExpectingSuccess(p, file: file, line: line)
        return (image, p.pid)
    }

    /// `amber restore -D DIR --detach`: exit 0, and the process runs with the same PID,
    /// neither stopped nor traced, as the scenario binary. `whileRunning` looks at the restore
    /// before it ends (with `env`'s test fault pausing it).
    func restoreDetachedExpectingSuccess(
        _ p: ScenarioProcess, from image: String, options: [String] = [], setpriv: [String] = [],
        env: [String: String] = [:], whileRunning: (RunningAmber) throws -> Void = { _ in },
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        p.exitStatus = nil
        p.gone = false
        let run = try startAmber(["restore", "-D", image, "--detach"] + options, setpriv: setpriv, env: env)
        try whileRunning(run)
        let r = try finish(run)
        tracked.insert(p.pid)
        guard r.status == .exited(0) else {
            XCTFail("restore failed: \(r.summary); \(p.diagnostics)", file: file, line: line)
            throw RunnerError("restore failed")
        }
        if p.scenario.rootFromPidfile { try findRestoredRoot(p, file: file, line: line) }
        guard let s = Proc.status(p.pid), !s.isGone else {
            XCTFail(
                "amber restore --detach returned 0 but PID \(p.pid) is not running; \(p.diagnostics)", file: file,
                line: line)
            throw RunnerError("not restored")
        }
        assertRunningUntraced(p.pid, "after amber restore --detach", file: file, line: line)
        if p.scenario.runsDeletedCopy {
            XCTAssertEqual(
                Proc.exe(p.pid).map { $0.hasSuffix(" (deleted)") }, true,
                "the restored PID \(p.pid) does not run the deleted copy of the scenario binary", file: file, line: line
            )
        } else {
            XCTAssertEqual(
                Proc.exe(p.pid), p.binary, "the restored PID \(p.pid) is not the scenario binary", file: file,
                line: line)
        }
    }

    /// `rootFromPidfile`: the restored root keeps the PIDs inside its namespaces but its PID
    /// out here may differ. Take the old PID if it runs the scenario binary again, else the
    /// one child of ours (after `restore --detach` the root is reparented to us) that does.
    private func findRestoredRoot(_ p: ScenarioProcess, file: StaticString, line: UInt) throws {
        func runsScenario(_ pid: pid_t) -> Bool {
            guard let s = Proc.status(pid), !s.isGone else { return false }
            return Proc.exe(pid) == p.binary
        }
        if runsScenario(p.pid) { return }
        let candidates = Proc.childrenOfSelf().filter(runsScenario)
        guard candidates.count == 1 else {
            XCTFail(
                "after amber restore --detach, \(candidates.count) children of the runner run \(p.binary) "
                    + "(expected the restored root alone): \(candidates)", file: file, line: line)
            throw RunnerError("restored root not found")
        }
        p.pid = candidates[0]
        tracked.insert(p.pid)
    }

    /// Plain mode: start, SIGTERM, PASS.
    func runPlain(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try start(scenario, file: file, line: line)
        try terminateAndExpectPass(p, "plain run", file: file, line: line)
    }

    /// Dumped mode: start, dump (killing it), restore --detach, SIGTERM, PASS.
    func runDumped(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        if let nr = scenario.dumpInSyscall { try waitForSyscall(p, nr, file: file, line: line) }
        if let nr = scenario.dumpInThreadSyscall { try waitForThreadSyscall(p, nr, file: file, line: line) }
        let image = try dumpExpectingSuccess(p, file: file, line: line)
        try restoreDetachedExpectingSuccess(p, from: image, file: file, line: line)
        try terminateAndExpectPass(p, "after dump and restore", file: file, line: line)
    }

    /// --leave-running: the original keeps running untouched and still passes.
    func runLeaveRunning(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        if let nr = scenario.dumpInSyscall { try waitForSyscall(p, nr, file: file, line: line) }
        if let nr = scenario.dumpInThreadSyscall { try waitForThreadSyscall(p, nr, file: file, line: line) }
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump --leave-running: \(r.summary)", file: file, line: line)
        guard p.exitStatus == nil else {
            XCTFail(
                "the original exited (\(p.exitStatus!)) during dump --leave-running; \(p.diagnostics)", file: file,
                line: line)
            throw RunnerError("original died")
        }
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"), "no inventory.pb in the image", file: file, line: line)
        assertRunningUntraced(p.pid, "after dump --leave-running", file: file, line: line)
        try terminateAndExpectPass(p, "original after dump --leave-running", file: file, line: line)
    }

    // MARK: refusals

    /// Restore must fail with `exitCode` and a message naming the file, and leave nothing
    /// behind: no process, the PID free, the image unchanged.
    func expectRestoreRefused(
        _ image: String, pid: pid_t, exitCode: Int32, mentions: [String],
        mentionsAnyOf: [String] = [], options: [String] = [], setpriv: [String] = [], wrapper: [String] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let before = contents(of: image)
        let r = try amber(["restore", "-D", image, "--detach"] + options, setpriv: setpriv, wrapper: wrapper)
        track(pid)
        assertRefusal(r, exitCode: exitCode, mentions: mentions, mentionsAnyOf: mentionsAnyOf, file: file, line: line)
        XCTAssertFalse(
            Proc.pidInUse(pid), "after a refused restore PID \(pid) is in use: \(Proc.describe(pid))",
            file: file, line: line)
        XCTAssertEqual(Proc.childrenOfSelf(), [], "the refused restore left processes behind", file: file, line: line)
        XCTAssertTrue(
            contents(of: image) == before, "the refused restore changed the image",
            file: file, line: line)
    }

    /// Exit code `code` and exactly one line on stderr, starting "amber: " and containing
    /// every string in `mentions` (and at least one of `mentionsAnyOf`, case-insensitive).
    func assertRefusal(
        _ r: AmberResult, exitCode code: Int32, mentions: [String], mentionsAnyOf: [String] = [],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(r.status, .exited(code), "exit status: \(r.summary)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        XCTAssertEqual(lines.count, 1, "stderr must be one line: \(r.summary)", file: file, line: line)
        guard let message = lines.first else { return }
        XCTAssertTrue(
            message.hasPrefix("amber: "), "message must start with \"amber: \": \(message)", file: file, line: line)
        for m in mentions {
            XCTAssertTrue(message.contains(m), "message does not name \"\(m)\": \(message)", file: file, line: line)
        }
        if !mentionsAnyOf.isEmpty {
            let lower = message.lowercased()
            XCTAssertTrue(
                mentionsAnyOf.contains { lower.contains($0.lowercased()) },
                "message names none of \(mentionsAnyOf): \(message)", file: file, line: line)
        }
    }

    /// The names in a directory, sorted.
    func listing(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    /// Every file of an image directory with its bytes, to tell whether anything changed it.
    func contents(of image: String) -> [String: [UInt8]] {
        Dictionary(uniqueKeysWithValues: listing(image).map { ($0, Sys.readFile(image + "/" + $0) ?? []) })
    }
}
