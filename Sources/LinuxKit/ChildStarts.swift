import Synchronization

/// A child made by vfork or posix_spawn holds a copy of each of our descriptors until it has
/// closed them or exec'd (the close-on-exec ones go then): one who reads the descriptors of our
/// children, and must not take a copy of ours for one of theirs, reads them while no child starts.
public enum ChildStarts {
    private static let lock = Mutex(())

    /// Runs `body` while no child starts: around a start, or around a read of our children.
    public static func exclusive<T: Sendable, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try lock.withLock { _ throws(E) in try body() }
    }
}
