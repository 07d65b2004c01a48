import AmberImage
import LinuxKit

/// A kind of open file (a regular file, a directory, a pipe, a socket...): how a descriptor is
/// told to be of it and dumped, and how its open file description is made again at restore,
/// as CRIU's `struct file_desc_ops` for each of its file types. Each kind is a type in a file
/// of its own here, with its own message in the `file` oneof of `OpenFileDescription`
/// (files.proto), and is listed once, in `OpenFileKinds.all`; the fd table around it (numbers,
/// close-on-exec, flags, offset) and the sharing of descriptions are the same for every kind
/// (`FileState`, `FileState.DescriptionTable`, `OpenFileTable`). An instance is one descriptor
/// of the kind, as the dump found it.
protocol OpenFileKind: Sendable {
    /// The kind's message in the image: its case of `Amber_OpenFileDescription.file`.
    associatedtype Record

    /// The descriptor as this kind sees it, or nil when it is of another kind; throws the
    /// refusal when it is of this kind but in a state amber does not restore.
    static func classify(_ descriptor: DescriptorProbe) throws -> Self?

    /// The file the descriptor's open file description is on: the dump asks the kernel
    /// whether two descriptors share one description only when their files are the same.
    var identity: OpenFileIdentity { get }

    /// The name `--external` and `--inherit-fd` give the object the descriptor's description is
    /// on, as CRIU names it ("pipe:[INODE]"), or nil when the kind cannot leave it outside the
    /// tree (`ExternalFiles`).
    var externalName: String? { get }

    /// The kind's record of the descriptor's open file description, seen for the first time in
    /// the tree; throws the refusal of what it cannot restore of it.
    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File

    /// The kind's record in `description`, or nil when it is of another kind.
    static func record(of description: Amber_OpenFileDescription) -> Record?

    /// The path the restore opens the file by, if any: whether the task may open it itself is
    /// asked before any task is made (`ImagePrivileges`).
    static func reopenedPath(of record: Record) -> String?

    /// The file's change time (ctime, in nanoseconds) at the dump, for a kind reopened by path:
    /// a restore that takes a lock on it again refuses a file changed since (`LockState`).
    static func dumpedChangeTime(of record: Record) -> UInt64?

