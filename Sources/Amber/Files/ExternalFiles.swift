import AmberImage
import Glibc
import LinuxKit

/// Objects outside the tree, as CRIU's `--external` and `--inherit-fd`: a pipe (and, through
/// their kinds, other objects with two ends) whose other end a process outside the tree holds,
/// such as a shell's pipe, a logger or a container runtime's stdio. Its kind refuses it unless
/// the dump is told to leave it outside (`--external pipe:[INODE]`); then its open file
/// description is recorded as an `ExternalFile`, by its name alone, and the restore puts the
/// caller's own descriptor in its place (`--inherit-fd fd[N]:pipe:[INODE]`), in every process
/// and at every fd that had it, with the recorded close-on-exec flags and the status flags of
/// the caller's descriptor.
///
/// A kind takes part by naming the object its descriptor is on (`OpenFileKind.externalName`)
/// and, in its `check(tree:)`, by not refusing an outside holder of an object the dump names
/// (`CheckedProcess.externalFiles`) while refusing what of such an object would not come back
/// exactly (bytes queued in a pipe the tree reads: they stay in the old pipe).
enum ExternalFiles {
    /// Refuses a name `--external` gives that is not KIND:[INODE].
    static func checkNames(_ names: Set<String>) throws(AmberError) {
        for name in names.sorted() where !ExternalFileName.isValid(name) && ExternalMount(argument: name) == nil {
            throw AmberError(.failure, "--external \(name): not a name such as pipe:[INODE]")
        }
    }

    /// The record of `file`'s open file description when the object it is on is one of
    /// `names`: its name alone. nil when it is not.
    static func record(of file: any OpenFileKind, named names: Set<String>) -> Amber_OpenFileDescription.OneOf_File? {
        guard let name = file.externalName, names.contains(name) else { return nil }
        var external = Amber_ExternalFile()
        external.name = name
        return .externalFile(external)
    }

    /// Refuses a name `--external` gives that no descriptor of the tree is on, and an object so
    /// named that the tree holds through two open file descriptions (both ends of a pipe): one
    /// descriptor of the caller takes its place at restore.
    static func check(tree processes: [CheckedProcess]) throws {
        guard let names = processes.first?.externalFiles, !names.isEmpty else { return }
        var held: [String: (process: CheckedProcess, fd: Int32)] = [:]
        for process in processes {
            for probe in try process.probes() {
                let fd = probe.fd
                guard let name = (try? OpenFileKinds.classify(probe))?.externalName, names.contains(name) else {
                    continue
                }
                guard let first = held[name] else {
                    held[name] = (process, fd)
                    continue
                }
                // A process of the running tree that exits meanwhile fails kcmp (ESRCH): the checks
                // run again, rather than taking it for another description.
                guard try openFileOrder(pid1: first.process.pid, fd1: first.fd, pid2: process.pid, fd2: fd) == 0 else {
                    throw AmberError.unsupported(
                        process.name,
                        "has fd \(fd) on \(name), named by --external, and process \(first.process.name) fd \(first.fd) another open file description of it (such as its other end): an object outside the tree is left outside only when the tree holds it through one description, which one descriptor takes the place of at restore",
                        tree: process.tree)
                }
            }
        }
        for name in names.sorted() where held[name] == nil && ExternalMount(argument: name) == nil {
            throw AmberError(
                .failure, "--external \(name): no process of the tree of \(processes[0].tree) has a descriptor on it")
        }
    }
}

/// A descriptor of the restorer that takes the place of an object outside the tree at restore:
/// `--inherit-fd fd[N]:NAME`. It is the caller's own: it grants the tree nothing the caller
/// did not hold.
public struct InheritedFile: Sendable, Hashable {
    public let fd: Int32
    /// The object's name in the image ("pipe:[INODE]").
    public let name: String

    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    /// "fd[N]:NAME", as CRIU writes it; nil when `argument` is not one.
    public init?(argument: String) {
        guard argument.hasPrefix("fd["), let close = argument.firstIndex(of: "]"),
            argument[argument.index(after: close)...].hasPrefix(":"),
            let fd = Int32(argument[argument.index(argument.startIndex, offsetBy: 3)..<close]), fd >= 0
        else { return nil }
        let name = String(argument[argument.index(close, offsetBy: 2)...])
        guard ExternalFileName.isValid(name) else { return nil }
        self.init(fd: fd, name: name)
    }
}

