import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Logging

/// `amber pre-dump`: copies a tree's private memory while it runs, and tracks the writes since,
/// so that a later dump (`Checkpoint.run` with `previous`) freezes it only to read what was
/// written. The tree is frozen only to read its areas and to start or renew the tracking:
/// each process's userfaultfd is made (the first time), every tracked area registered and
/// write-protected, or, after an earlier pre-dump, the pages written since found and
/// protected again; then it runs on while its pages are copied. A page written during the
/// copy shows as written at the next image. The userfaultfds stay with the memory tracker
/// (`MemoryTracker`), outside the tree, until the dump.
public enum PreDump {
    public struct Summary: Sendable {
        public let pid: Int32
        public let processes: Int
        /// The bytes of pages copied into this image, and those it refers to its parent for.
        public let pageBytes: UInt64
        public let referredBytes: UInt64
        /// From the freeze until the tree ran again.
        public let frozenNanoseconds: UInt64
        /// The memory tracker holding the tracking until the dump (`kill` it to stop tracking).
        public let trackerPID: Int32
        /// Every process of the tree, parents first.
        public let pids: [Int32]
    }

    /// What the frozen tree told of one process: the ranges to copy once it runs again, and
    /// the runs that refer to the parent.
    private struct Plan {
        let pid: Int32
        let startTime: UInt64
        var areas: [Amber_MemoryArea]
        var read: [(area: Int, ranges: [Range<UInt64>], readable: Bool, keepsZeroPages: Bool)]
        let chain: [Int: [Amber_PageRun]]
        let chainFiles: [(depth: UInt32, name: String)]
    }

    /// Pre-dumps the tree rooted at `pid` into `directory`; with `previous` (an earlier
    /// pre-dump, beside it) only what was written since is copied. `amongOtherFiles` lets an
    /// existing `directory` hold files other than an image (`amber swrk`).
    public static func run(
        pid: Int32, directory: String, previous: String?, amongOtherFiles: Bool = false,
        storage: ImageStorage = .plain, logger: Logger
    ) throws(AmberError) -> Summary {
        guard pid > 0, Signals.processExists(pid), (try? ProcFS.status(pid: pid)) != nil else {
            throw AmberError(.noSuchProcess, "no process with PID \(pid)")
        }
        guard pid != getpid() else { throw AmberError(.unsupported, "amber cannot dump itself") }
        let incremental = try previous.map { previous throws(AmberError) in
            try IncrementalDump(previous: previous, directory: directory, encryptionKey: storage.encryptionKey)
        }
        let key = try HostImageKey.forDump()
        let writer: ImageWriter
        do {
            writer = try ImageWriter(
                directory: directory, key: key, storage: storage, amongOtherFiles: amongOtherFiles)
        } catch {
            throw AmberError(error.kind == .directoryNotEmpty ? .directoryNotEmpty : .failure, error.description)
        }
        do {
            return try run(pid: pid, writer: writer, incremental: incremental, logger: logger)
        } catch {
            writer.discard()
            if let error = error as? AmberError { throw error }
            throw AmberError(.failure, "pre-dump of process \(ProcessName(pid: pid)) failed: \(error)")
        }
    }

