import AmberImage
import Glibc
import LinuxKit

/// The controlling terminal of a session whose pty the tree holds (its master, `PtyMasterKind`,
/// records the session and its foreground process group). A process gets a controlling
/// terminal only by taking it as session leader (TIOCSCTTY) or by inheriting it across fork, so
/// at restore the leader takes it right after its setsid, before it makes its children, which
/// inherit it (`TreeState.build`); once every process group exists, the leader sets the
/// foreground group (TIOCSPGRP). Both are calls of the process's own, injected with a slave
/// descriptor the restorer lends it and closes again.
enum ControllingTerminals {
    // MARK: Dump

    /// Refuses a pty the tree holds the master of when it is the controlling terminal of a
    /// session not wholly in the tree, or not of every process of its session; or when its
    /// foreground group is no group of the tree. Every slave and master must be in the tree.
    static func check(tree processes: [CheckedProcess]) throws {
        let held = try heldPtys(processes)
        guard !held.masters.isEmpty || !held.slaves.isEmpty else { return }
        try OutsideDescriptors.refuseShared("/dev/ptmx", what: "a pty master", processes: processes)
        for (index, holders) in held.slaves.sorted(by: { $0.key < $1.key }) where held.masters[index] == nil {
            let holder = holders[0]
            let device = holder.controllingTerminal ? "/dev/tty (the pty /dev/pts/\(index))" : "/dev/pts/\(index)"
            throw AmberError.unsupported(
                holder.process.name,
                "has fd \(holder.fd) open on the terminal \(device), a pty whose master (/dev/ptmx) no process of the tree holds and not the controlling terminal of its session outside the tree, which a shell job (-j) is restored on: not supported yet",
                tree: holder.process.tree)
        }
        try OutsideDescriptors.forEach(outside: processes) { pid, fd, link in
            guard let index = PtyDevices.slaveIndex(link: link), let master = held.masters[index] else { return }
            throw AmberError.unsupported(
                master.process.name,
                "has fd \(master.fd) on the master of /dev/pts/\(index), which process \(ProcessName(pid: pid)) outside the tree holds open (its fd \(fd)): a pty is restored only when the tree holds both its ends",
                tree: master.process.tree)
        }
        let stats = Dictionary(
            processes.compactMap { process in (try? ProcFS.stat(pid: process.pid)).map { (process.pid, $0) } },
            uniquingKeysWith: { first, _ in first })
        for (index, master) in held.masters.sorted(by: { $0.key < $1.key }) {
            let name = "the master of /dev/pts/\(index)"
            let copy = try master.process.descriptors.duplicate(master.fd)
            defer { try? copy.close() }
            let session = try Terminals.session(master: copy)
            if session == nil, let holder = held.slaves[index]?.first(where: \.controllingTerminal) {
                throw AmberError.unsupported(
                    holder.process.name,
                    "has fd \(holder.fd) on /dev/tty, the pty /dev/pts/\(index), which is no session's controlling terminal any more: /dev/tty is opened again only on one",
                    tree: holder.process.tree)
            }
            guard held.slaves[index] != nil else {
                let terminal = session.map { ", the controlling terminal of session \($0)," } ?? ""
                throw AmberError.unsupported(
                    master.process.name,
                    "has fd \(master.fd) on \(name)\(terminal) whose slave no process holds open (never opened, or closed: a hang-up pending): not restored",
                    tree: master.process.tree)
            }
            let terminal = Terminals.terminalNumber(ofSlave: index)
            for process in processes {
                guard let stat = stats[process.pid] else { continue }
                let inSession = session == stat.session
                if inSession != (stat.terminal == terminal) {
                    throw AmberError.unsupported(
                        process.name,
                        inSession
                            ? "is in session \(stat.session), whose controlling terminal is /dev/pts/\(index), but has no controlling terminal itself (TIOCNOTTY): not restored"
                            : "has the controlling terminal /dev/pts/\(index) of another session than its own: not restored",
                        tree: process.tree)
                }
            }
            guard let session else { continue }
            guard let leader = stats[session], leader.session == session else {
                throw AmberError.unsupported(
                    master.process.name,
                    "has fd \(master.fd) on \(name), the controlling terminal of session \(session), whose leader is not in the tree: not restored",
                    tree: master.process.tree)
            }
            // Before the freeze, a child the tree forked since it was listed is of the tree
            // (`OutsideScan.processes`): the freeze takes it, and the frozen pass asks again.
            for pid in try master.process.outside.processes() {
                // A zombie holds no terminal: one of the tree's comes back a zombie of it.
                guard let stat = try? ProcFS.stat(pid: pid), stat.session == session, stat.state != "Z" else {
                    continue
                }
                throw AmberError.unsupported(
                    master.process.name,
                    "has fd \(master.fd) on \(name), the controlling terminal of session \(session), which process \(ProcessName(pid: pid)) outside the tree is in too: not restored",
                    tree: master.process.tree)
            }
            let foreground = try Terminals.foregroundGroup(master: copy)
            if foreground != 0, !stats.values.contains(where: { $0.pgrp == foreground && $0.session == session }) {
                throw AmberError.unsupported(
                    master.process.name,
                    "has fd \(master.fd) on \(name), whose foreground process group \(foreground) has no process in the tree: not restored",
                    tree: master.process.tree)
            }
        }
    }

