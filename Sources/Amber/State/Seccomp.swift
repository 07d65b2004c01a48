import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit

/// Seccomp: each thread's mode (strict or filter) and chain of classic BPF filters. Read with
/// PTRACE_SECCOMP_GET_FILTER, installed again by injected seccomp(2) calls after everything
/// else the restorer injects. PTRACE_O_SUSPEND_SECCOMP keeps the calls injected by dump and
/// restore out of the filters' reach.
enum SeccompState {
    /// The initial user namespace has a fixed inode (PROC_USER_INIT_INO); PID 1's link may be unreadable.
    private static let initialUserNamespace = "user:[4026531837]"

    // MARK: Checks

    /// Refuses a process under seccomp when amber may not read its filters or suspend them.
    /// `status` is the process's: it shows the leader's mode, so only other threads' are read.
    /// The privileges are looked at first: with them, nothing needs each thread's status.
    static func check(pid: Int32, status: ProcessStatus, process: ProcessName, tree: ProcessName) throws {
        let leaderMode = status.seccompMode ?? 0
        guard leaderMode != 0 || status.threads > 1, let missing = missingPrivilege() else { return }
        let others = status.threads > 1 ? ((try? ProcFS.threads(pid: pid)) ?? []).filter { $0 != pid } : []
        let modes = [leaderMode] + others.compactMap { try? ProcFS.threadStatus(pid: pid, tid: $0).seccompMode }
        guard let mode = modes.first(where: { $0 != 0 }) else { return }
        throw AmberError.unsupported(
            process,
            "runs under seccomp (mode \(mode)), and amber \(missing): reading its filters (PTRACE_SECCOMP_GET_FILTER) and suspending them while injecting (PTRACE_O_SUSPEND_SECCOMP) need CAP_SYS_ADMIN in the initial user namespace and a tracer not under seccomp itself",
            tree: tree)
    }

    /// What amber lacks to dump or restore seccomp, or nil.
    private static func missingPrivilege() -> String? {
        guard let own = try? ProcFS.status(pid: getpid()) else { return "cannot read its own status" }
        if let mode = own.seccompMode, mode != 0 { return "runs under seccomp itself (mode \(mode))" }
        let effective = own.capabilities?.effective ?? 0
        if effective & 1 << Capability.sysAdmin == 0 { return "lacks CAP_SYS_ADMIN" }
        if (try? ProcFS.link("/proc/self/ns/user")) != initialUserNamespace {
            return "is not in the initial user namespace"
        }
        return nil
    }

    // MARK: Dump

    /// Suspends seccomp in every thread of a frozen process that has any, before anything is
    /// injected into it: an injected call would otherwise be filtered (or kill the process).
    /// Added to the options the dump seized with; detaching clears them.
    static func suspend(_ process: FrozenProcess) throws {
        guard process.snapshot.threadStatuses.values.contains(where: { ($0.seccompMode ?? 0) != 0 }) else { return }
        for tracee in process.threads { try tracee.setOptions(dumpOptions.union(.suspendSeccomp)) }
    }

    /// Every thread's mode and chain; nothing is recorded for a process without seccomp.
    static func dump(_ session: DumpSession, into task: inout Amber_Task) throws {
        var table = FilterTable()
        var byTID: [Int32: Amber_SeccompThread] = [:]
        for tracee in session.threads {
            byTID[tracee.pid] = try dump(tracee, session, &table)
        }
        guard byTID.values.contains(where: { $0.mode != .disabled }) else { return }
        task.seccomp.filters = table.filters
        for index in task.threads.indices {
            task.threads[index].seccomp = byTID[task.threads[index].tid] ?? Amber_SeccompThread()
        }
    }

    private static func dump(_ tracee: Tracee, _ session: DumpSession, _ table: inout FilterTable) throws
        -> Amber_SeccompThread
    {
        let status = try session.threadStatus(tracee.pid)
        var record = Amber_SeccompThread()
        switch status.seccompMode ?? 0 {
        case 0: return record
        case 1:
            record.mode = .strict
            return record
        case 2: record.mode = .filter
        case let mode:
            throw AmberError.unsupported(
                session.name, "has thread \(tracee.pid) in seccomp mode \(mode), which amber does not know")
        }
        var parent: Int?
        var index: UInt64 = 0
        while let program = try tracee.seccompFilter(index: index) {
            let flags = try tracee.seccompFilterFlags(index: index)
            let entry = try table.entry(parent: parent, program: program, flags: flags) { () throws(AmberError) in
                try checkRestorable(program, flags: flags, what: "filter \(index) of thread \(tracee.pid)", session)
            }
            record.chain.append(UInt32(entry))
            parent = entry
            index += 1
        }
        // A filter PTRACE_SECCOMP_GET_FILTER cannot return (not classic BPF) fails above with EMEDIUMTYPE.
        if let shown = status.fields["Seccomp_filters"].flatMap({ Int($0) }), shown != record.chain.count {
            throw AmberError(
                .failure,
                "thread \(tracee.pid) of process \(session.name) has \(shown) seccomp filters by /proc, but ptrace returned \(record.chain.count)"
            )
        }
        return record
    }

