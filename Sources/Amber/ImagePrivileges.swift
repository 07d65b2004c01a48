import AmberImage
import Glibc
import LinuxKit

/// Something an image asks the restorer to do for a task that needs a privilege beyond what a
/// task inherits from it: the restorer (often root) would do it with its own rights.
public struct PrivilegedRequest: Sendable, CustomStringConvertible {
    /// "process 12 (x)" or "thread 13 of process 12 (x)".
    public let who: String
    public let what: String
    /// Capabilities any one of which allows it.
    public let capabilities: [Int]
    /// Whether the task's own credentials in the image (its permitted set) hold one of them:
    /// then it could have done it itself.
    public let heldByTask: Bool

    public var privilege: String { capabilities.map { CredentialState.name(of: $0) }.joined(separator: " or ") }

    public var description: String {
        "\(who): \(what) (needs \(privilege)\(heldByTask ? ", which its credentials hold" : ", which its credentials lack"))"
    }
}

/// Every act of the restorer on a task's behalf that needs a privilege (docs/security.md,
/// "What the restorer's privileges do for a task"), judged against the task's own credentials
/// in the image. For an image that is not authenticated, and not trusted with --trust-image,
/// each one the task's credentials do not allow is refused before any task is made. The open
/// files a task may not open itself are the other such act: `RestoreSession.openAsTask`.
public enum ImagePrivileges {
    /// CLOCK_REALTIME_ALARM and CLOCK_BOOTTIME_ALARM: their timers wake the system from suspend.
    private static let alarmClocks: [Int32: String] = [
        CLOCK_REALTIME_ALARM: "CLOCK_REALTIME_ALARM", CLOCK_BOOTTIME_ALARM: "CLOCK_BOOTTIME_ALARM",
    ]
    private static let unsetLoginUID = UInt32.max

