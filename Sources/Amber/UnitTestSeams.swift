import LinuxKit

// For the engine's unit tests only (Tests/AmberTests): values a live dump reads from /proc,
// given instead, so that a session can be made with no process.

extension ProcessName {
    init(pid: Int32, comm: String) {
        self.pid = pid
        self.comm = comm
    }
}

extension ProcessSnapshot {
    init(
        stat: ProcessStat, status: ProcessStatus, threadStatuses: [Int32: ProcessStatus], maps: [MemoryMapping] = [],
        pidNamespace: String = "?"
    ) {
        self.stat = stat
        self.status = status
        self.threadStatuses = threadStatuses
        self.maps = maps
        self.pidNamespace = pidNamespace
        descriptors = ProcessDescriptors(pid: stat.pid)
    }
}