extension ExternalFiles {
    /// Where an object outside the tree first shows in an image: the process, its fd, and the
    /// description's access mode.
    struct Use {
        let task: Amber_Task
        let fd: Int32
        let accessMode: Int32

        var description: String {
            let access = accessMode == O_RDONLY ? "reading" : accessMode == O_WRONLY ? "writing" : "reading and writing"
            return "fd \(fd) of process \(task.pid) (\(task.comm)), open for \(access)"
        }
    }

    /// Each object outside the tree in `tasks`, by name, where it first shows.
    static func uses(in tasks: [Amber_Task]) -> [String: Use] {
        var uses: [String: Use] = [:]
        for task in tasks {
            let descriptions = Dictionary(
                task.files.descriptions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            for descriptor in task.files.descriptors.sorted(by: { $0.fd < $1.fd }) {
                guard let description = descriptions[descriptor.descriptionID],
                    case .externalFile(let external) = description.file, uses[external.name] == nil
                else { continue }
                uses[external.name] = Use(
                    task: task, fd: descriptor.fd, accessMode: Int32(bitPattern: description.flags) & O_ACCMODE)
            }
        }
        return uses
    }

    /// The objects outside the tree in `tasks`, one line each, for `amber verify --needs`.
    static func needs(of tasks: [Amber_Task]) -> [String] {
        uses(in: tasks).sorted { $0.key < $1.key }.map {
            "\($0.key): \($0.value.description): restore with --inherit-fd fd[N]:\($0.key)"
        }
    }

    /// Checks `inherited` against the image, before any task is made: one descriptor for each
    /// object outside the tree, each open in the restorer with an access mode that allows the
    /// recorded one, and none for an object the image does not have. Returns them by name.
    static func descriptors(_ inherited: [InheritedFile], for tasks: [Amber_Task]) throws(AmberError) -> [String: Int32]
    {
        let found = uses(in: tasks)
        var descriptors: [String: Int32] = [:]
        for file in inherited {
            guard descriptors[file.name] == nil else {
                throw AmberError(.restoreFailed, "--inherit-fd gives \(file.name) twice")
            }
            guard let use = found[file.name] else {
                let known = found.keys.sorted().joined(separator: ", ")
                throw AmberError(
                    .restoreFailed,
                    "--inherit-fd fd[\(file.fd)]:\(file.name): the image has no object outside the tree named so (it has \(known.isEmpty ? "none" : known))"
                )
            }
            let flags = fcntl(file.fd, F_GETFL)
            guard flags >= 0 else {
                throw AmberError(
                    .restoreFailed,
                    "--inherit-fd fd[\(file.fd)]:\(file.name): fd \(file.fd) is not open in amber (\(LinuxError.current("fcntl(F_GETFL)")))"
                )
            }
            let mode = flags & O_ACCMODE
            let pathOnly = OpenFileFlags(rawValue: UInt32(bitPattern: flags)).contains(.pathOnly)
            guard !pathOnly, mode == O_RDWR || mode == use.accessMode else {
                let given = pathOnly ? "O_PATH" : mode == O_RDONLY ? "for reading only" : "for writing only"
                throw AmberError(
                    .restoreFailed,
                    "--inherit-fd fd[\(file.fd)]:\(file.name): fd \(file.fd) is open \(given), and the image has \(file.name) as \(use.description)"
                )
            }
            descriptors[file.name] = file.fd
        }
        for (name, use) in found.sorted(by: { $0.key < $1.key }) where descriptors[name] == nil {
            throw AmberError(
                .restoreFailed,
                "the image has \(name) outside the tree, as \(use.description): give a descriptor in its place with --inherit-fd fd[N]:\(name)"
            )
        }
        return descriptors
    }

    /// Our copy of the descriptor that takes the place of `external` (the same open file
    /// description: its status flags are the caller's).
    static func make(_ external: Amber_ExternalFile, descriptors: [String: Int32], task: Amber_Task) throws -> Int32 {
        guard let fd = descriptors[external.name] else {
            throw AmberError(
                .restoreFailed,
                "process \(task.pid) has \(external.name) outside the tree, and no --inherit-fd gives a descriptor for it"
            )
        }
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot copy fd \(fd) for \(external.name) of process \(task.pid): \(LinuxError.current("fcntl(F_DUPFD_CLOEXEC)"))"
            )
        }
        return copy
    }
}
