import Dispatch
import Glibc

/// Encodes a page file's chunks (`ChunkCodec`) on every CPU while the dump goes on reading
/// memory, and hands the stored chunks to the writer in order, with their sizes and XXH64.
///
/// A chunk of a file compressed but not sealed that starts where added bytes look incompressible
/// (PRNG data, data compressed already: `ChunkCodec.looksCompressible`) is stored as it is,
/// written straight from the bytes added, without being copied or handed to another CPU.
///
/// Used by one thread, the writer's; only the encoding of a submitted chunk runs elsewhere.
final class ChunkPipeline {
    /// One chunk's buffers, reused from chunk to chunk.
    private final class Job: @unchecked Sendable {
        let plain: UnsafeMutableRawBufferPointer
        var count = 0
        /// The stored chunk: in `plain` or in `encoder`'s output.
        var stored = UnsafeRawBufferPointer(start: nil, count: 0)
        var xxh64: UInt64 = 0
        /// Signalled once `stored` and `xxh64` are set.
        let done = DispatchSemaphore(value: 0)
        let encoder: ChunkEncoder

        init(size: Int) {
            plain = .allocate(byteCount: size, alignment: 64)
            encoder = ChunkEncoder(chunkSize: size)
        }

        deinit { plain.deallocate() }
    }

    typealias Sink = (UnsafeRawBufferPointer) throws(ImageError) -> Void

    private let codec: ChunkCodec
    private let chunkSize: Int
    /// Chunks encoding or encoded but not yet written: two for each CPU keeps every CPU busy
    /// while the writer waits for the oldest.
    private let maximumPending: Int
    private var idle: [Job] = []
    private var pending: [Job] = []
    /// The chunk being filled; submitted when the next byte comes (so that the last chunk is known).
    private var filling: Job?
    /// The chunk being written as it is, straight from the bytes added: its bytes so far and their XXH64.
    private var direct: (count: Int, hash: XXH64)?
    /// Samples added bytes for chunks to write as they are; nil when every chunk is encoded.
    private let sampler: ChunkEncoder?
    private var submitted: UInt64 = 0
    private(set) var storedSizes: [UInt64] = []
    private(set) var storedDigests: [UInt64] = []

    init(codec: ChunkCodec, chunkSize: Int) {
        self.codec = codec
        self.chunkSize = chunkSize
        maximumPending = 2 * max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        sampler = codec.compress && codec.key == nil ? ChunkEncoder(chunkSize: chunkSize) : nil
    }

    deinit {
        // A worker may still be writing into a job's buffers.
        for job in pending { job.done.wait() }
    }

    /// Takes the next plain bytes of the file; writes the chunks encoded so far to `sink`.
    func add(_ bytes: UnsafeRawBufferPointer, to sink: Sink) throws(ImageError) {
        var start = 0
        while start < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
            // A few pages left of `bytes` are judged with the pages before them: otherwise a file
            // whose chunks start a few pages into each read would never be written directly.
            let sampled = rest.count >= Self.minimumSampled ? rest : bytes
            if direct == nil, filling.map({ $0.count == chunkSize }) ?? true, let sampler,
                sampled.count >= Self.minimumSampled, !ChunkCodec.looksCompressible(sampled, encoder: sampler)
            {
                if let full = filling { submit(full, isLast: false) }
                // The chunks before it go first.
                try writeEncoded(sink, waiting: true)
                direct = (0, XXH64())
            }
            if direct != nil {
                start += try writeDirect(rest, to: sink)
                continue
            }
            let job: Job
            if let current = filling, current.count < chunkSize {
                job = current
            } else {
                if let full = filling { submit(full, isLast: false) }
                job = try takeJob(sink)
                filling = job
            }
            let count = min(chunkSize - job.count, bytes.count - start)
            (job.plain.baseAddress! + job.count).copyMemory(from: bytes.baseAddress! + start, byteCount: count)
            job.count += count
            start += count
        }
        try writeEncoded(sink, waiting: false)
    }

    /// Encodes what is left as the last chunk and writes every chunk to `sink`.
    func finish(to sink: Sink) throws(ImageError) {
        if direct != nil { completeDirect() }
        if let last = filling, last.count > 0 { submit(last, isLast: true) }
        filling = nil
        try writeEncoded(sink, waiting: true)
    }

    /// Bytes added at a chunk's start that are sampled (`ChunkCodec.looksCompressible`) for a
    /// chunk to write as it is: fewer are copied and encoded as usual.
    private static let minimumSampled = 4 * ChunkCodec.samplePages * Int(ImageFormat.pageSize)

    private static let directSlice = 256 << 10

    /// Writes the first of `bytes` into the chunk written as it is, up to its end; returns how many.
    private func writeDirect(_ bytes: UnsafeRawBufferPointer, to sink: Sink) throws(ImageError) -> Int {
        guard var chunk = direct else { return 0 }
        let part = UnsafeRawBufferPointer(rebasing: bytes[..<min(chunkSize - chunk.count, bytes.count)])
        // Hashed and written a slice at a time, each still in the CPU cache for the write.
        var start = 0
        while start < part.count {
            let slice = UnsafeRawBufferPointer(rebasing: part[start..<min(start + Self.directSlice, part.count)])
            chunk.hash.update(slice)
            try sink(slice)
            start += slice.count
        }
        chunk.count += part.count
        direct = chunk
        if chunk.count == chunkSize { completeDirect() }
        return part.count
    }

    private func completeDirect() {
        guard let chunk = direct else { return }
        storedSizes.append(UInt64(chunk.count))
        storedDigests.append(chunk.hash.digest)
        submitted += 1
        direct = nil
    }

    private func submit(_ job: Job, isLast: Bool) {
        let index = submitted
        submitted += 1
        pending.append(job)
        filling = nil
        let codec = codec
        DispatchQueue.global().async {
            job.stored = codec.encode(
                UnsafeRawBufferPointer(rebasing: job.plain[..<job.count]), index: index, isLast: isLast,
                encoder: job.encoder)
            job.xxh64 = XXH64.hash(job.stored)
            job.done.signal()
        }
    }

    private func takeJob(_ sink: Sink) throws(ImageError) -> Job {
        if idle.isEmpty {
            if pending.count < maximumPending { return Job(size: chunkSize) }
            try writeOldest(sink)
        }
        let job = idle.removeLast()
        job.count = 0
        return job
    }

    /// Writes the oldest pending chunk, waiting for it if need be.
    private func writeOldest(_ sink: Sink) throws(ImageError) {
        let job = pending.removeFirst()
        job.done.wait()
        storedSizes.append(UInt64(job.stored.count))
        storedDigests.append(job.xxh64)
        defer {
            job.stored = UnsafeRawBufferPointer(start: nil, count: 0)
            idle.append(job)
        }
        try sink(job.stored)
    }

    /// Writes the pending chunks in order: those already encoded, or all of them when `waiting`.
    private func writeEncoded(_ sink: Sink, waiting: Bool) throws(ImageError) {
        while let oldest = pending.first {
            if !waiting {
                guard oldest.done.wait(timeout: .now()) == .success else { return }
                oldest.done.signal()
            }
            try writeOldest(sink)
        }
    }
}
