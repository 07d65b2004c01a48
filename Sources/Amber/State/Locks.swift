import LinuxKit

/// File locks and leases: not restored yet, so a process holding one is refused rather than
/// coming back without it (a database mid-transaction would lose its locks).
enum LockState {
    /// Each descriptor's fdinfo, not /proc/locks: reading /proc/locks takes the kernel's file
    /// lock semaphore for writing, which waits for an RCU grace period (8 ms here, per read).
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        for fd in try ProcFS.fileDescriptors(pid: pid) {
            guard let lock = try ProcFS.fileLocks(pid: pid, fd: fd).first else { continue }
            let path = (try? ProcFS.fileDescriptorPath(pid: pid, fd: fd)) ?? "fd \(fd)"
            throw AmberError.unsupported(process, "holds \(description(of: lock)) on \(path) (fd \(fd)): file locks are not supported yet", tree: tree)
        }
    }

    private static func description(of lock: FileLock) -> String {
        let mode = lock.mode.lowercased()
        switch lock.kind {
        case .flock: return "a flock \(mode) lock"
        case .posix: return "a POSIX (fcntl F_SETLK) \(mode) lock"
        case .openFileDescription: return "an OFD (fcntl F_OFD_SETLK) \(mode) lock"
        case .lease: return "a \(mode) lease (fcntl F_SETLEASE)"
        case .other(let name): return "a \(name) \(mode) lock"
        }
    }
}

extension LockState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }
}
