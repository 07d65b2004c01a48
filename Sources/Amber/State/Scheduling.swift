import AmberImage
import Glibc
import LinuxKit

/// Scheduling, per thread: policy and real-time priority, nice, CPU affinity, timer slack and
/// I/O priority. All are read from outside by TID (the timer slack only with CAP_SYS_NICE;
/// without it, by a call injected into the thread), and all but the timer slack are set so.
enum SchedulingState {
    /// One thread's, read by `injector` running in that thread.
    static func dump(_ injector: any SyscallInjecting, _ session: DumpSession) throws -> Amber_Scheduling {
        let tid = injector.tracee.pid
        let scheduling = session.scheduling
        var record = Amber_Scheduling()
        let policy = try scheduling.policy(of: tid)
        record.policy = UInt32(policy & ~TaskScheduling.resetOnFork)
        record.resetOnFork = policy & TaskScheduling.resetOnFork != 0
        record.rtPriority = UInt32(try scheduling.realtimePriority(of: tid))
        record.nice = try scheduling.nice(of: tid)
        record.affinity = try scheduling.affinity(of: tid).words
        record.timerSlackNs =
            try scheduling.timerSlack(of: tid)
            ?? injector.call(
                "prctl(PR_GET_TIMERSLACK)", SyscallNumber.prctl, ProcessControl.GetOption.timerSlack.argument)
        record.ioPriority = UInt32(try scheduling.ioPriority(of: tid))
        return record
    }

    /// Sets every thread's scheduling but its affinity, which `restoreAffinity` sets just before
    /// the tasks are let go (the restorer keeps them on its own CPU until then).
    static func restore(_ task: Amber_Task, _ session: RestoreSession) throws {
        let records = task.threads.map(\.scheduling)
        for (record, tracee) in zip(records, session.threads) {
            // Before the policy: a real-time thread's slack is the kernel's (0) whatever is set.
            if record.timerSlackNs != session.baseline.timerSlackNs {
                try session.injector(for: tracee).call(
                    "prctl(PR_SET_TIMERSLACK, \(record.timerSlackNs))", SyscallNumber.prctl, TaskControl.setTimerSlack,
                    record.timerSlackNs)
            }
            try session.scheduling.setIOPriority(Int32(record.ioPriority), of: tracee.pid)
            try session.scheduling.setNice(record.nice, of: tracee.pid)
            let policy = Int32(record.policy) | (record.resetOnFork ? TaskScheduling.resetOnFork : 0)
            try session.scheduling.setPolicy(policy, realtimePriority: Int32(record.rtPriority), of: tracee.pid)
        }
    }

    static func restoreAffinity(_ task: Amber_Task, _ session: RestoreSession) throws {
        let records = task.threads.map(\.scheduling)
        for (record, tracee) in zip(records, session.threads) where !record.affinity.isEmpty {
            do {
                try session.scheduling.setAffinity(CPUAffinity(words: record.affinity), of: tracee.pid)
            } catch {
                guard error.errno == .invalidArgument else { throw error }
                let mask = record.affinity.map { String($0, radix: 16) }
                throw AmberError(
                    .restoreFailed,
                    "cannot give thread \(tracee.pid) its CPU affinity \(mask): none of its CPUs is online here (\(error))"
                )
            }
        }
    }

    /// Refuses scheduling that is not restored: SCHED_DEADLINE, utilization clamps, a
    /// core-scheduling cookie, and a nice value of its autogroup (a restored session leader
    /// starts a new autogroup at nice 0).
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        for tid in (try? ProcFS.threads(pid: pid)) ?? [pid] {
            if let policy = try? TaskScheduling.policy(of: tid),
                policy & ~TaskScheduling.resetOnFork == TaskScheduling.deadlinePolicy
            {
                throw AmberError.unsupported(
                    process,
                    "has thread \(tid) under SCHED_DEADLINE: its runtime, deadline and period are not restored yet",
                    tree: tree)
            }
            if let clamp = try? TaskScheduling.utilizationClamp(of: tid), clamp != (0, 0), clamp != (0, 1024) {
                throw AmberError.unsupported(
                    process,
                    "has thread \(tid) with utilization clamps \(clamp.minimum)...\(clamp.maximum) (sched_setattr SCHED_FLAG_UTIL_CLAMP): not restored yet",
                    tree: tree)
            }
            if let cookie = TaskScheduling.coreSchedulingCookie(of: tid), cookie != 0 {
                throw AmberError.unsupported(
                    process,
                    "has thread \(tid) in a core-scheduling group (PR_SCHED_CORE cookie 0x\(String(cookie, radix: 16))): not restored yet",
                    tree: tree)
            }
        }
        // "/autogroup-N nice K"; absent without CONFIG_SCHED_AUTOGROUP.
        if let text = try? ProcFS.readText("/proc/\(pid)/autogroup"),
            let nice = text.split(whereSeparator: \.isWhitespace).last.flatMap({ Int($0) }), nice != 0
        {
            throw AmberError.unsupported(
                process, "is in an autogroup with nice \(nice) (/proc/\(pid)/autogroup): not restored yet", tree: tree)
        }
    }
}

/// Each thread's scheduling is dumped with the thread (`ThreadState`).
extension SchedulingState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    static var restoreSteps: [RestoreStep] {
        [
            RestoreStep("scheduling", order: 800) { try restore($0.task, $0) },
            // Once the whole tree is made: the restorer and its helpers share one CPU until then.
            RestoreStep("affinity", order: 100, phase: .tree) { try restoreAffinity($0.task, $0) },
        ]
    }
}
