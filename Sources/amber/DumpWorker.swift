import Amber
import AmberImage
import Glibc

/// `amber dump` does not trace anything itself: it starts a worker (this binary again) that
/// does the dump, waits for it and exits with its status. SIGKILL to `amber dump` then cannot
/// leave a target stopped in the middle of an injected call, as the death of a tracer would
/// (its tracees run on with whatever registers it had set): the worker sees that it was
/// orphaned and undoes what it did (see `DumpInterruption`).
///
/// The worker starts first thing, before ArgumentParser reads `amber dump`'s command line: a
/// parse is about 3 ms, the worker's own start about 4, and they overlap. Its command line is
/// `amber --dump-worker SUPERVISOR FD`; `amber dump`'s own arguments (those after `dump`, once
/// they parsed) follow on the pipe FD, each ended by NUL, and the worker parses them again as a
/// `DumpCommand`: a new flag of `amber dump` reaches the worker with nothing else to change. A
/// command line that does not parse, or asks for help, closes the pipe empty, and the worker
/// exits saying nothing.
struct DumpWorker {
    static let flag = "--dump-worker"

    let supervisor: pid_t
    /// `amber dump`'s command line, parsed again in the worker.
    let command: DumpCommand

    /// The worker started, waiting for its arguments on the pipe `arguments` writes to.
    private struct Started {
        let pid: pid_t
        let arguments: Int32
    }

    // Set and taken on the main thread only, before and after the parse.
    nonisolated(unsafe) private static var started: Started?

