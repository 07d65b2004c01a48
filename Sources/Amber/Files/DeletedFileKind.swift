import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// A regular file unlinked while open ("/path (deleted)" with no link left), as CRIU's
/// files-reg.c does with a ghost file: at restore it is made again at its path, exclusively
/// and as the task (no symbolic link on the way, in a directory that exists; where another file
/// has that name, as a rotated log's new file has, at "PATH.amber-ID" beside it, which its link
/// then shows), unlinked at once, and given what it held (`FileContentsDump`), its size,
/// owner, mode, access and modification times, once per file (`RestoredUnnamedFile`); each description of it is opened on
/// it through /proc/self/fd, so the link reads as before. An O_TMPFILE file never linked (its
/// name is "#INODE" of its own inode) is made again by O_TMPFILE in its directory instead, so
/// that it can still be linked; its name is then its new inode's, as a new inode is what every
/// restored deleted file is. Refused: a file unlinked under the name it was opened by but still
/// linked under another, which its link cannot lead to (refused as "a file its path does not
/// lead to"), and one whose directory is gone too.
struct DeletedFileKind: OpenFileKind {
    let status: FileStatus
    let path: String

    static func classify(_ descriptor: DescriptorProbe) throws -> DeletedFileKind? {
        guard case .deleted(let path) = try descriptor.linkPath(), descriptor.link.hasSuffix(" (deleted)") else {
            return nil
        }
        let status = try descriptor.status()
        guard status.isRegular else { return nil }
        switch try FileSystemKind.of(path: "/proc/\(descriptor.pid)/fd/\(descriptor.fd)") {
        case .shmem where path.hasPrefix(MemoryFile.linkPrefix) || path.hasPrefix("/SYSV") || path == "/dev/zero":
            return nil
        case .hugetlbfs, .aioRing, .devpts, .mqueue: return nil
        default: break
        }
        let directory = directory(of: path)
        guard
            (try? FileStatus.stat(path: MountNamespaceState.hostPath(directory, of: descriptor.pid)))?.isDirectory
                == true
        else {
            throw descriptor.refusal(
                "the deleted file \(path), whose directory \(directory) is gone too (a restore makes it again in it): not restored"
            )
        }
        return DeletedFileKind(status: status, path: path)
    }

    var identity: OpenFileIdentity { OpenFileIdentity(device: status.device, inode: status.inode) }

    /// Whether the deleted file at `path` is an O_TMPFILE file never linked: the kernel names
    /// such a file "#INODE" after its own inode. (Linked once, it has the name it was linked by,
    /// and, unlinked again, it can no more be linked than any deleted file.)
    static func isTemporaryFile(path: String, inode: UInt64) -> Bool {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return false }
        return path[path.index(after: slash)...] == "#\(inode)"
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var file = Amber_DeletedFile()
        file.fileID = try descriptor.contentsDump().id(of: identity)
        file.path = path
        file.mode = status.permissions
        file.ownerUid = status.uid
        file.ownerGid = status.gid
        file.temporary = Self.isTemporaryFile(path: path, inode: status.inode)
        // Read before the contents are: reading them may move the access time.
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        let times = try FileTimes.of(copy)
        (file.accessTimeNs, file.modificationTimeNs) = (times.accessNs, times.modificationNs)
        // Made again as a new file, it would have neither.
        if try FileAttributes.extendedAttributeNamesLength(copy) > 0 {
            throw descriptor.refusal("the deleted file \(path), which has extended attributes (setxattr)")
        }
        let fileFlags = try FileAttributes.inodeFlags(copy)
        var flags = fileFlags & FileAttributes.setByChattr
        if fileFlags & FileAttributes.inheritedFromDirectory != 0 {
            let directory = try FileDescriptor.open(
                MountNamespaceState.hostPath(Self.directory(of: path), of: descriptor.pid), .readOnly,
                options: [.directory, .closeOnExec])
            defer { try? directory.close() }
            flags |= fileFlags & FileAttributes.inheritedFromDirectory & ~(try FileAttributes.inodeFlags(directory))
        }
        if flags != 0 {
            throw descriptor.refusal(
                "the deleted file \(path), with the inode flags 0x\(String(flags, radix: 16)) set by chattr, which a new file there would not have"
            )
        }
        file.contents = try descriptor.contentsDump().contents(of: descriptor, identity: identity)
        return .deletedFile(file)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_DeletedFile? {
        guard case .deletedFile(let file) = description.file else { return nil }
        return file
    }

    static func reopenedPath(of record: Amber_DeletedFile) -> String? { nil }

    static func make(
        _ deleted: Amber_DeletedFile, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let what = "the deleted file \(deleted.path)"
        let file = try objects.object(deleted.fileID) {
            try create(
                deleted, flags: RestoredUnnamedFile.openFlags(description), image: objects.image, what: what, task: task
            )
        }
        return try file.open(description, what: what, task: task)
    }