    private static func run(pid: Int32, writer: ImageWriter, incremental: IncrementalDump?, logger: Logger) throws
        -> Summary
    {
        let tree = ProcessName(pid: pid)
        for process in TreeState.walk(root: pid) where MemoryTracking.holdsUserfaultfd(pid: process) {
            throw AmberError.unsupported(
                ProcessName(pid: process),
                "has a userfaultfd open: a process using userfaultfd itself is not supported yet",
                tree: tree)
        }
        let clock = ContinuousClock()
        let frozenAt = clock.now
        // The write bits are about to be protected again: until this pre-dump is complete they
        // belong to no image, so a dump after a failed pre-dump reads every page.
        if let incremental, incremental.intact { try incremental.tracker.invalidate() }
        var processes = try TreeState.freeze(
            root: pid, interruption: DumpInterruption(supervisor: nil), logger: logger)
        var tracked: [TrackedProcess] = []
        var plans: [Plan] = []
        do {
            for process in processes where !process.zombie {
                let (plan, tracking) = try plan(process, incremental: incremental, tree: tree, logger: logger)
                plans.append(plan)
                if let tracking { tracked.append(tracking) }
            }
        } catch {
            TreeState.release(processes)
            throw error
        }
        TreeState.release(processes)
        processes.removeAll()
        let frozen = clock.now - frozenAt
        logger.trace("tree running again; copying its memory")
        var pageBytes: UInt64 = 0
        var referredBytes: UInt64 = 0
        let buffer = PageReadBuffer()
        for var plan in plans {
            var memory = Amber_Memory()
            let pages = try writer.makePageFile(name: ImageFormat.pageFileName(pid: plan.pid))
            memory.pageFiles = [pages.name]
            for wanted in plan.read {
                plan.areas[wanted.area].pages = try copy(
                    pid: plan.pid, wanted.ranges, readable: wanted.readable, keepsZeroPages: wanted.keepsZeroPages,
                    into: pages, buffer: buffer)
            }
            pageBytes += pages.size
            ChainPages.merge(plan.chain, files: plan.chainFiles, into: &memory, areas: &plan.areas)
            referredBytes += plan.chain.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } * MemoryState.pageSize
            memory.areas = plan.areas
            var record = Amber_PreDumpProcess()
            record.pid = plan.pid
            record.startTime = plan.startTime
            record.memory = memory
            try writer.writeRecord(record, name: ImageChain.preDumpRecordName(pid: plan.pid))
        }
        // The tracker of the previous pre-dump goes on holding the chain's tracking; without one
        // (a first pre-dump, or tracking stopped since), a new one is started.
        var trackerName = incremental?.tracker.name ?? ""
        var trackerPID = incremental?.parent.inventory.preDump.trackerPid ?? 0
        let epoch = MemoryTracker.makeToken()
        do {
            guard let incremental else { throw AmberError(.failure, "no tracker yet") }
            try incremental.tracker.hold(tracked, epoch: epoch)
        } catch {
            trackerName = MemoryTracker.makeSocketName()
            trackerPID = try MemoryTracker.spawn(name: trackerName)
            try TrackerClient(name: trackerName).hold(tracked, epoch: epoch)
        }
        var inventory = Amber_Inventory()
        inventory.amberVersion = AmberVersion.current
        inventory.rootPid = pid
        inventory.createdUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        var names = utsname()
        uname(&names)
        inventory.machine = withUnsafeBytes(of: names.machine) {
            String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        inventory.preDump.trackerSocket = trackerName
        inventory.preDump.trackerPid = trackerPID
        inventory.preDump.epoch = epoch
        if let incremental { inventory.parent = incremental.reference }
        do {
            try writer.finish(inventory: inventory)
        } catch {
            TrackerClient(name: trackerName).release()
            throw error
        }
        return Summary(
            pid: pid, processes: plans.count, pageBytes: pageBytes, referredBytes: referredBytes,
            frozenNanoseconds: UInt64(frozen.components.seconds) * 1_000_000_000
                + UInt64(frozen.components.attoseconds / 1_000_000_000),
            trackerPID: trackerPID, pids: plans.map(\.pid))
    }

