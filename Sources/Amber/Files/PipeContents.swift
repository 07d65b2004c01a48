import AmberImage
import Dispatch
import FoundationEssentials
import Glibc
import LinuxKit
import Synchronization
import SystemPackage

/// The record of a pipe or named pipe that keeps what it holds and its capacity
/// (`Amber_PipeEnd`, `Amber_Fifo`).
protocol PipeContentsRecord {
    var capacity: UInt32 { get set }
    var packets: [Data] { get set }
    var data: Data { get set }
}

extension Amber_PipeEnd: PipeContentsRecord {}
extension Amber_Fifo: PipeContentsRecord {}

extension PipeContentsRecord {
    /// Reads the capacity of the pipe our `copy` is on into the record; refuses one above
    /// what an image keeps.
    mutating func readCapacity(_ copy: FileDescriptor, of descriptor: DescriptorProbe) throws {
        let capacity = try PipeBuffer.capacity(copy)
        guard capacity > 0, UInt64(capacity) <= ImageFormat.maximumPipeCapacity else {
            throw AmberError.unsupported(
                descriptor.process,
                "has fd \(descriptor.fd) on \(descriptor.link) with a capacity of \(capacity) bytes, above the \(ImageFormat.maximumPipeCapacity >> 20) MiB amber keeps of a pipe"
            )
        }
        self.capacity = UInt32(capacity)
    }

    /// Copies what the pipe holds into the record, leaving it there (`PipeBuffer.contents`),
    /// through our `copy` of a description open for reading.
    mutating func readContents(_ copy: FileDescriptor, of descriptor: DescriptorProbe) throws {
        let contents = try PipeBuffer.contents(copy)
        for (index, read) in contents.reads.enumerated() {
            let endsWithPacket = index < contents.reads.count - 1 || contents.lastEndsWithPacket
            guard endsWithPacket else {
                data = Data(read)
                break
            }
            // A packet is at most a page; a longer read is plain bytes before a packet.
            guard read.count <= Int(ImageFormat.pageSize) else {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(descriptor.link) holding plain bytes before packets (written before and after packet mode, O_DIRECT, was set): not restored"
                )
            }
            packets.append(Data(read))
        }
    }

    var heldBytes: Int { packets.reduce(0) { $0 + $1.count } + data.count }

    /// Sets the capacity of the pipe `fd` is on to the record's, and reads it back.
    func setCapacity(_ fd: FileDescriptor, of what: String, task: Amber_Task) throws {
        do {
            try PipeBuffer.setCapacity(fd, Int32(capacity))
            let set = try PipeBuffer.capacity(fd)
            guard set == Int32(capacity) else {
                throw AmberError(
                    .restoreFailed,
                    "\(what) of process \(task.pid) got a capacity of \(set) bytes instead of \(capacity)")
            }
        } catch let error as LinuxError {
            throw AmberError(
                .restoreFailed, "cannot give \(what) of process \(task.pid) a capacity of \(capacity) bytes: \(error)")
        }
    }

    /// Writes back what the pipe held through `writer`, a description of our own open for
    /// writing without waiting (what does not fit is an image that lies about the capacity):
    /// the packets in packet mode, then the plain bytes.
    func writeContents(_ writer: FileDescriptor, of what: String, task: Amber_Task) throws {
        do {
            if !packets.isEmpty {
                try PipeBuffer.setStatusFlags(writer, O_NONBLOCK | PipeBuffer.packetMode)
                for packet in packets { try PipeBuffer.write(writer, [UInt8](packet)) }
                try PipeBuffer.setStatusFlags(writer, O_NONBLOCK)
            }
            if !data.isEmpty { try PipeBuffer.write(writer, [UInt8](data)) }
        } catch {
            throw AmberError(
                .restoreFailed, "cannot write back the \(heldBytes) bytes \(what) of process \(task.pid) held: \(error)"
            )
        }
    }
}

/// The descriptors of every process outside a tree, for refusals of what the tree shares with
/// them (a pipe's end, a FIFO holding data, an eventfd).
enum OutsideDescriptors {
    /// Calls `visit` with each descriptor's process, number and /proc link (`OutsideScan`:
    /// read once per pass of checks, whichever kind asks first).
    static func forEach(outside processes: [CheckedProcess], _ visit: (Int32, Int32, String) throws -> Void) throws {
        guard let scan = processes.first?.outside else { return }
        for (pid, fd, link) in try scan.descriptors() {
            try visit(pid, fd, link)
        }
    }
}

