import AmberImage
import Glibc
import LinuxKit

/// Credentials of each thread: user and group IDs (real, effective, saved, filesystem),
/// supplementary groups, the five capability sets and securebits (keep-caps among them).
/// no_new_privs is a thread flag (`FlagState`), set after these.
enum CredentialState {
    // MARK: Dump

    /// The credentials of the thread `injector` runs in: its /proc status for all but securebits.
    static func dump(_ injector: any SyscallInjecting, status: ProcessStatus, _ session: DumpSession) throws
        -> Amber_Credentials
    {
        let tid = injector.tracee.pid
        var record = try credentials(status, what: "/proc/\(session.pid)/task/\(tid)/status")
        record.securebits = UInt32(
            try injector.call(
                "prctl(PR_GET_SECUREBITS)", SyscallNumber.prctl, ProcessControl.GetOption.securebits.argument))
        record.loginUid = try loginUID(pid: session.pid, tid: tid)
        return record
    }

    /// The restorer's own credentials: what every helper starts with.
    static func restorerCredentials() throws -> Amber_Credentials {
        var own = try credentials(ProcFS.status(pid: getpid()), what: "/proc/self/status")
        own.securebits = try ProcessControl.securebits()
        own.loginUid = try loginUID(pid: getpid(), tid: getpid())
        return own
    }

    /// Everything but securebits, from a status file.
    private static func credentials(_ status: ProcessStatus, what: String) throws(LinuxError) -> Amber_Credentials {
        guard let uids = status.userIDs, let gids = status.groupIDs, let groups = status.supplementaryGroups,
            let caps = status.capabilities
        else {
            throw LinuxError(.invalidArgument, "read Uid, Gid, Groups and Cap* lines of \(what)")
        }
        var record = Amber_Credentials()
        (record.uid, record.euid, record.suid, record.fsuid) = (uids.real, uids.effective, uids.saved, uids.filesystem)
        (record.gid, record.egid, record.sgid, record.fsgid) = (gids.real, gids.effective, gids.saved, gids.filesystem)
        record.groups = groups
        record.capInheritable = caps.inheritable
        record.capPermitted = caps.permitted
        record.capEffective = caps.effective
        record.capBounding = caps.bounding
        record.capAmbient = caps.ambient
        return record
    }

