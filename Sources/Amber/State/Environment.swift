import AmberImage
import Glibc
import LinuxKit

/// What surrounds the process: working directory, umask, resource limits.
enum EnvironmentState {
    /// Refuses a root directory (chroot) other than amber's, which a restored process would
    /// get instead (in a mount namespace of its own: other than its tree root's, the root of
    /// that namespace, `MountNamespaceState`), and a working directory that restore cannot
    /// reopen by its path (the tree's path, in a mount namespace of its own): one its path no longer reaches, such as /proc/PID of a process that has gone. One that was
    /// removed (the kernel keeps it with no links) is made again (`DeletedWorkingDirectory`).
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        let ownRoot = MountNamespaceState.hostPath("/", of: pid) == "/" ? "/proc/self/root" : "/proc/\(tree.pid)/root"
        if let root = try? FileStatus.stat(path: "/proc/\(pid)/root"),
            let own = try? FileStatus.stat(path: ownRoot),
            root.device != own.device || root.inode != own.inode
        {
            let path = (try? ProcFS.link("/proc/\(pid)/root")) ?? "?"
            throw AmberError.unsupported(
                process, "has its own root directory \(path) (chroot): not supported yet", tree: tree)
        }
        let cwd = try ProcFS.cwd(pid: pid)
        let (status, links) = try FileStatus.statWithLinkCount(path: "/proc/\(pid)/cwd")
        if links == 0 {
            guard cwd.hasSuffix(DeletedWorkingDirectory.suffix), cwd != "/" + DeletedWorkingDirectory.suffix else {
                throw AmberError.unsupported(
                    process,
                    "has the deleted directory \(cwd) as its working directory, which has no name to make again",
                    tree: tree)
            }
            return
        }
        guard let atPath = try? FileStatus.stat(path: MountNamespaceState.hostPath(cwd, of: pid)),
            atPath.device == status.device, atPath.inode == status.inode
        else {
            throw AmberError.unsupported(
                process,
                "has the working directory \(cwd), which that path no longer reaches\(cwd.hasPrefix("/proc/") ? " (the /proc directory of a process that has gone)" : ""): restore could not reopen it",
                tree: tree)
        }
    }

    static func dump(_ target: DumpTarget) throws -> Amber_Environment {
        var record = Amber_Environment()
        record.cwd = try target.proc.cwd(pid: target.pid)
        let cwd = "/proc/\(target.pid)/cwd"
        let directory = try? FileStatus.stat(path: cwd)
        if let directory { (record.cwdDevice, record.cwdInode) = (directory.device, directory.inode) }
        // The kernel ends a removed directory's link so; the link count tells one named so.
        if record.cwd.hasSuffix(DeletedWorkingDirectory.suffix),
            case let status = try directory ?? FileStatus.stat(path: cwd), status.isDeleted
        {
            record.deletedCwd.directoryID = status.inode
            record.deletedCwd.mode = status.permissions
            record.deletedCwd.ownerUid = status.uid
            record.deletedCwd.ownerGid = status.gid
        }
        record.umask = target.status.umask ?? 0o022
        // /proc/PID/limits, not prlimit: prlimit on another task needs CAP_SYS_RESOURCE over it.
        for limit in try target.proc.limits(pid: target.pid) {
            var entry = Amber_ResourceLimit()
            entry.resource = UInt32(limit.resource)
            entry.soft = limit.soft
            entry.hard = limit.hard
            record.limits.append(entry)
        }
        return record
    }

    /// How a restore opens the working directory by its path.
    static func workingDirectoryKey(of record: Amber_Environment) -> TreeFiles.Key {
        TreeFiles.Key(path: record.cwd, flags: O_RDONLY | O_DIRECTORY, device: record.cwdDevice, inode: record.cwdInode)
    }

    static func restore(_ record: Amber_Environment, _ session: RestoreSession) throws {
        if record.hasDeletedCwd {
            let directory = try session.openFiles.objects.object(record.deletedCwd.directoryID) {
                try DeletedWorkingDirectory(record, task: session.task, imageTrusted: session.imageTrusted)
            }
            let fd = try session.install(directory.fd)
            try session.injector.call("fchdir", SyscallNumber.fchdir, UInt64(fd))
            try session.injector.call("close", SyscallNumber.close, UInt64(fd))
        } else {
            let directory = try session.openInTask(workingDirectoryKey(of: record), what: "the working directory")
            try session.injector.call("fchdir", SyscallNumber.fchdir, UInt64(directory.fd))
            try session.closeInTask(directory)
        }
        if record.umask != session.baseline.umask {
            try session.injector.call("umask", SyscallNumber.umask, UInt64(record.umask))
        }
        for limit in record.limits {
            // The helper inherited our limits: only set those that differ, and the descriptors'
            // if the files step raised it.
            var current = rlimit()
            let raised = limit.resource == Int32(ResourceLimit.openFiles) && session.descriptorLimitRaised
            if !raised, getrlimit(__rlimit_resource_t(limit.resource), &current) == 0,
                UInt64(current.rlim_cur) == limit.soft, UInt64(current.rlim_max) == limit.hard
            {
                continue
            }
            var arguments = session.arguments()
            let address = try arguments.place(rlimit(rlim_cur: rlim_t(limit.soft), rlim_max: rlim_t(limit.hard)))
            let result = try session.injector.raw(SyscallNumber.prlimit64, 0, UInt64(limit.resource), address, 0)
            if result == -Int64(EPERM) {
                throw AmberError(
                    .restoreFailed,
                    "cannot raise resource limit \(limit.resource) to soft \(limit.soft), hard \(limit.hard): the restorer's hard limit is lower and raising it needs CAP_SYS_RESOURCE"
                )
            } else if result < 0 {
                throw LinuxError(negated: Int(result), "prlimit64(\(limit.resource)) in task \(session.pid)")
            }
        }
    }
}

