import Amber
import Glibc

/// `amber dump` does not trace anything itself: it starts a worker (this binary again) that
/// does the dump, waits for it and exits with its status. SIGKILL to `amber dump` then cannot
/// leave a target stopped in the middle of an injected call, as the death of a tracer would
/// (its tracees run on with whatever registers it had set): the worker sees that it was
/// orphaned and undoes what it did (see `DumpInterruption`).
///
/// The worker's command line is `amber --dump-worker SUPERVISOR PID DIR LEAVE_RUNNING SYNC
/// VERBOSITY` (flags 0 or 1), read without ArgumentParser: its parse is about 3 ms of a
/// start, and the worker's start is on every dump's critical path.
struct DumpWorker {
    static let flag = "--dump-worker"

    let supervisor: pid_t
    let pid: Int32
    let directory: String
    let leaveRunning: Bool
    let sync: Bool
    let verbosity: Int

    init(supervisor: pid_t, pid: Int32, directory: String, leaveRunning: Bool, sync: Bool, verbosity: Int) {
        self.supervisor = supervisor
        self.pid = pid
        self.directory = directory
        self.leaveRunning = leaveRunning
        self.sync = sync
        self.verbosity = verbosity
    }

    /// The worker's arguments, nil unless this process is a dump worker.
    init?(arguments: [String]) {
        guard arguments.count == 8, arguments[1] == Self.flag, let supervisor = pid_t(arguments[2]), let pid = Int32(arguments[3]),
              let verbosity = Int(arguments[7])
        else { return nil }
        self.init(supervisor: supervisor, pid: pid, directory: arguments[4], leaveRunning: arguments[5] == "1", sync: arguments[6] == "1", verbosity: verbosity)
    }

    private var arguments: [String] {
        [Self.flag, "\(supervisor)", "\(pid)", directory, leaveRunning ? "1" : "0", sync ? "1" : "0", "\(verbosity)"]
    }

    /// In `amber dump`: runs the worker and exits as it did (128+N if signal N killed it).
    func start() -> Never {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink("/proc/self/exe", &buffer, buffer.count)
        guard length > 0 else {
            fail(AmberError(.failure, "cannot find amber's own binary (/proc/self/exe): errno \(errno)"))
        }
        // By its own path rather than /proc/self/exe, so that its name (comm) is amber's.
        let binary = String(decoding: buffer[..<length], as: UTF8.self)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        // Its own process group: a signal to ours (^C, a kill of the job) does not reach it.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        var argv = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var worker: pid_t = 0
        let result = posix_spawn(&worker, binary, nil, &attributes, &argv, environ)
        posix_spawnattr_destroy(&attributes)
        guard result == 0 else {
            fail(AmberError(.failure, "cannot start the dump worker (\(binary)): \(String(cString: strerror(result)))"))
        }
        var status: Int32 = 0
        while waitpid(worker, &status, 0) < 0 {
            guard errno == EINTR else { fail(AmberError(.failure, "waiting for the dump worker \(worker): errno \(errno)")) }
        }
        let signal = status & 0x7f
        Glibc.exit(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }

    /// In the worker: does the dump. No signal meant for the user's `amber dump` stops it
    /// half-way; it notices that `amber dump` is gone instead, and writes on when its terminal
    /// or reader is gone.
    func run() -> Never {
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTTOU] {
            Glibc.signal(signal, SIG_IGN)
        }
        let logger = LoggingOptions.makeLogger(verbosity: verbosity)
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let summary = try Checkpoint.run(pid: pid, directory: directory, leaveRunning: leaveRunning, durable: sync, interruption: DumpInterruption(supervisor: supervisor), logger: logger)
            logger.info("dumped process \(summary.pid) (\(summary.comm)) and its tree: \(summary.processes) processes, \(summary.threads) threads, \(summary.areas) memory areas, \(summary.pageBytes >> 20) MiB of pages, in \(clock.now - start)")
        } catch {
            fail(error)
        }
        Glibc.exit(0)
    }
}
