import Amber
import ArgumentParser
import Glibc
import Logging

/// The options of every verb: a verb takes them all with one line, `@OptionGroup var global:
/// GlobalOptions`, and makes its logger with `global.makeLogger()`. (`--version` is
/// ArgumentParser's own, from the root command's configuration: it works after any verb.)
/// Parsing them (`validate`, which ArgumentParser calls for every option group) sets up what
/// they ask for: the log file opened, results as JSON.
struct GlobalOptions: ParsableArguments {
    @Flag(name: [.customShort("v"), .long], help: "Log each step to standard error (repeat for more detail).")
    var verbose: Int

    @Option(
        name: [.customShort("o"), .customLong("log-file")],
        help: ArgumentHelp(
            "Append the full log (-vv) to FILE, whatever -v shows on standard error.",
            discussion:
                "Created (mode 0600) if missing, else appended to: a dump, its worker and a later restore can share one file, each run starting with a line naming it. As root a symbolic link is refused.",
            valueName: "FILE"))
    var logFile: String?

    @Flag(
        name: .long,
        help:
            "Print the result as one JSON object on standard output, and nothing else there; on an error, {\"error\": {\"code\", \"message\"}} (the message goes to standard error too). `show` prints JSON anyway."
    )
    var json = false

    func validate() throws {
        ResultOutput.json = json
        if let logFile {
            do { try LogFile.open(logFile) } catch { fail(error) }
            LogFile.write(
                "amber \(AmberVersion.current) [\(getpid())] at \(LogFile.utcNow()): \(CommandLine.arguments.joined(separator: " "))\n"
            )
        }
    }

    func makeLogger() -> Logger { Self.makeLogger(verbosity: verbose) }

    /// Standard error shows notices, with -v debug and with -vv trace messages; the log file,
    /// when open, takes them all.
    static func makeLogger(verbosity: Int) -> Logger {
        let shown: Logger.Level = verbosity >= 2 ? .trace : verbosity == 1 ? .debug : .notice
        var logger = Logger(label: "amber") { _ in ElapsedLogHandler(standardErrorLevel: shown) }
        logger.logLevel = LogFile.isOpen ? .trace : shown
        return logger
    }
}

/// The file of `-o/--log-file`, open for appending in this process (the dump worker opens it again).
enum LogFile {
    // Set on the main thread while the command line is parsed, before any other thread runs.
    nonisolated(unsafe) private static var fd: Int32 = -1

    static var isOpen: Bool { fd >= 0 }

    /// Opens `path` for appending, creating it 0600 (a log may tell what a process holds). As
    /// root a symbolic link is not followed: one in a shared directory could make root append
    /// to any file, as the image directory's checks guard against too.
    static func open(_ path: String) throws(AmberError) {
        guard fd < 0 else { return }
        let noFollow = geteuid() == 0 ? O_NOFOLLOW : 0
        let opened = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | noFollow, 0o600)
        guard opened >= 0 else {
            let error = errno
            if error == ELOOP && noFollow != 0 {
                throw AmberError(
                    .failure,
                    "--log-file \(path): a symbolic link, which amber does not follow as root (it could make root append to any file)"
                )
            }
            throw AmberError(.failure, "--log-file \(path): cannot open it: \(String(cString: strerror(error)))")
        }
        fd = opened
    }

    /// Appends `text` in one write: lines of processes sharing the file stay whole.
    static func write(_ text: String) {
        guard fd >= 0 else { return }
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    /// The time now, in UTC, as 2026-12-06T20:48:47Z.
    static func utcNow() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var text = [CChar](repeating: 0, count: 32)
        strftime(&text, text.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(cString: text)
    }
}

/// Where a verb's result goes: text by default, one JSON object with --json.
enum ResultOutput {
    // Set on the main thread while the command line is parsed.
    nonisolated(unsafe) static var json = false

    /// Prints the result as one JSON object on its own line.
    static func emit(_ value: JSONValue) {
        print(value.text)
    }

    /// With --json: the error as the result, {"error": {"code": N, "name": ..., "message": ...}}.
    static func emit(error code: Int32, name: String, message: String) {
        guard json else { return }
        emit(["error": ["code": .integer(Int64(code)), "name": .string(name), "message": .string(message)]])
    }
}
