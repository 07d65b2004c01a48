import AmberImage
import Glibc
import LinuxKit

/// An eventfd: its counter and semaphore mode from fdinfo, made again in the restorer by
/// eventfd2 (and a write for a counter above 2^32 - 1). Every eventfd is on the one anonymous
/// inode of the kernel: kcmp tells whether two share one description (`DescriptionTable`).
struct EventFDKind: OpenFileKind {
    let identity: OpenFileIdentity
    let state: EventFDState

    static func classify(_ descriptor: DescriptorProbe) throws -> EventFDKind? {
        guard descriptor.link == EventFiles.eventFDLink else { return nil }
        try descriptor.checkEventFileFlags("an eventfd")
        let state: EventFDState
        do {
            state = try EventFDState(descriptor.info())
        } catch {
            throw descriptor.refusal("an eventfd whose counter or mode its fdinfo does not show (\(error))")
        }
        let status = try descriptor.status()
        return EventFDKind(identity: OpenFileIdentity(device: status.device, inode: status.inode), state: state)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var record = Amber_EventFD()
        record.count = state.count
        record.semaphore = state.semaphore
        return .eventFd(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_EventFD? {
        guard case .eventFd(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_EventFD) -> String? { nil }

    static func make(
        _ record: Amber_EventFD, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        do {
            let state = EventFDState(count: record.count, semaphore: record.semaphore)
            return try state.make(nonBlocking: description.isNonBlocking).rawValue
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot make the eventfd of open file \(description.id) for process \(task.pid): \(error)")
        }
    }
}

extension DescriptorProbe {
    /// An eventfd, signalfd or timerfd (`what`) is made with O_RDWR and O_NONBLOCK alone: one
    /// given other status flags since (F_SETFL) is refused.
    func checkEventFileFlags(_ what: String) throws {
        let flags = try info().flags & ~OpenFileFlags.closeOnExec.rawValue
        guard flags & ~EventFiles.statusFlags == 0 else {
            throw refusal(
                "\(what) with the status flags 0o\(String(flags, radix: 8)), more than O_RDWR and O_NONBLOCK (F_SETFL)")
        }
    }
}

extension Amber_OpenFileDescription {
    /// O_NONBLOCK: an eventfd, signalfd or timerfd is made with it or without.
    var isNonBlocking: Bool { Int32(bitPattern: flags) & O_NONBLOCK != 0 }
}

extension EventFDKind {
    static func check(tree processes: [CheckedProcess]) throws {
        try OutsideDescriptors.refuseShared(EventFiles.eventFDLink, what: "an eventfd", processes: processes)
    }
}
