import AmberImage
import Dispatch
import Glibc
import LinuxKit
import Logging
import Synchronization

/// `dump --cow`: the tree is frozen only while everything but its pages is read and the pages
/// are write-protected (userfaultfd, synchronous WP); it then runs on while the pages are
/// copied. A page the process writes first is saved by the fault handler, as it was, before
/// its protection is lifted; the copier takes that copy for it. The copy reads and writes the
/// pages exactly as a plain dump does (`MemoryState.dump`, deferred), so the image is the one a
/// plain dump at the freeze would have written.
enum CopyOnWriteMemoryState: StateKind {
    typealias DumpState = CopyOnWriteDump?

    static func makeDumpState(_ dump: TreeDump) -> CopyOnWriteDump? { dump.copyOnWrite }

    static var dumpSteps: [DumpStep<CopyOnWriteDump?>] {
        [
            DumpStep("cow-userfaultfd", .traced) { process, copyOnWrite in try copyOnWrite?.open(process) },
            // After the memory step, which scanned the pages and left their copy to this dump.
            DumpStep("cow-protect", .outside) { process, copyOnWrite in
                guard let copyOnWrite else { return }
                try copyOnWrite.protect(
                    process.pid, keepingWritable: ThreadControlState.unservedAddresses(of: process.task))
            },
        ]
    }
}

/// What amber does to the pages of one process when a page-saving pass reads them: `settle`
/// is called with each stretch just read, in ascending addresses within one pass (`job`).
protocol PageOverlay: AnyObject, Sendable {
    func settle(_ address: UInt64, _ bytes: UnsafeMutableRawBufferPointer) throws
}

/// One `dump --cow`: each process's userfaultfd, the page copies it left for later, the
/// fault handler.
final class CopyOnWriteDump: @unchecked Sendable {
    /// A process's pages as the memory step planned them: the areas, each pass's ranges, and
    /// the pass itself (given each pass's overlay, returns the runs by area index).
    struct Deferred: @unchecked Sendable {
        let areas: [Amber_MemoryArea]
        let passes: [[(area: Int, ranges: [Range<UInt64>])]]
        let save: ([any PageOverlay]) throws -> [Int: [Amber_PageRun]]
    }

    private let logger: Logger
    private let state = Mutex(State())
    private struct State {
        var userfaultfds: [Int32: (name: ProcessName, userfaultfd: Userfaultfd)] = [:]
        var deferred: [Int32: Deferred] = [:]
        /// In tree order, once protected.
        var protected: [ProtectedProcess] = []
    }
    private var handler: FaultHandler?

    init(logger: Logger) { self.logger = logger }

    /// Traced step: a userfaultfd made by the process (bound to its memory), copied into amber
    /// and closed in the process at once. Without UFFD_USER_MODE_ONLY, so that a write the
    /// kernel does for it (`read` into a protected buffer) waits too rather than fail with
    /// EFAULT; that needs CAP_SYS_PTRACE in the process or vm.unprivileged_userfaultfd.
    func open(_ process: ProcessDump) throws {
        let injector = process.session.injector
        let made: UInt64
        do {
            made = try injector.call(
                "userfaultfd(O_CLOEXEC|O_NONBLOCK)", SyscallNumber.userfaultfd, UInt64(O_CLOEXEC | O_NONBLOCK))
        } catch {
            guard error.errno == .notPermitted else { throw error }
            throw AmberError.unsupported(
                process.name,
                "may not make a userfaultfd (EPERM: it lacks CAP_SYS_PTRACE and vm.unprivileged_userfaultfd is 0), which dump --cow needs to write-protect its memory: dump it without --cow",
                tree: process.tree)
        }
        let copy = Self.duplicate(Int32(made), of: process.pid)
        try injector.call("close(userfaultfd)", SyscallNumber.close, made)
        let userfaultfd = Userfaultfd(adopting: try copy.get())
        // The process may unmap, drop or move memory not yet copied once it runs: told by these.
        try userfaultfd.negotiate([.eventUnmap, .eventRemove, .eventRemap])
        state.withLock { $0.userfaultfds[process.pid] = (process.name, userfaultfd) }
    }

    private static func duplicate(_ descriptor: Int32, of pid: Int32) -> Result<Int32, LinuxError> {
        do {
            let pidfd = try Pidfd(pid: pid)
            return .success(try pidfd.duplicate(descriptor).rawValue)
        } catch {
            return .failure(error)
        }
    }

    /// The memory step of process `pid` leaves its pages here instead of copying them.
    func deferPages(of pid: Int32, _ deferred: Deferred) {
        state.withLock { $0.deferred[pid] = deferred }
    }

