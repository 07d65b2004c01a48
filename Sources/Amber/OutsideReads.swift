import AmberImage
import Dispatch
import LinuxKit
import Logging
import Synchronization

/// The half of a dump that needs no ptrace: each process's files, environment and memory, read
/// from outside it, and its record written. ptrace ties every frozen task to the one thread
/// that seized it, so everything injected runs on that thread; this half runs on a serial queue
/// beside it, one process behind, so that a tree's dump keeps both CPUs busy. The queue keeps
/// tree order, which the table of open files shared between processes depends on.
final class OutsideReads: @unchecked Sendable {
    typealias Reading = (target: DumpTarget, vmFlags: [UInt64: MemoryAreaFlags], brk: UInt64, futureLocking: MemoryState.FutureLocking)

    private let queue = DispatchQueue(label: "amber.dump.outside-reads")
    private let writer: ImageWriter
    private let logger: Logger
    private let failed = Atomic<Bool>(false)
    // Touched only on `queue`.
    private var descriptions = FileState.DescriptionTable()
    /// Two: a large process's pages are read by two threads (`MemoryState.twoThreadDumpSize`).
    private let pageBuffers = [PageReadBuffer(), PageReadBuffer()]
    private var fileSizes = MemoryState.FileSizes()
    private var tasks: [Amber_Task] = []
    private var failure: (any Error)?

    init(writer: ImageWriter, logger: Logger) {
        self.writer = writer
        self.logger = logger
    }

    /// Reads the rest of a process's state (nothing for a zombie) into `task`, then writes its record.
    func complete(_ task: Amber_Task, name: ProcessName, interruption: DumpInterruption, reading: Reading? = nil) {
        queue.async { [self] in
            guard failure == nil else { return }
            do {
                var task = task
                if let reading {
                    let pid = reading.target.pid
                    task.files = try step(pid, "files", interruption) { try FileState.dump(reading.target, table: &descriptions) }
                    task.environment = try step(pid, "environment", interruption) { try EnvironmentState.dump(reading.target) }
                    task.memory = try step(pid, "memory", interruption) {
                        try MemoryState.dump(reading.target, vmFlags: reading.vmFlags, brk: reading.brk, futureLocking: reading.futureLocking, image: writer, buffers: pageBuffers, fileSizes: &fileSizes)
                    }
                }
                try interruption.check(.write)
                try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: task.pid))
                logger.debug("collected process \(name): \(task.threads.count) threads, \(task.memory.areas.count) areas, \(task.files.descriptors.count) fds")
                tasks.append(task)
            } catch {
                failure = error
                failed.store(true, ordering: .releasing)
            }
        }
    }

    /// Each kind of state is one step at which an interrupted dump stops.
    private func step<State>(_ pid: Int32, _ kind: String, _ interruption: DumpInterruption, _ read: () throws -> State) throws -> State {
        try interruption.check(.collect)
        let state = try read()
        logger.trace("process \(pid): \(kind) read")
        return state
    }

    /// Throws the first failure so far, so that the tracer stops as soon as one is known.
    func check() throws {
        if failed.load(ordering: .acquiring) { _ = try finish() }
    }

    /// Waits for every process handed over; returns their records in tree order, or throws the first failure.
    func finish() throws -> [Amber_Task] {
        try queue.sync {
            if let failure { throw failure }
            return tasks
        }
    }
}
