/// Another task's memory as the engine reads and writes it from outside: `ProcessMemory` in a
/// live task, or a fake that records the writes and serves the reads, in the engine's unit tests.
public protocol RemoteMemory {
    /// Reads the remote ranges into `local`, which must be as long as their sum; returns the bytes read.
    func read(into local: UnsafeMutableRawBufferPointer, from remote: [(address: UInt64, length: Int)])
        throws(LinuxError) -> Int
    /// Writes `local` to the remote ranges; returns the bytes written.
    func write(_ local: UnsafeRawBufferPointer, to remote: [(address: UInt64, length: Int)]) throws(LinuxError) -> Int
}

extension ProcessMemory: RemoteMemory {}
