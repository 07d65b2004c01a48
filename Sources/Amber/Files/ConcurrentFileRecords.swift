import AmberImage

/// The records of a process's pipe ends and unix sockets, read on every CPU at once before the
/// files step goes through its descriptors in order (`FileState.dump`): each is a copy of a
/// queue and a few dozen getsockopt calls, independent of every other, and with 2,000 of them
/// the step was one CPU's work. Only what these two kinds read goes here: their dumps read
/// through their own copy of the descriptor and change nothing, and what they share (the
/// process's pidfd, `UnixSocketTable`) is behind locks. A record is read for the first
/// descriptor of each socket and of each pipe end's access mode; one the step does not ask for
/// (a second description of the same end) is dropped, and a refusal is thrown only when the
/// step reaches its descriptor, so the first refusal in number order stays the one thrown.
struct ConcurrentFileRecords {
    private var records: [Int32: Result<Amber_OpenFileDescription.OneOf_File, any Error>] = [:]

    /// The records a thread reads before it takes the next few.
    private static let recordsPerChunk = 32
    /// Fewer records than this are read in order, by the step: threads would cost more.
    private static let minimumRecords = 16

    /// The first descriptor of each socket, and of each pipe's read and write ends.
    private struct First: Hashable {
        let identity: OpenFileIdentity
        let writeEnd: Bool
    }

    /// A descriptor and its kind, handed to one thread only.
    private struct Pending: @unchecked Sendable {
        let probe: DescriptorProbe
        let file: any OpenFileKind
    }

    /// Reads the records of `classified` (each descriptor with its kind, in number order) that
    /// are pipe ends or unix sockets not named by `externalFiles`, and on no file `table` has
    /// seen in a process dumped before (whose description a forked child likely shares).
    init(
        _ classified: [(probe: DescriptorProbe, file: any OpenFileKind)], externalFiles: Set<String>,
        table: FileState.DescriptionTable
    ) {
        var firsts = Set<First>()
        var pending: [Pending] = []
        for (probe, file) in classified {
            guard file.externalName.map({ !externalFiles.contains($0) }) ?? true else { continue }
            let first: First
            if let pipe = file as? PipeKind {
                first = First(identity: pipe.identity, writeEnd: pipe.isWriteEnd)
            } else if let socket = file as? UnixSocketKind {
                first = First(identity: socket.identity, writeEnd: false)
            } else {
                continue
            }
            guard !table.contains(first.identity), firsts.insert(first).inserted else { continue }
            pending.append(Pending(probe: probe, file: file))
        }
        guard pending.count >= Self.minimumRecords else { return }
        let chunks = stride(from: 0, to: pending.count, by: Self.recordsPerChunk).map {
            Array(pending[$0..<min($0 + Self.recordsPerChunk, pending.count)])
        }
        let read = chunks.concurrentMap { chunk in
            chunk.map { entry in
                (
                    entry.probe.fd,
                    Result { () throws -> Amber_OpenFileDescription.OneOf_File in
                        try entry.file.dump(entry.probe)
                    }
                )
            }
        }
        for chunk in read {
            for (fd, record) in chunk { records[fd] = record }
        }
    }

    /// The record read for descriptor `fd`, or its refusal; nil when none was read for it.
    func record(for fd: Int32) throws -> Amber_OpenFileDescription.OneOf_File? {
        try records[fd]?.get()
    }
}
