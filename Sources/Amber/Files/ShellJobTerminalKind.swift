import AmberImage
import Glibc
import LinuxKit

/// A descriptor on a terminal outside the tree: the terminal of a program run from a user's
/// shell (a pty whose master the terminal emulator, sshd or tmux holds, or a console). Only a
/// dump of a shell job (`dump -j`, CRIU's `--shell-job`) takes it, as the job's terminal: its
/// description is recorded by path alone, and a restore with -j opens the terminal
/// `amber restore` runs on in its place (`ShellJobTerminal`). Without -j it is refused, naming -j.
/// A pty master is not one (its device is the ptmx).
struct ShellJobTerminalKind: OpenFileKind {
    let path: String
    let status: FileStatus
    /// The terminal it is on (TIOCGDEV): for /dev/tty, the controlling terminal it stands for.
    let device: UInt64

    /// /dev/tty (5:0), as glibc's makedev encodes it.
    private static let controllingAlias: UInt64 = 5 << 8

    static func classify(_ descriptor: DescriptorProbe) throws -> Self? {
        guard case .reopenable(let path) = try descriptor.linkPath() else { return nil }
        let status = try descriptor.status()
        guard status.isCharacterDevice, Terminals.isTerminal(device: status.rdev) else { return nil }
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        guard let device = try Terminals.device(of: copy.rawValue) else { return nil }
        return Self(path: path, status: status, device: device)
    }

    var identity: OpenFileIdentity { OpenFileIdentity(device: status.device, inode: status.inode) }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var terminal = Amber_ShellJobTerminal()
        terminal.path = path
        terminal.controllingAlias = status.rdev == Self.controllingAlias
        return .shellJobTerminal(terminal)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_ShellJobTerminal? {
        guard case .shellJobTerminal(let terminal) = description.file else { return nil }
        return terminal
    }

    static func reopenedPath(of record: Amber_ShellJobTerminal) -> String? { nil }

    /// The terminal `amber restore -j` runs on, which the restore registers before any task is made.
    static func make(
        _ record: Amber_ShellJobTerminal, description: Amber_OpenFileDescription, as task: Amber_Task,
        imageTrusted: Bool, objects: OpenFileObjects
    ) throws -> Int32 {
        let terminal = try objects.object(ShellJobTerminal.objectID) { () throws -> ShellJobTerminal in
            throw AmberError(
                .restoreFailed,
                "process \(task.pid) (\(task.comm)) had the terminal \(record.path) of a shell job: restore it with -j (`amber restore -j`) on a terminal"
            )
        }
        return try terminal.open(record, flags: description.flags, for: task)
    }

    /// Refuses, without -j, every descriptor on a terminal outside the tree, naming -j; with -j,
    /// one on another terminal than the job's (the root's controlling terminal, or the first
    /// such terminal when it has none): the restore has one terminal to give, amber's.
    static func check(tree processes: [CheckedProcess]) throws {
        guard let root = processes.first else { return }
        let rootTerminal = (try? ProcFS.stat(pid: root.pid).terminal).map { UInt64(UInt32(bitPattern: $0)) } ?? 0
        var job: (device: UInt64, process: ProcessName, fd: Int32)? =
            rootTerminal == 0 ? nil : (rootTerminal, root.name, -1)
        for process in processes {
            // A terminal is a path (`classify`): a pipe or socket is not classified again here.
            for probe in try process.probes() where probe.link.hasPrefix("/") {
                guard let terminal = (try? OpenFileKinds.classify(probe)) as? ShellJobTerminalKind else { continue }
                let name = Terminals.name(ofDevice: terminal.device)
                guard root.shellJob else {
                    throw AmberError.unsupported(
                        process.name,
                        "has fd \(probe.fd) open on the terminal \(name), outside the tree: dump a program run from a shell as a shell job, with -j (`amber dump -j`), and restore it with -j on a terminal",
                        tree: process.tree)
                }
                guard let first = job else {
                    job = (terminal.device, process.name, probe.fd)
                    continue
                }
                guard first.device == terminal.device else {
                    let held =
                        first.fd < 0
                        ? "the controlling terminal of the job, \(Terminals.name(ofDevice: first.device))"
                        : "process \(first.process) fd \(first.fd) is on \(Terminals.name(ofDevice: first.device))"
                    throw AmberError.unsupported(
                        process.name,
                        "has fd \(probe.fd) open on the terminal \(name), and \(held): a shell job (-j) is restored on one terminal, the one amber restore runs on",
                        tree: process.tree)
                }
            }
        }
    }
}

/// The terminal `amber restore -j` runs on, which takes the place of the job's terminal. A
/// description of the image on it with the flags of amber's own descriptor is that one, the
/// description amber's shell opened, as the job had its own shell's (inherited, the usual
/// standard streams); any other is opened anew on this terminal through amber's descriptor,
/// with the image's flags, or as /dev/tty where the image had that. A new description gets
/// O_LARGEFILE, which open(2) always sets on x86_64 and which changes nothing there; a shell's
/// (a pty slave from TIOCGPTPEER) may lack it.
final class ShellJobTerminal: SharedOpenFileObject {
    /// Its id among the restore's `OpenFileObjects`: there is one.
    static let objectID: UInt64 = 0

    /// Amber's descriptor on its controlling terminal (0, 1 or 2), and that terminal.
    let descriptor: Int32
    let device: UInt64

    init(descriptor: Int32, device: UInt64) {
        self.descriptor = descriptor
        self.device = device
    }

    /// Nothing of its own to close: `descriptor` is amber's.
    func close() {}

    /// An open file description on the terminal with the description's `flags`: amber's own, or new.
    func open(_ record: Amber_ShellJobTerminal, flags: UInt32, for task: Amber_Task) throws -> Int32 {
        if !record.controllingAlias && fcntl(descriptor, F_GETFL) == Int32(bitPattern: flags) {
            let copy = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
            guard copy >= 0 else {
                throw AmberError(
                    .restoreFailed,
                    "cannot copy amber's fd \(descriptor) on its terminal for process \(task.pid): \(LinuxError.current("fcntl(F_DUPFD_CLOEXEC)"))"
                )
            }
            return copy
        }
        let openFlags = Int32(bitPattern: flags) & ~(O_CREAT | O_TRUNC | O_EXCL) | O_NOCTTY | O_CLOEXEC
        let path = record.controllingAlias ? "/dev/tty" : "/proc/self/fd/\(descriptor)"
        let fd = Glibc.open(path, openFlags)
        guard fd >= 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot open the terminal amber runs on (\(path)) in place of \(record.path) for process \(task.pid): \(LinuxError.current("open"))"
            )
        }
        guard (try? Terminals.device(of: fd)) == device else {
            Glibc.close(fd)
            throw AmberError(
                .restoreFailed,
                "\(path) is not the terminal amber runs on (\(Terminals.name(ofDevice: device))) any more")
        }
        return fd
    }
}
