internal import CLinux
import SystemPackage

/// One resource limit of a process, from /proc/PID/limits.
public struct ResourceLimitEntry: Sendable, Equatable {
    /// The RLIMIT_* number (RLIMIT_NOFILE is 7).
    public var resource: Int32
    /// UInt64.max means unlimited (RLIM_INFINITY).
    public var soft: UInt64
    public var hard: UInt64

    public init(resource: Int32, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }
}

/// RLIMIT_* numbers that Glibc's overlay does not name.
public enum ResourceLimit {
    public static let memoryLock: UInt32 = 8, nice: UInt32 = 13, realtimePriority: UInt32 = 14
    /// RLIMIT_NOFILE: one more than the highest descriptor number a process may open.
    public static let openFiles: UInt32 = 7

    /// Sets limit `resource` of process `pid` (prlimit(2): a process of the caller's user, or
    /// CAP_SYS_RESOURCE; a hard limit above the one it has needs CAP_SYS_RESOURCE too).
    public static func set(_ resource: UInt32, of pid: Int32, soft: UInt64, hard: UInt64) throws(LinuxError) {
        _ = try kernelResult(
            amber_prlimit_set(pid, Int32(resource), soft, hard), "prlimit \(resource) of process \(pid)"
        ).get()
    }
}

extension ProcFS {
    /// The row names of /proc/PID/limits, indexed by RLIMIT_* number.
    static let limitNames: [[UInt8]] = [
        "Max cpu time", "Max file size", "Max data size", "Max stack size",
        "Max core file size", "Max resident set", "Max processes", "Max open files",
        "Max locked memory", "Max address space", "Max file locks", "Max pending signals",
        "Max msgqueue size", "Max nice priority", "Max realtime priority", "Max realtime timeout",
    ].map { Array($0.utf8) }

    /// Parses the text of /proc/PID/limits, in the file's order.
    ///
    /// Rows are recognised by name, since the file names them rather than
    /// numbering them; the header and rows with unknown names are ignored.
    ///
    /// - Throws: `LinuxError(.invalidArgument, "parse /proc limits line N")`
    ///   when a known row's values are malformed.
    public static func parseLimits(_ text: String) throws(LinuxError) -> [ResourceLimitEntry] {
        try parseLimits(bytes: Array(text.utf8)[...])
    }

    static func parseLimits(bytes: ArraySlice<UInt8>) throws(LinuxError) -> [ResourceLimitEntry] {
        var result: [ResourceLimitEntry] = []
        for (index, line) in ProcText.lines(bytes).enumerated() {
            guard
                let resource = limitNames.firstIndex(where: { name in
                    line.count > name.count && line.starts(with: name)
                        && ProcText.isBlank(line[line.startIndex + name.count])
                })
            else { continue }
            let values = ProcText.words(line.dropFirst(limitNames[resource].count))
            guard values.count >= 2, let soft = limitValue(values[0]), let hard = limitValue(values[1]) else {
                throw ProcText.malformed("limits line \(index + 1)")
            }
            result.append(ResourceLimitEntry(resource: Int32(resource), soft: soft, hard: hard))
        }
        return result
    }

    private static let unlimited = Array("unlimited".utf8)

    private static func limitValue(_ text: ArraySlice<UInt8>) -> UInt64? {
        text.elementsEqual(unlimited) ? UInt64.max : ProcText.unsigned(text)
    }
}