    static let resourceNames = [
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
        "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    ]

    /// What every helper inherits from the restorer, against which the image's asks are measured.
    struct Baseline {
        let credentials: Amber_Credentials
        /// Soft and hard limit by resource.
        let limits: [UInt32: (soft: UInt64, hard: UInt64)]
        let nice: Int32
        let oomScoreAdj: Int32
        /// /proc/sys/fs/pipe-max-size: the largest pipe capacity a task may set without CAP_SYS_RESOURCE.
        let pipeMaximumCapacity: Int64

        static func ofRestorer() throws -> Baseline {
            var limits: [UInt32: (soft: UInt64, hard: UInt64)] = [:]
            for resource in 0..<UInt32(resourceNames.count) {
                var limit = rlimit()
                guard getrlimit(__rlimit_resource_t(resource), &limit) == 0 else {
                    throw LinuxError.current("getrlimit(\(resource))")
                }
                limits[resource] = (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
            }
            return Baseline(
                credentials: try CredentialState.restorerCredentials(),
                limits: limits,
                nice: try TaskScheduling.nice(of: 0),
                oomScoreAdj: try ProcFS.number("/proc/self/oom_score_adj") { Int32($0) },
                pipeMaximumCapacity: try PipeBuffer.maximumCapacity())
        }
    }

    /// Every privileged ask of the image, whether or not the task's credentials allow it.
    public static func requests(_ tasks: [Amber_Task]) throws(AmberError) -> [PrivilegedRequest] {
        let baseline: Baseline
        do {
            baseline = try Baseline.ofRestorer()
        } catch {
            throw AmberError(.failure, "cannot read the restorer's own limits and credentials: \(error)")
        }
        return tasks.filter { !$0.zombie }.flatMap { requests(of: $0, baseline) }
    }

    /// Refuses, with exit code 4, the first ask that the task's own credentials do not allow.
    static func refuseUnheld(_ tasks: [Amber_Task], authenticity: ImageAuthenticity) throws(AmberError) {
        guard let request = try requests(tasks).first(where: { !$0.heldByTask }) else { return }
        throw AmberError(
            .permissionDenied,
            "\(request.who) asks for \(request.what), which needs \(request.privilege); its credentials in the image lack it, and the image is \(authenticity): amber does not grant it with its own rights (restore with --trust-image only an image you trust)"
        )
    }

    private static func requests(of task: Amber_Task, _ baseline: Baseline) -> [PrivilegedRequest] {
        guard let leader = task.threads.first else { return [] }
        func who(_ thread: Amber_Thread) -> String {
            thread.tid == task.pid
                ? "process \(task.pid) (\(task.comm))" : "thread \(thread.tid) of process \(task.pid) (\(task.comm))"
        }
        func credentials(_ thread: Amber_Thread) -> Amber_Credentials {
            thread.hasCredentials ? thread.credentials : baseline.credentials
        }
        func request(_ thread: Amber_Thread, _ what: String, _ capabilities: [Int]) -> PrivilegedRequest {
            let permitted = credentials(thread).capPermitted
            return PrivilegedRequest(
                who: who(thread), what: what, capabilities: capabilities,
                heldByTask: capabilities.contains { permitted & (1 << UInt64($0)) != 0 })
        }
        // The image's limits are in force when scheduling is restored; the restorer's otherwise.
        let imageLimits = Dictionary(
            task.environment.limits.map { ($0.resource, $0) }, uniquingKeysWith: { first, _ in first })
        func soft(_ resource: UInt32) -> UInt64 { imageLimits[resource]?.soft ?? baseline.limits[resource]?.soft ?? 0 }

        var found: [PrivilegedRequest] = []
        for limit in task.environment.limits {
            guard let own = baseline.limits[limit.resource], limit.hard > own.hard else { continue }
            let name =
                limit.resource < resourceNames.count ? resourceNames[Int(limit.resource)] : "resource \(limit.resource)"
            found.append(
                request(
                    leader, "a hard \(name) of \(limitText(limit.hard)), above the restorer's \(limitText(own.hard))",
                    [Capability.sysResource]))
        }
        for timer in task.timers.posixTimers {
            guard let clock = alarmClocks[timer.clock] else { continue }
            found.append(request(leader, "POSIX timer \(timer.id) on \(clock)", [Capability.wakeAlarm]))
        }
        // The restorer locks the areas while it holds its own CAP_IPC_LOCK, past the task's limit.
        let locked = task.memory.areas.filter(\.locked).reduce(UInt64(0)) { $0 + ($1.end - $1.start) }
        if locked > soft(ResourceLimit.memoryLock) {
            found.append(
                request(
                    leader,
                    "\(locked / 1024) KiB of locked memory, above its RLIMIT_MEMLOCK \(limitText(soft(ResourceLimit.memoryLock)))",
                    [Capability.ipcLock]))
        }
        if task.processFlags.oomScoreAdj < baseline.oomScoreAdj {
            found.append(
                request(
                    leader,
                    "oom_score_adj \(task.processFlags.oomScoreAdj), below the restorer's \(baseline.oomScoreAdj)",
                    [Capability.sysResource]))
        }
        for description in task.files.descriptions {
            for ask in OpenFileKinds.privilegedAsks(description, owner: credentials(leader), restorer: baseline) {
                found.append(request(leader, ask.what, ask.capabilities))
            }
        }
        for ask in MappedUnnamedFiles.privilegedAsks(task.memory, owner: credentials(leader)) {
            found.append(request(leader, ask.what, ask.capabilities))
        }
        for thread in task.threads {
            let scheduling = thread.scheduling
            if scheduling.policy == UInt32(TaskScheduling.fifoPolicy)
                || scheduling.policy == UInt32(TaskScheduling.roundRobinPolicy),
                UInt64(scheduling.rtPriority) > soft(ResourceLimit.realtimePriority)
            {
                let policy = scheduling.policy == UInt32(TaskScheduling.fifoPolicy) ? "SCHED_FIFO" : "SCHED_RR"
                found.append(
                    request(
                        thread,
                        "\(policy) priority \(scheduling.rtPriority), above its RLIMIT_RTPRIO \(limitText(soft(ResourceLimit.realtimePriority)))",
                        [Capability.sysNice]))
            }
            // A nice below the inherited one is allowed up to 20 - RLIMIT_NICE.
            if scheduling.nice < baseline.nice, Int64(20 - scheduling.nice) > Int64(clamping: soft(ResourceLimit.nice))
            {
                found.append(
                    request(
                        thread,
                        "nice \(scheduling.nice), below the restorer's \(baseline.nice) and what its RLIMIT_NICE \(limitText(soft(ResourceLimit.nice))) allows",
                        [Capability.sysNice]))
            }
            if scheduling.ioPriority >> TaskScheduling.ioPriorityClassShift
                == UInt32(TaskScheduling.ioPriorityClassRealtime)
            {
                found.append(
                    request(
                        thread, "real-time I/O priority (IOPRIO_CLASS_RT, level \(scheduling.ioPriority & 7))",
                        [Capability.sysNice, Capability.sysAdmin]))
            }
            if thread.seccomp.mode == .filter, !thread.threadFlags.noNewPrivs {
                found.append(
                    request(
                        thread,
                        "seccomp filters without no_new_privs (a set-user-ID program it runs would run under them)",
                        [Capability.sysAdmin]))
            }
            let loginUID = credentials(thread).loginUid
            if loginUID != baseline.credentials.loginUid, baseline.credentials.loginUid != unsetLoginUID {
                found.append(
                    request(
                        thread, "audit login uid \(loginUID), the restorer's being \(baseline.credentials.loginUid)",
                        [Capability.auditControl]))
            }
        }
        return found
    }

    static func limitText(_ value: UInt64) -> String { value == UInt64.max ? "unlimited" : "\(value)" }
}

/// What an image asks for that needs privilege, for an administrator about to restore it as
/// root (`amber verify --needs`).
public struct ImageNeeds: Sendable {
    public let authenticity: ImageAuthenticity
    public let processes: Int
    public let threads: Int
    /// Threads whose credentials are not an ordinary user's: an ID 0, a capability, or none
    /// recorded (the restorer's own are kept).
    public let credentials: [String]
    /// Open files the recorded credentials may not open now: only an authenticated or trusted
    /// image has them opened with the restorer's rights. nil when the caller is not root and
    /// so cannot open files as another user to tell.
    public let files: [String]?
    public let requests: [PrivilegedRequest]
    /// The objects outside the tree, each for a descriptor of the caller's to take the place of
    /// (`restore --inherit-fd`).
    public let externalFiles: [String]

    /// Reads and checks the image as a restore would, and lists its asks.
    public static func of(directory: String, encryptionKey: ImageEncryptionKey? = nil) throws(AmberError)
        -> ImageNeeds
    {
        let key = try HostImageKey.forCheck()
        let image: ImageReader
        let tasks: [Amber_Task]
        do {
            image = try ImageReader(directory: directory, key: key, encryptionKey: encryptionKey)
            tasks = try image.taskPIDs.map { pid throws(ImageError) in try image.task(pid: pid) }
        } catch {
            throw AmberError(.badImage, error.description)
        }
        let live = tasks.filter { !$0.zombie }
        return ImageNeeds(
            authenticity: image.authenticity,
            processes: tasks.count,
            threads: live.reduce(0) { $0 + $1.threads.count },
            credentials: live.flatMap(privilegedCredentials),
            files: geteuid() == 0 ? live.flatMap(filesNeedingRestorerRights) : nil,
            requests: try ImagePrivileges.requests(live),
            externalFiles: ExternalFiles.needs(of: live) + ShellJobControl.needs(of: tasks))
    }

    private static func privilegedCredentials(of task: Amber_Task) -> [String] {
        task.threads.compactMap { thread -> String? in
            let who =
                thread.tid == task.pid
                ? "process \(task.pid) (\(task.comm))" : "thread \(thread.tid) of process \(task.pid) (\(task.comm))"
            guard thread.hasCredentials else { return "\(who): no credentials recorded: it keeps the restorer's own" }
            let c = thread.credentials
            let ids = [c.uid, c.euid, c.suid, c.fsuid]
            let gids = [c.gid, c.egid, c.sgid, c.fsgid]
            let capabilities = c.capPermitted | c.capEffective | c.capInheritable | c.capAmbient
            guard ids.contains(0) || gids.contains(0) || c.groups.contains(0) || capabilities != 0 else { return nil }
            var parts = [
                "uids \(ids.map(String.init).joined(separator: ",")), gids \(gids.map(String.init).joined(separator: ","))"
            ]
            if c.groups.contains(0) { parts.append("group 0 among its groups") }
            if c.capPermitted != 0 {
                parts.append(
                    c.capPermitted == c.capBounding
                        ? "permitted: every capability of its bounding set (\(c.capPermitted.nonzeroBitCount))"
                        : "permitted \(CredentialState.names(c.capPermitted))")
            }
            if c.capAmbient != 0 { parts.append("ambient \(CredentialState.names(c.capAmbient))") }
            if c.capInheritable != 0 { parts.append("inheritable \(CredentialState.names(c.capInheritable))") }
            return "\(who): \(parts.joined(separator: "; "))"
        }
    }

    private static func filesNeedingRestorerRights(of task: Amber_Task) -> [String] {
        task.files.descriptors.compactMap { descriptor -> String? in
            guard let description = task.files.descriptions.first(where: { $0.id == descriptor.descriptionID }),
                let denied = ImagePrivileges.openDenied(description, as: task)
            else { return nil }
            return "process \(task.pid) (\(task.comm)): fd \(descriptor.fd), \(denied)"
        }
    }
}

extension ImagePrivileges {
    /// Why the task may not open the file itself: "PATH (read-write): uid 1000, gid 1000 may
    /// not open it (EACCES)", or nil when it may (or fails for another reason, which the
    /// restore reports when it opens it, or is not opened by path). Tried as the task would be
    /// made to open it (its filesystem IDs and groups, no symbolic link, nothing created), and
    /// closed at once.
    static func openDenied(_ description: Amber_OpenFileDescription, as task: Amber_Task) -> String? {
        guard let credentials = task.processCredentials, let path = OpenFileKinds.reopenedPath(of: description) else {
            return nil
        }
        let identity = FileAccessIdentity(uid: credentials.fsuid, gid: credentials.fsgid, groups: credentials.groups)
        let flags = Int32(bitPattern: description.flags) & ~(O_CREAT | O_TRUNC | O_EXCL) | O_NONBLOCK | O_NOCTTY
        switch Result(catching: { () throws(LinuxError) in try PathOpening.open(path, flags: flags, as: identity) }) {
        case .success(let fd):
            close(fd)
            return nil
        case .failure(let error) where error.errno == .permissionDenied || error.errno == .notPermitted:
            let mode =
                switch description.flags & 3 {
                case 0: "read-only"
                case 1: "write-only"
                default: "read-write"
                }
            return "\(path) (\(mode)): uid \(identity.uid), gid \(identity.gid) may not open it (\(error.errno.name))"
        case .failure:
            return nil
        }
    }

    /// Refuses, before any task is made, an open file that no task listing it may open
    /// itself: only the restorer's rights could reopen it, which an image that is not
    /// authenticated does not get. (`RestoreSession.openAsTask` refuses it again when the
    /// file is reopened, should it have changed meanwhile.)
    static func refuseUnopenableFiles(_ tasks: [Amber_Task], authenticity: ImageAuthenticity) throws(AmberError) {
        // The paths of a tree in a mount namespace of its own are the tree's, which exists only
        // once the restore made it: each is opened as the task then, and refused the same way.
        guard tasks.first?.hasMountNamespace != true else { return }
        var listing: [UInt32: [(task: Amber_Task, description: Amber_OpenFileDescription)]] = [:]
        for task in tasks where !task.zombie {
            for description in task.files.descriptions {
                listing[description.id, default: []].append((task, description))
            }
        }
        for id in listing.keys.sorted() {
            guard let users = listing[id] else { continue }
            let denials = users.map { openDenied($0.description, as: $0.task) }
            guard let denied = denials.first ?? nil, denials.allSatisfy({ $0 != nil }) else { continue }
            let task = users[0].task
            throw AmberError(
                .permissionDenied,
                "process \(task.pid) (\(task.comm)) has open \(denied), and the image is \(authenticity): amber does not open it with its own rights (restore with --trust-image only an image you trust)"
            )
        }
    }
}
