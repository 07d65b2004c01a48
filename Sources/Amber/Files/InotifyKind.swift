import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// An inotify instance: each watch is found by its file's handle (fdinfo), recorded by that
/// file's path and added again there, by wd order, at the same wd (the wds in between are used
/// up: the kernel hands them out in turn). Refused: events queued and not read (the dump would
/// have to consume them), a watch on a file with no path that leads to it (deleted), on a file
/// other than a regular file or a directory, or in another mount namespace. The wd the next
/// new watch gets may differ: the kernel's place in its turn is not shown.
struct InotifyKind: OpenFileKind {
    let identity: OpenFileIdentity
    let watches: [InotifyWatch]

    static func classify(_ descriptor: DescriptorProbe) throws -> InotifyKind? {
        guard descriptor.link == Inotify.link else { return nil }
        let flags = try descriptor.info().flags & ~OpenFileFlags.closeOnExec.rawValue
        guard flags & ~Inotify.statusFlags == 0 else {
            throw descriptor.refusal(
                "an inotify instance with the status flags 0o\(String(flags, radix: 8)), more than O_RDONLY and O_NONBLOCK (F_SETFL)"
            )
        }
        let watches: [InotifyWatch]
        do {
            watches = try InotifyWatch.watches(in: descriptor.info())
        } catch {
            throw descriptor.refusal("an inotify instance whose watches its fdinfo does not show (\(error))")
        }
        for watch in watches where watch.mask & ~Inotify.masks != 0 || watch.ignoredMask != 0 {
            throw descriptor.refusal(
                "an inotify instance with watch \(watch.wd) of the mask 0x\(String(watch.mask, radix: 16)), some unknown here"
            )
        }
        let status = try descriptor.status()
        return InotifyKind(identity: OpenFileIdentity(device: status.device, inode: status.inode), watches: watches)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let instance = try descriptor.duplicate()
        let queued: Int32
        do {
            defer { try? instance.close() }
            queued = try Inotify.queuedBytes(instance)
        }
        if queued > 0 {
            throw descriptor.refusal(
                "an inotify instance with \(queued) bytes of events not read (the dump would have to consume them)")
        }
        var record = Amber_Inotify()
        for watch in watches.sorted(by: { $0.wd < $1.wd }) {
            let path: String
            let status: FileStatus
            do {
                path = try watch.path(pid: descriptor.pid)
                status = try FileStatus.stat(path: path)
            } catch {
                throw descriptor.refusal(
                    "an inotify instance with watch \(watch.wd) on inode \(watch.inode), which no path leads to (\(error))"
                )
            }
            guard status.inode == watch.inode, status.device == Self.userDevice(kernel: watch.device) else {
                throw descriptor.refusal(
                    "an inotify instance with watch \(watch.wd) on inode \(watch.inode), which its path \(path) no longer leads to"
                )
            }
            guard status.isRegular || status.isDirectory else {
                throw descriptor.refusal(
                    "an inotify instance with watch \(watch.wd) on \(path), neither a regular file nor a directory")
            }
            var entry = Amber_InotifyWatch()
            entry.wd = watch.wd
            entry.path = path
            entry.mask = watch.mask
            entry.directory = status.isDirectory
            record.watches.append(entry)
        }
        return .inotify(record)
    }

    /// stat's st_dev (glibc's makedev) of the kernel's dev_t (major << 20 | minor) fdinfo shows.
    private static func userDevice(kernel device: UInt64) -> UInt64 {
        let major = device >> 20
        let minor = device & 0xfffff
        return (major & 0xffff_f000) << 32 | (major & 0xfff) << 8 | (minor & 0xffff_ff00) << 12 | (minor & 0xff)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Inotify? {
        guard case .inotify(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_Inotify) -> String? { nil }

    /// Made non-blocking, to read off the IN_IGNORED of the watches used up for their wds.
    static func make(
        _ record: Amber_Inotify, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let what = "the inotify instance of open file \(description.id) for process \(task.pid)"
        let instance: FileDescriptor
        do {
            instance = try Inotify.make(nonBlocking: true)
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
        do {
            for watch in record.watches { try add(watch, to: instance, as: task, imageTrusted: imageTrusted) }
            try Inotify.discardEvents(instance)
            if !description.isNonBlocking { _ = fcntl(instance.rawValue, F_SETFL, 0) }
            return instance.rawValue
        } catch {
            try? instance.close()
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
    }

    /// The watch at its wd, on its file opened as the task (inotify_add_watch needs read
    /// permission to it, and follows our /proc link to that very file).
    private static func add(
        _ watch: Amber_InotifyWatch, to instance: FileDescriptor, as task: Amber_Task, imageTrusted: Bool
    )
        throws
    {
        let flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (watch.directory ? O_DIRECTORY : 0)
        let file = try RestoreSession.openAsTask(
            watch.path, flags: flags, what: "the file inotify watch \(watch.wd) is on", task: task, dumped: nil,
            trusted: imageTrusted)
        defer { close(file) }
        guard try FileStatus.fstat(fd: file).isDirectory == watch.directory else {
            throw AmberError(
                .restoreFailed,
                "\(watch.path), watched by inotify watch \(watch.wd), is no longer a \(watch.directory ? "directory" : "regular file")"
            )
        }
        var wd = try Inotify.addWatch(instance, path: "/proc/self/fd/\(file)", mask: watch.mask)
        while wd < watch.wd {
            try Inotify.removeWatch(instance, wd)
            wd = try Inotify.addWatch(instance, path: "/proc/self/fd/\(file)", mask: watch.mask)
        }
        guard wd == watch.wd else {
            throw AmberError(.restoreFailed, "inotify watch \(watch.wd) on \(watch.path) came back as wd \(wd)")
        }
    }
}

extension InotifyKind {
    /// Watches and queued events are the instance's: one shared outside the tree would come back
    /// an instance of the tree's own, and neither would see the other's watches or events.
    static func check(tree processes: [CheckedProcess]) throws {
        try OutsideDescriptors.refuseShared(Inotify.link, what: "an inotify instance", processes: processes)
    }
}

/// What the restore does to the files an instance watches once it is made (files opened and
/// deleted files made again for this process or another of the tree, their executables
/// opened) would queue events the tree never caused. An instance had none queued at the dump
/// (refused otherwise), so once every process is restored, just before the tree is let go,
/// each instance's queue is emptied.
enum InotifyQueues: StateKind {
    static var restoreSteps: [RestoreStep] {
        [RestoreStep("inotify-queues", order: 1000, phase: .tree) { try empty($0) }]
    }

    private static func empty(_ session: RestoreSession) throws {
        let files = session.task.files
        let instances = Set(
            files.descriptions.compactMap { description -> UInt32? in
                guard case .inotify = description.file else { return nil }
                return description.id
            })
        var emptied: Set<UInt32> = []
        for descriptor in files.descriptors
        where instances.contains(descriptor.descriptionID) && emptied.insert(descriptor.descriptionID).inserted {
            let copy = try Pidfd(pid: session.pid).duplicate(descriptor.fd)
            defer { try? copy.close() }
            // Our copy shares the description and its flags: non-blocking for the read alone.
            let flags = fcntl(copy.rawValue, F_GETFL)
            _ = fcntl(copy.rawValue, F_SETFL, flags | O_NONBLOCK)
            defer { _ = fcntl(copy.rawValue, F_SETFL, flags) }
            try Inotify.discardEvents(copy)
        }
    }
}
