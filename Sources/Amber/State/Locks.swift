import AmberImage
import LinuxKit
import SystemPackage

/// File locks: flock and OFD locks, which belong to an open file description, and POSIX
/// (fcntl F_SETLK) record locks, which belong to the process and the file. Read from each
/// descriptor's fdinfo, not /proc/locks: reading /proc/locks takes the kernel's file lock
/// semaphore for writing, which waits for an RCU grace period (8 ms here, per read). The
/// kernel shows on an fd the locks set through its open file description whose owner is that
/// description or this process's fd table: a POSIX lock only in the process that holds it,
/// and only on the fds of the one description it was set through; a flock or OFD lock on
/// every fd of its description, in every process. Leases and any lock not advisory are refused.
/// At restore they are set again by calls injected into each process once nothing of the
/// restorer's is closed in it any more: closing any fd of a file drops all of the process's
/// POSIX locks on it.
enum LockState {
    static func check(_ process: CheckedProcess) throws {
        for probe in try process.probes() {
            for lock in try probe.info().locks {
                if let reason = refusal(of: lock, pid: process.pid) {
                    throw AmberError.unsupported(
                        process.name, "holds \(description(of: lock)) on \(probe.link) (fd \(probe.fd)): \(reason)",
                        tree: process.tree)
                }
            }
        }
    }

    /// Why `lock`, shown on an fd of process `pid`, cannot be brought back exactly; nil if it can.
    private static func refusal(of lock: FileLock, pid: Int32) -> String? {
        switch lock.kind {
        case .lease: return "leases are not restored (the lease holder's signal and breaking state are not read)"
        case .other: return "locks of this kind are not restored"
        case .flock, .posix, .openFileDescription: break
        }
        guard lock.advice == "ADVISORY" else { return "only advisory locks are restored, this one is \(lock.advice)" }
        guard lock.mode == "READ" || lock.mode == "WRITE" else {
            return "its type \(lock.mode) is neither a read nor a write lock"
        }
        if lock.kind == .posix && lock.pid != pid {
            return "it is owned by process \(lock.pid), which shares the fd table"
        }
        return nil
    }

    private static func description(of lock: FileLock) -> String {
        let mode = lock.mode.lowercased()
        let range = lock.kind == .flock ? "" : " of bytes \(lock.start)-\(lock.end.map(String.init) ?? "EOF")"
        switch lock.kind {
        case .flock: return "a flock \(mode) lock"
        case .posix: return "a POSIX (fcntl F_SETLK) \(mode) lock\(range)"
        case .openFileDescription: return "an OFD (fcntl F_OFD_SETLK) \(mode) lock\(range)"
        case .lease: return "a \(mode) lease (fcntl F_SETLEASE)"
        case .other(let name): return "a \(name) \(mode) lock"
        }
    }

    // MARK: Dump

    /// The record of one lock as the kernel shows it.
    private static func record(of lock: FileLock) -> Amber_FileLock {
        var record = Amber_FileLock()
        switch lock.kind {
        case .flock: record.kind = .flock
        case .posix: record.kind = .posix
        default: record.kind = .ofd
        }
        record.write = lock.mode == "WRITE"
        if lock.kind != .flock {
            record.start = lock.start
            record.length = lock.end.map { $0 - lock.start + 1 } ?? 0
        }
        return record
    }