    /// Refuses what installing the program again would not reproduce: flags other than LOG, and
    /// a filter that hands calls to a user-space supervisor, whose listener (an fd, possibly in
    /// another process) amber cannot recreate.
    private static func checkRestorable(_ program: [UInt8], flags: UInt64, what: String, _ session: DumpSession)
        throws(AmberError)
    {
        if flags & ~Seccomp.filterFlagLog != 0 {
            throw AmberError.unsupported(
                session.name,
                "has seccomp \(what) with flags 0x\(String(flags, radix: 16)), which amber cannot install again")
        }
        let hasUserNotification = program.withUnsafeBytes { bytes in
            stride(from: 0, to: bytes.count, by: 8).contains { offset in
                bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self) == Seccomp.returnConstant
                    && bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) & Seccomp.returnActionMask
                        == Seccomp.returnUserNotification
            }
        }
        if hasUserNotification {
            throw AmberError.unsupported(
                session.name,
                "has seccomp \(what), which hands system calls to a user-space supervisor (SECCOMP_RET_USER_NOTIF): its listener cannot be restored"
            )
        }
    }

    /// The distinct filters of a process: one entry per filter and everything older than it,
    /// so that threads sharing a chain (inherited, or synced with TSYNC) share the entries.
    private struct FilterTable {
        private struct Key: Hashable {
            let parent: Int?
            let program: [UInt8]
            let flags: UInt64
        }
        private var entries: [Key: Int] = [:]
        private(set) var filters: [Amber_SeccompFilter] = []

        mutating func entry(parent: Int?, program: [UInt8], flags: UInt64, checkNew: () throws(AmberError) -> Void)
            throws(AmberError) -> Int
        {
            let key = Key(parent: parent, program: program, flags: flags)
            if let existing = entries[key] { return existing }
            try checkNew()
            var filter = Amber_SeccompFilter()
            filter.program = Data(program)
            filter.flags = flags
            filters.append(filter)
            entries[key] = filters.count - 1
            return filters.count - 1
        }
    }

    // MARK: Restore

    /// Installs every thread's filters, oldest first, then puts strict-mode threads into strict
    /// mode: after everything else that is injected but the clean-up, which the suspension set
    /// here lets through until the tasks are detached. Filters that all threads share are
    /// installed once with SECCOMP_FILTER_FLAG_TSYNC, so that they are one kernel filter again
    /// (a later TSYNC by the program needs that); each thread's own filters follow. Runs while
    /// the helper is still root: without no_new_privs, a filter needs CAP_SYS_ADMIN.
    static func restore(_ task: Amber_Task, _ session: RestoreSession) throws {
        let records = task.threads.map(\.seccomp)
        guard records.contains(where: { $0.mode != .disabled }) else { return }
        for tracee in session.threads {
            do {
                try tracee.setOptions(helperOptions.union(.suspendSeccomp))
            } catch {
                guard error.errno == .notPermitted else { throw error }
                throw AmberError(
                    .restoreFailed,
                    "process \(task.pid) runs under seccomp, and suspending it while amber injects into it (PTRACE_O_SUSPEND_SECCOMP) needs CAP_SYS_ADMIN in the initial user namespace: \(error)"
                )
            }
        }
        let injectors = try session.threads.map { tracee throws(LinuxError) in
            try session.injector(for: tracee)
        }
        let chains = records.map(\.chain)
        let shared = chains.dropFirst().reduce(chains[0]) { common, chain in
            Array(zip(common, chain).prefix { $0 == $1 }.map(\.0))
        }
        if !shared.isEmpty {
            // TSYNC gives the caller's no_new_privs to every thread: call it from one without, if any.
            let flags = task.threads.map(\.threadFlags)
            let caller = injectors[flags.firstIndex { !$0.noNewPrivs } ?? 0]
            let sync = injectors.count > 1 ? Seccomp.filterFlagTSync : 0
            for index in shared {
                try install(task.seccomp.filters[Int(index)], index: index, extraFlags: sync, caller, session)
            }
        }
        for (record, injector) in zip(records, injectors) {
            for index in record.chain.dropFirst(shared.count) {
                try install(task.seccomp.filters[Int(index)], index: index, extraFlags: 0, injector, session)
            }
        }
        for (record, injector) in zip(records, injectors) where record.mode == .strict {
            try injector.call("seccomp(SECCOMP_SET_MODE_STRICT)", SyscallNumber.seccomp, Seccomp.setModeStrict, 0, 0)
        }
    }

    /// seccomp(SECCOMP_SET_MODE_FILTER) with the program and its struct sock_fprog in the scratch area.
    private static func install(
        _ filter: Amber_SeccompFilter, index: UInt32, extraFlags: UInt64, _ injector: any SyscallInjecting,
        _ session: RestoreSession
    ) throws {
        var arguments = session.arguments()
        let instructions = try arguments.place([UInt8](filter.program))
        let program = Seccomp.Program(
            instructionCount: UInt16(filter.program.count / Seccomp.Program.instructionSize), filter: instructions)
        let fprog = try arguments.place(program.bytes)
        let flags = filter.flags | extraFlags
        let result = try injector.call(
            "seccomp(SECCOMP_SET_MODE_FILTER, 0x\(String(flags, radix: 16))) of filter \(index)", SyscallNumber.seccomp,
            Seccomp.setModeFilter, flags, fprog)
        // With TSYNC, a thread that could not be synced is named by its TID.
        if result != 0 {
            throw AmberError(
                .restoreFailed,
                "seccomp filter \(index) of process \(session.task.pid) could not be synced to thread \(result)")
        }
    }
}

extension SeccompState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, status: process.status, process: process.name, tree: process.tree)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            // Before any call is injected: a filter could refuse the injected calls.
            DumpStep("seccomp-suspend", .frozen) { process, _ in try suspend(process.process) },
            DumpStep("seccomp", .traced) { process, _ in try dump(process.session, into: &process.task) },
        ]
    }

    /// After everything the restorer injects but credentials and flags: a filter could refuse those calls.
    static var restoreSteps: [RestoreStep] { [RestoreStep("seccomp", order: 1000) { try restore($0.task, $0) }] }
}
