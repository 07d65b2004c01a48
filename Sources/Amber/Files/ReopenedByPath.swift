import AmberImage
import Glibc
import LinuxKit

/// A kind of file reopened by its path at restore, as CRIU's files-reg.c does: the dump takes
/// a descriptor only when its path leads to this very file (`DescriptorProbe.reopenablePath`),
/// and the restore opens the path as the task could have (`RestoreSession.openAsTask`) and
/// checks it is still a file of the kind.
protocol ReopenedByPath: OpenFileKind where Record: ReopenedByPathRecord {
    var path: String { get }
    var status: FileStatus { get }
    init(path: String, status: FileStatus)

    /// Whether a file at `path` with `status` is of this kind.
    static func isKind(_ status: FileStatus, path: String) -> Bool

    /// What a restore no longer finds at the path: "a file of the kind", "the device".
    static var dumpedFile: String { get }
}

/// The record of a file reopened by path: its path, and its identity at the dump (device,
/// inode, change time), by which a file the task may no longer open itself is still reopened
/// for a trusted image (docs/security.md).
protocol ReopenedByPathRecord {
    var path: String { get }
    var device: UInt64 { get }
    var inode: UInt64 { get }
    var changeTimeNs: UInt64 { get }
}

extension ReopenedByPath {
    static var dumpedFile: String { "a file of the kind" }

    static func classify(_ descriptor: DescriptorProbe) throws -> Self? {
        guard let path = try descriptor.reopenablePath() else { return nil }
        let status = try descriptor.status()
        guard isKind(status, path: path) else { return nil }
        if let what = procPathMadeLater(path) {
            throw descriptor.refusal(
                "\(path), a file of /proc that names \(what), which does not exist yet when the restore reopens it")
        }
        try checkWritable(descriptor, path: path, status: status)
        return Self(path: path, status: status)
    }

    /// A file open for writing that chattr made immutable since (or append-only, for a
    /// description that does not append): no one may open it so again, the restore neither.
    private static func checkWritable(_ descriptor: DescriptorProbe, path: String, status: FileStatus) throws {
        let flags = Int32(bitPattern: try descriptor.info().flags)
        guard status.isRegular, flags & O_ACCMODE != O_RDONLY else { return }
        // What a process writes there is a registration of the open file's own, which a
        // description opened again lacks: a PSI trigger, a cgroup v1 event's eventfd.
        let name = path.split(separator: "/").last.map(String.init) ?? ""
        if path.hasPrefix("/proc/pressure/") || name.hasSuffix(".pressure") || name == "cgroup.event_control" {
            throw descriptor.refusal(
                "\(path), open for writing: a trigger or event written there (PSI, cgroup.event_control) is the open file's own, and not restored"
            )
        }
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        let attributes = try FileAttributes.inodeFlags(copy)
        if attributes & FileAttributes.immutable != 0
            || (attributes & FileAttributes.appendOnly != 0 && flags & O_APPEND == 0)
        {
            throw descriptor.refusal(
                "\(path), open for writing but made \(attributes & FileAttributes.immutable != 0 ? "immutable" : "append-only") since (chattr): it could not be opened so again"
            )
        }
    }

    /// What a /proc path names that a restore makes only after the tree's open files: a thread
    /// other than a leader (/proc/PID/task/TID/...), a descriptor (/proc/PID/fdinfo/FD, fd/FD).
    private static func procPathMadeLater(_ path: String) -> String? {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[0] == "proc", let pid = Int32(parts[1]) else { return nil }
        var rest = parts[2...]
        if rest.count >= 2, rest.first == "task", let tid = Int32(rest[rest.startIndex + 1]) {
            if tid != pid { return "thread \(tid)" }
            rest = rest.dropFirst(2)
        }
        if rest.count >= 2, ["fdinfo", "fd"].contains(rest.first!) { return "a descriptor of process \(pid)" }
        return nil
    }

    var identity: OpenFileIdentity { OpenFileIdentity(device: status.device, inode: status.inode) }

    /// The tree's descriptors on files of this kind, by /proc link, but for those whose
    /// description `mayShare` (from its flags) lets a process outside the tree hold too: what a
    /// kind whose description keeps an offset asks `OutsideDescriptors.refuseShared` about.
    static func descriptorsByPath(
        in processes: [CheckedProcess], unless mayShare: (DescriptorProbe) throws -> Bool
    ) throws -> [String: [(process: CheckedProcess, fd: Int32)]] {
        var held: [String: [(process: CheckedProcess, fd: Int32)]] = [:]
        for process in processes {
            for probe in try process.probes() where probe.link.hasPrefix("/") {
                guard try probe.reopenablePath() != nil, isKind(try probe.status(), path: probe.link) else { continue }
                if try mayShare(probe) { continue }
                held[probe.link, default: []].append((process, probe.fd))
            }
        }
        return held
    }

    static func reopenedPath(of record: Record) -> String? { record.path }

    static func dumpedChangeTime(of record: Record) -> UInt64? { record.changeTimeNs == 0 ? nil : record.changeTimeNs }

    /// Opens the record's file with the description's `flags`, adding `extraFlags` unless it is
    /// O_PATH, as `task` could have, and checks it is still of this kind.
    static func reopen(
        _ record: Record, flags: UInt32, adding extraFlags: Int32, as task: Amber_Task, imageTrusted: Bool
    ) throws -> Int32 {
        var openFlags = Int32(bitPattern: flags) & ~(O_CREAT | O_TRUNC | O_EXCL)
        if openFlags & OpenFileFlags.pathOnly.openFlags != 0 {
            // open(2) ignores other flags with O_PATH, but openat2 refuses them (EINVAL): keep
            // only those it takes, and those F_GETFL then shows (fdinfo adds O_LARGEFILE).
            openFlags &= OpenFileFlags.pathOnly.openFlags | O_DIRECTORY | O_NOFOLLOW
        } else {
            openFlags |= extraFlags
        }
        let dumped =
            record.changeTimeNs == 0
            ? nil
            : FileStatus(
                device: record.device, inode: record.inode, mode: 0, size: 0, rdev: 0, changeTimeNs: record.changeTimeNs
            )
        let fd = try RestoreSession.openAsTask(
            record.path, flags: openFlags, what: "the file", task: task, dumped: dumped, trusted: imageTrusted)
        // The path must still lead to a file of the kind dumped: an image naming /dev/kmsg as a
        // regular file reopens nothing.
        guard let status = try? FileStatus.fstat(fd: fd), isKind(status, path: record.path) else {
            Glibc.close(fd)
            throw AmberError(
                .restoreFailed,
                "cannot reopen \(record.path) for process \(task.pid): it is no longer \(dumpedFile) it was at the dump"
            )
        }
        return fd
    }

    /// Puts our reopened `fd` of the record's file at the description's offset.
    static func seek(_ fd: Int32, _ record: Record, to offset: UInt64) throws {
        guard offset != 0 else { return }
        guard lseek(fd, off_t(Int64(bitPattern: offset)), SEEK_SET) >= 0 else {
            let error = LinuxError.current("lseek")
            Glibc.close(fd)
            throw AmberError(.restoreFailed, "cannot seek \(record.path) to \(offset): \(error)")
        }
    }
}