    /// Reads the locks of every descriptor of the process (from the fdinfo the files step read)
    /// into its files record: a description's
    /// flock and OFD locks the first time the tree shows it (`seen`, so that every process
    /// records the same), the process's POSIX locks once each.
    static func dump(_ target: DumpTarget, files: inout Amber_Files, seen: inout [UInt32: [Amber_FileLock]]) throws {
        struct Key: Hashable {
            let device: String, inode: UInt64, start: UInt64, end: UInt64?, write: Bool
        }
        var posix: Set<Key> = []
        var descriptionLocks: [UInt32: [Amber_FileLock]] = [:]
        let probes = Dictionary(
            try target.snapshot.descriptors.probes(process: target.name, tree: nil).map { ($0.fd, $0) },
            uniquingKeysWith: { first, _ in first })
        for descriptor in files.descriptors {
            let locks = try probes[descriptor.fd]?.info().locks ?? ProcFS.fileLocks(pid: target.pid, fd: descriptor.fd)
            if let reason = locks.lazy.compactMap({ refusal(of: $0, pid: target.pid) }).first {
                throw AmberError.unsupported(
                    target.name, "holds a file lock on fd \(descriptor.fd) that cannot be restored: \(reason)")
            }
            for lock in locks where lock.kind == .posix {
                guard
                    posix.insert(
                        Key(
                            device: lock.device, inode: lock.inode, start: lock.start, end: lock.end,
                            write: lock.mode == "WRITE")
                    ).inserted
                else { continue }
                var record = record(of: lock)
                record.descriptionID = descriptor.descriptionID
                files.posixLocks.append(record)
            }
            if descriptionLocks[descriptor.descriptionID] == nil {
                descriptionLocks[descriptor.descriptionID] =
                    seen[descriptor.descriptionID] ?? locks.filter { $0.kind != .posix }.map(record(of:))
                seen[descriptor.descriptionID] = descriptionLocks[descriptor.descriptionID]
            }
        }
        for index in files.descriptions.indices {
            files.descriptions[index].locks = descriptionLocks[files.descriptions[index].id] ?? []
        }
    }

    // MARK: Restore