    /// Outside step, the tree still frozen: registers and write-protects the private anonymous
    /// areas whose pages are to be saved; the pages of other areas (private file mappings,
    /// which synchronous write protection does not take) are read now. So are the pages of the
    /// words in `keepingWritable`, whose protection is then lifted: the kernel writes them
    /// where it hands userfaultfd no fault (`ThreadControlState.unservedAddresses`: an exiting
    /// thread's robust mutexes and cleared TID, a PI futex a thread waits on).
    func protect(_ pid: Int32, keepingWritable: [UInt64]) throws {
        let (opened, deferred) = state.withLock { ($0.userfaultfds.removeValue(forKey: pid), $0.deferred[pid]) }
        guard let (name, userfaultfd) = opened, let deferred else { return }
        let process = try ProtectedProcess(
            pid: pid, name: name, userfaultfd: userfaultfd, passes: deferred.passes.map { $0.flatMap(\.ranges) })
        state.withLock { $0.protected.append(process) }
        var areaRanges: [Int: [Range<UInt64>]] = [:]
        for pass in deferred.passes {
            for (area, ranges) in pass { areaRanges[area, default: []] += ranges }
        }
        for (index, ranges) in areaRanges.sorted(by: { $0.key < $1.key }) {
            let area = deferred.areas[index]
            let range = area.start..<area.end
            if [.areaAnonymous, .areaHeap, .areaStack].contains(area.kind) && !area.shared {
                do {
                    try userfaultfd.register(range, .writeProtect)
                    try userfaultfd.writeProtect(range, true)
                    process.registered.append(range)
                    continue
                } catch {
                    try? userfaultfd.unregister(range)
                    logger.debug("process \(name): area \(range) not write-protected (\(error)): its pages read now")
                }
            }
            try process.saveNow(ranges)
        }
        try process.keepWritable(keepingWritable)
    }

    /// Starts handling faults: before the tree is let go.
    func startHandling() throws {
        handler = try FaultHandler(state.withLock { $0.protected })
    }

    /// The tree runs: copies each process's pages into its record (`tasks`, tree order), then
    /// lets its memory go (every protection lifted, every waiting thread woken).
    func copy(into tasks: inout [Amber_Task]) throws {
        let processes = state.withLock { state in
            Dictionary(state.protected.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
        }
        let deferred = state.withLock { $0.deferred }
        defer { close() }
        for index in tasks.indices {
            let pid = tasks[index].pid
            guard let process = processes[pid], let pages = deferred[pid] else { continue }
            let runs: [Int: [Amber_PageRun]]
            do {
                runs = try pages.save(process.overlays)
            } catch let error as LinuxError where error.errno == .noSuchProcess {
                throw process.lost
                    ?? AmberError.unsupported(
                        process.name,
                        "exited during a dump --cow before its memory was copied: the dump is given up (the rest of the tree runs on); dump it without --cow"
                    )
            } catch {
                throw process.lost ?? error
            }
            if let lost = process.lost { throw lost }
            guard process.keepsItsMemory() else {
                throw AmberError.unsupported(
                    process.name,
                    "ran another program (execve) during a dump --cow, before its memory was copied: the dump is given up (the rest of the tree runs on); dump it without --cow"
                )
            }
            for (area, areaRuns) in runs { tasks[index].memory.areas[area].pages += areaRuns }
            logger.debug("process \(process.name): pages copied, \(process.faults) saved first by a fault")
        }
    }

    /// Stops the fault handler and closes every userfaultfd: the kernel unregisters its areas,
    /// lifts what protection is left and wakes every thread that waits on it.
    func close() {
        handler?.stop()
        handler = nil
        state.withLock { state in
            state.protected.removeAll()
            state.userfaultfds.removeAll()
        }
    }

    /// Without --leave-running, the tree is killed once the copy is complete. It ran on since it
    /// was let go: it is frozen again (with any process it made meanwhile) and killed as a plain
    /// dump kills it, children first, each reaped by its parent.
    static func kill(root: Int32, interruption: DumpInterruption, logger: Logger) throws {
        var processes = try TreeState.freeze(root: root, interruption: interruption, logger: logger)
        var tasks: [Amber_Task] = []
        do {
            for index in processes.indices {
                let process = processes[index]
                var task = Amber_Task()
                task.pid = process.pid
                task.ppid = process.snapshot.stat.ppid
                let namespacePIDs = process.snapshot.status.namespacePIDs
                task.namespacePids = namespacePIDs.count > 1 ? namespacePIDs : []
                tasks.append(task)
                guard let leader = process.threads.first else { continue }
                let rip = try leader.registers().rip
                if let instruction = SyscallInjector.syscallInstruction(before: rip, pid: process.pid) {
                    processes[index].syscallInstruction = instruction
                } else if let vdso = process.snapshot.maps.first(where: { $0.path == "[vdso]" }) {
                    processes[index].syscallInstruction = try SyscallInjector.findSyscallInstruction(
                        pid: process.pid, vdso: vdso.start..<vdso.end)
                }
            }
        } catch {
            TreeState.release(processes)
            throw error
        }
        try TreeState.kill(processes, tasks: tasks, logger: logger)
    }
}

/// A process whose memory is write-protected: what the handler saved of it, what the copier
/// has copied, and whether it lost memory not yet copied.
private final class ProtectedProcess: @unchecked Sendable {
    let pid: Int32
    let name: ProcessName
    let userfaultfd: Userfaultfd
    private let memory: ProcessMemoryFile
    /// The areas registered, ascending; set while frozen, before the handler starts.
    var registered: [Range<UInt64>] = []
    /// The pages to save, ascending.
    private let wanted: [Range<UInt64>]
    private let state: Mutex<State>
    private struct State {
        /// Each page saved before the copier reached it, as it was at the freeze.
        var saved: [UInt64: [UInt8]] = [:]
        /// Each pass's address span and how far it has copied.
        var passes: [(span: Range<UInt64>, copied: UInt64)]
        var lost: AmberError?
        var faults = 0
    }

