import SystemPackage

/// One POSIX timer of a process, from /proc/PID/timers.
public struct PosixTimerEntry: Sendable, Equatable {
    public var id: Int32
    public var signal: Int32
    /// sigev_value, as a pointer-sized word.
    public var value: UInt64
    /// SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD 2, or-ed with SIGEV_THREAD_ID 4 for a timer aimed at one thread.
    public var notify: Int32
    /// The process or (SIGEV_THREAD_ID) thread it signals, as the reader's PID namespace sees it.
    public var target: Int32
    public var clock: Int32
}

extension ProcFS {
    public static func posixTimers(pid: Int32) throws(LinuxError) -> [PosixTimerEntry] {
        try parsePosixTimers(try readText("/proc/\(pid)/timers"))
    }

    private static let notifyKinds = ["signal": Int32(0), "none": 1, "thread": 2]

    /// Parses the text of /proc/PID/timers: per timer the lines "ID: n", "signal: n/value-in-hex",
    /// "notify: kind/pid.n" (or "kind/tid.n") and "ClockID: n".
    ///
    /// - Throws: `LinuxError(.invalidArgument, "parse /proc timers …")` for malformed text.
    public static func parsePosixTimers(_ text: String) throws(LinuxError) -> [PosixTimerEntry] {
        var timers: [PosixTimerEntry] = []
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { throw ProcText.malformed("timers line \"\(line)\"") }
            let key = line[..<colon]
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
            if key == "ID" {
                guard let id = Int32(value) else { throw ProcText.malformed("timers ID \"\(value)\"") }
                timers.append(PosixTimerEntry(id: id, signal: 0, value: 0, notify: 0, target: 0, clock: 0))
                continue
            }
            guard !timers.isEmpty else { throw ProcText.malformed("timers: \"\(line)\" before the first ID") }
            let parts = value.split(separator: "/", maxSplits: 1)
            switch key {
            case "signal":
                guard parts.count == 2, let signal = Int32(parts[0]), let word = UInt64(parts[1], radix: 16) else {
                    throw ProcText.malformed("timers signal \"\(value)\"")
                }
                timers[timers.count - 1].signal = signal
                timers[timers.count - 1].value = word
            case "notify":
                let target = parts.count == 2 ? parts[1].split(separator: ".", maxSplits: 1) : []
                guard parts.count == 2, let kind = notifyKinds[String(parts[0])], target.count == 2,
                    target[0] == "pid" || target[0] == "tid", let id = Int32(target[1])
                else {
                    throw ProcText.malformed("timers notify \"\(value)\"")
                }
                timers[timers.count - 1].notify = kind | (target[0] == "tid" ? 4 : 0)
                timers[timers.count - 1].target = id
            case "ClockID":
                guard let clock = Int32(value) else { throw ProcText.malformed("timers ClockID \"\(value)\"") }
                timers[timers.count - 1].clock = clock
            default:
                continue
            }
        }
        return timers
    }
}
