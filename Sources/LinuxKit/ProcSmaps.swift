extension ProcFS {
    /// The VmFlags of every area in /proc/PID/smaps ("rd", "wr", "ac", "gd", ...), by start address.
    public static func memoryFlags(pid: Int32) throws(LinuxError) -> [UInt64: Set<String>] {
        try parseMemoryFlags(readText("/proc/\(pid)/smaps"))
    }

    public static func parseMemoryFlags(_ text: String) throws(LinuxError) -> [UInt64: Set<String>] {
        var flags: [UInt64: Set<String>] = [:]
        var current: UInt64?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("VmFlags:") {
                guard let start = current else { throw LinuxError(.invalidArgument, "parse /proc smaps: VmFlags before any area") }
                flags[start] = Set(line.dropFirst("VmFlags:".count).split(separator: " ").map(String.init))
            } else if let dash = line.firstIndex(of: "-"), let start = UInt64(line[..<dash], radix: 16),
                      line[line.index(after: dash)...].first?.isHexDigit == true {
                current = start
            }
        }
        return flags
    }
}
