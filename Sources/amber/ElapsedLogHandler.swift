import Glibc
import Logging

/// Writes each message with the milliseconds since amber started, so that a verbose log shows
/// where a slow or failed dump or restore spent its time: `amber +12.3 ms debug: created 51
/// processes` on standard error from `standardErrorLevel` on, and every message, with the
/// process's PID, to the log file of -o when one is open.
struct ElapsedLogHandler: LogHandler {
    var logLevel: Logger.Level = .notice
    var metadata: Logger.Metadata = [:]
    let standardErrorLevel: Logger.Level

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// When amber started (the first logger made), on the monotonic clock.
    private static let start = monotonicNanoseconds()

    private static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    init(standardErrorLevel: Logger.Level) {
        self.standardErrorLevel = standardErrorLevel
        _ = Self.start
    }

    func log(event: LogEvent) {
        let tenths = (Self.monotonicNanoseconds() - Self.start) / 100_000
        let extra = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let details =
            extra.isEmpty
            ? "" : " " + extra.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let line = "+\(tenths / 10).\(tenths % 10) ms \(event.level): \(event.message)\(details)\n"
        if event.level >= standardErrorLevel { FileHandleOutput.standardError("amber \(line)") }
        LogFile.write("amber[\(getpid())] \(line)")
    }
}
