import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// Mappings of files without a name: a memfd ("/memfd:NAME (deleted)" in maps) and a regular
/// file unlinked while mapped ("/path (deleted)"), whether or not a process still has it open.
/// The dump reads the file through /proc/PID/map_files and records it in the process's memory
/// as its descriptors would (`Amber_Memfd`, `Amber_DeletedFile`, the same id and contents,
/// written once for the tree by `FileContentsDump`). The restore makes it once, as its open
/// descriptions do (`MemfdKind`, `DeletedFileKind`, one object of `OpenFileObjects` for both), and
/// every area maps it at its offset: the mappings and descriptors of every process are on one
/// file again. A private mapping's copied pages are saved and written back as for any file.
enum MappedUnnamedFiles {
    /// Whether a file area of maps is of a file without a name (`MemoryState.kind` takes those
    /// the kernel names for its own objects apart first).
    static func isUnnamed(_ mapping: MemoryMapping) -> Bool { mapping.deleted }

    /// Whether an unnamed file area is a memfd's (a deleted regular file's otherwise).
    static func isMemfd(_ mapping: MemoryMapping) -> Bool {
        mapping.path.hasPrefix(MemoryFile.linkPrefix) && (mapping.fileSystem == .shmem || mapping.fileSystem == nil)
    }

    private static func mapFilesPath(pid: Int32, _ start: UInt64, _ end: UInt64) -> String {
        "/proc/\(pid)/map_files/\(String(start, radix: 16))-\(String(end, radix: 16))"
    }

    private static func range(_ mapping: MemoryMapping) -> String {
        "0x\(String(mapping.start, radix: 16))-0x\(String(mapping.end, radix: 16))"
    }

    // MARK: Dump

    /// Refuses, before the tree is touched, a mapped file without a name that cannot be read
    /// (map_files needs CAP_CHECKPOINT_RESTORE or root) or made again exactly: a memfd whose
    /// name memfd_create does not take, or whose F_SEAL_FUTURE_WRITE a shared mapping made
    /// before the seal escapes (a new mapping cannot); a deleted file whose directory is gone.
    static func check(_ process: CheckedProcess) throws {
        for mapping in process.maps where mapping.deleted {
            guard try MemoryState.kind(of: mapping, process: process.name, tree: process.tree) == .areaFile else {
                continue
            }
            let what = isMemfd(mapping) ? "the memfd \(mapping.path)" : "the deleted file \(mapping.path)"
            func refuse(_ why: String) -> AmberError {
                .unsupported(process.name, "maps \(what) at \(range(mapping)), \(why)", tree: process.tree)
            }
            let path = mapFilesPath(pid: process.pid, mapping.start, mapping.end)
            let status: FileStatus
            do {
                status = try FileStatus.stat(path: path)
            } catch {
                throw refuse(
                    "whose contents amber reads through /proc/PID/map_files, which needs CAP_CHECKPOINT_RESTORE or root (\(error))"
                )
            }
            // Only a regular file is opened: opening a device may do something.
            guard status.isRegular, status.inode == mapping.inode else {
                throw refuse("which is not a regular file (a deleted device or special file): not supported yet")
            }
            if isMemfd(mapping) {
                let name = mapping.path.dropFirst(MemoryFile.linkPrefix.count)
                guard name.utf8.count <= MemoryFile.nameLimit else {
                    throw refuse("whose name is longer than memfd_create takes: not supported yet")
                }
                let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else {
                    throw refuse("which amber cannot open to read its seals (\(LinuxError.current("open")))")
                }
                let file = FileDescriptor(rawValue: fd)
                defer { try? file.close() }
                let seals = try MemoryFile.seals(file)
                if mapping.shared, seals & MemoryFile.sealFutureWrite != 0 {
                    throw refuse(
                        "sealed with F_SEAL_FUTURE_WRITE, which a shared mapping made again could not be exactly: not supported yet"
                    )
                }
            } else {
                // Unlinked under the name maps shows but linked under another (an O_TMPFILE file
                // linked since, say): a copy made again would no longer be that file.
                guard status.linkCount == 0 else {
                    throw refuse("which is still linked under a name maps does not show: not supported yet")
                }
                let directory = String(mapping.path[..<mapping.path.utf8.lastIndex(of: UInt8(ascii: "/"))!])
                let reached = MountNamespaceState.hostPath(directory.isEmpty ? "/" : directory, of: process.pid)
                guard (try? FileStatus.stat(path: reached))?.isDirectory == true else {
                    throw refuse(
                        "whose directory \(directory) is gone too (a restore makes it again in it): not restored")
                }
            }
        }
    }

