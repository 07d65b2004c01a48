import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// The master of a pty (/dev/ptmx, fdinfo `tty-index`) whose slave the tree holds open too:
/// made again by opening /dev/ptmx as the task (`RestoredPty`), with the slave's termios and
/// window size, packet mode, lock and exclusive mode, and, when it is a session's controlling
/// terminal, that session's leader takes it again and sets its foreground group
/// (`ControllingTerminals`). The pty gets the number devpts gives it at restore.
///
/// What the pty holds is refused, not kept: the bytes the slave wrote that the master has not
/// read (readable only by consuming them) and those the master wrote that the slave has not
/// read; and a slave in canonical mode, whose line typed but not yet ended no interface shows.
struct PtyMasterKind: OpenFileKind {
    let status: FileStatus
    let index: UInt32

    static func classify(_ descriptor: DescriptorProbe) throws -> PtyMasterKind? {
        guard PtyDevices.masterPaths.contains(descriptor.link) else { return nil }
        let status = try descriptor.status()
        guard status.isCharacterDevice, status.rdev == Terminals.multiplexerDevice else { return nil }
        guard let index = try descriptor.info().fields["tty-index"].flatMap({ UInt32($0) }) else {
            throw descriptor.refusal("\(descriptor.link), a pty master whose fdinfo shows no tty-index")
        }
        let devpts = try PtyDevices.slaveDirectory()
        guard descriptor.link == "/dev/ptmx" || status.device == devpts.device else {
            throw descriptor.refusal("\(descriptor.link), the master of a pty of another devpts than /dev/pts")
        }
        try descriptor.checkPtyFlags("the pty master \(descriptor.link) of /dev/pts/\(index)")
        return PtyMasterKind(status: status, index: index)
    }