    /// In `amber dump`, before its command line is parsed: starts the worker. If amber exits
    /// without handing it arguments, it closes the pipe and waits for the worker to be gone.
    static func startEarly() {
        started = try? spawn()
        atexit {
            guard let worker = DumpWorker.started else { return }
            DumpWorker.started = nil
            close(worker.arguments)
            var status: Int32 = 0
            while waitpid(worker.pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    /// The worker, for the signal handlers of `amber dump` (set before they are installed).
    nonisolated(unsafe) private static var workerPID: pid_t = 0

    /// In `amber dump`: hands the worker `arguments` (those after `dump`, which parsed as
    /// `command`), waits for it and exits as it did (128+N if signal N killed it). SIGINT,
    /// SIGTERM and SIGHUP are passed on to the worker, which stops the dump, and `amber dump`
    /// exits as it does: 11, or 0 if the image was complete.
    static func start(_ command: DumpCommand, arguments: [String]) -> Never {
        let worker: Started
        if let started = Self.started {
            worker = started
        } else {
            do { worker = try Self.spawn() } catch { fail(error) }
        }
        Self.started = nil
        var fields = [UInt8]()
        for argument in arguments {
            fields += Array(argument.utf8) + [0]
        }
        var written = 0
        while written < fields.count {
            let count = fields.withUnsafeBytes {
                write(worker.arguments, $0.baseAddress! + written, $0.count - written)
            }
            guard count > 0 || errno == EINTR else { break }
            written += max(count, 0)
        }
        close(worker.arguments)
        Self.workerPID = worker.pid
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            Glibc.signal(signal) { signal in _ = kill(DumpWorker.workerPID, signal) }
        }
        var status: Int32 = 0
        while waitpid(worker.pid, &status, 0) < 0 {
            guard errno == EINTR else {
                fail(AmberError(.failure, "waiting for the dump worker \(worker.pid): errno \(errno)"))
            }
        }
        let signal = status & 0x7f
        // A worker killed by a signal could not take its network lock off: its supervisor does.
        if signal != 0 && command.tcpEstablished { NetworkLock.removeLock(ofDump: worker.pid, tree: command.pid) }
        Glibc.exit(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }

    private static func spawn() throws(AmberError) -> Started {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink("/proc/self/exe", &buffer, buffer.count)
        guard length > 0 else {
            throw AmberError(.failure, "cannot find amber's own binary (/proc/self/exe): errno \(errno)")
        }
        // By its own path rather than /proc/self/exe, so that its name (comm) is amber's.
        let binary = String(decoding: buffer[..<length], as: UTF8.self)
        // The worker inherits the reading end only: it sees the end of the arguments when we close ours.
        var ends: [Int32] = [-1, -1]
        guard Glibc.pipe(&ends) == 0, fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0 else {
            throw AmberError(.failure, "cannot make a pipe for the dump worker: errno \(errno)")
        }
        defer { close(ends[0]) }
        var attributes = posix_spawnattr_t()
        var worker: pid_t = 0
        do throws(AmberError) {
            try check("posix_spawnattr_init", posix_spawnattr_init(&attributes))
            defer { posix_spawnattr_destroy(&attributes) }
            // Its own process group: a signal to ours (^C, a kill of the job) does not reach it.
            try check("posix_spawnattr_setpgroup", posix_spawnattr_setpgroup(&attributes, 0))
            try check("posix_spawnattr_setflags", posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP)))
            let words: [String] = [binary, flag, "\(getpid())", "\(ends[0])"]
            var argv = words.map { strdup($0) } + [nil]
            defer { for argument in argv { free(argument) } }
            try check("posix_spawn \(binary)", posix_spawn(&worker, binary, nil, &attributes, &argv, environ))
        } catch {
            close(ends[1])
            throw error
        }
        return Started(pid: worker, arguments: ends[1])
    }

    /// posix_spawn and its attribute calls return an error number rather than setting errno.
    private static func check(_ call: String, _ result: Int32) throws(AmberError) {
        guard result == 0 else {
            throw AmberError(.failure, "cannot start the dump worker: \(call): \(String(cString: strerror(result)))")
        }
    }

    /// In the worker (`amber --dump-worker SUPERVISOR FD`): waits for its arguments, then does
    /// the dump; exits at once when `amber dump` sent none. Returns when this is no worker.
    static func runIfWorker(_ arguments: [String]) {
        guard arguments.count == 4, arguments[1] == flag, let supervisor = pid_t(arguments[2]) else { return }
        guard let input = Int32(arguments[3]) else { Glibc.exit(1) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: Int(PATH_MAX) + 64)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        close(input)
        guard !bytes.isEmpty else { Glibc.exit(0) }
        let arguments = bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast().map {
            String(decoding: $0, as: UTF8.self)
        }
        let command: DumpCommand
        do {
            command = try DumpCommand.parse(arguments)
        } catch {
            fail(AmberError(.failure, "the dump worker cannot parse what amber dump parsed: \(error)"))
        }
        DumpWorker(supervisor: supervisor, command: command).run()
    }

    /// In the worker: does the dump. No signal stops it half-way: SIGINT, SIGTERM and SIGHUP
    /// (from `amber dump`, which passes them on) make it stop at its next step, as it does when
    /// it notices that `amber dump` is gone; it writes on when its terminal or reader is gone.
    func run() -> Never {
        DumpInterruption.prepareForSignals()
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            Glibc.signal(signal) { signal in DumpInterruption.requestStop(signal: signal) }
        }
        for signal in [SIGQUIT, SIGPIPE, SIGTTOU] {
            Glibc.signal(signal, SIG_IGN)
        }
        let logger = command.global.makeLogger()
        let clock = ContinuousClock()
        let start = clock.now
        var storage = ImageStorage(compress: command.compress)
        if let keyFile = command.encryption.keyFile {
            do {
                storage.encryptionKey = try ImageEncryptionKey(file: keyFile)
            } catch {
                fail(AmberError(.failure, "--encrypt-key \(keyFile): \(error.detail)"))
            }
        }
        let directory = command.directory ?? ""
        ProgressLine.start("dump")
        do {
            let summary = try Checkpoint.run(
                pid: command.pid, directory: directory, leaveRunning: command.leaveRunning, durable: command.sync,
                externalFiles: Set(command.externalFiles), shellJob: command.shellJob,
                interruption: DumpInterruption(supervisor: supervisor), tcpEstablished: command.tcpEstablished,
                copyOnWrite: command.copyOnWrite, previous: command.previous, pageServer: command.pageServer,
                storage: storage, logger: logger)
            ProgressLine.finish()
            let frozenTenths = summary.frozenNanoseconds / 100_000
            let elapsed = clock.now - start
            logger.info(
                "dumped process \(summary.pid) (\(summary.comm)) and its tree: \(summary.processes) processes, \(summary.threads) threads, \(summary.areas) memory areas, \(summary.pageBytes >> 20) MiB of pages, in \(elapsed), frozen for \(frozenTenths / 10).\(frozenTenths % 10) ms"
            )
            var served: PostCopy.Served?
            if command.lazyPages, let port = command.port {
                // The dump is over: a signal now ends the serving, as it would `amber page-server`.
                for signal in [SIGINT, SIGTERM, SIGHUP] { Glibc.signal(signal, SIG_DFL) }
                served = servePostCopy(
                    directory: directory, address: command.address, port: port, verb: "dump", logger: logger)
            }
            if command.global.json {
                ResultOutput.emit(
                    [
                        "pid": .integer(Int64(summary.pid)), "comm": .string(summary.comm),
                        "pids": .array(summary.pids.map { .integer(Int64($0)) }),
                        "processes": .integer(Int64(summary.processes)), "threads": .integer(Int64(summary.threads)),
                        "memoryAreas": .integer(Int64(summary.areas)),
                        "memoryBytes": .integer(Int64(summary.pageBytes)),
                        // Sent to a page server, the image is on the other host.
                        "imageBytes": command.pageServer == nil
                            ? .integer(Int64(ImageSize.of(directory: directory))) : .null,
                        "leftRunning": .bool(command.leaveRunning),
                        "milliseconds": .milliseconds(elapsed),
                        "frozenMilliseconds": .milliseconds(nanoseconds: summary.frozenNanoseconds),
                        "phaseMilliseconds": .object(
                            summary.phases.map { ($0.name, .milliseconds(nanoseconds: $0.nanoseconds)) }),
                        "served": served?.json ?? .null,
                    ])
            }
        } catch {
            fail(error)
        }
        Glibc.exit(0)
    }
}