extension EnvironmentState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("environment", .outside) { process, _ in process.task.environment = try dump(process.target) }
        ]
    }

    static var restoreSteps: [RestoreStep] {
        [RestoreStep("environment", order: 300) { try restore($0.task.environment, $0) }]
    }
}

/// A working directory removed while a process was in it ("/path (deleted)"): made again at its
/// path as the task (no symbolic link on the way, in a directory that exists: a name taken since
/// refuses the restore), opened, given its owner and mode, and removed, once for every process
/// that had it; each enters it by fchdir. It is empty and nothing can be made in it, as before.
final class DeletedWorkingDirectory: SharedOpenFileObject {
    static let suffix = " (deleted)"

    /// The restorer's descriptor of it.
    let fd: Int32

    init(_ record: Amber_Environment, task: Amber_Task, imageTrusted: Bool) throws {
        let deleted = record.deletedCwd
        let path = String(record.cwd.dropLast(Self.suffix.count))
        let what = "the deleted working directory \(path)"
        let identity = task.processCredentials.map {
            FileAccessIdentity(uid: $0.fsuid, gid: $0.fsgid, groups: $0.groups)
        }
        do {
            try PathOpening.makeDirectory(path, mode: 0o700, as: identity)
        } catch {
            let why =
                switch error.errno {
                case .fileExists: "another file has its name now"
                case .noSuchFileOrDirectory: "the directory it was in does not exist"
                case .tooManySymbolicLinkLevels: "a symbolic link is on its path now"
                default: "\(error)"
                }
            throw AmberError(.restoreFailed, "cannot make \(what) again for process \(task.pid): \(why)")
        }
        let opened: Int32
        do {
            opened = try PathOpening.open(path, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, as: identity)
            try PathOpening.unlink(path, openAs: opened, directory: true, as: identity)
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what) again for process \(task.pid): \(error)")
        }
        fd = opened
        do {
            let status = try FileStatus.fstat(fd: fd)
            if status.uid != deleted.ownerUid || status.gid != deleted.ownerGid {
                guard imageTrusted else {
                    throw AmberError(
                        .permissionDenied,
                        "cannot give \(what) of process \(task.pid) its owner uid \(deleted.ownerUid), gid \(deleted.ownerGid): the task would make it as uid \(status.uid), gid \(status.gid), and the image is not authenticated (restore with --trust-image only an image you trust)"
                    )
                }
                guard fchown(fd, deleted.ownerUid, deleted.ownerGid) == 0 else {
                    throw AmberError(
                        .restoreFailed, "cannot give \(what) its owner: \(LinuxError.current("fchown"))")
                }
            }
            guard fchmod(fd, mode_t(deleted.mode)) == 0 else {
                throw AmberError(.restoreFailed, "cannot give \(what) its mode: \(LinuxError.current("fchmod"))")
            }
        } catch {
            close()
            throw error
        }
    }

    func close() { Glibc.close(fd) }
}
