import Synchronization

/// The bytes of memory a dump has read, or a restore has written, of those it has found to
/// copy: counted by the threads that copy, read by whoever shows progress (`amber` on a
/// terminal). One relaxed atomic add per batch of pages (a buffer's worth, up to megabytes), so
/// the counting costs nothing measurable. A dump finds a process's pages as it comes to it:
/// the total grows process by process.
public enum MemoryProgress {
    private static let copiedBytes = Atomic<UInt64>(0)
    private static let expectedBytes = Atomic<UInt64>(0)

    /// The bytes copied so far.
    public static var copied: UInt64 { copiedBytes.load(ordering: .relaxed) }

    /// The bytes found to copy so far.
    public static var expected: UInt64 { expectedBytes.load(ordering: .relaxed) }

    static func expect(_ bytes: UInt64) {
        expectedBytes.add(bytes, ordering: .relaxed)
    }

    static func copied(_ bytes: UInt64) {
        copiedBytes.add(bytes, ordering: .relaxed)
    }
}
