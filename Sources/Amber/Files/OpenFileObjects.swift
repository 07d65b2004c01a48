import AmberImage
import LinuxKit

/// A kernel object that several open file descriptions of the image are on, made once by a
/// restore (a pipe, whose two ends are two descriptions; a socketpair; an epoll instance).
protocol SharedOpenFileObject: AnyObject {
    /// Closes the restorer's own descriptors of it, once every task has its copies.
    func close()
}

/// The kernel objects one restore made for the open file descriptions that share them, by kind
/// and by the kind's id of the object in the image: the first description of an object makes
/// it, the others find it (`OpenFileKind.make`).
final class OpenFileObjects {
    private struct Key: Hashable {
        let kind: ObjectIdentifier
        let id: UInt64
    }

    private var objects: [Key: any SharedOpenFileObject] = [:]
    /// The image, from which an object's contents are written back (a memfd's data).
    let image: ImageReader?
    /// Files the restore made at a path of the image that outlive it (a unix socket's socket
    /// file), each with its identity: a failed restore removes them (`removeMadeFiles`), so that
    /// the next restore finds the path as the dump left it, not a file it may not replace.
    private var madeFiles: [(path: String, device: UInt64, inode: UInt64)] = []

    /// Remembers the file the restore made at `path`.
    func made(_ path: String, device: UInt64, inode: UInt64) {
        madeFiles.append((path, device, inode))
    }

    /// Removes every file `made` remembers that is still the one made (same device and inode),
    /// reaching it with no symbolic link on the way.
    func removeMadeFiles() {
        for file in madeFiles.reversed() {
            try? PathOpening.unlinkIfSame(file.path, device: file.device, inode: file.inode)
        }
        madeFiles = []
    }

    init(image: ImageReader? = nil) { self.image = image }

    /// The object of type `Object` with `id`, made by `make` when it is first asked for.
    func object<Object: SharedOpenFileObject>(_ id: UInt64, make: () throws -> Object) throws -> Object {
        let key = Key(kind: ObjectIdentifier(Object.self), id: id)
        if let object = objects[key] as? Object { return object }
        let object = try make()
        objects[key] = object
        return object
    }

    /// Closes every object: what no task took is gone with it (a pipe end no description is on).
    func close() {
        for object in objects.values { object.close() }
        objects = [:]
    }

    deinit { close() }
}
