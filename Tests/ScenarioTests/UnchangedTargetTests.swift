// A dump with --leave-running only reads: everything /proc shows of the target is the same
// after it as before, but for what running costs (CPU time, context switches, the CPU it last
// ran on), which the injected calls spend as the target's own, and what other processes
// change: the user's queued signals (SigQ) and how pages are shared (smaps' Pss, Shared_* and
// Private_*) or aged (Referenced, which any read of a page sets, amber's too).

import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class UnchangedTargetTests: ScenarioTestCase {
    func testLeaveRunningLeavesEverythingProcShowsAsItWas() throws {
        _ = try requireAmber()
        let p = try start(.unchanged)
        // A thread caught on its way into the call it sleeps in shows running: the view taken
        // is one read twice alike.
        var before = ProcView(pid: p.pid)
        for _ in 0..<100 {
            Sys.sleep(milliseconds: 10)
            let again = ProcView(pid: p.pid)
            if again.entries == before.entries { break }
            before = again
        }
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), r.summary)
        // Let go, each thread goes back into the call it sleeps in: until then its state,
        // syscall and wchan show it running. A real change stays; wait until all is back.
        var after = ProcView(pid: p.pid)
        let deadline = Sys.now() + Self.verdictTimeout
        while after.entries != before.entries && Sys.now() < deadline {
            Sys.sleep(milliseconds: 10)
            after = ProcView(pid: p.pid)
        }
        for (key, value) in before.entries.sorted(by: { $0.key < $1.key }) where after.entries[key] != value {
            let old = value.split(separator: "\n", omittingEmptySubsequences: false)
            let new = (after.entries[key] ?? "(gone)").split(separator: "\n", omittingEmptySubsequences: false)
            let line = (0..<min(old.count, new.count)).first { old[$0] != new[$0] } ?? min(old.count, new.count)
            let area = old[..<min(line, old.count)].last { $0.contains("-") && $0.first?.isHexDigit == true } ?? ""
            XCTFail(
                "\(key) changed at line \(line + 1) \(area):\n  before: \(line < old.count ? old[line] : "(none)")\n  after:  \(line < new.count ? new[line] : "(none)")"
            )
        }
        for key in after.entries.keys.sorted() where before.entries[key] == nil {
            XCTFail("\(key) appeared: \(after.entries[key]!)")
        }
        try terminateAndExpectPass(p, "after dump --leave-running")
    }
}

/// What /proc shows of a process and its threads, by "file" or "file:field".
struct ProcView {
    private(set) var entries: [String: String] = [:]

    /// Lines of status files that count what running costs, or what other processes change.
    static let runningCosts: Set<String> = ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches", "SigQ"]
    /// Lines of smaps that other processes change.
    static let sharing = ["Pss", "Shared_", "Private_", "Referenced", "SwapPss"]
    /// Fields of stat files (1-based) that do: utime, stime, and the CPU it last ran on.
    static let runningCostFields: Set<Int> = [14, 15, 39]

    init(pid: pid_t) {
        let base = "/proc/\(pid)"
        entries["smaps"] = (Sys.readText("\(base)/smaps") ?? "").split(separator: "\n")
            .filter { line in !Self.sharing.contains { line.hasPrefix($0) } }.joined(separator: "\n")
        for file in [
            "maps", "limits", "timers", "personality", "oom_score_adj", "oom_score", "timerslack_ns",
            "cgroup", "environ", "cmdline", "comm", "wchan", "syscall", "loginuid", "sessionid", "auxv",
            "mountinfo", "statm", "mem_flags_unused",
        ] {
            if let text = Sys.readText("\(base)/\(file)") { entries[file] = text }
        }
        for link in ["cwd", "exe", "root"]
            + ((try? FileManager.default.contentsOfDirectory(atPath: "\(base)/ns")) ?? []).map({ "ns/\($0)" })
        {
            entries[link] = Sys.readlink("\(base)/\(link)")
        }
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "\(base)/fd")) ?? [] {
            entries["fd/\(fd)"] = Sys.readlink("\(base)/fd/\(fd)")
            entries["fdinfo/\(fd)"] = Sys.readText("\(base)/fdinfo/\(fd)")
        }
        for tid in Proc.threads(pid) {
            let task = "\(base)/task/\(tid)"
            for line in (Sys.readText("\(task)/status") ?? "").split(separator: "\n") {
                let key = line.prefix { $0 != ":" }
                guard !Self.runningCosts.contains(String(key)) else { continue }
                entries["task/\(tid)/status:\(key)"] = String(line)
            }
            if let stat = Sys.readText("\(task)/stat"), let close = stat.lastIndex(of: ")") {
                entries["task/\(tid)/stat:comm"] = String(stat[...close])
                for (index, field) in stat[stat.index(after: close)...].split(separator: " ").enumerated() {
                    // Fields after the name are numbered from 3.
                    guard !Self.runningCostFields.contains(index + 3) else { continue }
                    entries["task/\(tid)/stat:\(index + 3)"] = String(field)
                }
            }
            for file in ["comm", "syscall", "wchan"] {
                entries["task/\(tid)/\(file)"] = Sys.readText("\(task)/\(file)")
            }
        }
    }
}