    var identity: OpenFileIdentity { OpenFileIdentity(device: status.device, inode: status.inode) }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let master = try descriptor.duplicate()
        defer { try? master.close() }
        let name = "the pty master \(descriptor.link) of /dev/pts/\(index)"
        var record = Amber_PtyMaster()
        record.index = index
        record.path = descriptor.link
        do {
            record.settings = try PtyDevices.settings(of: master)
            record.packetMode = try Terminals.isPacketMode(master: master)
            record.locked = try Terminals.isLocked(master: master)
            record.exclusive = try Terminals.isExclusive(master)
            if let session = try Terminals.session(master: master) {
                record.session = session
                record.foregroundGroup = try Terminals.foregroundGroup(master: master)
            }
            let readiness = try Terminals.readiness(master)
            if readiness & Int16(POLLPRI) != 0 {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(name) in packet mode with a status byte (TIOCPKT_*) the master has not read: not kept"
                )
            }
            let queued = try Terminals.queuedInput(master)
            if queued > 0 {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(name) holding \(queued) bytes the slave wrote that the master has not read: a pty's queued bytes are not kept (reading them would take them from the pty)"
                )
            }
        } catch let error as LinuxError {
            throw AmberError.unsupported(
                descriptor.process, "has fd \(descriptor.fd) on \(name), which cannot be read: \(error)")
        }
        return .ptyMaster(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_PtyMaster? {
        guard case .ptyMaster(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_PtyMaster) -> String? { record.path }

    static func make(
        _ record: Amber_PtyMaster, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let pty = try objects.object(UInt64(record.index)) {
            try RestoredPty(record, flags: description.flags, task: task, imageTrusted: imageTrusted)
        }
        return try pty.takeMaster(description: description, task: task)
    }
}

/// A description of the slave of a pty (/dev/pts/N, or /dev/tty opened on it as a controlling
/// terminal) whose master the tree holds, opened at restore by the new pty's /dev/pts/N as the
/// task, or as /dev/tty in the leader of the session whose terminal it is
/// (`ControllingTerminals`). The controlling terminal of the root's session when its leader
/// is outside the tree, whose master the tree cannot hold either, is a shell job's
/// (`ShellJobTerminalKind`); another slave whose master no process of the tree holds is refused
/// (`ControllingTerminals.check(tree:)`), and one whose master is closed shows as
/// "/dev/pts/N (deleted)", which no kind takes.
struct PtySlaveKind: OpenFileKind {
    let status: FileStatus
    let index: UInt32
    /// Opened as /dev/tty.
    let isControllingTerminal: Bool

    static func classify(_ descriptor: DescriptorProbe) throws -> PtySlaveKind? {
        if descriptor.link == "/dev/tty" { return try classifyControllingTerminal(descriptor) }
        guard let index = PtyDevices.slaveIndex(link: descriptor.link) else { return nil }
        let status = try descriptor.status()
        let devpts = try PtyDevices.slaveDirectory()
        guard status.isCharacterDevice, Terminals.slaveNumber(rdev: status.rdev) == index,
            status.device == devpts.device, !isShellJobTerminal(index, of: descriptor)
        else { return nil }
        try descriptor.checkPtyFlags("the pty \(descriptor.link)")
        return PtySlaveKind(status: status, index: index, isControllingTerminal: false)
    }

    /// /dev/tty on a pty: the pty its TIOCGDEV names.
    private static func classifyControllingTerminal(_ descriptor: DescriptorProbe) throws -> PtySlaveKind? {
        let status = try descriptor.status()
        guard status.isCharacterDevice, status.rdev == Terminals.controllingTerminalDevice else { return nil }
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        guard let device = try? Terminals.device(copy), let index = Terminals.slaveNumber(rdev: device),
            !isShellJobTerminal(index, of: descriptor)
        else {
            return nil
        }
        try descriptor.checkPtyFlags("/dev/tty (the pty /dev/pts/\(index))")
        return PtySlaveKind(status: status, index: index, isControllingTerminal: true)
    }

    /// Whether pty `index` is the controlling terminal of the root's session, led by a process
    /// outside the tree (no process of the tree can be the leader of the root's session but the
    /// root): a shell job's terminal.
    private static func isShellJobTerminal(_ index: UInt32, of descriptor: DescriptorProbe) -> Bool {
        guard let root = descriptor.tree?.pid, let stat = try? ProcFS.stat(pid: root) else { return false }
        return stat.session != root && stat.terminal == Terminals.terminalNumber(ofSlave: index)
    }

    /// A /dev/tty description is opened in the session's leader once it has its terminal, which
    /// is after the root's helper gets the tree's shared descriptions (`TreeFiles`).
    static var needsTheTree: Bool { true }

    var identity: OpenFileIdentity { OpenFileIdentity(device: status.device, inode: status.inode) }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let slave = try descriptor.duplicate()
        defer { try? slave.close() }
        let name = isControllingTerminal ? "/dev/tty (the pty /dev/pts/\(index))" : "the pty \(descriptor.link)"
        var record = Amber_PtySlave()
        record.index = index
        if isControllingTerminal {
            record.controllingTerminal = true
        } else {
            record.ownerUid = status.uid
            record.ownerGid = status.gid
            record.mode = status.mode & 0o7777
        }
        do {
            record.exclusive = try Terminals.isExclusive(slave)
            let discipline = try Terminals.lineDiscipline(slave)
            guard discipline == Terminals.ordinaryLineDiscipline else {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(name) with the line discipline \(discipline) (TIOCSETD), not N_TTY: not restored"
                )
            }
            if try Terminals.attributes(slave).localFlags & Terminals.canonical != 0 {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(name) in canonical mode (ICANON): a line typed and not yet ended is held where no interface shows it, so it could not be kept"
                )
            }
            let queued = try Terminals.queuedInput(slave)
            if queued > 0 {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(name) holding \(queued) bytes the master wrote that the slave has not read: a pty's queued bytes are not kept (reading them would take them from the pty)"
                )
            }
            if try Terminals.readiness(slave) & Int16(POLLOUT) == 0 {
                throw AmberError.unsupported(
                    descriptor.process,
                    "has fd \(descriptor.fd) on \(name) whose output is stopped (^S, tcflow TCOOFF) or whose master's buffer is full: not restored"
                )
            }
        } catch let error as LinuxError {
            throw AmberError.unsupported(
                descriptor.process, "has fd \(descriptor.fd) on \(name), which cannot be read: \(error)")
        }
        return .ptySlave(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_PtySlave? {
        guard case .ptySlave(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_PtySlave) -> String? { nil }

    static func make(
        _ record: Amber_PtySlave, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        // Every pty of the image is made before the tree is (`ControllingTerminals.makePtys`).
        let pty = try objects.object(UInt64(record.index)) { () throws -> RestoredPty in
            throw AmberError(.badImage, "the pty \(record.index) of process \(task.pid) has no master in the image")
        }
        if record.controllingTerminal { return try pty.takeControllingTerminal(description, task: task) }
        return try pty.openSlave(record, flags: description.flags, task: task).rawValue
    }

    /// The restorer gives the slave's node its owner back (chown).
    static func privilegedAsks(_ record: Amber_PtySlave, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    {
        guard !record.controllingTerminal,
            record.ownerUid != owner.fsuid || (record.ownerGid != owner.fsgid && record.ownerGid != PtyDevices.ttyGroup)
        else { return [] }
        return [
            PrivilegedAsk(
                what:
                    "the pty \(record.index) owned by uid \(record.ownerUid), gid \(record.ownerGid), other than its own \(owner.fsuid), \(owner.fsgid)",
                capabilities: [Capability.chown])
        ]
    }
}

/// Where ptys are and how they are named.
enum PtyDevices {
    /// The paths a master is opened by.
    static let masterPaths: Set<String> = ["/dev/ptmx", "/dev/pts/ptmx"]
    /// The group devpts gives a new slave (its `gid=5` mount option, Debian's "tty").
    static let ttyGroup: UInt32 = 5
    /// O_LARGEFILE, which fdinfo shows on every file opened in 64-bit code.
    static let largeFile: UInt32 = 0o100000

    /// The devpts of this mount namespace, whose slaves amber restores.
    static func slaveDirectory() throws -> FileStatus {
        try FileStatus.stat(path: "/dev/pts")
    }

    /// N of a link "/dev/pts/N", nil for any other.
    static func slaveIndex(link: String) -> UInt32? {
        guard link.hasPrefix("/dev/pts/") else { return nil }
        let number = link.dropFirst("/dev/pts/".count)
        guard !number.isEmpty, number.allSatisfy(\.isASCII), number.allSatisfy(\.isNumber) else { return nil }
        return UInt32(number)
    }

    /// The slave's termios and window size, through `fd` on either end.
    static func settings(of fd: FileDescriptor) throws(LinuxError) -> Amber_PtyTerminalSettings {
        let attributes = try Terminals.attributes(fd)
        let size = try Terminals.windowSize(fd)
        var settings = Amber_PtyTerminalSettings()
        settings.inputFlags = attributes.inputFlags
        settings.outputFlags = attributes.outputFlags
        settings.controlFlags = attributes.controlFlags
        settings.localFlags = attributes.localFlags
        settings.line = UInt32(attributes.line)
        settings.controlCharacters = .init(attributes.controlCharacters)
        settings.rows = UInt32(size.rows)
        settings.columns = UInt32(size.columns)
        settings.xPixels = UInt32(size.xPixels)
        settings.yPixels = UInt32(size.yPixels)
        return settings
    }
}

extension Amber_PtyTerminalSettings {
    var attributes: TerminalAttributes {
        TerminalAttributes(
            inputFlags: inputFlags, outputFlags: outputFlags, controlFlags: controlFlags, localFlags: localFlags,
            line: UInt8(truncatingIfNeeded: line), controlCharacters: [UInt8](controlCharacters))
    }

    var windowSize: WindowSize {
        WindowSize(
            rows: UInt16(truncatingIfNeeded: rows), columns: UInt16(truncatingIfNeeded: columns),
            xPixels: UInt16(truncatingIfNeeded: xPixels), yPixels: UInt16(truncatingIfNeeded: yPixels))
    }
}

extension DescriptorProbe {
    /// A pty end is restored with its access mode, O_NONBLOCK and O_APPEND; one with other
    /// status flags (O_ASYNC and its owner) is refused.
    func checkPtyFlags(_ what: String) throws {
        let kept = UInt32(O_ACCMODE | O_NONBLOCK | O_APPEND) | PtyDevices.largeFile | OpenFileFlags.closeOnExec.rawValue
        let flags = try info().flags
        guard flags & ~kept == 0 else {
            throw refusal("\(what) with the status flags 0o\(String(flags, radix: 8)) (F_SETFL): not restored")
        }
    }
}

/// A pty made again for the tree: its master, opened as the task that holds it, set as the dump
/// found it; the slave is opened through it for each slave description and for the session
/// leader that takes it as its controlling terminal. The restorer's descriptors are closed
/// once every task has its copies.
final class RestoredPty: SharedOpenFileObject {
    let record: Amber_PtyMaster
    private let master: FileDescriptor
    private var masterTaken = false
    /// The first slave the restorer opened: through it the slave's exclusive mode is lifted
    /// while another is opened.
    private var keptSlave: FileDescriptor?
    /// The /dev/tty descriptions of the image on this pty, by description id, opened in the leader
    /// of its session (`ControllingTerminals.take`) and handed to the tasks that have them.
    var controllingTerminals: [UInt32: FileDescriptor] = [:]
    private let imageTrusted: Bool

    init(_ record: Amber_PtyMaster, flags: UInt32, task: Amber_Task, imageTrusted: Bool) throws {
        self.record = record
        self.imageTrusted = imageTrusted
        let accessMode = Int32(bitPattern: flags) & O_ACCMODE
        let fd = try RestoreSession.openAsTask(
            record.path, flags: accessMode | O_NOCTTY | O_CLOEXEC, what: "the pty master", task: task, dumped: nil,
            trusted: imageTrusted)
        master = FileDescriptor(rawValue: fd)
        do {
            try Terminals.setLocked(master: master, false)
            try Terminals.setAttributes(master, record.settings.attributes)
            try Terminals.setWindowSize(master, record.settings.windowSize)
            if record.packetMode { try Terminals.setPacketMode(master: master, true) }
            if record.exclusive { try Terminals.setExclusive(master, true) }
            let settings = try PtyDevices.settings(of: master)
            guard settings == record.settings, try Terminals.isPacketMode(master: master) == record.packetMode else {
                throw AmberError(
                    .restoreFailed,
                    "the pty \(record.index) of process \(task.pid) came back with other settings than it had: \(settings)"
                )
            }
            if record.locked { try Terminals.setLocked(master: master, true) }
        } catch let error as LinuxError {
            try? master.close()
            throw AmberError(.restoreFailed, "cannot set up the pty \(record.index) of process \(task.pid): \(error)")
        } catch {
            try? master.close()
            throw error
        }
    }

    /// Our descriptor of the master's one description, with its status flags.
    func takeMaster(description: Amber_OpenFileDescription, task: Amber_Task) throws -> Int32 {
        guard !masterTaken else {
            throw AmberError(.badImage, "the pty \(record.index) has two master descriptions in the image")
        }
        masterTaken = true
        do {
            let copy = try libcCall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(master.rawValue, F_DUPFD_CLOEXEC, 0) }
            try setStatusFlags(copy, description.flags)
            return copy
        } catch {
            throw AmberError(
                .restoreFailed, "cannot hand the pty master \(record.index) to process \(task.pid): \(error)")
        }
    }

    /// A new description of the slave, for the caller to close, opened by its path as `task`
    /// could have (TIOCGPTPEER would not give it O_LARGEFILE, as open does), with `flags` and
    /// the record's exclusive mode, owner and mode.
    func openSlave(_ slave: Amber_PtySlave, flags: UInt32, task: Amber_Task) throws -> FileDescriptor {
        let accessMode = Int32(bitPattern: flags) & O_ACCMODE
        let number = try Terminals.number(master: master)
        let opened = FileDescriptor(
            rawValue: try whileOpenable {
                try RestoreSession.openAsTask(
                    "/dev/pts/\(number)", flags: accessMode | O_NOCTTY | O_CLOEXEC, what: "the slave of a pty",
                    task: task, dumped: nil, trusted: imageTrusted)
            })
        do {
            let status = try FileStatus.fstat(fd: opened.rawValue)
            guard status.isCharacterDevice, Terminals.slaveNumber(rdev: status.rdev) == number else {
                throw AmberError(.restoreFailed, "/dev/pts/\(number) is not the slave of the pty made for it")
            }
            try setStatusFlags(opened.rawValue, flags)
            if status.uid != slave.ownerUid || status.gid != slave.ownerGid {
                _ = try libcCall("fchown") { fchown(opened.rawValue, slave.ownerUid, slave.ownerGid) }
            }
            if status.mode & 0o7777 != slave.mode {
                _ = try libcCall("fchmod") { fchmod(opened.rawValue, mode_t(slave.mode)) }
            }
            if slave.exclusive { try Terminals.setExclusive(opened, true) }
        } catch let error as LinuxError {
            try? opened.close()
            throw AmberError(
                .restoreFailed, "cannot set up the slave of the pty \(record.index) for process \(task.pid): \(error)")
        } catch {
            try? opened.close()
            throw error
        }
        return opened
    }

    /// Our descriptor of the /dev/tty description `description`, opened in the session's leader.
    func takeControllingTerminal(_ description: Amber_OpenFileDescription, task: Amber_Task) throws -> Int32 {
        guard let opened = controllingTerminals.removeValue(forKey: description.id) else {
            throw AmberError(
                .restoreFailed,
                "/dev/tty of open file \(description.id) of process \(task.pid) was not opened in the leader of the session of the pty \(record.index)"
            )
        }
        do {
            try setStatusFlags(opened.rawValue, description.flags)
        } catch {
            try? opened.close()
            throw AmberError(.restoreFailed, "cannot set the flags of /dev/tty for process \(task.pid): \(error)")
        }
        return opened.rawValue
    }

    /// A description of the slave of the restorer's own (TIOCGPTPEER), for the caller to close.
    func openSlave(accessMode: Int32) throws -> FileDescriptor {
        try whileOpenable { () throws(LinuxError) in try Terminals.openSlave(master: master, flags: accessMode) }
    }

    /// Runs `open` while the slave may be opened: the lock and the slave's exclusive mode are
    /// lifted meanwhile, the latter through a slave the restorer keeps.
    func whileOpenable<Result>(_ open: () throws -> Result) throws -> Result {
        if keptSlave == nil {
            keptSlave = try unlocked { () throws(LinuxError) in try Terminals.openSlave(master: master, flags: O_RDWR) }
        }
        guard let keptSlave else { preconditionFailure("the kept slave was just opened") }
        let exclusive = try Terminals.isExclusive(keptSlave)
        if exclusive { try Terminals.setExclusive(keptSlave, false) }
        defer { if exclusive { try? Terminals.setExclusive(keptSlave, true) } }
        return try unlocked(open)
    }

    private func unlocked<Result>(_ body: () throws -> Result) throws -> Result {
        guard record.locked else { return try body() }
        try Terminals.setLocked(master: master, false)
        defer { try? Terminals.setLocked(master: master, true) }
        return try body()
    }

    private func setStatusFlags(_ fd: Int32, _ flags: UInt32) throws(LinuxError) {
        let kept = Int32(bitPattern: flags) & (O_NONBLOCK | O_APPEND)
        guard kept != 0 else { return }
        _ = try libcCall("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, kept) }
    }

    func close() {
        try? master.close()
        try? keptSlave?.close()
        keptSlave = nil
        for opened in controllingTerminals.values { try? opened.close() }
        controllingTerminals = [:]
    }
}

/// Runs a libc call that returns -1 and sets errno on failure.
private func libcCall(_ operation: String, _ body: () -> Int32) throws(LinuxError) -> Int32 {
    let result = body()
    guard result >= 0 else { throw LinuxError.current(operation) }
    return result
}
