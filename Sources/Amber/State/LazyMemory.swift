import AmberImage
import Dispatch
import Glibc
import LinuxKit
import Logging
import Synchronization
import SystemPackage

/// A lazy restore (`restore --lazy-pages`): the pages of private anonymous areas are not
/// written before the tree runs. Each process gets a userfaultfd over those areas, and
/// `LazyPageServer` fills a page when a thread first touches it, and all the others in the
/// background, until every process holds all of its pages; then it closes the descriptors,
/// which takes the registrations away. docs/architecture.md, "Lazy restore", says why.
enum LazyMemory {
    /// Whether the pages of `area` arrive lazily: a private anonymous area the userfaultfd's
    /// MISSING mode serves, that nothing populates while the tree is restored (mlock) and whose
    /// pages a child sees as its parent does (not wiped or left out at a fork); writable, as
    /// an area made read-only (by the mprotect after its pages) before it has a page loses
    /// VM_ACCOUNT and may merge with a neighbour. The others are filled before the tree runs,
    /// as in a plain restore.
    static func servesLazily(_ area: Amber_MemoryArea) -> Bool {
        let anonymous =
            area.kind == .areaHeap || area.kind == .areaStack
            || (area.kind == .areaAnonymous && area.sharedAnonymousID == 0)
        return anonymous && !area.pages.isEmpty && !area.shared && !area.droppable && !area.locked
            && !area.wipeOnFork && !area.dontFork && area.protection & UInt32(PROT_WRITE) != 0
    }

    /// Makes the task's userfaultfd (injected: it serves the task's own memory), takes it into
    /// amber, closes it in the task, registers the lazy areas and hands them to `server`; the
    /// pages of the other areas are written now, each chunk checked first (the image was
    /// opened without checking its page files).
    static func register(_ session: RestoreSession, with server: LazyPageServer) throws {
        let record = session.task.memory
        let areas = record.areas.filter(servesLazily)
        // The first page of an area may be present already (one moved into place is faulted
        // first, `restoreAreas`): a copy would find it there, so it is written now.
        let firstPages = areas.compactMap { area -> Amber_PageRun? in
            guard var run = area.pages.first, run.address == area.start else { return nil }
            run.count = 1
            return run
        }
        // So are the pages the kernel reaches without waiting for a missing page to arrive.
        let kernelPages = Set(
            ThreadControlState.unservedAddresses(of: session.task).map { $0 & ~(MemoryState.pageSize - 1) }
        ).sorted()
            .compactMap { page in
                areas.lazy.flatMap(\.pages).first {
                    $0.address <= page && page - $0.address < $0.count * MemoryState.pageSize
                }
                .map { run -> Amber_PageRun in
                    var one = run
                    (one.address, one.offset, one.count) = (page, run.offset + (page - run.address), 1)
                    return one
                }
            }
        try fillEagerly(
            session, record.areas.filter { !servesLazily($0) }.flatMap(\.pages) + firstPages + kernelPages,
            server: server)
        guard !areas.isEmpty else { return }
        // Without UFFD_USER_MODE_ONLY: the kernel's own accesses (a write() from a missing page)
        // must wait for the page too, not fail with EFAULT.
        let made = try session.injector.raw(SyscallNumber.userfaultfd, UInt64(O_CLOEXEC | O_NONBLOCK))
        if made == -Int64(EPERM) {
            throw refusal(
                "process \(session.pid) may not make a userfaultfd that also waits on the kernel's accesses to its memory (that needs CAP_SYS_PTRACE, or the sysctl vm.unprivileged_userfaultfd = 1)"
            )
        } else if made < 0 {
            throw LinuxError(negated: Int(made), "userfaultfd in task \(session.pid)")
        }
        let copy = try Pidfd(pid: session.pid).duplicate(Int32(made))
        try session.injector.call("close userfaultfd", SyscallNumber.close, UInt64(made))
        let descriptor = Userfaultfd(adopting: copy.rawValue)
        let negotiated = Result { () throws(LinuxError) in
            try descriptor.negotiate([.eventFork, .eventRemap, .eventRemove, .eventUnmap])
        }
        if case .failure(let error) = negotiated {
            guard error.errno != .notPermitted else {
                throw refusal("following the tree's forks (UFFD_FEATURE_EVENT_FORK) needs CAP_SYS_PTRACE")
            }
            throw error
        }
        var runs: [LazyRun] = []
        for area in areas {
            try descriptor.register(area.start..<area.end, .missing)
            for run in area.pages {
                runs.append(
                    LazyRun(
                        address: run.address, count: run.count,
                        file: try server.file(named: record.pageFiles[Int(run.file)]), offset: run.offset))
            }
        }
        server.add(
            LazyProcess(name: "process \(session.pid)", descriptor: descriptor, pending: PendingPages(runs)),
            pages: runs.reduce(0) { $0 + $1.count })
    }

