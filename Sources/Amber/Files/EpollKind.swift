import AmberImage
import Glibc
import LinuxKit

/// An epoll instance: made again empty in the restorer (epoll_create1), its watches added by
/// `EpollWatches` once the process whose fd numbers they name has its fd table back, so each
/// is keyed again by the same file and fd number; the watched files can be of any kind.
///
/// What is exact, and what is refused: a level-triggered watch reports whenever its file is
/// ready, so adding it again is exact. An edge-triggered one reports a change once: adding it
/// puts it on the ready list if its file is ready, which is right if it had not reported that
/// yet and one event too many if it had. Which of the two the dump cannot tell one watch from
/// another, except when the instance has nothing to report (it is not readable): then every
/// ready edge-triggered watch had reported already, and the restore takes it off the ready list
/// again. An instance with something to report and an edge-triggered watch on a ready file is
/// refused. A one-shot watch that fired is disarmed, which epoll_ctl cannot make (it adds
/// EPOLLERR and EPOLLHUP to every watch): refused. So are EPOLLWAKEUP (it needs
/// CAP_BLOCK_SUSPEND, and is dropped silently without it) and a watch by an fd number that is
/// not the watched file in the process that dumps the instance (the fd was closed, the file
/// lives on elsewhere).
struct EpollKind: OpenFileKind {
    let identity: OpenFileIdentity
    let watches: [EpollWatch]

    static func classify(_ descriptor: DescriptorProbe) throws -> EpollKind? {
        guard descriptor.link == Epoll.link else { return nil }
        try descriptor.checkEventFileFlags("an epoll instance")
        let watches: [EpollWatch]
        do {
            watches = try EpollWatch.watches(in: descriptor.info())
        } catch {
            throw descriptor.refusal("an epoll instance whose watches its fdinfo does not show (\(error))")
        }
        for watch in watches {
            if watch.events & Epoll.wakeUp != 0 {
                throw descriptor.refusal(
                    "an epoll instance with an EPOLLWAKEUP watch of fd \(watch.fd) (it needs CAP_BLOCK_SUSPEND)")
            }
            if watch.events & Epoll.oneShot != 0, watch.events & Epoll.events == 0 {
                throw descriptor.refusal(
                    "an epoll instance with a one-shot watch of fd \(watch.fd) that fired and was not armed again (epoll_ctl cannot add one disarmed)"
                )
            }
            guard watch.events & ~(Epoll.events | Epoll.flags) == 0 else {
                throw descriptor.refusal(
                    "an epoll instance with a watch of fd \(watch.fd) with the events 0x\(String(watch.events, radix: 16)), some unknown here"
                )
            }
        }
        let status = try descriptor.status()
        return EpollKind(identity: OpenFileIdentity(device: status.device, inode: status.inode), watches: watches)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var seen: Set<Int32> = []
        var ready: [Int32] = []
        let process = try Pidfd(pid: descriptor.pid)
        for watch in watches {
            guard seen.insert(watch.fd).inserted else {
                throw descriptor.refusal(
                    "an epoll instance with two watches by fd \(watch.fd): the file of one of them was closed there since"
                )
            }
            guard try Epoll.watches(pid: descriptor.pid, fd: watch.fd, epollFD: descriptor.fd, watchedFD: watch.fd)
            else {
                throw descriptor.refusal(
                    "an epoll instance watching a file by fd \(watch.fd), which that fd of the process is not (the fd was closed, or the watch added by another process)"
                )
            }
            guard watch.events & Epoll.edgeTriggered != 0 else { continue }
            let file = try process.duplicate(watch.fd)
            defer { try? file.close() }
            if try Epoll.readyEvents(of: file, among: watch.events & Epoll.events) != 0 { ready.append(watch.fd) }
        }
        if let first = ready.first {
            let instance = try descriptor.duplicate()
            defer { try? instance.close() }
            if try Epoll.readyEvents(of: instance, among: UInt32(POLLIN)) != 0 {
                throw descriptor.refusal(
                    "an epoll instance with events to report and an edge-triggered watch of fd \(first) whose file is ready: whether that watch reported it already cannot be told"
                )
            }
        }
        var record = Amber_Epoll()
        record.watcherPid = descriptor.pid
        record.watches = watches.map { watch in
            var entry = Amber_EpollWatch()
            entry.fd = watch.fd
            entry.events = watch.events
            entry.data = watch.data
            entry.reported = ready.contains(watch.fd)
            return entry
        }
        return .epoll(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Epoll? {
        guard case .epoll(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_Epoll) -> String? { nil }

    static func make(
        _ record: Amber_Epoll, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        do {
            return try Epoll.make(nonBlocking: description.isNonBlocking).rawValue
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot make the epoll instance of open file \(description.id) for process \(task.pid): \(error)")
        }
    }
}

/// The watches of the epoll instances of a process, added by epoll_ctl injected into it once
/// its fd table is back (`EpollKind`).
enum EpollWatches: StateKind {
    static func restore(_ session: RestoreSession) throws {
        let files = session.task.files
        for description in files.descriptions {
            guard case .epoll(let epoll) = description.file, epoll.watcherPid == session.task.pid,
                !epoll.watches.isEmpty
            else { continue }
            guard let instance = files.descriptors.first(where: { $0.descriptionID == description.id })?.fd else {
                throw AmberError(
                    .badImage,
                    "image file \(ImageFormat.taskRecordName(pid: session.task.pid)): the epoll instance of open file \(description.id) is on none of its fds"
                )
            }
            let reported = epoll.watches.filter(\.reported)
            for watch in reported { try add(watch, to: instance, session) }
            if !reported.isEmpty { try takeReady(instance, upTo: reported.count, session) }
            for watch in epoll.watches where !watch.reported { try add(watch, to: instance, session) }
        }
    }

    /// Takes the ready watches off the ready list of `instance` by epoll_wait with no wait, as
    /// many times as the scratch area needs to hold `count` events.
    private static func takeReady(_ instance: Int32, upTo count: Int, _ session: RestoreSession) throws {
        let batch = min(count, RestoreSession.scratchSize / Epoll.eventSize)
        var arguments = session.arguments()
        let events = try arguments.reserve(Epoll.eventSize * batch)
        var taken = batch
        while taken == batch {
            taken = Int(
                try session.injector.call(
                    "epoll_wait on fd \(instance)", SyscallNumber.epollWait, UInt64(instance), events, UInt64(batch), 0)
            )
        }
    }

    private static func add(_ watch: Amber_EpollWatch, to instance: Int32, _ session: RestoreSession) throws {
        var arguments = session.arguments()
        let event = try arguments.place(Epoll.event(events: watch.events, data: watch.data))
        try session.injector.call(
            "epoll_ctl(EPOLL_CTL_ADD) of fd \(watch.fd) to the epoll instance at fd \(instance)",
            SyscallNumber.epollCtl, UInt64(instance), Epoll.add, UInt64(watch.fd), event)
    }

    /// Right after the fd table: every file a watch names is back, whatever its kind.
    static var restoreSteps: [RestoreStep] { [RestoreStep("epoll-watches", order: 210) { try restore($0) }] }
}

extension EpollKind {
    /// An instance a process outside the tree holds too would come back as one of the tree's
    /// own, and the two would no longer share their watches.
    static func check(tree processes: [CheckedProcess]) throws {
        try OutsideDescriptors.refuseShared(Epoll.link, what: "an epoll instance", processes: processes)
    }
}
