import Amber
import Glibc

/// `amber dump` does not trace anything itself: it starts a worker (this binary again, with
/// `--worker-of` its PID) that does the dump, waits for it and exits with its status. SIGKILL to
/// `amber dump` then cannot leave a target stopped in the middle of an injected call, as the
/// death of a tracer would (its tracees run on with whatever registers it had set): the worker
/// sees that it was orphaned and undoes what it did (see `DumpInterruption`).
enum DumpSupervisor {
    /// Runs the worker and exits as it did (128+N if signal N killed it).
    static func runWorker() -> Never {
        let arguments = CommandLine.arguments + ["--worker-of", "\(getpid())"]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        // Its own process group: a signal to ours (^C, a kill of the job) does not reach it.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        // By its own path rather than /proc/self/exe, so that its name (comm) is amber's.
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink("/proc/self/exe", &buffer, buffer.count)
        guard length > 0 else {
            fail(AmberError(.failure, "cannot find amber's own binary (/proc/self/exe): errno \(errno)"))
        }
        let binary = String(decoding: buffer[..<length], as: UTF8.self)
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

    /// In the worker: no signal meant for the user's `amber dump` stops it half-way; it
    /// notices that `amber dump` is gone instead, and writes on when its terminal or reader is gone.
    static func becomeWorker() {
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTTOU] {
            Glibc.signal(signal, SIG_IGN)
        }
    }
}