/// The descriptors of every process outside the tree, read once per pass of checks (before the
/// freeze, then on the frozen tree) for every kind that looks for its objects outside.
final class OutsideScan: @unchecked Sendable {
    private let tree: Set<Int32>
    /// The tree is frozen: `TreeState.freeze` seized every child of its processes until none
    /// appeared, so no process outside descends from it, and no parent is read (one that did
    /// would be scanned, and refused for the tree's files it holds, not passed over).
    private let frozen: Bool
    private let lock = Mutex(())
    private var read: [(pid: Int32, fd: Int32, link: String)]?
    private var processesRead: [Int32]?
    private var relationsRead: [Int32: TaskRelations]?
    private var tracedRead: [(pid: Int32, tid: Int32, tracer: Int32)]?

    init(tree: Set<Int32>, frozen: Bool = false) {
        self.tree = tree
        self.frozen = frozen
    }

    /// Each descriptor's process, number and /proc link, skipping amber and, before the freeze,
    /// the descendants of the tree: a child forked since the tree was walked is of the tree (the
    /// freeze walks it again), not a process outside it holding the tree's files.
    func descriptors() throws -> [(pid: Int32, fd: Int32, link: String)] {
        try lock.withLock { _ in
            if let read { return read }
            let scanned = try scan()
            read = scanned
            return scanned
        }
    }

    /// Every process outside the tree but amber: before the freeze, not a descendant of the tree
    /// either (a child forked since the tree was walked is of the tree; the freeze walks it again).
    func processes() throws -> [Int32] {
        try lock.withLock { _ in try outsideProcesses() }
    }

    private func outsideProcesses() throws -> [Int32] {
        if let processesRead { return processesRead }
        let all = try ProcFS.processIDs()
        var relations = try relations()
        // Each process on the list has its parent read after the list was: a child of amber's or
        // of the tree's on it is known as one (`relations()` may have been read before).
        if !frozen {
            for pid in all where !tree.contains(pid) && relations[pid] == nil {
                if let read = try? ProcFS.relations(pid: pid) { relations[pid] = read }
            }
            relationsRead = relations
        }
        let amber = getpid()
        let outside = all.filter { !tree.contains($0) && $0 != amber && !descendsFromTree($0, relations) }
        processesRead = outside
        return outside
    }

    /// Starts reading `tracedByTree()` on another thread, so that the checks of the running tree,
    /// which read each of its processes meanwhile, find it read.
    func readTracedInBackground() {
        DispatchQueue.global().async { _ = try? self.tracedByTree() }
    }

    /// Before the freeze: every thread outside the tree (and not of amber) that a thread of the
    /// tree traces, with the tracer's process. Each process's status is read, and each thread's
    /// of a process with several: a tracer attaches to one thread.
    func tracedByTree() throws -> [(pid: Int32, tid: Int32, tracer: Int32)] {
        try lock.withLock { _ in
            if let tracedRead { return tracedRead }
            var traced: [(pid: Int32, tid: Int32, tracer: Int32)] = []
            func tracingProcess(_ tracer: Int32) -> Int32? {
                if tree.contains(tracer) { return tracer }
                guard let group = try? ProcFS.relations(pid: tracer).threadGroup, tree.contains(group) else {
                    return nil
                }
                return group
            }
            for (pid, relations) in try relations() {
                if relations.tracer != 0, let tracer = tracingProcess(relations.tracer) {
                    traced.append((pid, pid, tracer))
                }
                guard relations.threads > 1 else { continue }
                for tid in (try? ProcFS.threads(pid: pid)) ?? [] where tid != pid {
                    guard let thread = try? ProcFS.threadRelations(pid: pid, tid: tid), thread.tracer != 0,
                        let tracer = tracingProcess(thread.tracer)
                    else { continue }
                    traced.append((pid, tid, tracer))
                }
            }
            tracedRead = traced
            return traced
        }
    }

    /// Before the freeze: each process outside the tree (not amber, nor forked by the tree since
    /// it was walked) in a session or process group whose ID is a PID of the tree: once the tree
    /// is gone that ID stays taken, and the restore could not make the process of that PID again.
    func membersOfSessionsOrGroups(of ids: Set<Int32>) throws -> [(pid: Int32, relations: TaskRelations)] {
        try lock.withLock { _ in
            let relations = try relations()
            let amber = getpid()
            return relations.filter { pid, member in
                (ids.contains(member.session) || ids.contains(member.processGroup)) && pid != amber
                    && !descendsFromTree(pid, relations)
            }.map { ($0.key, $0.value) }.sorted { $0.pid < $1.pid }
        }
    }

