/// /proc as the engine's kinds of state read (and write) it: `LiveProcFS` reads the real one,
/// a fake in the engine's unit tests serves files from a table. Only the file-level
/// operations are requirements; the typed readers parse what they return with `ProcFS`'s
/// parsers, so a fake is given the files' text.
public protocol ProcReading: Sendable {
    /// A whole file.
    func read(_ path: String) throws(LinuxError) -> [UInt8]
    /// The target of a symbolic link.
    func link(_ path: String) throws(LinuxError) -> String
    /// Writes `text` to a file in one write.
    func write(_ text: String, to path: String) throws(LinuxError)
}

/// The real /proc, through `ProcFS`.
public struct LiveProcFS: ProcReading {
    public init() {}

    public func read(_ path: String) throws(LinuxError) -> [UInt8] { try ProcFS.read(path) }
    public func link(_ path: String) throws(LinuxError) -> String { try ProcFS.link(path) }
    public func write(_ text: String, to path: String) throws(LinuxError) { try ProcFS.write(text, to: path) }
}

/// The readers of `ProcFS` the kinds use, over any `ProcReading`.
extension ProcReading {
    /// A whole file as UTF-8 text (invalid bytes replaced).
    public func readText(_ path: String) throws(LinuxError) -> String {
        ProcText.string(try read(path))
    }

    /// The one value of a file that holds a number, its first word as `parse` reads it.
    public func number<T>(_ path: String, _ parse: (Substring) -> T?) throws(LinuxError) -> T {
        let bytes = try read(path)
        guard let line = ProcText.lines(bytes[...]).first, let word = ProcText.words(line).first,
            let value = parse(ProcText.string(word)[...])
        else {
            throw LinuxError(.invalidArgument, "parse \(path) \"\(ProcText.string(bytes))\"")
        }
        return value
    }

    /// Reads `path` and parses it, naming the path in a parse error.
    private func parse<T>(_ path: String, _ parser: (ArraySlice<UInt8>) throws(LinuxError) -> T) throws(LinuxError) -> T
    {
        let bytes = try read(path)
        do {
            return try parser(bytes[...])
        } catch {
            throw LinuxError(error.errno, "\(path): \(error.operation)")
        }
    }

    public func limits(pid: Int32) throws(LinuxError) -> [ResourceLimitEntry] {
        try parse("/proc/\(pid)/limits", ProcFS.parseLimits(bytes:))
    }

    public func posixTimers(pid: Int32) throws(LinuxError) -> [PosixTimerEntry] {
        try ProcFS.parsePosixTimers(try readText("/proc/\(pid)/timers"))
    }

    public func cwd(pid: Int32) throws(LinuxError) -> String {
        try link("/proc/\(pid)/cwd")
    }
}
