import AmberImage
import LinuxKit

/// NUMA memory policy: the process's (set_mempolicy) and each area's (mbind). Not restored yet:
/// a policy other than the default is refused by name.
enum MemoryPolicyState {
    /// /proc/PID/numa_maps shows each area's policy, the process's where the area has none of
    /// its own: every line must say "default".
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        guard let text = try? ProcFS.readText("/proc/\(pid)/numa_maps") else { return }
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 2)
            guard words.count >= 2, words[1] != "default" else { continue }
            throw AmberError.unsupported(
                process,
                "has the NUMA memory policy \(words[1]) at 0x\(words[0]) (set_mempolicy or mbind): not restored yet",
                tree: tree)
        }
    }
}

extension MemoryPolicyState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }
}
