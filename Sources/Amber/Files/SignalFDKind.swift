import AmberImage
import LinuxKit

/// A signalfd: its mask from fdinfo, made again in the restorer by signalfd4. A signalfd reads
/// the signals of the process reading it, not of the one that made it, so the restorer's is the
/// task's once installed; the signals it would read are the task's pending signals
/// (`SignalState`).
struct SignalFDKind: OpenFileKind {
    let identity: OpenFileIdentity
    let state: SignalFDState

    static func classify(_ descriptor: DescriptorProbe) throws -> SignalFDKind? {
        guard descriptor.link == EventFiles.signalFDLink else { return nil }
        try descriptor.checkEventFileFlags("a signalfd")
        let state: SignalFDState
        do {
            state = try SignalFDState(descriptor.info())
        } catch {
            throw descriptor.refusal("a signalfd whose mask its fdinfo does not show (\(error))")
        }
        let status = try descriptor.status()
        return SignalFDKind(identity: OpenFileIdentity(device: status.device, inode: status.inode), state: state)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var record = Amber_SignalFD()
        record.mask = state.mask
        return .signalFd(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_SignalFD? {
        guard case .signalFd(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_SignalFD) -> String? { nil }

    static func make(
        _ record: Amber_SignalFD, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        do {
            return try SignalFDState(mask: record.mask).make(nonBlocking: description.isNonBlocking).rawValue
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot make the signalfd of open file \(description.id) for process \(task.pid): \(error)")
        }
    }
}

extension SignalFDKind {
    /// A signalfd a process outside the tree holds too is refused, as an eventfd is: its mask
    /// and flags are the description's, which a `signalfd(fd, mask)` or F_SETFL of either
    /// process changes for both, and the tree's would come back one of its own.
    static func check(tree processes: [CheckedProcess]) throws {
        try OutsideDescriptors.refuseShared(EventFiles.signalFDLink, what: "a signalfd", processes: processes)
    }
}