    /// Every process but the tree's and amber's, with its parent and tracer; before the freeze
    /// only (`frozen` reads none). Called holding `lock`.
    private func relations() throws -> [Int32: TaskRelations] {
        if let relationsRead { return relationsRead }
        var relations: [Int32: TaskRelations] = [:]
        if !frozen {
            for pid in try ProcFS.processIDs() where !tree.contains(pid) {
                relations[pid] = try? ProcFS.relations(pid: pid)
            }
        }
        relationsRead = relations
        return relations
    }

    /// Whether `pid`'s parents, as `relations` has them, lead into the tree: a child forked
    /// since the tree was walked is of the tree (the freeze walks it again).
    private func descendsFromTree(_ pid: Int32, _ relations: [Int32: TaskRelations]) -> Bool {
        var current = pid
        for _ in 0..<relations.count {
            guard let parent = relations[current]?.parent else { return false }
            if tree.contains(parent) { return true }
            current = parent
        }
        return false
    }

    private func scan() throws -> [(pid: Int32, fd: Int32, link: String)] {
        let outside = try outsideProcesses()
        let amber = getpid()
        let relations = try relations()
        let amberChildren =
            frozen
            ? Set((try? ProcFS.children(pid: amber)) ?? []) : Set(relations.filter { $0.value.parent == amber }.keys)
        var descriptors: [(pid: Int32, fd: Int32, link: String)] = []
        for pid in outside {
            // A child of amber's being started (a ptrace witness, `ip` or `nft` for the network
            // configuration read in the background) holds amber's copies of the tree's
            // descriptors for a moment.
            let links =
                amberChildren.contains(pid)
                ? ChildStarts.exclusive { try? ProcFS.fileDescriptorLinks(pid: pid) }
                : try? ProcFS.fileDescriptorLinks(pid: pid)
            for (fd, link) in links ?? [] {
                descriptors.append((pid, fd, link))
            }
        }
        return descriptors
    }
}

extension Checkpoint {
    /// Which of `links` (/proc fd links such as "pipe:[INODE]") a process outside the tree of
    /// `root` holds: neither the root nor a descendant of it, nor amber.
    public static func linksHeldOutside(tree root: Int32, _ links: Set<String>) throws -> Set<String> {
        Set(try OutsideScan(tree: [root]).descriptors().map(\.link).filter(links.contains))
    }
}

extension OutsideDescriptors {
    /// Refuses a descriptor of the tree on `link` (an eventfd, a timerfd) whose open file
    /// description a process outside the tree holds too: the tree's copy would come back as an
    /// object of its own, and the two would no longer see each other's counts. Looks outside the
    /// tree only when the tree holds one; kcmp tells the descriptions apart.
    static func refuseShared(_ link: String, what: String, processes: [CheckedProcess]) throws {
        var held: [(process: CheckedProcess, fd: Int32)] = []
        for process in processes {
            for probe in try process.probes() where probe.link == link {
                held.append((process, probe.fd))
            }
        }
        try refuseShared(held: [link: held], processes: processes) { treeFD, _, pid, fd in
            "has fd \(treeFD) on \(what), which process \(ProcessName(pid: pid)) outside the tree holds too (its fd \(fd)): it is restored only when no process outside the tree shares it"
        }
    }

    /// Refuses a descriptor of `held` (the tree's, by /proc link) whose open file description a
    /// process outside the tree holds too; `refusal` says why, from the tree's fd, its link and
    /// the outside process and fd. Reads the outside descriptors only when `held` has any.
    static func refuseShared(
        held: [String: [(process: CheckedProcess, fd: Int32)]], processes: [CheckedProcess],
        refusal: (_ treeFD: Int32, _ link: String, _ pid: Int32, _ fd: Int32) -> String
    ) throws {
        guard held.values.contains(where: { !$0.isEmpty }) else { return }
        try forEach(outside: processes) { pid, fd, link in
            for (process, treeFD) in held[link] ?? []
            where (try? openFileOrder(pid1: process.pid, fd1: treeFD, pid2: pid, fd2: fd)) == 0 {
                throw AmberError.unsupported(process.name, refusal(treeFD, link, pid, fd), tree: process.tree)
            }
        }
    }
}

extension PipeContentsRecord {
    /// A capacity above /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE.
    func capacityAsks(restorer: ImagePrivileges.Baseline) -> [PrivilegedAsk] {
        guard Int64(capacity) > restorer.pipeMaximumCapacity else { return [] }
        return [
            PrivilegedAsk(
                what:
                    "a pipe capacity of \(capacity) bytes, above /proc/sys/fs/pipe-max-size \(restorer.pipeMaximumCapacity)",
                capabilities: [Capability.sysResource])
        ]
    }
}