    /// What one process maps of files without a name, by the ids its areas name them by.
    struct Records {
        var memfds: [Amber_Memfd] = []
        var deletedFiles: [Amber_DeletedFile] = []
    }

    /// Gives an area of a file without a name the id of its file, recorded in `records` the
    /// first time the process maps it; its contents are written once for the tree (`contents`).
    static func identify(
        _ mapping: MemoryMapping, in area: inout Amber_MemoryArea, target: DumpTarget, records: inout Records,
        contents: FileContentsDump
    ) throws {
        let path = mapFilesPath(pid: target.pid, mapping.start, mapping.end)
        let status = try FileStatus.stat(path: path)
        guard status.inode == mapping.inode, status.isRegular else {
            throw AmberError(
                .failure,
                "the file process \(target.name) maps at \(range(mapping)) is inode \(status.inode), not the regular file \(mapping.inode) maps names"
            )
        }
        let identity = OpenFileIdentity(device: status.device, inode: status.inode)
        func refusal(_ error: LinuxError) -> AmberError {
            .unsupported(
                target.name,
                "maps \(mapping.path) at \(range(mapping)), which amber cannot open to read what it holds: \(error)")
        }
        if isMemfd(mapping) {
            area.memfdID = status.inode
            guard !records.memfds.contains(where: { $0.memfdID == status.inode }) else { return }
            var memfd = Amber_Memfd()
            memfd.memfdID = status.inode
            memfd.name = String(mapping.path.dropFirst(MemoryFile.linkPrefix.count))
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw refusal(LinuxError.current("open \(path)")) }
            let file = FileDescriptor(rawValue: fd)
            defer { try? file.close() }
            memfd.seals = try MemoryFile.seals(file)
            memfd.mode = status.permissions
            memfd.ownerUid = status.uid
            memfd.ownerGid = status.gid
            memfd.contents = try contents.contents(at: path, identity: identity, refusal: refusal)
            records.memfds.append(memfd)
        } else {
            let id = contents.id(of: identity)
            area.deletedFileID = id
            guard !records.deletedFiles.contains(where: { $0.fileID == id }) else { return }
            var deleted = Amber_DeletedFile()
            deleted.fileID = id
            deleted.path = mapping.path
            deleted.mode = status.permissions
            deleted.ownerUid = status.uid
            deleted.ownerGid = status.gid
            deleted.temporary = DeletedFileKind.isTemporaryFile(path: mapping.path, inode: status.inode)
            deleted.contents = try contents.contents(at: path, identity: identity, refusal: refusal)
            records.deletedFiles.append(deleted)
        }
    }

    // MARK: Restore

    /// The descriptors one process maps files without a name by while its areas are made: one
    /// per file and way of opening it (read-only, or read-write for a shared mapping that is or
    /// may be made writable), installed in the task once and closed there again once its areas
    /// are mapped.
    final class TaskFiles {
        private struct Key: Hashable {
            let memfd: Bool
            let id: UInt64
            let flags: Int32
        }

        private let session: RestoreSession
        private var installed: [Key: Int32] = [:]

        init(_ session: RestoreSession) { self.session = session }

        /// The task's descriptor of the file `area` maps, which the restore makes the first
        /// time any process maps it or has it open.
        func descriptor(for area: Amber_MemoryArea) throws -> Int32 {
            let flags = MemoryState.openFlags(of: area)
            let key = Key(
                memfd: area.memfdID != 0, id: area.memfdID != 0 ? area.memfdID : area.deletedFileID, flags: flags)
            if let fd = installed[key] { return fd }
            let (object, what) = try key.memfd ? memfd(key.id) : deletedFile(key.id)
            // A description of its own: the one the file was made with may be read-only or
            // appending. A memfd mapped for writing takes the one memfd_create made, which, as
            // the process's own did, counts as no writer: one opened again for writing would
            // keep an exec of the memfd failing (ETXTBSY) for as long as it is mapped.
            let opened =
                key.memfd && flags & O_ACCMODE == O_RDWR
                ? fcntl(object.fd, F_DUPFD_CLOEXEC, 0) : Glibc.open("/proc/self/fd/\(object.fd)", flags | O_CLOEXEC)
            guard opened >= 0 else {
                throw AmberError(
                    .restoreFailed,
                    "cannot open \(what) to map it at 0x\(String(area.start, radix: 16)) in process \(session.task.pid): \(LinuxError.current("open"))"
                )
            }
            defer { Glibc.close(opened) }
            let fd = try session.install(opened)
            installed[key] = fd
            return fd
        }

        private func memfd(_ id: UInt64) throws -> (RestoredUnnamedFile, String) {
            let task = session.task
            guard let record = task.memory.memfds.first(where: { $0.memfdID == id }) else {
                throw AmberError(
                    .badImage,
                    "image file \(ImageFormat.taskRecordName(pid: task.pid)) maps memfd \(id) it does not describe")
            }
            let what = "the memfd \(record.name)"
            let objects = session.openFiles.objects
            let file = try objects.object(id) {
                try MemfdKind.create(record, image: objects.image, what: what, task: task)
            }
            return (file, what)
        }

        private func deletedFile(_ id: UInt64) throws -> (RestoredUnnamedFile, String) {
            let task = session.task
            guard let record = task.memory.deletedFiles.first(where: { $0.fileID == id }) else {
                throw AmberError(
                    .badImage,
                    "image file \(ImageFormat.taskRecordName(pid: task.pid)) maps deleted file \(id) it does not describe"
                )
            }
            let what = "the deleted file \(record.path)"
            let objects = session.openFiles.objects
            // Read-only: each mapping opens a description of its own, and a deleted executable
            // may be no process's executable while a description writes it (ETXTBSY). But a
            // description of the task's with O_NOFOLLOW (Python's multiprocessing heap) must be
            // the one the file is made with: one opened through /proc/self/fd cannot have it.
            let noFollow = task.files.descriptions.first {
                DeletedFileKind.record(of: $0)?.fileID == id && RestoredUnnamedFile.openFlags($0) & O_NOFOLLOW != 0
            }
            let file = try objects.object(id) {
                try DeletedFileKind.create(
                    record, flags: noFollow.map(RestoredUnnamedFile.openFlags) ?? O_RDONLY | O_CLOEXEC,
                    image: objects.image, what: what, task: task)
            }
            return (file, what)
        }

        /// Closes the task's descriptors of the files: its areas keep them.
        func close() throws(LinuxError) {
            for fd in installed.values {
                try session.injector.call("close mapped unnamed file", SyscallNumber.close, UInt64(fd))
            }
            installed = [:]
        }
    }

    /// Owners of the mapped files other than the task's own, which ask for CAP_CHOWN.
    static func privilegedAsks(_ memory: Amber_Memory, owner: Amber_Credentials) -> [PrivilegedAsk] {
        memory.memfds.flatMap {
            RestoredUnnamedFile.ownerAsks(uid: $0.ownerUid, gid: $0.ownerGid, of: "the memfd \($0.name)", owner: owner)
        }
            + memory.deletedFiles.flatMap {
                RestoredUnnamedFile.ownerAsks(
                    uid: $0.ownerUid, gid: $0.ownerGid, of: "the deleted file \($0.path)", owner: owner)
            }
    }
}