    /// Creates the file at its path as the task with `flags` (those of the first description of
    /// it made, or read-only for a mapping), unlinks it, then fills it through a description of
    /// the restorer's own. An O_TMPFILE file is made by O_TMPFILE in its directory instead.
    static func create(
        _ deleted: Amber_DeletedFile, flags: Int32, image: ImageReader?, what: String, task: Amber_Task
    ) throws -> RestoredDeletedFile {
        var flags = OpenFileFlags.reopening(flags)
        // An O_PATH description cannot make a file, nor can a read-only one make an O_TMPFILE
        // file: either is opened on one made for reading and writing.
        let pathOnly = flags & OpenFileFlags.pathOnly.openFlags != 0
        if pathOnly {
            flags = O_RDWR
        } else if deleted.temporary && flags & O_ACCMODE == O_RDONLY {
            flags = flags & ~O_ACCMODE | O_RDWR
        }
        let identity = task.processCredentials.map {
            FileAccessIdentity(uid: $0.fsuid, gid: $0.fsgid, groups: $0.groups)
        }
        if deleted.temporary {
            flags |= OpenFileFlags.temporaryFile.openFlags
            let fd: Int32
            do {
                fd = try PathOpening.open(directory(of: deleted.path), flags: flags, as: identity)
            } catch {
                throw AmberError(
                    .restoreFailed,
                    "cannot make \(what) again by O_TMPFILE for process \(task.pid): \(error)")
            }
            let file = RestoredDeletedFile(fd: fd, flags: pathOnly ? nil : flags)
            try fill(file, deleted, image: image, what: what, task: task)
            return file
        }
        // Making the file and unlinking it moves its directory's times: they are set back after
        // (where the restorer may; its change time moves all the same).
        let directory =
            (try? PathOpening.open(directory(of: deleted.path), flags: O_RDONLY | O_DIRECTORY, as: identity)) ?? -1
        defer { if directory >= 0 { Glibc.close(directory) } }
        let directoryTimes = directory >= 0 ? try? FileTimes.of(FileDescriptor(rawValue: directory)) : nil
        let fd: Int32
        // A name taken (a log rotated: the deleted file's name is the new log's) is left alone:
        // the file is made beside it, under a name of its own, which its link then shows.
        var path = deleted.path
        do {
            do {
                fd = try PathOpening.open(path, flags: flags | O_CREAT | O_EXCL, as: identity)
            } catch  where error.errno == .fileExists {
                path = "\(deleted.path).amber-\(deleted.fileID)"
                fd = try PathOpening.open(path, flags: flags | O_CREAT | O_EXCL, as: identity)
            }
        } catch {
            let why =
                switch error.errno {
                case .fileExists: "another file has its name, and the name beside it \(path), now"
                case .noSuchFileOrDirectory: "its directory does not exist"
                case .tooManySymbolicLinkLevels: "a symbolic link is on its path now"
                default: "\(error)"
                }
            throw AmberError(.restoreFailed, "cannot make \(what) again for process \(task.pid): \(why)")
        }
        let file = RestoredDeletedFile(fd: fd, flags: pathOnly ? nil : flags)
        do {
            try PathOpening.unlink(path, openAs: fd, as: identity)
        } catch {
            file.close()
            throw AmberError(.restoreFailed, "cannot unlink \(what) made again for process \(task.pid): \(error)")
        }
        if let directoryTimes { try? directoryTimes.set(on: FileDescriptor(rawValue: directory)) }
        try fill(file, deleted, image: image, what: what, task: task)
        return file
    }

    private static func directory(of path: String) -> String {
        let directory = String(path[..<path.utf8.lastIndex(of: UInt8(ascii: "/"))!])
        return directory.isEmpty ? "/" : directory
    }

    /// Writes back what the file held, its owner and its mode; closes it on failure.
    private static func fill(
        _ file: RestoredDeletedFile, _ deleted: Amber_DeletedFile, image: ImageReader?, what: String, task: Amber_Task
    ) throws {
        let fd = file.fd
        do {
            // Its own description may be read-only or appending: the data goes through another.
            let filler = Glibc.open("/proc/self/fd/\(fd)", O_RDWR | O_CLOEXEC)
            guard filler >= 0 else {
                throw AmberError(
                    .restoreFailed,
                    "cannot open \(what) of process \(task.pid) to write back what it held: \(LinuxError.current("open"))"
                )
            }
            defer { Glibc.close(filler) }
            try deleted.contents.write(into: filler, image: image, what: what, task: task)
            try RestoredUnnamedFile.setOwnerAndMode(
                fd, uid: deleted.ownerUid, gid: deleted.ownerGid, mode: deleted.mode, what: what, task: task)
            // Last: writing the contents back moved them. An image of an amber before these
            // fields has neither.
            let times = FileTimes(accessNs: deleted.accessTimeNs, modificationNs: deleted.modificationTimeNs)
            do {
                if times != FileTimes(accessNs: 0, modificationNs: 0) {
                    try times.set(on: FileDescriptor(rawValue: fd))
                }
            } catch {
                throw AmberError(
                    .restoreFailed,
                    "cannot set the access and modification times of \(what) of process \(task.pid): \(error)")
            }
        } catch {
            file.close()
            throw error
        }
    }

    static func privilegedAsks(
        _ deleted: Amber_DeletedFile, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline
    )
        -> [PrivilegedAsk]
    {
        RestoredUnnamedFile.ownerAsks(
            uid: deleted.ownerUid, gid: deleted.ownerGid, of: "the deleted file \(deleted.path)", owner: owner)
    }
}