    /// Makes the open file description again, in the restorer, as `task` could have made it
    /// (`RestoreSession.openAsTask`); returns our descriptor of it. A description is made
    /// once for the whole tree and handed to every task that has it (`OpenFileTable`); a kernel
    /// object several descriptions are on (a pipe's two ends) is made once, by the first of
    /// them, in `objects`.
    static func make(
        _ record: Record, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32

    /// Refusals across the processes of the tree, before it is frozen and again once it is (a
    /// pipe whose other end a process outside the tree holds).
    static func check(tree processes: [CheckedProcess]) throws

    /// Whether `record` is made before the task's other descriptions, whatever its number: a
    /// TCP listener, whose port a connection accepted from it, made again first, would hold.
    static func isMadeFirst(_ record: Record) -> Bool

    /// Whether a description of the kind is made of the tree's processes (a pidfd), so only
    /// once they all exist: it is then not among the descriptions the root's helper gets before
    /// any other process is made (`TreeFiles`).
    static var needsTheTree: Bool { get }

    /// What making `record` again asks of the restorer beyond what a task with `owner`'s
    /// credentials could do itself (a pipe's owner, its capacity), each with the capabilities it
    /// needs: `ImagePrivileges` refuses them for an image that is not authenticated.
    static func privilegedAsks(_ record: Record, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
}

/// Something a restore asks of the restorer's privileges, and the capabilities that grant it.
struct PrivilegedAsk {
    let what: String
    let capabilities: [Int]
}

extension OpenFileKind {
    var externalName: String? { nil }

    static func dumpedChangeTime(of record: Record) -> UInt64? { nil }

    static func check(tree processes: [CheckedProcess]) throws {}

    static var needsTheTree: Bool { false }

    static func isMadeFirst(_ record: Record) -> Bool { false }

    static func privilegedAsks(_ record: Record, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    { [] }
}

/// What an open file is, for the sharing of descriptions: its device and inode number (a
/// pipe's or socket's inode is on the kernel's pipefs or sockfs).
struct OpenFileIdentity: Hashable {
    let device: UInt64
    let inode: UInt64
}

/// The kinds of open file amber restores.
enum OpenFileKinds {
    /// Every kind, the one list of them: a descriptor is of the first that takes it, and one
    /// none takes is refused (`DescriptorProbe.unsupported`).
    static let all: [any OpenFileKind.Type] = [
        RegularFileKind.self, DirectoryKind.self, CharacterDeviceKind.self, FifoKind.self, PipeKind.self,
        EventFDKind.self, SignalFDKind.self, TimerFDKind.self,
        UnixSocketKind.self, TcpConnectionKind.self, InetSocketKind.self, MemfdKind.self, DeletedFileKind.self,
        EpollKind.self, PidfdKind.self,
        InotifyKind.self, PtyMasterKind.self, PtySlaveKind.self, NetlinkSocketKind.self,
        ShellJobTerminalKind.self,
    ]

    /// The kind of open file `descriptor` is, or its refusal.
    static func classify(_ descriptor: DescriptorProbe) throws -> any OpenFileKind {
        // An O_PATH descriptor is reopened by its path, with O_PATH: only one on a file a path
        // leads to (a deleted file's, a memfd's or a socket's kind would ask what O_PATH hides).
        if try descriptor.info().flags & OpenFileFlags.pathOnly.rawValue != 0 {
            if try descriptor.reopenablePath() != nil {
                for kind in all where kind is any ReopenedByPath.Type {
                    if let file = try kind.classify(descriptor) { return file }
                }
            }
            throw descriptor.refusal("\(descriptor.link), opened with O_PATH, which amber does not reopen")
        }
        for kind in all {
            if let file = try kind.classify(descriptor) { return file }
        }
        throw try descriptor.unsupported()
    }

    /// Makes `description` again as `task` could have, by its kind; returns our descriptor of it.
    static func make(
        _ description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool, objects: OpenFileObjects
    ) throws -> Int32 {
        for kind in all {
            if let fd = try make(description, of: kind, as: task, imageTrusted: imageTrusted, objects: objects) {
                return fd
            }
        }
        throw AmberError(.badImage, "open file \(description.id) of the image is of no kind this amber restores")
    }

    /// What making `description` again asks of the restorer's privileges, by its kind.
    static func privilegedAsks(
        _ description: Amber_OpenFileDescription, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline
    ) -> [PrivilegedAsk] {
        all.flatMap { privilegedAsks(description, of: $0, owner: owner, restorer: restorer) }
    }

    private static func privilegedAsks<Kind: OpenFileKind>(
        _ description: Amber_OpenFileDescription, of kind: Kind.Type, owner: Amber_Credentials,
        restorer: ImagePrivileges.Baseline
    ) -> [PrivilegedAsk] {
        Kind.record(of: description).map { Kind.privilegedAsks($0, owner: owner, restorer: restorer) } ?? []
    }

    /// Whether `description` is made of the tree's processes, by its kind.
    static func needsTheTree(_ description: Amber_OpenFileDescription) -> Bool {
        all.contains { needsTheTree(description, of: $0) }
    }

    private static func needsTheTree<Kind: OpenFileKind>(
        _ description: Amber_OpenFileDescription, of kind: Kind.Type
    ) -> Bool {
        Kind.needsTheTree && Kind.record(of: description) != nil
    }

    /// Whether `description` is made before the task's others (`OpenFileKind.isMadeFirst`).
    static func isMadeFirst(_ description: Amber_OpenFileDescription) -> Bool {
        all.contains { isMadeFirst(description, kind: $0) }
    }

    private static func isMadeFirst<Kind: OpenFileKind>(_ description: Amber_OpenFileDescription, kind: Kind.Type)
        -> Bool
    {
        Kind.record(of: description).map(Kind.isMadeFirst) ?? false
    }

    /// The path a restore opens `description` by, if any.
    static func reopenedPath(of description: Amber_OpenFileDescription) -> String? {
        for kind in all {
            if let path = reopenedPath(of: description, kind: kind) { return path }
        }
        return nil
    }

    /// The change time at the dump of the file `description` is on, if its kind records one.
    static func dumpedChangeTime(of description: Amber_OpenFileDescription) -> UInt64? {
        for kind in all {
            if let time = dumpedChangeTime(of: description, kind: kind) { return time }
        }
        return nil
    }

    private static func dumpedChangeTime<Kind: OpenFileKind>(
        of description: Amber_OpenFileDescription, kind: Kind.Type
    ) -> UInt64? {
        Kind.record(of: description).flatMap(Kind.dumpedChangeTime)
    }

    private static func make<Kind: OpenFileKind>(
        _ description: Amber_OpenFileDescription, of kind: Kind.Type, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32? {
        guard let record = Kind.record(of: description) else { return nil }
        return try Kind.make(record, description: description, as: task, imageTrusted: imageTrusted, objects: objects)
    }

    private static func reopenedPath<Kind: OpenFileKind>(of description: Amber_OpenFileDescription, kind: Kind.Type)
        -> String?
    {
        Kind.record(of: description).flatMap(Kind.reopenedPath)
    }
}