    /// Refuses a task in another user namespace than amber's: its IDs and capabilities mean
    /// something else there, and restoring them here would grant them over this namespace.
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        let own = try ownUserNamespace.get()
        guard let namespace = try? ProcFS.link("/proc/\(pid)/ns/user") else { return }
        if namespace != own {
            throw AmberError.unsupported(
                process, "is in another user namespace (\(namespace), amber's is \(own)): not supported", tree: tree)
        }
        // The security module's contexts (SELinux, AppArmor, Smack): a restored task gets amber's.
        for attribute in ["current", "exec", "fscreate", "keycreate", "sockcreate"] {
            guard let context = try? ProcFS.readText("/proc/\(pid)/attr/\(attribute)") else { continue }
            let amber = (try? ProcFS.readText("/proc/self/attr/\(attribute)")) ?? ""
            if context != amber {
                throw AmberError.unsupported(
                    process,
                    "has the security context \"\(context.trimmingSuffixNewline)\" (/proc/\(pid)/attr/\(attribute)), amber \"\(amber.trimmingSuffixNewline)\": not restored yet",
                    tree: tree)
            }
        }
    }

    /// amber's own, which it never leaves.

    private static let ownUserNamespace = Result { () throws(LinuxError) in try ProcFS.link("/proc/self/ns/user") }

    // MARK: Checks before restore

    /// Refuses, before any task is made, an image whose credentials the restorer could not give:
    /// the kernel's own rules for setresuid, setgroups, capset, PR_CAPBSET_DROP and
    /// PR_SET_SECUREBITS, applied to the restorer's credentials, which every helper inherits.
    /// A restored task is never given more than the caller holds.
    static func checkRestorable(_ tasks: [Amber_Task]) throws(AmberError) {
        let restorer: Amber_Credentials
        let lastCapability: Int
        let uidMap: [ClosedRange<UInt32>]
        let gidMap: [ClosedRange<UInt32>]
        do {
            uidMap = try idMap("/proc/self/uid_map")
            gidMap = try idMap("/proc/self/gid_map")
            restorer = try restorerCredentials()
            lastCapability = try ProcFS.number("/proc/sys/kernel/cap_last_cap") { Int($0) }
        } catch {
            throw AmberError(.failure, "cannot read the restorer's own credentials: \(error)")
        }
        let known: UInt64 = lastCapability >= 63 ? .max : (1 << UInt64(lastCapability + 1)) - 1
        for task in tasks where !task.zombie {
            for thread in task.threads where thread.hasCredentials {
                let who =
                    thread.tid == task.pid
                    ? "process \(task.pid) (\(task.comm))"
                    : "thread \(thread.tid) of process \(task.pid) (\(task.comm))"
                let image = thread.credentials
                let all =
                    image.capInheritable | image.capPermitted | image.capEffective | image.capBounding
                    | image.capAmbient
                if all & ~known != 0 {
                    throw AmberError(
                        .incompatibleHost,
                        "\(who) holds capabilities \(names(all & ~known)) this kernel does not know (its last is \(lastCapability))"
                    )
                }
                let unmappedUIDs = [image.uid, image.euid, image.suid, image.fsuid].filter { id in
                    !uidMap.contains { $0.contains(id) }
                }
                let unmappedGIDs = ([image.gid, image.egid, image.sgid, image.fsgid] + image.groups).filter { id in
                    !gidMap.contains { $0.contains(id) }
                }
                let unmapped = [
                    unmappedUIDs.isEmpty ? nil : "uids \(list(unmappedUIDs))",
                    unmappedGIDs.isEmpty ? nil : "gids \(list(unmappedGIDs))",
                ].compactMap(\.self)
                if !unmapped.isEmpty {
                    throw AmberError(
                        .permissionDenied,
                        "\(who) runs under \(unmapped.joined(separator: " and ")), which amber's user namespace does not map (/proc/self/uid_map, gid_map): restore it in a namespace that maps them"
                    )
                }
                if let problem = excess(image, over: restorer) {
                    throw AmberError(
                        .permissionDenied,
                        "\(who) \(problem): amber gives a restored task no credentials the restorer does not hold")
                }
            }
        }
    }

    /// The IDs of the parent user namespace that ours maps, from uid_map or gid_map lines
    /// "inside outside count": IDs are seen (and set) as the inside ones.
    private static func idMap(_ path: String) throws -> [ClosedRange<UInt32>] {
        try ProcFS.readText(path).split(separator: "\n").compactMap { line in
            let fields = line.split(whereSeparator: \.isWhitespace).compactMap { UInt64($0) }
            guard fields.count == 3, fields[2] > 0 else { return nil }
            return UInt32(clamping: fields[0])...UInt32(clamping: min(fields[0] + fields[2] - 1, UInt64(UInt32.max)))
        }
    }

    /// What of `image` the kernel would not let a task with `own` credentials take, or nil.
    private static func excess(_ image: Amber_Credentials, over own: Amber_Credentials) -> String? {
        func has(_ cap: Int) -> Bool { own.capEffective & (1 << UInt64(cap)) != 0 }
        // Without CAP_SETUID, setresuid takes only the caller's real, effective and saved IDs,
        // and setfsuid those (after setresuid) or the filesystem ID it leaves unchanged.
        func allowed(_ ids: [UInt32], fs: UInt32, own: [UInt32], ownFS: UInt32) -> Bool {
            ids.allSatisfy(own.contains) && (ids.contains(fs) || (ids == own && fs == ownFS))
        }
        let uids = [image.uid, image.euid, image.suid]
        let gids = [image.gid, image.egid, image.sgid]
        let ownUIDs = [own.uid, own.euid, own.suid]
        let ownGIDs = [own.gid, own.egid, own.sgid]
        if !has(Capability.setuid), !allowed(uids, fs: image.fsuid, own: ownUIDs, ownFS: own.fsuid) {
            return
                "has user IDs \(list(uids + [image.fsuid])) (real, effective, saved, filesystem) and the restorer, with \(list(ownUIDs + [own.fsuid])), lacks CAP_SETUID"
        }
        if !has(Capability.setgid), !allowed(gids, fs: image.fsgid, own: ownGIDs, ownFS: own.fsgid) {
            return
                "has group IDs \(list(gids + [image.fsgid])) (real, effective, saved, filesystem) and the restorer, with \(list(ownGIDs + [own.fsgid])), lacks CAP_SETGID"
        }
        if !has(Capability.setgid), Set(image.groups) != Set(own.groups) {
            return
                "has supplementary groups \(list(image.groups)), the restorer \(list(own.groups)) and lacks CAP_SETGID"
        }
        if image.capPermitted & ~own.capPermitted != 0 {
            return
                "holds capabilities \(names(image.capPermitted & ~own.capPermitted)) outside the restorer's permitted set"
        }
        if image.capBounding & ~own.capBounding != 0 {
            return
                "has capabilities \(names(image.capBounding & ~own.capBounding)) in its bounding set that the restorer's lacks"
        }
        if image.capBounding != own.capBounding, !has(Capability.setpcap) {
            return
                "has a smaller bounding set than the restorer, which lacks CAP_SETPCAP to drop \(names(own.capBounding & ~image.capBounding))"
        }
        let inheritableBeyond =
            image.capInheritable & ~own.capInheritable & ~(has(Capability.setpcap) ? .max : own.capPermitted)
        if inheritableBeyond != 0 || image.capInheritable & ~(own.capInheritable | own.capBounding) != 0 {
            return
                "has inheritable capabilities \(names(image.capInheritable & ~own.capInheritable)) the restorer may not raise"
        }
        if image.capAmbient != 0, own.securebits & Securebits.noCapAmbientRaise != 0 {
            return
                "has ambient capabilities \(names(image.capAmbient)) and the restorer has SECBIT_NO_CAP_AMBIENT_RAISE"
        }
        let changed = image.securebits ^ own.securebits
        if changed & Securebits.keepCaps != 0, own.securebits & Securebits.keepCapsLocked != 0 {
            return
                "has keep-caps \(image.securebits & Securebits.keepCaps != 0 ? "on" : "off"), locked otherwise in the restorer"
        }
        if changed & ~Securebits.keepCaps != 0 {
            if !has(Capability.setpcap) {
                return
                    "has securebits 0x\(String(image.securebits, radix: 16)), the restorer 0x\(String(own.securebits, radix: 16)) and lacks CAP_SETPCAP"
            }
            if changed & (own.securebits & Securebits.locks) >> 1 != 0
                || own.securebits & Securebits.locks & ~image.securebits != 0
            {
                return
                    "has securebits 0x\(String(image.securebits, radix: 16)) that the restorer's locked securebits 0x\(String(own.securebits, radix: 16)) forbid"
            }
        }
        return nil
    }

    private static func list(_ ids: [UInt32]) -> String { "(" + ids.map(String.init).joined(separator: ", ") + ")" }

    private static let capabilityNames = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]

    /// "CAP_NET_ADMIN, CAP_SYS_BOOT" for a mask.
    static func names(_ mask: UInt64) -> String {
        (0..<64).filter { mask & (1 << UInt64($0)) != 0 }.map(name(of:)).joined(separator: ", ")
    }

    static func name(of capability: Int) -> String {
        capability < capabilityNames.count ? capabilityNames[capability] : "capability \(capability)"
    }

    // MARK: Restore

    /// The capabilities of the restorer's bounding set that no thread of the image has in its
    /// bounding or inheritable set: every helper drops them itself as it starts (before any
    /// process is cloned from it, so each inherits the smaller set), rather than each restored
    /// thread by an injected PR_CAPBSET_DROP per capability. A capability of an image's
    /// inheritable set stays until its thread's credentials are restored: capset raises no
    /// inheritable capability outside the bounding set. Helpers' effective and permitted sets
    /// are untouched: a bounding set limits only what execve grants and capset may raise.
    static func helperBoundingDrop(_ tasks: [Amber_Task]) -> UInt64 {
        guard let restorer = try? ProcFS.status(pid: getpid()).capabilities else { return 0 }
        var kept: UInt64 = 0
        for task in tasks where !task.zombie {
            for thread in task.threads {
                guard thread.hasCredentials else { return 0 }
                kept |= thread.credentials.capBounding | thread.credentials.capInheritable
            }
        }
        return restorer.bounding & ~kept
    }

    /// Gives every thread its credentials by calls injected into that thread (each changes only
    /// the caller). After everything that needs the helper's privilege, before `FlagState`:
    /// a change of effective or filesystem ID clears the parent-death signal and resets dumpable.
    static func restore(_ task: Amber_Task, _ session: RestoreSession) throws {
        // Every helper thread still has the restorer's credentials: only others need setting.
        for (record, tracee) in zip(task.threads, session.threads)
        where record.hasCredentials && record.credentials != session.baseline.credentials {
            session.credentialsChanged = true
            let injector = try session.injector(for: tracee)
            try restore(record.credentials, injector, session)
        }
    }

    /// The order: keep-caps on and inheritable set while the helper still holds CAP_SETPCAP;
    /// bounding drops; groups and IDs; effective raised again to the kept permitted set (a
    /// change from euid 0 cleared it) for the filesystem IDs, ambient raises and securebits;
    /// last the image's permitted, effective and inheritable sets.
    private static func restore(_ image: Amber_Credentials, _ injector: any SyscallInjecting, _ session: RestoreSession)
        throws
    {
        let tid = injector.tracee.pid
        func current() throws -> Amber_Credentials {
            var now = try credentials(
                ProcFS.threadStatus(pid: session.pid, tid: tid), what: "/proc/\(session.pid)/task/\(tid)/status")
            now.securebits = UInt32(
                try injector.call(
                    "prctl(PR_GET_SECUREBITS)", SyscallNumber.prctl, ProcessControl.GetOption.securebits.argument))
            now.loginUid = try loginUID(pid: session.pid, tid: tid)
            return now
        }
        var now = try current()
        if now == image { return }
        // Whether a call changed the thread since `now` was read: it is read again only then,
        // and a call whose result `now` already holds is not made.
        var stale = false
        if image.loginUid != now.loginUid {
            try setLoginUID(image.loginUid, injector, session)
            stale = true
        }
        let idsChange = [image.uid, image.euid, image.suid] != [now.uid, now.euid, now.suid]
        // Keeps the permitted set through a change away from uid 0 (unless locked off).
        if idsChange, now.securebits & (Securebits.keepCaps | Securebits.keepCapsLocked) == 0 {
            try injector.call("prctl(PR_SET_KEEPCAPS, 1)", SyscallNumber.prctl, TaskControl.setKeepCapabilities, 1)
            stale = true
        }
        if image.capInheritable != now.capInheritable {
            try setCapabilities(
                effective: now.capEffective, permitted: now.capPermitted, inheritable: image.capInheritable, injector,
                session)
            stale = true
        }
        for cap in 0..<64 where now.capBounding & ~image.capBounding & (1 << UInt64(cap)) != 0 {
            try injector.call(
                "prctl(PR_CAPBSET_DROP, \(names(1 << UInt64(cap))))", SyscallNumber.prctl,
                TaskControl.capabilityBoundingSetDrop, UInt64(cap))
            stale = true
        }
        if image.groups.sorted() != now.groups.sorted() {
            try setGroups(image.groups, injector, session)
            stale = true
        }
        if [image.gid, image.egid, image.sgid] != [now.gid, now.egid, now.sgid] {
            try injector.call(
                "setresgid(\(image.gid), \(image.egid), \(image.sgid))", SyscallNumber.setresgid, UInt64(image.gid),
                UInt64(image.egid), UInt64(image.sgid))
            stale = true
        }
        if idsChange {
            try injector.call(
                "setresuid(\(image.uid), \(image.euid), \(image.suid))", SyscallNumber.setresuid, UInt64(image.uid),
                UInt64(image.euid), UInt64(image.suid))
            stale = true
        }
        if stale { (now, stale) = (try current(), false) }
        if now.capEffective != now.capPermitted {
            try setCapabilities(
                effective: now.capPermitted, permitted: now.capPermitted, inheritable: image.capInheritable, injector,
                session)
            stale = true
        }
        // setfs[ug]id returns the old ID, never an error: the check at the end reads the result.
        // Setting the ID a thread has already changes nothing.
        if stale || image.fsgid != now.fsgid {
            try injector.call("setfsgid(\(image.fsgid))", SyscallNumber.setfsgid, UInt64(image.fsgid))
            stale = true
        }
        if stale || image.fsuid != now.fsuid {
            try injector.call("setfsuid(\(image.fsuid))", SyscallNumber.setfsuid, UInt64(image.fsuid))
            stale = true
        }
        if image.capAmbient != now.capAmbient {
            try injector.call(
                "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)", SyscallNumber.prctl, TaskControl.capabilityAmbient,
                TaskControl.ambientClearAll, 0, 0, 0)
            for cap in 0..<64 where image.capAmbient & (1 << UInt64(cap)) != 0 {
                try injector.call(
                    "prctl(PR_CAP_AMBIENT_RAISE, \(names(1 << UInt64(cap))))", SyscallNumber.prctl,
                    TaskControl.capabilityAmbient, TaskControl.ambientRaise, UInt64(cap), 0, 0)
            }
            stale = true
        }
        if stale { (now, stale) = (try current(), false) }
        if (image.securebits ^ now.securebits) & ~Securebits.keepCaps != 0 {
            try injector.call(
                "prctl(PR_SET_SECUREBITS, 0x\(String(image.securebits, radix: 16)))", SyscallNumber.prctl,
                TaskControl.setSecurebits, UInt64(image.securebits))
            stale = true
        } else if image.securebits != now.securebits {
            try injector.call(
                "prctl(PR_SET_KEEPCAPS, \(image.securebits & Securebits.keepCaps != 0 ? 1 : 0))", SyscallNumber.prctl,
                TaskControl.setKeepCapabilities, image.securebits & Securebits.keepCaps != 0 ? 1 : 0)
            stale = true
        }
        if stale || now.capEffective != image.capEffective || now.capPermitted != image.capPermitted
            || now.capInheritable != image.capInheritable
        {
            try setCapabilities(
                effective: image.capEffective, permitted: image.capPermitted, inheritable: image.capInheritable,
                injector, session)
        }
        let result = try current()
        guard result == image else {
            throw AmberError(
                .restoreFailed,
                "thread \(tid) of process \(session.pid) came out with credentials \(describe(result)), not the image's \(describe(image))"
            )
        }
    }

    private static func loginUID(pid: Int32, tid: Int32) throws -> UInt32 {
        try ProcFS.number("/proc/\(pid)/task/\(tid)/loginuid") { UInt32($0) }
    }

    /// Only the task itself may write its loginuid, and only while it holds CAP_AUDIT_CONTROL:
    /// before the IDs change.
    private static func setLoginUID(_ value: UInt32, _ injector: any SyscallInjecting, _ session: RestoreSession) throws
    {
        let path = Array("/proc/thread-self/loginuid".utf8) + [0]
        let text = Array(String(value).utf8)
        var arguments = session.arguments()
        let pathAddress = try arguments.place(path)
        let textAddress = try arguments.place(text)
        let fd = try injector.call(
            "open /proc/thread-self/loginuid", SyscallNumber.openat, UInt64(bitPattern: Int64(AT_FDCWD)), pathAddress,
            UInt64(O_WRONLY | O_CLOEXEC))
        defer { _ = try? injector.call("close", SyscallNumber.close, fd) }
        try injector.call("write loginuid \(value)", SyscallNumber.write, fd, textAddress, UInt64(text.count))
    }

    private static func describe(_ c: Amber_Credentials) -> String {
        func hex(_ value: UInt64) -> String { String(value, radix: 16) }
        return
            "uids \(list([c.uid, c.euid, c.suid, c.fsuid])) gids \(list([c.gid, c.egid, c.sgid, c.fsgid])) groups \(list(c.groups)) "
            + "caps inh \(hex(c.capInheritable)) prm \(hex(c.capPermitted)) eff \(hex(c.capEffective)) bnd \(hex(c.capBounding)) amb \(hex(c.capAmbient)) securebits \(hex(UInt64(c.securebits))) loginuid \(c.loginUid)"
    }

    /// capset(2), version 3, for the calling thread: the header and both words of each set go
    /// through the scratch area.
    private static func setCapabilities(
        effective: UInt64, permitted: UInt64, inheritable: UInt64, _ injector: any SyscallInjecting,
        _ session: RestoreSession
    ) throws {
        var arguments = session.arguments()
        let header = try arguments.place(CapsetArguments.header)
        let data = try arguments.place(
            CapsetArguments(effective: effective, permitted: permitted, inheritable: inheritable).data)
        try injector.call(
            "capset(effective \(String(effective, radix: 16)), permitted \(String(permitted, radix: 16)), inheritable \(String(inheritable, radix: 16)))",
            SyscallNumber.capset, header, data)
    }

    /// setgroups(2): the list goes through the scratch area, or a temporary mapping when it is
    /// longer (up to NGROUPS_MAX, 256 KiB).
    private static func setGroups(_ groups: [UInt32], _ injector: any SyscallInjecting, _ session: RestoreSession)
        throws
    {
        let size = groups.count * 4
        guard size > RestoreSession.scratchSize else {
            var arguments = session.arguments()
            let address = try arguments.place(groups.withUnsafeBytes { Array($0) })
            try injector.call(
                "setgroups(\(groups.count) groups)", SyscallNumber.setgroups, UInt64(groups.count), address)
            return
        }
        let length = UInt64((size + 4095) & ~4095)
        let area = try injector.call(
            "mmap groups", SyscallNumber.mmap, 0, length, UInt64(PROT_READ | PROT_WRITE),
            UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
        defer { _ = try? injector.call("munmap groups", SyscallNumber.munmap, area, length) }
        _ = try groups.withUnsafeBytes { bytes throws(LinuxError) in try session.memory.write(bytes, to: [(area, size)])
        }
        try injector.call("setgroups(\(groups.count) groups)", SyscallNumber.setgroups, UInt64(groups.count), area)
    }
}

extension Amber_Task {
    /// The credentials the process acts with as a whole (opening its files, owning its session
    /// keyring): its leader's; nil for a zombie, or when none are recorded.
    var processCredentials: Amber_Credentials? {
        guard let leader = threads.first, leader.hasCredentials else { return nil }
        return leader.credentials
    }
}

extension String {
    fileprivate var trimmingSuffixNewline: Substring { self.last == "\n" ? self.dropLast() : self[...] }
}

/// Each thread's credentials are dumped with the thread (`ThreadState`).
extension CredentialState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    /// Last but for the flags: nothing the restorer does after needs a privilege the task has given up.
    static var restoreSteps: [RestoreStep] { [RestoreStep("credentials", order: 1100) { try restore($0.task, $0) }] }
}
