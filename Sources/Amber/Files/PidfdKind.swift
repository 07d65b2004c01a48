import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// A pidfd of a process of the tree: made again in the restorer by pidfd_open of the restored
/// process, which has its PID again, with PIDFD_NONBLOCK and PIDFD_THREAD as the description's
/// flags. A pidfd of a process outside the tree, of a reaped one, of a zombie or of a thread
/// other than a leader is refused: the restored tree has no such process to point it at, or
/// (a thread) not yet when the fds come back.
struct PidfdKind: OpenFileKind {
    let identity: OpenFileIdentity
    let pid: Int32

    /// Made by pidfd_open of its process, which must exist first.
    static var needsTheTree: Bool { true }

    static func classify(_ descriptor: DescriptorProbe) throws -> PidfdKind? {
        guard descriptor.link == PidfdFile.link else { return nil }
        let info = try descriptor.info()
        let flags = info.flags & ~OpenFileFlags.closeOnExec.rawValue
        guard flags & ~PidfdFile.statusFlags == 0 else {
            throw descriptor.refusal(
                "a pidfd with the status flags 0o\(String(flags, radix: 8)), more than O_RDWR, PIDFD_NONBLOCK and PIDFD_THREAD (F_SETFL)"
            )
        }
        let pid: Int32
        do {
            pid = try PidfdFile.pid(info)
        } catch {
            throw descriptor.refusal("a pidfd whose process its fdinfo does not show (\(error))")
        }
        guard pid > 0 else {
            throw descriptor.refusal(
                pid < 0
                    ? "a pidfd of a process that has exited and was reaped"
                    : "a pidfd of a process of another PID namespace")
        }
        guard PidfdFile.namespacePIDs(info).count <= 1 else {
            throw descriptor.refusal("a pidfd of process \(pid), which is in a PID namespace of its own")
        }
        let status = try descriptor.status()
        return PidfdKind(identity: OpenFileIdentity(device: status.device, inode: status.inode), pid: pid)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var record = Amber_Pidfd()
        record.pid = pid
        return .pidfd(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Pidfd? {
        guard case .pidfd(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_Pidfd) -> String? { nil }

    /// The process is a task of this restore: traced by us, in our PID namespace (a restore into
    /// a new one gives it another PID here, which is not pointed at).
    static func make(
        _ record: Amber_Pidfd, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let what = "the pidfd of process \(record.pid) (open file \(description.id)) for process \(task.pid)"
        let flags = description.flags & (PidfdFile.statusFlags & ~0o3)
        let pidfd: FileDescriptor
        do {
            pidfd = try PidfdFile.open(record.pid, flags: flags)
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
        let status = try? ProcFS.status(pid: record.pid)
        guard let status, status.tracerPID == getpid(), status.namespacePIDs.count <= 1 else {
            try? pidfd.close()
            throw AmberError(
                .restoreFailed,
                "cannot make \(what): process \(record.pid) here is not the restored one (a restore into a new PID namespace gives it another PID)"
            )
        }
        return pidfd.rawValue
    }

    /// The process a pidfd of the tree is of must be a live process of the tree.
    static func check(tree processes: [CheckedProcess]) throws {
        let tree = Dictionary(processes.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
        for process in processes {
            for probe in try process.probes() where probe.link == PidfdFile.link {
                let fd = probe.fd
                guard let info = try? probe.info(), let pid = try? PidfdFile.pid(info), pid > 0 else { continue }
                let refusal: String
                if let target = tree[pid] {
                    guard target.status.state == "Z" else { continue }
                    refusal = "a pidfd of process \(target.name), a zombie of the tree"
                } else if let tgid = try? ProcFS.status(pid: pid).tgid, tgid != pid, let leader = tree[tgid] {
                    refusal = "a pidfd of thread \(pid) of process \(leader.name): threads come back after the fds"
                } else {
                    refusal = "a pidfd of process \(ProcessName(pid: pid)), which is outside the tree"
                }
                throw AmberError.unsupported(
                    process.name, "has fd \(fd) open on \(refusal): not supported yet", tree: process.tree)
            }
        }
    }
}
