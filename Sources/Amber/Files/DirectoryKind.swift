import AmberImage
import Glibc
import LinuxKit

/// A directory, reopened by its path and put at its offset (where getdents goes on).
struct DirectoryKind: ReopenedByPath {
    let path: String
    let status: FileStatus

    static func isKind(_ status: FileStatus, path: String) -> Bool { status.isDirectory }

    /// A directory with an owner is refused: dnotify (fcntl F_NOTIFY) makes the caller its
    /// owner, and the kernel shows what it watches for nowhere (not in fdinfo), so a restore
    /// could not watch it again; the task would wait for signals that never come.
    static func classify(_ descriptor: DescriptorProbe) throws -> Self? {
        guard let path = try descriptor.reopenablePath() else { return nil }
        let status = try descriptor.status()
        guard isKind(status, path: path) else { return nil }
        if try hasOwner(descriptor) {
            throw AmberError.unsupported(
                descriptor.process,
                "has fd \(descriptor.fd) on the directory \(path) with an owner (F_SETOWN), as directory notifications (dnotify, fcntl F_NOTIFY) set one: what dnotify watches for is shown nowhere, so a restore could not watch it again",
                tree: descriptor.tree)
        }
        return Self(path: path, status: status)
    }

    /// Whether F_GETOWN on a copy of the descriptor names anyone. An O_PATH descriptor takes no
    /// owner (nor F_NOTIFY): fcntl answers it EBADF for all but a few commands.
    private static func hasOwner(_ descriptor: DescriptorProbe) throws -> Bool {
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        do {
            return try OpenFileOwner.of(copy) != 0
        } catch {
            if error.errno == .badFileDescriptor { return false }
            throw error
        }
    }

    /// A directory's open file description that a process outside the tree holds too is
    /// refused, as a regular file's is (`RegularFileKind.check(tree:)`): the two share its
    /// offset in the directory's entries, and the tree's comes back a description of its own,
    /// so each would read what the other skipped, or skip what it read. An O_PATH descriptor
    /// has no offset to share.
    static func check(tree processes: [CheckedProcess]) throws {
        guard processes.first?.beforeFreeze == true else { return }
        let held = try descriptorsByPath(in: processes) {
            OpenFileFlags(rawValue: try $0.info().flags).contains(.pathOnly)
        }
        try OutsideDescriptors.refuseShared(held: held, processes: processes) { treeFD, link, pid, fd in
            "has fd \(treeFD) on the directory \(link), whose open file description (and so its offset in the directory's entries) process \(ProcessName(pid: pid)) outside the tree holds too (its fd \(fd)): restored, the tree's would be one of its own, and each would read entries the other skipped or skip those it read"
        }
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var directory = Amber_Directory()
        directory.path = path
        directory.device = status.device
        directory.inode = status.inode
        directory.changeTimeNs = status.changeTimeNs
        return .directory(directory)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Directory? {
        guard case .directory(let directory) = description.file else { return nil }
        return directory
    }

    static func make(
        _ directory: Amber_Directory, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let fd = try reopen(directory, flags: description.flags, adding: O_NOCTTY, as: task, imageTrusted: imageTrusted)
        try seek(fd, directory, to: description.offset)
        return fd
    }
}

extension Amber_Directory: ReopenedByPathRecord {}
