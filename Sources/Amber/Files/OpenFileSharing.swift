import AmberImage
import Glibc
import LinuxKit

// One open file description held by several descriptors, of one process or of several, is
// one description again after the restore: the dump gives it one id across the image, and
// the restore makes it once and hands it to each. The same for every kind of open file; a
// kind only says what file a description is on (`OpenFileKind.identity`).

extension FileState {
    /// The open file descriptions seen so far in the tree: ids are unique across the image, so
    /// that descriptors of several processes sharing one description share it again at restore.
    struct DescriptionTable {
        private typealias Owner = (pid: Int32, fd: Int32, description: Amber_OpenFileDescription)

        /// The first descriptor seen of each description, by file: every process of a tree may
        /// have its own description of /dev/null.
        private var owners: [OpenFileIdentity: KernelOrderedList<Owner>] = [:]
        private var count = 0

        /// The description `fd` of `pid` refers to if seen before; otherwise `make` makes it from
        /// its id, and it is added. Returns it and whether it is new.
        mutating func description(
            pid: Int32, fd: Int32, identity: OpenFileIdentity, make: (UInt32) throws -> Amber_OpenFileDescription
        ) throws -> (Amber_OpenFileDescription, isNew: Bool) {
            var seen = owners.removeValue(forKey: identity) ?? KernelOrderedList()
            defer { owners[identity] = seen }
            var made: Amber_OpenFileDescription?
            let owner = try seen.match(
                order: { try openFileOrder(pid1: $0.pid, fd1: $0.fd, pid2: pid, fd2: fd) },
                orInsert: {
                    made = try make(UInt32(count + 1))
                    return (pid, fd, made!)
                })
            if let owner { return (owner.description, false) }
            count += 1
            return (made!, true)
        }

        /// Whether a description of the file `identity` names was seen.
        func contains(_ identity: OpenFileIdentity) -> Bool { owners[identity] != nil }
    }
}

/// The files the restorer opened for the tree, one per open file description of the image,
/// kept open until every task has its copy.
final class OpenFileTable {
    private var opened: [UInt32: (description: Amber_OpenFileDescription, fd: Int32)] = [:]
    /// The kernel objects several descriptions are on (a pipe and its two ends), or several
    /// processes (a deleted working directory).
    let objects: OpenFileObjects
    /// The caller's descriptors that take the place of objects outside the tree, by name.
    private let inherited: [String: Int32]
    private var passing: DescriptorPassingEnds?

    init(inherited: [String: Int32] = [:], image: ImageReader? = nil) {
        self.inherited = inherited
        objects = OpenFileObjects(image: image)
    }

    deinit { close() }

    /// The restorer's socket for passing descriptors to tasks (`DescriptorBatch`), made the
    /// first time one is needed.
    func descriptorPassing() throws -> DescriptorPassingEnds {
        if let passing { return passing }
        let made = try DescriptorPassingEnds()
        passing = made
        return made
    }

    /// After a failed restore: removes the files it made at the image's paths.
    func removeMadeFiles() { objects.removeMadeFiles() }

    /// Closes the restorer's descriptors once every task has its copies: an end of a pipe that
    /// no task has is closed with them, before the tree runs.
    func close() {
        for entry in opened.values { Glibc.close(entry.fd) }
        opened = [:]
        objects.close()
        passing?.close()
        passing = nil
    }

    /// Makes `description` again as `task` could have; returns our descriptor of it, for the
    /// caller to close.
    func make(_ description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool) throws -> Int32 {
        if case .externalFile(let external) = description.file {
            return try ExternalFiles.make(external, descriptors: inherited, task: task)
        }
        return try OpenFileKinds.make(description, as: task, imageTrusted: imageTrusted, objects: objects)
    }

    /// Our descriptor of `description`, made the first time a task asks for it (the image
    /// reader checked that every record listing it describes it alike).
    func descriptor(for description: Amber_OpenFileDescription, in session: RestoreSession) throws -> Int32 {
        if let entry = opened[description.id] { return entry.fd }
        let fd = try make(description, as: session.task, imageTrusted: session.imageTrusted)
        opened[description.id] = (description, fd)
        return fd
    }

    /// The descriptions two or more of `tasks` list (the image reader checked that they
    /// describe each alike): those the root's helper gets before the tree is made, for every
    /// process to inherit (`TreeFiles`).
    static func sharedDescriptions(of tasks: [Amber_Task]) -> [Amber_OpenFileDescription] {
        var byID: [UInt32: (description: Amber_OpenFileDescription, tasks: Int)] = [:]
        for task in tasks {
            for description in task.files.descriptions {
                byID[description.id] = (description, (byID[description.id]?.tasks ?? 0) + 1)
            }
        }
        return byID.values.filter { $0.tasks > 1 && !OpenFileKinds.needsTheTree($0.description) }.map(\.description)
            .sorted {
                (OpenFileKinds.isMadeFirst($0) ? 0 : 1, $0.id) < (OpenFileKinds.isMadeFirst($1) ? 0 : 1, $1.id)
            }
    }
}
