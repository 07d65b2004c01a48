import AmberImage
import Dispatch
import LinuxKit
import Logging
import Synchronization

/// The half of a dump that needs no ptrace: the steps that read a process from outside it
/// (`DumpPhase.outside`: its files, environment and memory), and its record written. ptrace ties every frozen task to the one thread
/// that seized it, so everything injected runs on that thread; this half runs on a serial queue
/// beside it, one process behind, so that a tree's dump keeps both CPUs busy. The queue keeps
/// tree order, which the table of open files shared between processes depends on.
final class OutsideReads: @unchecked Sendable {
    private let queue = DispatchQueue(label: "amber.dump.outside-reads")
    private let writer: ImageWriter
    private let logger: Logger
    private let failed = Atomic<Bool>(false)
    // Touched only on `queue`.
    private var tasks: [Amber_Task] = []
    private var failure: (any Error)?
    /// `dump --cow`: the records are written once the pages are copied, by the caller.
    private let deferRecords: Bool

    init(writer: ImageWriter, logger: Logger, deferRecords: Bool = false) {
        self.writer = writer
        self.logger = logger
        self.deferRecords = deferRecords
    }

    /// Runs the outside `steps` for a process (none for a zombie), then writes its record.
    func complete(_ dump: ProcessDump, steps: [PreparedDumpStep], interruption: DumpInterruption) {
        queue.async { [self] in
            guard failure == nil else { return }
            do {
                for step in steps {
                    try Checkpoint.run(step, dump, interruption: interruption, outside: nil, logger: logger)
                }
                let task = dump.task
                if !deferRecords {
                    try interruption.check(FaultPoints.write)
                    try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: task.pid))
                }
                logger.debug(
                    "collected process \(dump.name): \(task.threads.count) threads, \(task.memory.areas.count) areas, \(task.files.descriptors.count) fds"
                )
                tasks.append(task)
            } catch {
                failure = error
                failed.store(true, ordering: .releasing)
            }
        }
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
