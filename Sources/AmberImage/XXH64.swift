import CChecksum

/// Streaming XXH64 (seed 0), the checksum of every file in the inventory.
///
/// The hashing itself is C (`CChecksum`), built with -O2 even in debug builds,
/// so checksumming gigabytes of pages never depends on the Swift build mode.
struct XXH64 {
    private var state = amber_xxh64_state()

    init() {
        amber_xxh64_reset(&state)
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        amber_xxh64_update(&state, bytes.baseAddress, bytes.count)
    }

    /// The hash of everything passed to `update` so far.
    var digest: UInt64 {
        withUnsafePointer(to: state) { amber_xxh64_digest($0) }
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        amber_xxh64(bytes.baseAddress, bytes.count)
    }
}
