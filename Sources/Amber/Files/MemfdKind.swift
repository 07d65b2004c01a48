import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// A memfd ("/memfd:NAME (deleted)" on the kernel's shmem mount), as CRIU's memfd.c: made
/// again by memfd_create with its name, given what it holds (`FileContentsDump`), its size,
/// mode and owner, then its seals, once per memfd (`RestoredUnnamedFile`); each description of
/// it is opened on it through /proc/self/fd, so the link reads as before. A hugetlb memfd is on
/// hugetlbfs, which this kind does not take (refused as hugetlb memory).
struct MemfdKind: OpenFileKind {
    let status: FileStatus
    let name: String

    static func classify(_ descriptor: DescriptorProbe) throws -> MemfdKind? {
        guard descriptor.link.hasPrefix(MemoryFile.linkPrefix), descriptor.link.hasSuffix(" (deleted)") else {
            return nil
        }
        let status = try descriptor.status()
        guard status.isRegular, status.isDeleted,
            try FileSystemKind.of(path: "/proc/\(descriptor.pid)/fd/\(descriptor.fd)") == .shmem
        else { return nil }
        let name = String(descriptor.link.dropFirst(MemoryFile.linkPrefix.count).dropLast(" (deleted)".count))
        return MemfdKind(status: status, name: name)
    }

    var identity: OpenFileIdentity { OpenFileIdentity(device: status.device, inode: status.inode) }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        guard name.utf8.count <= MemoryFile.nameLimit else {
            throw descriptor.refusal("a memfd whose name \(name) is longer than memfd_create takes")
        }
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        var memfd = Amber_Memfd()
        memfd.memfdID = status.inode
        memfd.name = name
        memfd.seals = try MemoryFile.seals(copy)
        memfd.mode = status.permissions
        memfd.ownerUid = status.uid
        memfd.ownerGid = status.gid
        memfd.contents = try descriptor.contentsDump().contents(of: descriptor, identity: identity)
        return .memfd(memfd)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Memfd? {
        guard case .memfd(let memfd) = description.file else { return nil }
        return memfd
    }

    static func reopenedPath(of record: Amber_Memfd) -> String? { nil }

    static func make(
        _ memfd: Amber_Memfd, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let what = "the memfd \(memfd.name)"
        let file = try objects.object(memfd.memfdID) { try create(memfd, image: objects.image, what: what, task: task) }
        return try file.open(description, what: what, task: task)
    }

    /// memfd_create with the name; executable unless it was sealed against it without an
    /// execute bit (MFD_NOEXEC_SEAL), whatever vm.memfd_noexec would give by default.
    static func create(_ memfd: Amber_Memfd, image: ImageReader?, what: String, task: Amber_Task) throws
        -> RestoredMemfd
    {
        let noExec = memfd.seals & MemoryFile.sealExec != 0 && memfd.mode & 0o111 == 0
        let flags = MemoryFile.allowSealing | (noExec ? MemoryFile.noExecSeal : MemoryFile.exec)
        let fd: Int32
        do {
            fd = try MemoryFile.create(name: memfd.name, flags: flags).rawValue
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what) for process \(task.pid): \(error)")
        }
        // Its own description goes to one of the image's like it: a memfd_create'd one, which
        // an exec of the memfd (fexecve, execveat) does not count as a writer.
        let file = RestoredMemfd(fd: fd, flags: MemoryFile.createdDescriptionFlags)
        do {
            try memfd.contents.write(into: fd, image: image, what: what, task: task)
            try RestoredUnnamedFile.setOwnerAndMode(
                fd, uid: memfd.ownerUid, gid: memfd.ownerGid, mode: memfd.mode, what: what, task: task)
            let descriptor = FileDescriptor(rawValue: fd)
            try MemoryFile.addSeals(descriptor, memfd.seals)
            let seals = try MemoryFile.seals(descriptor)
            guard seals == memfd.seals else {
                throw AmberError(
                    .restoreFailed,
                    "\(what) of process \(task.pid) got the seals 0x\(String(seals, radix: 16)) instead of 0x\(String(memfd.seals, radix: 16))"
                )
            }
        } catch let error as LinuxError {
            file.close()
            throw AmberError(.restoreFailed, "cannot seal \(what) of process \(task.pid): \(error)")
        } catch {
            file.close()
            throw error
        }
        return file
    }

    static func privilegedAsks(_ memfd: Amber_Memfd, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    {
        RestoredUnnamedFile.ownerAsks(
            uid: memfd.ownerUid, gid: memfd.ownerGid, of: "the memfd \(memfd.name)", owner: owner)
    }
}
