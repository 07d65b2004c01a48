extension ProcFS {
    /// Every process this /proc shows (thread-group leaders), by PID, sorted.
    public static func processIDs() throws(LinuxError) -> [Int32] {
        try numericEntries("/proc")
    }
}