    /// Sets every lock of the process again through one of its fds on the description each
    /// names: its descriptions' flock and OFD locks (a description several processes share gets
    /// them again from each, which changes nothing: the lock is the description's), then its
    /// POSIX locks. Runs once the registers are back, so the arguments go below the red zone of
    /// the stack the task will run on (its scratch area is gone); the task stays stopped, as
    /// every task of the tree does until all are restored.
    static func restore(_ session: RestoreSession) throws {
        let files = session.task.files
        let locks = files.descriptions.flatMap(\.locks) + files.posixLocks
        guard !locks.isEmpty, !session.task.zombie else { return }
        let descriptions = Dictionary(files.descriptions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var fds: [UInt32: Int32] = [:]
        for descriptor in files.descriptors where fds[descriptor.descriptionID] == nil {
            fds[descriptor.descriptionID] = descriptor.fd
        }
        let injector = try session.injectorOnRestoredRegisters()
        do {
            for description in files.descriptions {
                for lock in description.locks {
                    try set(lock, description: description, fd: fds[description.id], injector, session)
                }
            }
            for lock in files.posixLocks {
                try set(
                    lock, description: descriptions[lock.descriptionID], fd: fds[lock.descriptionID], injector, session)
            }
        } catch {
            try? injector.finish()
            throw error
        }
        try injector.finish()
    }

    private static func set(
        _ lock: Amber_FileLock, description: Amber_OpenFileDescription?, fd: Int32?, _ injector: any SyscallInjecting,
        _ session: RestoreSession
    ) throws {
        let task = session.task
        guard let description, let fd else {
            throw AmberError(
                .badImage,
                "image file \(ImageFormat.taskRecordName(pid: task.pid)): a file lock is on an open file no fd of the process refers to"
            )
        }
        let what = "\(lockDescription(lock)) on \(path(of: description)) (fd \(fd))"
        let result: Int64
        if lock.kind == .flock {
            let operation = (lock.write ? FileLocking.exclusive : FileLocking.shared) | FileLocking.nonBlocking
            result = try injector.raw(SyscallNumber.flock, UInt64(fd), operation)
        } else {
            let command = lock.kind == .posix ? FileLocking.setLock : FileLocking.setOpenFileDescriptionLock
            let bytes = FileLocking.recordLock(
                type: lock.write ? FileLocking.writeLock : FileLocking.readLock, start: lock.start, length: lock.length)
            result = try ScratchArena.belowRedZone(of: injector, size: FileLocking.recordLockSize) { arena in
                try injector.raw(SyscallNumber.fcntl, UInt64(fd), command, try arena.place(bytes))
            }
        }
        guard result < 0 else {
            try checkUnchanged(description, fd: fd, what: what, session)
            return
        }
        let errno = Errno(rawValue: CInt(-result))
        if errno == .wouldBlock || errno == .permissionDenied {
            throw AmberError(
                .restoreFailed,
                "cannot take again \(what) for process \(task.pid) (\(task.comm)): another process holds a conflicting lock on the file now (\(errno.name))"
            )
        }
        throw AmberError(
            .restoreFailed, "cannot take again \(what) for process \(task.pid) (\(task.comm)): \(errno.name)")
    }

    /// A file the process held a lock on that changed since the dump fails the restore, once the
    /// lock is taken again (so that no lock-respecting writer changes it from then on): the
    /// dump's kill let the lock go, and whoever took it since may have written the file in the
    /// middle of what the process was doing under it (a sqlite transaction over its database,
    /// journal or -shm file), which the restored process would then overwrite or read half of.
    private static func checkUnchanged(
        _ description: Amber_OpenFileDescription, fd: Int32, what: String, _ session: RestoreSession
    ) throws {
        guard let dumped = OpenFileKinds.dumpedChangeTime(of: description) else { return }
        let now: UInt64
        do {
            now = try FileStatus.stat(procFD: session.pid, fd: fd).changeTimeNs
        } catch {
            throw AmberError(
                .restoreFailed, "cannot tell whether the file of \(what) changed since the dump: \(error)")
        }
        guard now != dumped, !isInRestoredTmpfs(description, session) else { return }
        let task = session.task
        throw AmberError(
            .restoreFailed,
            "\(path(of: description)) changed since the dump (its change time is \(now) ns, it was \(dumped) ns), while \(what) of process \(task.pid) (\(task.comm)) was let go: another process may have written it in the middle of what the process did under the lock"
        )
    }

    /// Whether the description's file is in a tmpfs of the tree's own mount namespace: the
    /// restore made that file from the image, so its change time is new and no one else has
    /// written it.
    private static func isInRestoredTmpfs(_ description: Amber_OpenFileDescription, _ session: RestoreSession) -> Bool {
        guard let path = OpenFileKinds.reopenedPath(of: description), let image = session.image,
            let root = try? image.task(pid: image.inventory.rootPid), root.hasMountNamespace
        else { return false }
        return MountNamespaceState.isMadeByRestore(path, in: root.mountNamespace)
    }

    private static func lockDescription(_ lock: Amber_FileLock) -> String {
        let mode = lock.write ? "write" : "read"
        let range = "of bytes \(lock.start)-\(lock.length == 0 ? "EOF" : String(lock.start + lock.length - 1))"
        switch lock.kind {
        case .flock: return "its flock \(lock.write ? "exclusive" : "shared") lock"
        case .posix: return "its POSIX \(mode) lock \(range)"
        default: return "its OFD \(mode) lock \(range)"
        }
    }

    /// The path a description's file was opened by, for messages.
    private static func path(of description: Amber_OpenFileDescription) -> String {
        OpenFileKinds.reopenedPath(of: description) ?? "open file \(description.id)"
    }
}

extension LockState: StateKind {
    /// The locks of each open file description, as the first process showing it had them.
    final class DumpState {
        var descriptionLocks: [UInt32: [Amber_FileLock]] = [:]
    }

    static func makeDumpState(_ dump: TreeDump) -> DumpState { DumpState() }

    /// After the files step (FileState comes first in `StateKinds.all`), which made the records.
    static var dumpSteps: [DumpStep<DumpState>] {
        [
            DumpStep("locks", .outside) { process, state in
                try dump(process.target, files: &process.task.files, seen: &state.descriptionLocks)
            }
        ]
    }

    /// After the clean-up and the registers: the clean-up closes the files the tree shared,
    /// which would drop every POSIX lock of the process on them, and the restorer's pidfd;
    /// before that, files, memory, the working directory and the executable are opened in the
    /// task and closed again.
    static var restoreSteps: [RestoreStep] {
        [RestoreStep("locks", order: 200, phase: .afterCleanUp) { try restore($0) }]
    }
}