    /// While `process` is frozen: starts or renews its tracking and finds what to copy.
    /// Returns the process's tracking, nil for one not tracked (under seccomp, whose filters
    /// could refuse or kill on the injected call: its memory is read whole by each image).
    private static func plan(
        _ process: FrozenProcess, incremental: IncrementalDump?, tree: ProcessName, logger: Logger
    ) throws -> (Plan, TrackedProcess?) {
        let maps = process.snapshot.maps
        let startTime = process.snapshot.stat.startTime
        let previous = incremental?.tracked(process.pid, startTime: startTime)
        var vmFlags = try ProcFS.memoryFlags(pid: process.pid)
        let own = try MemoryTracking.ownAreas(
            maps: maps, vmFlags: vmFlags, userfaultfd: previous?.userfaultfd, process: process.name, tree: tree)
        for start in own { vmFlags[start]?.remove(.userfaultWriteProtect) }
        try MemoryState.check(vmFlags, maps: maps, process: process.name, tree: tree)
        var tracking = previous
        if tracking == nil && (process.snapshot.status.seccompMode ?? 0) == 0 {
            let session = try DumpSession(process, interruption: DumpInterruption(supervisor: nil), logger: logger)
            do {
                let userfaultfd = try MemoryTracking.makeUserfaultfd(session)
                tracking = TrackedProcess(
                    pid: process.pid, startTime: startTime, userfaultfd: userfaultfd,
                    pidfd: try Pidfd.open(pid: process.pid))
            } catch {
                try? session.finish()
                throw error
            }
            try session.finish()
        }
        let pageMap = try PageMap(pid: process.pid)
        if let tracking {
            // Registrations whose bits no image stands for any more are protected whole again.
            let renewed = incremental?.intact == true ? own : []
            _ = MemoryTracking.registerNew(
                maps: maps, vmFlags: vmFlags, own: renewed, userfaultfd: tracking.userfaultfd, pageMap: pageMap)
        }
        let chainPages = try incremental?.pages(pid: process.pid, startTime: startTime, own: own)
        var areas: [Amber_MemoryArea] = []
        var read: [(area: Int, ranges: [Range<UInt64>], readable: Bool, keepsZeroPages: Bool)] = []
        var chain: [Int: [Amber_PageRun]] = [:]
        for mapping in maps where MemoryTracking.isTrackable(mapping, vmFlags[mapping.start]) {
            var area = Amber_MemoryArea()
            area.start = mapping.start
            area.end = mapping.end
            area.kind = mapping.path.hasPrefix("/") ? .areaFile : .areaAnonymous
            area.protection = UInt32(mapping.protection)
            let range = mapping.start..<mapping.end
            var wanted = try MemoryTracking.wanted(range, pageMap: pageMap)
            if let chainPages, chainPages.tracked.contains(mapping.start) {
                let written = try MemoryTracking.written(range, pageMap: pageMap, protectAgain: true)
                let split = chainPages.split(wanted, written: written)
                wanted = split.read
                if !split.chain.isEmpty { chain[areas.count] = split.chain }
            }
            // A private file area's zero page is a page cleared since it was copied on write: the
            // file would show where none is restored.
            if !wanted.isEmpty { read.append((areas.count, wanted, mapping.readable, area.kind == .areaFile)) }
            areas.append(area)
        }
        let plan = Plan(
            pid: process.pid, startTime: startTime, areas: areas, read: read, chain: chain,
            chainFiles: chainPages?.files ?? [])
        return (plan, tracking)
    }

    /// Copies the non-zero pages of `ranges` (every page with `keepsZeroPages`) from the running
    /// process into `pages`. A page the process unmapped meanwhile is left out: the parent does not hold it, so the next image
    /// reads it if it is there then.
    private static func copy(
        pid: Int32, _ ranges: [Range<UInt64>], readable: Bool, keepsZeroPages: Bool, into pages: PageFileWriter,
        buffer: PageReadBuffer
    ) throws -> [Amber_PageRun] {
        let memory = ProcessMemory(pid: pid)
        let bytes = buffer.bytes
        let pageSize = Int(MemoryState.pageSize)
        var runs: [Amber_PageRun] = []
        for range in ranges {
            var cursor = range.lowerBound
            while cursor < range.upperBound {
                let length = Int(min(UInt64(bytes.count), range.upperBound - cursor))
                let target = UnsafeMutableRawBufferPointer(rebasing: bytes[0..<length])
                let got: Int
                if readable {
                    got = (try? memory.read(into: target, from: [(cursor, length)])) ?? 0
                } else {
                    got = (try? ProcessMemoryFile(pid: pid, writable: false).read(into: target, at: cursor)) ?? 0
                }
                var position = 0
                while position + pageSize <= got {
                    let first = position
                    while position + pageSize <= got && (keepsZeroPages || !isZeroPage(bytes, position)) {
                        position += pageSize
                    }
                    if position > first {
                        let offset = try pages.append(UnsafeRawBufferPointer(rebasing: bytes[first..<position]))
                        let address = cursor + UInt64(first)
                        let count = UInt64((position - first) / pageSize)
                        if let last = runs.last, last.address + last.count * MemoryState.pageSize == address,
                            last.offset + last.count * MemoryState.pageSize == offset
                        {
                            runs[runs.count - 1].count += count
                        } else {
                            var run = Amber_PageRun()
                            run.address = address
                            run.count = count
                            run.offset = offset
                            runs.append(run)
                        }
                    }
                    while position + pageSize <= got && !keepsZeroPages && isZeroPage(bytes, position) {
                        position += pageSize
                    }
                }
                cursor += UInt64(length)
            }
        }
        return runs
    }

    private static func isZeroPage(_ bytes: UnsafeMutableRawBufferPointer, _ offset: Int) -> Bool {
        let words = bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt64.self)
        if words[0] != 0 { return false }
        var accumulated: UInt64 = 0
        for index in 0..<(Int(MemoryState.pageSize) / 8) { accumulated |= words[index] }
        return accumulated == 0
    }
}