    /// The /proc/PID/stat terminal numbers of the ptys whose master the tree holds: a process
    /// may have one as its controlling terminal (`TreeState.check`).
    static func terminalsOfTree(_ processes: [CheckedProcess]) throws -> Set<Int32> {
        Set(try heldPtys(processes).masters.keys.map { Terminals.terminalNumber(ofSlave: $0) })
    }

    private typealias Holder = (process: CheckedProcess, fd: Int32)
    /// A descriptor of a slave; `controllingTerminal`: opened as /dev/tty.
    private typealias SlaveHolder = (process: CheckedProcess, fd: Int32, controllingTerminal: Bool)

    /// The first descriptor of each pty's master the tree holds, and every one of its slaves, by
    /// pty number.
    private static func heldPtys(_ processes: [CheckedProcess]) throws -> (
        masters: [UInt32: Holder], slaves: [UInt32: [SlaveHolder]]
    ) {
        var masters: [UInt32: Holder] = [:]
        var slaves: [UInt32: [SlaveHolder]] = [:]
        for process in processes {
            for probe in try process.probes() {
                if PtyDevices.masterPaths.contains(probe.link), let master = try? PtyMasterKind.classify(probe) {
                    if masters[master.index] == nil { masters[master.index] = (process, probe.fd) }
                } else if PtyDevices.slaveIndex(link: probe.link) != nil || probe.link == "/dev/tty",
                    let slave = try? PtySlaveKind.classify(probe)
                {
                    slaves[slave.index, default: []].append((process, probe.fd, slave.isControllingTerminal))
                }
            }
        }
        return (masters, slaves)
    }

    // MARK: Restore

    /// Makes every pty of the image (its master, set up), before any process is made: a slave's
    /// description may be one the root's helper gets first (`TreeFiles`), or a session leader's
    /// controlling terminal.
    static func makePtys(_ tasks: [Amber_Task], openFiles: OpenFileTable, imageTrusted: Bool) throws {
        for task in tasks where !task.zombie {
            for description in task.files.descriptions {
                guard case .ptyMaster(let record) = description.file else { continue }
                _ = try openFiles.objects.object(UInt64(record.index)) {
                    try RestoredPty(record, flags: description.flags, task: task, imageTrusted: imageTrusted)
                }
            }
        }
    }

    /// The pty whose slave is the controlling terminal of the session `leader` leads, if any.
    private static func pty(ofSession leader: Amber_Task, tasks: [Amber_Task], openFiles: OpenFileTable) throws
        -> RestoredPty?
    {
        for task in tasks where !task.zombie {
            for description in task.files.descriptions {
                guard case .ptyMaster(let record) = description.file, record.session == leader.pid else { continue }
                return try openFiles.objects.object(UInt64(record.index)) { () throws -> RestoredPty in
                    throw AmberError(.restoreFailed, "the pty \(record.index) was not made before the tree")
                }
            }
        }
        return nil
    }