    /// Writes the pages of `runs` through /proc/PID/mem (which writes whatever their
    /// area's protection), from checked chunks. Runs next to one another in a page file (the
    /// small areas, one after the other) share a chunk, which is read and checked once.
    private static func fillEagerly(_ session: RestoreSession, _ runs: [Amber_PageRun], server: LazyPageServer)
        throws
    {
        guard !runs.isEmpty else { return }
        let memory = try ProcessMemoryFile(pid: session.pid, writable: true)
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Int(LazyPageServer.fillSize + ImageFormat.maximumChunkSize), alignment: Int(MemoryState.pageSize)
        )
        defer { buffer.deallocate() }
        var held: (file: Int, window: Range<UInt64>, data: UnsafeRawBufferPointer)?
        for run in runs {
            let index = try server.file(named: session.task.memory.pageFiles[Int(run.file)])
            let file = server.pageFile(index)
            var offset = run.offset
            let end = run.offset + run.count * MemoryState.pageSize
            while offset < end {
                let window: Range<UInt64>
                let data: UnsafeRawBufferPointer
                if let held, held.file == index, held.window.contains(offset) {
                    (window, data) = (held.window, held.data)
                } else {
                    window = file.chunks(around: offset..<end, limit: LazyPageServer.fillSize)
                    data = try server.read(file, window, into: buffer)
                    held = (index, window, data)
                }
                let stop = min(end, window.upperBound)
                let start = Int(offset - window.lowerBound)
                try memory.write(
                    UnsafeRawBufferPointer(rebasing: data[start..<start + Int(stop - offset)]),
                    at: run.address + offset - run.offset)
                offset = stop
            }
        }
    }

    private static func refusal(_ why: String) -> AmberError {
        AmberError(.permissionDenied, "--lazy-pages: \(why); restore without --lazy-pages")
    }
}

/// Pages of one page file, in order, at consecutive addresses.
struct LazyRun: Equatable {
    var address: UInt64
    /// Pages.
    var count: UInt64
    /// The page file, by its index in `LazyPageServer`.
    var file: Int
    var offset: UInt64

    var end: UInt64 { address + count * MemoryState.pageSize }
    var bytes: UInt64 { count * MemoryState.pageSize }

    /// The part of the run inside `range` (which must overlap it).
    func clipped(to range: Range<UInt64>) -> LazyRun {
        let start = max(address, range.lowerBound)
        let stop = min(end, range.upperBound)
        return LazyRun(
            address: start, count: (stop - start) / MemoryState.pageSize, file: file, offset: offset + start - address)
    }
}

/// The pages a process still lacks, by address: sorted runs that never overlap.
struct PendingPages {
    private(set) var runs: [LazyRun]

    init(_ runs: [LazyRun]) { self.runs = runs.filter { $0.count > 0 }.sorted { $0.address < $1.address } }

    var isEmpty: Bool { runs.isEmpty }