    init(pid: Int32, name: ProcessName, userfaultfd: Userfaultfd, passes: [[Range<UInt64>]]) throws {
        self.pid = pid
        self.name = name
        self.userfaultfd = userfaultfd
        memory = try ProcessMemoryFile(pid: pid, writable: false)
        wanted = passes.flatMap(\.self)
        state = Mutex(
            State(
                passes: passes.map { ranges in
                    let span = (ranges.first?.lowerBound ?? 0)..<(ranges.last?.upperBound ?? 0)
                    return (span, span.lowerBound)
                }))
    }

    var lost: AmberError? { state.withLock { $0.lost } }
    var faults: Int { state.withLock { $0.faults } }

    /// Whether the process still has the memory it had at the freeze: its /proc/PID/mem, opened
    /// then, reads nothing once an execve has put another in its place, whose pages the copy
    /// may have read since.
    func keepsItsMemory() -> Bool {
        guard let page = wanted.first?.lowerBound else { return true }
        return (try? read(page)) != nil
    }

    /// One overlay per pass of the page copy.
    var overlays: [any PageOverlay] { state.withLock { $0.passes.indices.map { Overlay(process: self, pass: $0) } } }

    /// While frozen: the pages of `ranges` are read now, for the copier to take.
    func saveNow(_ ranges: [Range<UInt64>]) throws {
        var saved: [UInt64: [UInt8]] = [:]
        for range in ranges {
            var page = range.lowerBound
            while page < range.upperBound {
                saved[page] = try read(page)
                page += MemoryState.pageSize
            }
        }
        state.withLock { $0.saved.merge(saved) { first, _ in first } }
    }

    /// While frozen: the pages of `addresses` that are write-protected are saved now, if the
    /// image wants them, and their protection lifted.
    func keepWritable(_ addresses: [UInt64]) throws {
        let pages = Set(addresses.map { $0 & ~(MemoryState.pageSize - 1) }).filter(isRegistered).sorted()
        try saveNow(pages.filter(isWanted).map { $0..<$0 + MemoryState.pageSize })
        for page in pages { try userfaultfd.writeProtect(page..<page + MemoryState.pageSize, false) }
    }

    private func read(_ page: UInt64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Int(MemoryState.pageSize))
        let count = try bytes.withUnsafeMutableBytes { try memory.read(into: $0, at: page) }
        guard count == bytes.count else {
            throw LinuxError(.badAddress, "read memory of process \(pid) at 0x\(String(page, radix: 16))")
        }
        return bytes
    }

    private func isWanted(_ page: UInt64) -> Bool {
        var low = 0
        var high = wanted.count
        while low < high {
            let middle = (low + high) / 2
            if wanted[middle].upperBound <= page { low = middle + 1 } else { high = middle }
        }
        return low < wanted.count && wanted[low].contains(page)
    }

    private func isRegistered(_ page: UInt64) -> Bool { registered.contains { $0.contains(page) } }

    /// Whether the image already has page `page` (or never needs it), under the lock.
    private static func isTaken(_ page: UInt64, _ state: State) -> Bool {
        state.saved[page] != nil || state.passes.contains { $0.span.contains(page) && $0.copied > page }
    }