    /// Makes the session leader `leader`, just after its setsid, take its controlling terminal.
    static func take(
        _ leader: TreeTask, tasks: [Amber_Task], openFiles: OpenFileTable, restorerPidfd: Int32
    ) throws {
        guard let pty = try pty(ofSession: leader.record, tasks: tasks, openFiles: openFiles) else { return }
        try withSlave(of: pty, in: leader, restorerPidfd: restorerPidfd) { fd in
            try leader.injector.call(
                "ioctl TIOCSCTTY of the pty \(pty.record.index)", SyscallNumber.ioctl, UInt64(fd),
                Terminals.setControllingTerminal, 0)
        }
        try openControllingTerminals(of: pty, in: leader, tasks: tasks)
    }

    /// Opens /dev/tty in `leader`, which has just taken its terminal, once for each /dev/tty
    /// description of the image on `pty`, and keeps our copies in it for the tasks that have them.
    private static func openControllingTerminals(of pty: RestoredPty, in leader: TreeTask, tasks: [Amber_Task]) throws {
        var descriptions: [UInt32: Amber_OpenFileDescription] = [:]
        for task in tasks where !task.zombie {
            for description in task.files.descriptions {
                guard case .ptySlave(let slave) = description.file, slave.controllingTerminal,
                    slave.index == pty.record.index
                else { continue }
                descriptions[description.id] = description
            }
        }
        guard !descriptions.isEmpty else { return }
        let leaderPidfd = try Pidfd(pid: leader.pid)
        for (id, description) in descriptions.sorted(by: { $0.key < $1.key }) {
            let flags = Int32(bitPattern: description.flags) & O_ACCMODE | O_NOCTTY | O_CLOEXEC
            let opened = try pty.whileOpenable { () throws -> UInt64 in
                var arguments = leader.arguments()
                let path = try arguments.place(Array("/dev/tty".utf8) + [0])
                return try leader.injector.call(
                    "open /dev/tty", SyscallNumber.openat, UInt64(bitPattern: Int64(AT_FDCWD)), path,
                    UInt64(flags), 0)
            }
            defer { _ = try? leader.injector.call("close", SyscallNumber.close, opened) }
            pty.controllingTerminals[id] = try leaderPidfd.duplicate(Int32(opened))
        }
    }

    /// Sets the foreground process group of each session's controlling terminal, from its
    /// leader, once every process is in its group.
    static func setForegroundGroups(
        _ built: [TreeTask], tasks: [Amber_Task], openFiles: OpenFileTable, restorerPidfd: Int32
    ) throws {
        for leader in built where leader.record.sid == leader.record.pid {
            guard let pty = try pty(ofSession: leader.record, tasks: tasks, openFiles: openFiles) else { continue }
            let foreground = pty.record.foregroundGroup
            guard foreground != 0, foreground != leader.record.pgid,
                let member = tasks.first(where: { $0.pgid == foreground })
            else { continue }
            // The group as the leader's PID namespace numbers it, as `joinGroups` joins it.
            let group = member.namespacePgids.last ?? foreground
            try withSlave(of: pty, in: leader, restorerPidfd: restorerPidfd) { fd in
                var arguments = leader.arguments()
                let address = try arguments.place(group)
                try leader.injector.call(
                    "ioctl TIOCSPGRP \(group) of the pty \(pty.record.index)", SyscallNumber.ioctl, UInt64(fd),
                    Terminals.setForegroundGroup, address)
            }
        }
    }

    /// Runs `body` with a descriptor of the pty's slave lent to `task` (its number there), and
    /// closes it again before the task makes any child, which would inherit it.
    private static func withSlave(
        of pty: RestoredPty, in task: TreeTask, restorerPidfd: Int32, _ body: (Int32) throws -> Void
    ) throws {
        let slave = try pty.openSlave(accessMode: O_RDWR)
        defer { try? slave.close() }
        let lent = try task.injector.call(
            "pidfd_getfd(\(slave.rawValue))", SyscallNumber.pidfdGetfd, UInt64(restorerPidfd),
            UInt64(slave.rawValue), 0)
        defer { _ = try? task.injector.call("close", SyscallNumber.close, lent) }
        try body(Int32(lent))
    }
}
extension ControllingTerminals: StateKind {}
