import AmberImage

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