    /// A write to a protected page: the page is saved as it was unless the image has it,
    /// marked, and only then is its protection lifted, which wakes the writer.
    func fault(at address: UInt64) {
        let page = address & ~(MemoryState.pageSize - 1)
        state.withLock { state in
            guard isWanted(page), !Self.isTaken(page, state) else { return }
            state.faults += 1
            do {
                state.saved[page] = try read(page)
            } catch {
                state.lost = state.lost ?? .init(.failure, "dump --cow of process \(name): \(error)")
            }
        }
        try? userfaultfd.writeProtect(page..<page + MemoryState.pageSize, false)
    }

    /// munmap, madvise(MADV_DONTNEED) or mremap took `range` away: the kernel completed it when
    /// the handler read it, so a page of it not yet copied is lost to the image.
    func removed(_ range: Range<UInt64>, _ what: String) {
        state.withLock { state in
            guard state.lost == nil else { return }
            var page = range.lowerBound
            while page < range.upperBound {
                if isWanted(page) && !Self.isTaken(page, state) {
                    state.lost = AmberError.unsupported(
                        name,
                        "\(what) memory at 0x\(String(range.lowerBound, radix: 16))-0x\(String(range.upperBound, radix: 16)) during a dump --cow before its page at 0x\(String(page, radix: 16)) was copied: the dump is given up (the process runs on unharmed); dump it without --cow"
                    )
                    return
                }
                page += MemoryState.pageSize
            }
        }
    }

    /// The copier's side: after a stretch is read, the pages a fault saved replace what was
    /// read (the process may have written them since), the stretch is marked copied, and its
    /// protection lifted.
    func settle(_ address: UInt64, _ bytes: UnsafeMutableRawBufferPointer, pass: Int) throws {
        let end = address + UInt64(bytes.count)
        try state.withLock { state in
            if let lost = state.lost { throw lost }
            if !state.saved.isEmpty {
                var page = address
                while page < end {
                    if let saved = state.saved.removeValue(forKey: page) {
                        saved.withUnsafeBytes { source in
                            (bytes.baseAddress! + Int(page - address)).copyMemory(
                                from: source.baseAddress!, byteCount: source.count)
                        }
                    }
                    page += MemoryState.pageSize
                }
            }
            state.passes[pass].copied = end
        }
        if isRegistered(address) { try? userfaultfd.writeProtect(address..<end, false) }
    }

    private final class Overlay: PageOverlay {
        let process: ProtectedProcess
        let pass: Int

        init(process: ProtectedProcess, pass: Int) {
            self.process = process
            self.pass = pass
        }

        func settle(_ address: UInt64, _ bytes: UnsafeMutableRawBufferPointer) throws {
            try process.settle(address, bytes, pass: pass)
        }
    }
}

/// One thread that reads every protected process's userfaultfd while the tree runs: page
/// faults (every thread of every process may wait on one) and the events that take memory away.
private final class FaultHandler: @unchecked Sendable {
    private let processes: [ProtectedProcess]
    /// Written to stop the handler.
    private let wake: (read: Int32, write: Int32)
    private let done = DispatchSemaphore(value: 0)

    init(_ processes: [ProtectedProcess]) throws {
        self.processes = processes
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw LinuxError.current("pipe") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        wake = (ends[0], ends[1])
        DispatchQueue(label: "amber.cow.faults").async { [self] in
            run()
            done.signal()
        }
    }

    func stop() {
        var byte: UInt8 = 1
        _ = Glibc.write(wake.write, &byte, 1)
        done.wait()
        Glibc.close(wake.read)
        Glibc.close(wake.write)
    }

    private func run() {
        var descriptors = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        descriptors += processes.map { pollfd(fd: $0.userfaultfd.fd, events: Int16(POLLIN), revents: 0) }
        while true {
            for index in descriptors.indices { descriptors[index].revents = 0 }
            guard poll(&descriptors, nfds_t(descriptors.count), -1) >= 0 || errno == EINTR else { return }
            if descriptors[0].revents != 0 { return }
            for (index, process) in processes.enumerated() where descriptors[index + 1].revents != 0 {
                handle(process)
            }
        }
    }

    private func handle(_ process: ProtectedProcess) {
        while let events = try? process.userfaultfd.events(), !events.isEmpty {
            for event in events {
                switch event {
                case .pageFault(let address, _, _, _): process.fault(at: address)
                case .remove(let range): process.removed(range, "dropped (madvise)")
                case .unmap(let range): process.removed(range, "unmapped")
                case .remap(let from, _, let length): process.removed(from..<from + length, "moved (mremap)")
                case .fork: break
                }
            }
        }
    }
}
