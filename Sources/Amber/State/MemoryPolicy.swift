import AmberImage
import Glibc
import LinuxKit

/// NUMA memory policy: the process's (set_mempolicy) and each area's (mbind). Not restored yet:
/// a policy other than the default is refused by name.
enum MemoryPolicyState {
    /// /proc/PID/numa_maps shows each area's policy, the process's where the area has none of
    /// its own: every line must say "default".
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        guard let text = try? ProcFS.readText("/proc/\(pid)/numa_maps") else { return }
        if let (address, policy) = firstPolicy(inNumaMaps: text) {
            throw refusal(policy, at: address, process: process, tree: tree)
        }
    }

    /// The first area numa_maps shows with a policy other than "default": its start (hex) and
    /// the policy in numa_maps' words.
    private static func firstPolicy(inNumaMaps text: String) -> (address: Substring, policy: Substring)? {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 2)
            guard words.count >= 2, words[1] != "default" else { continue }
            return (words[0], words[1])
        }
        return nil
    }

    private static func refusal(
        _ policy: some StringProtocol, at address: some StringProtocol, process: ProcessName, tree: ProcessName
    ) -> AmberError {
        AmberError.unsupported(
            process, "has the NUMA memory policy \(policy) at 0x\(address) (set_mempolicy or mbind): not restored yet",
            tree: tree)
    }

    /// numa_maps walks every page table entry of the process to count its pages by node (25 ms
    /// for 1 GiB in 4 KiB pages at a load of 8, about 100 ns a page), where asking the frozen
    /// process takes one injected get_mempolicy per area and one for its own policy (16 µs each
    /// in the same minutes: 25 of them 0.4 ms), about as long as numa_maps takes for this many
    /// pages.
    static let pagesPerAskedArea: UInt64 = 256

    /// Whether the frozen process is asked (the traced step) rather than its numa_maps read
    /// again (the frozen check): when its areas span more than `pagesPerAskedArea` pages each on
    /// average. Decided from its frozen areas alone, so that both passes decide alike.
    static func asksProcess(_ maps: [MemoryMapping]) -> Bool {
        let pages = maps.reduce(0) { $0 + ($1.end - $1.start) / 4096 }
        return pages > UInt64(maps.count + 1) * pagesPerAskedArea
    }

    /// Traced step: what numa_maps shows, asked of the process. get_mempolicy without an address
    /// gives the leader's own policy (numa_maps shows the /proc/PID task's); with MPOL_F_ADDR
    /// at an area's start, the area's own (for shared memory, its policy there, as numa_maps
    /// shows it), the default where it has none. A policy other than the default is refused
    /// in numa_maps' words when it shows it too.
    static func ask(_ session: DumpSession, areas: [MemoryMapping], process: ProcessName, tree: ProcessName) throws {
        var arguments = session.arguments()
        let mode = try arguments.reserve(MemoryLayout<Int32>.size)
        func policy(at address: UInt64?) throws -> Int32 {
            try session.injector.call(
                "get_mempolicy", SyscallNumber.getMempolicy, mode, 0, 0, address ?? 0,
                address == nil ? 0 : MemoryPolicyFlags.address)
            return try arguments.read(mode, as: Int32.self)
        }
        var found = try policy(at: nil)
        var foundAt: UInt64?
        // The gate page ([vsyscall]) is no area of the process's own: it has the process's policy.
        for area in areas where found == MemoryPolicyFlags.defaultMode && area.path != "[vsyscall]" {
            found = try policy(at: area.start)
            foundAt = area.start
        }
        guard found != MemoryPolicyFlags.defaultMode else { return }
        if let text = try? session.proc.readText("/proc/\(session.pid)/numa_maps"),
            let (address, policy) = firstPolicy(inNumaMaps: text)
        {
            throw refusal(policy, at: address, process: process, tree: tree)
        }
        let place = foundAt.map { "the area at 0x\(String($0, radix: 16))" } ?? "the process"
        throw AmberError.unsupported(
            process,
            "has a NUMA memory policy (set_mempolicy or mbind; get_mempolicy mode \(found)) for \(place): not restored yet",
            tree: tree)
    }
}

extension MemoryPolicyState {
    /// Each thread has a policy of its own (set_mempolicy sets the caller's), which neither
    /// numa_maps nor get_mempolicy in the leader shows: the threads step asks every other thread
    /// for its own, and one other than the default is refused.
    private static func checkThread(_ injector: any SyscallInjecting, _ session: DumpSession) throws {
        guard injector.tracee.pid != session.pid else { return }
        var arguments = session.arguments()
        let mode = try arguments.reserve(MemoryLayout<Int32>.size)
        try injector.call("get_mempolicy", SyscallNumber.getMempolicy, mode, 0, 0, 0, 0)
        let found = try arguments.read(mode, as: Int32.self)
        guard found == MemoryPolicyFlags.defaultMode else {
            throw AmberError.unsupported(
                session.name,
                "has a thread (\(injector.tracee.pid)) with a NUMA memory policy of its own (set_mempolicy; get_mempolicy mode \(found)): not restored yet"
            )
        }
    }
}

extension MemoryPolicyState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        // Frozen (seized by amber), a process asked by the traced step is not walked here.
        if process.status.tracerPID == getpid(), asksProcess(process.maps) { return }
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("memory-policy", .traced) { dump, _ in
                let areas = dump.process.snapshot.maps
                guard asksProcess(areas) else { return }
                try ask(dump.session, areas: areas, process: dump.name, tree: dump.tree)
            }
        ]
    }

    static var threadChecks: [ThreadCheck<Void>] {
        [ThreadCheck { injector, session, _ in try checkThread(injector, session) }]
    }
}