    /// The index of the first run that ends above `address`.
    private func firstIndex(endingAbove address: UInt64) -> Int {
        var low = 0
        var high = runs.count
        while low < high {
            let middle = (low + high) / 2
            if runs[middle].end <= address { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The parts of runs inside `range`.
    func parts(in range: Range<UInt64>) -> [LazyRun] {
        var result: [LazyRun] = []
        var index = firstIndex(endingAbove: range.lowerBound)
        while index < runs.count, runs[index].address < range.upperBound {
            result.append(runs[index].clipped(to: range))
            index += 1
        }
        return result
    }

    /// The run that holds the page at `address`, if one does.
    func run(containing address: UInt64) -> LazyRun? {
        let index = firstIndex(endingAbove: address)
        return index < runs.count && runs[index].address <= address ? runs[index] : nil
    }

    /// The first run at or above `address`, or else the first of all.
    func first(from address: UInt64) -> LazyRun? {
        let index = firstIndex(endingAbove: address)
        guard index < runs.count else { return runs.first }
        return runs[index].address < address ? runs[index].clipped(to: address..<runs[index].end) : runs[index]
    }

    /// Takes the pages of `range` out: filled, dropped (madvise) or unmapped.
    mutating func remove(_ range: Range<UInt64>) {
        let first = firstIndex(endingAbove: range.lowerBound)
        var last = first
        var kept: [LazyRun] = []
        while last < runs.count, runs[last].address < range.upperBound {
            let run = runs[last]
            if run.address < range.lowerBound { kept.append(run.clipped(to: run.address..<range.lowerBound)) }
            if run.end > range.upperBound { kept.append(run.clipped(to: range.upperBound..<run.end)) }
            last += 1
        }
        runs.replaceSubrange(first..<last, with: kept)
    }

    /// mremap moved `length` bytes from `from` to `to`: their pending pages move with them.
    mutating func move(from: UInt64, to: UInt64, length: UInt64) {
        let moved = parts(in: from..<from + length).map { run -> LazyRun in
            var run = run
            run.address = run.address - from + to
            return run
        }
        remove(from..<from + length)
        remove(to..<to + length)
        runs = (runs + moved).sorted { $0.address < $1.address }
    }
}

/// One process of a lazy restore: its userfaultfd and the pages it still lacks.
final class LazyProcess: @unchecked Sendable {
    /// Names it in messages: "process PID", or a child forked from one.
    let name: String
    /// Closed by the server's event loop alone, once the process has every page or is gone.
    private(set) var descriptor: Userfaultfd?
    /// Copies take it shared; reading the events takes it alone, so that no copy runs while an
    /// event is read (after which the kernel drops the pages of a removed range, and a copy
    /// still running could put them back).
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    /// Guards `pending`, `cursor` and `finished` between the copies that share `lock`.
    private let pendingLock = Mutex(())
    private var pending: PendingPages
    /// Where the background fill goes on.
    private var cursor: UInt64 = 0
    /// No page left to fill, or the process's memory is gone.
    private var finished = false

    init(name: String, descriptor: Userfaultfd, pending: PendingPages) {
        self.name = name
        self.descriptor = descriptor
        self.pending = pending
        finished = pending.isEmpty
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    var isFinished: Bool { pendingLock.withLock { _ in finished } }

    /// Closes the descriptor of a finished process: the kernel takes its registrations away.
    /// The event loop's thread only, which polls the descriptor.
    func closeIfFinished() -> Bool {
        guard descriptor != nil, isFinished else { return false }
        pthread_rwlock_wrlock(lock)
        descriptor = nil
        pthread_rwlock_unlock(lock)
        return true
    }

    /// The next pages for the background fill: the run from the cursor on, at most `limit`
    /// bytes of it within chunks of its page file; the cursor moves past them.
    func nextFill(limit: UInt64, files: [LazyPageFile]) -> (LazyRun, Range<UInt64>)? {
        pendingLock.withLock { _ in
            guard !finished, let run = pending.first(from: cursor) else { return nil }
            let file = files[run.file]
            let window = file.chunks(around: run.offset..<run.offset + run.bytes, limit: limit)
            let piece = run.clipped(to: run.address..<min(run.end, run.address + window.upperBound - run.offset))
            cursor = piece.end
            return (piece, window)
        }
    }

    private func markFilled(_ range: Range<UInt64>) {
        pendingLock.withLock { _ in
            pending.remove(range)
            if pending.isEmpty { finished = true }
        }
    }

    private func markGone() { pendingLock.withLock { _ in finished = true } }

    /// Copies what is still pending of `piece` from `data` (the page file's bytes from
    /// `window`'s start on): shared with other copies; leaves a range an event changes for later.
    func fill(_ piece: LazyRun, from data: UnsafeRawBufferPointer, window: Range<UInt64>) throws {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        let parts = pendingLock.withLock { _ in pending.parts(in: piece.address..<piece.end) }
        // Only the parts still at the place of the page file the bytes came from (an mremap moves them).
        for part in parts where part.file == piece.file && part.offset == piece.offset + part.address - piece.address {
            guard try place(part, from: data, window: window) else { return }
        }
    }

    /// Copies `part` in as few UFFDIO_COPY calls as the kernel allows; false when an event
    /// waits to be read (the rest stays pending) or the memory is gone.
    private func place(_ part: LazyRun, from data: UnsafeRawBufferPointer, window: Range<UInt64>) throws -> Bool {
        guard let descriptor else { return false }
        var address = part.address
        var start = Int(part.offset - window.lowerBound)
        let end = start + Int(part.bytes)
        let page = Int(MemoryState.pageSize)
        // Page by page once a copy failed for its range: the kernel copies within one area,
        // and an mprotect or madvise since may have split the part's area without an event.
        var pageByPage = false
        while start < end {
            let length = pageByPage ? page : end - start
            let result = descriptor.fill(UnsafeRawBufferPointer(rebasing: data[start..<start + length]), at: address)
            var placed = result.bytes
            if let error = result.error, placed <= 0 {
                if error == .fileExists {
                    // Present already: a copy that raced with ours.
                    placed = page
                } else if error == .resourceTemporarilyUnavailable {
                    return false
                } else if error == .noSuchProcess {
                    markGone()
                    return false
                } else if error == .noSuchFileOrDirectory || error == .invalidArgument {
                    guard pageByPage else {
                        pageByPage = true
                        continue
                    }
                    // This page is no longer in a registered area of the process (a child without it).
                    placed = page
                } else {
                    throw LinuxError(error, "UFFDIO_COPY into \(name) at 0x\(String(address, radix: 16))")
                }
            }
            markFilled(address..<address + UInt64(placed))
            address += UInt64(placed)
            start += placed
        }
        return true
    }

    /// Reads every waiting event and serves the faults among them; alone, so that no copy
    /// runs meanwhile. `buffer` holds one chunk of a page file.
    func serveEvents(server: LazyPageServer, buffer: UnsafeMutableRawBufferPointer) throws {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        guard let descriptor else { return }
        var faults: [UInt64] = []
        var attempts = 0
        repeat {
            while case let events = try descriptor.events(), !events.isEmpty {
                for event in events { apply(event, server: server, faults: &faults) }
            }
            var waiting: [UInt64] = []
            for address in faults where try !serveFault(at: address, server: server, buffer: buffer) {
                waiting.append(address)
            }
            faults = waiting
            attempts += 1
            // A fault that met an event not yet queued (a fork under way) waits for it.
            if !faults.isEmpty && attempts > 1 { _ = Self.waitReadable(descriptor.fd) }
        } while !faults.isEmpty && !isFinished
    }

    /// Takes one event in: a fault to serve, a child to serve too (with the pages its parent
    /// still lacks), pages moved, or dropped for good.
    private func apply(_ event: UserfaultEvent, server: LazyPageServer, faults: inout [UInt64]) {
        switch event {
        case .pageFault(let address, _, _, _):
            faults.append(address & ~(MemoryState.pageSize - 1))
        case .fork(let child):
            let copy = pendingLock.withLock { _ in pending }
            server.add(
                LazyProcess(name: "a child of \(name)", descriptor: Userfaultfd(adopting: child), pending: copy),
                pages: 0)
        case .remap(let from, let to, let length):
            pendingLock.withLock { _ in pending.move(from: from, to: to, length: length) }
        case .remove(let range), .unmap(let range):
            markFilled(range)
        }
    }

    /// Serves the fault at `address`: the image's page and what follows of its run within one
    /// chunk, or a zero page where no page is pending (a range dropped or never written).
    /// False when an event must be read first.
    private func serveFault(at address: UInt64, server: LazyPageServer, buffer: UnsafeMutableRawBufferPointer) throws
        -> Bool
    {
        guard let descriptor else { return true }
        server.noteFault()
        if let run = pendingLock.withLock({ _ in pending.run(containing: address) }) {
            let file = server.pageFile(run.file)
            let offset = run.offset + address - run.address
            let window = file.chunks(around: offset..<offset + MemoryState.pageSize, limit: file.chunkSize)
            let data = try server.read(file, window, into: buffer)
            let before = offset - window.lowerBound
            let lower = address >= before ? address - before : 0
            let piece = run.clipped(to: max(run.address, lower)..<min(run.end, address + window.upperBound - offset))
            return try place(piece, from: data, window: window)
        }
        let result = descriptor.fillZeros(address..<address + MemoryState.pageSize)
        guard let error = result.error, result.bytes <= 0 else { return true }
        if error == .fileExists {
            try? descriptor.wake(address..<address + MemoryState.pageSize)
        } else if error == .resourceTemporarilyUnavailable {
            return false
        } else if error != .noSuchProcess && error != .noSuchFileOrDirectory && error != .invalidArgument {
            throw LinuxError(error, "UFFDIO_ZEROPAGE in \(name) at 0x\(String(address, radix: 16))")
        }
        return true
    }

    private static func waitReadable(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 1) > 0
    }
}

/// Serves the pages of a lazy restore until every process of the tree has all of its own: an
/// event loop reads the faults and events of every process's userfaultfd, two fillers copy
/// the rest in once the tree runs. A page it cannot deliver (page file gone or short, checksum
/// wrong, a copy the kernel refuses) kills the whole tree: see docs/security.md.
public final class LazyPageServer: @unchecked Sendable {
    /// What a lazy restore took.
    public struct Completion: Sendable {
        /// From the start of the restore until the tree ran.
        public let running: Duration
        /// From the start of the restore until every page was in.
        public let complete: Duration
        /// Pages the image held for the lazy areas, and faults served on first touch.
        public let pages: UInt64
        public let faults: UInt64
    }

    private let image: ImageReader
    private let logger: Logger
    private let started: ContinuousClock.Instant
    private let lock = Mutex(())
    private var fileIndex: [String: Int] = [:]
    private var files: [LazyPageFile] = []
    private var processes: [LazyProcess] = []
    private var failure: AmberError?
    private var runningAt: ContinuousClock.Instant?
    private var completeAt: ContinuousClock.Instant?
    private var pageCount: UInt64 = 0
    private var faultCount: UInt64 = 0
    /// Every process is in: the tree runs, and only forks add more.
    private var treeRunning = false
    private var stopped = false
    /// Wakes the event loop (a process added or finished, the tree let go, a failure): its
    /// read end and its write end.
    private let wakeup: Int32
    private let wakeupWriter: Int32
    private let finished = DispatchSemaphore(value: 0)
    private var threadsLeft = 0

    /// Bytes one background copy takes: whole chunks, several MiB for few large copies.
    static let fillSize: UInt64 = 4 << 20

    public init(image: ImageReader, started: ContinuousClock.Instant, logger: Logger) throws(LinuxError) {
        self.image = image
        self.started = started
        self.logger = logger
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw LinuxError(Errno(rawValue: errno), "pipe") }
        (wakeup, wakeupWriter) = (ends[0], ends[1])
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
        }
        threadsLeft = 3
        DispatchQueue(label: "amber.lazy.events").async { [self] in eventLoop() }
        for number in 0..<2 { DispatchQueue(label: "amber.lazy.fill\(number)").async { [self] in fillLoop() } }
    }

    deinit {
        Glibc.close(wakeup)
        Glibc.close(wakeupWriter)
    }

    /// The index of page file `name`, opened the first time.
    func file(named name: String) throws(ImageError) -> Int {
        try lock.withLock { _ throws(ImageError) in
            if let index = fileIndex[name] { return index }
            files.append(try image.lazyPageFile(named: name))
            fileIndex[name] = files.count - 1
            return files.count - 1
        }
    }

    /// Serves `process` from now on; `pages` are the image's (none for a forked child).
    func add(_ process: LazyProcess, pages: UInt64) {
        lock.withLock { _ in
            processes.append(process)
            pageCount += pages
        }
        signal()
    }

    func pageFile(_ index: Int) -> LazyPageFile { lock.withLock { _ in files[index] } }

    func noteFault() { lock.withLock { _ in faultCount += 1 } }

    /// The tree runs: from now on the server finishes once every process has its pages.
    public func treeRuns() {
        lock.withLock { _ in
            runningAt = ContinuousClock.now
            treeRunning = true
        }
        signal()
    }

    /// The failure that killed the tree, if one did.
    public var failed: AmberError? { lock.withLock { _ in failure } }

    /// Stops serving (a failed restore, which kills the tree itself): the descriptors close.
    public func stop() {
        lock.withLock { _ in stopped = true }
        signal()
        finished.wait()
    }

    /// Waits until every page is in, or the restore failed: then the tree is killed and
    /// reaped, and the failure thrown.
    public func wait() throws(AmberError) -> Completion {
        finished.wait()
        if let failure = failed {
            Self.killDescendants()
            var status: Int32 = 0
            while waitpid(-1, &status, __WALL) > 0 || errno == EINTR {}
            throw failure
        }
        image.finishReading()
        return lock.withLock { _ in
            let now = completeAt ?? ContinuousClock.now
            return Completion(
                running: (runningAt ?? now) - started, complete: now - started, pages: pageCount, faults: faultCount)
        }
    }

    private func signal() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeupWriter, &byte, 1)
    }

    /// Reads a window of a page file, checked, into `buffer`; a failure kills the tree.
    func read(_ file: LazyPageFile, _ window: Range<UInt64>, into buffer: UnsafeMutableRawBufferPointer) throws
        -> UnsafeRawBufferPointer
    {
        do {
            return try file.read(window, into: buffer)
        } catch {
            throw AmberError(
                .badImage,
                "--lazy-pages: the restored tree is killed: a page could not be delivered from \(image.directory)/\(file.name): \(error)"
            )
        }
    }

    /// Kills the tree at once, before any thread runs on without a page, and records why.
    private func fail(_ error: any Error) {
        let failure =
            (error as? AmberError)
            ?? AmberError(
                .restoreFailed, "--lazy-pages: the restored tree is killed: a page could not be delivered: \(error)")
        let first = lock.withLock { _ in
            guard self.failure == nil else { return false }
            self.failure = failure
            return true
        }
        guard first else { return }
        Self.killDescendants()
        logger.debug("lazy restore failed, the tree is killed: \(failure.message)")
        signal()
    }

    /// SIGKILLs every descendant of amber, again until none is left alive: amber is their
    /// subreaper meanwhile, so that no orphan slips away.
    static func killDescendants() {
        try? ProcessControl.setChildSubreaper(true)
        for _ in 0..<8 {
            var found = false
            var queue: [Int32] = [getpid()]
            while let pid = queue.popLast() {
                for child in (try? ProcFS.children(pid: pid)) ?? [] {
                    if kill(child, SIGKILL) == 0 { found = true }
                    queue.append(child)
                }
            }
            if !found { break }
        }
    }

    private var isOver: Bool { lock.withLock { _ in failure != nil || stopped || completeAt != nil } }

    private func threadDone() {
        let last = lock.withLock { _ in
            threadsLeft -= 1
            return threadsLeft == 0
        }
        if last { finished.signal() }
    }

    private func eventLoop() {
        defer { threadDone() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Int(ImageFormat.maximumChunkSize), alignment: Int(MemoryState.pageSize))
        defer { buffer.deallocate() }
        while true {
            let (current, running, over) = lock.withLock { _ in (processes, treeRunning, failure != nil || stopped) }
            if over { break }
            for process in current where process.closeIfFinished() { signal() }
            let open = current.filter { $0.descriptor != nil }
            if running && open.isEmpty && current.allSatisfy(\.isFinished) {
                lock.withLock { _ in
                    completeAt = ContinuousClock.now
                    processes = []
                }
                signal()
                break
            }
            var entries = [pollfd(fd: wakeup, events: Int16(POLLIN), revents: 0)]
            entries += open.map { pollfd(fd: $0.descriptor!.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&entries, nfds_t(entries.count), 100) > 0 else { continue }
            if entries[0].revents != 0 {
                var bytes = [UInt8](repeating: 0, count: 64)
                _ = Glibc.read(wakeup, &bytes, bytes.count)
            }
            for (process, entry) in zip(open, entries.dropFirst()) where entry.revents != 0 {
                do {
                    try process.serveEvents(server: self, buffer: buffer)
                } catch {
                    fail(error)
                }
            }
        }
        // The tree has its pages, or is killed: the descriptors go, with their registrations.
        lock.withLock { _ in processes = [] }
    }

    private func fillLoop() {
        defer { threadDone() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Int(Self.fillSize + ImageFormat.maximumChunkSize), alignment: Int(MemoryState.pageSize))
        defer { buffer.deallocate() }
        var next = 0
        while !isOver {
            // Not before the tree runs: the copies would take the CPUs, and the processes'
            // mmap_lock, from the rest of the restore.
            let (current, files) = lock.withLock { _ in (treeRunning ? processes : [], self.files) }
            var work: (LazyProcess, LazyRun, Range<UInt64>)?
            for step in 0..<current.count {
                let process = current[(next + step) % current.count]
                if let (piece, window) = process.nextFill(limit: Self.fillSize, files: files) {
                    work = (process, piece, window)
                    next = (next + step) % current.count
                    break
                }
            }
            guard let (process, piece, window) = work else {
                usleep(500)
                continue
            }
            do {
                let data = try read(files[piece.file], window, into: buffer)
                try process.fill(piece, from: data, window: window)
            } catch {
                fail(error)
            }
            if process.isFinished { signal() }
        }
    }
}
