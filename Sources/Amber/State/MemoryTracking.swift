import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Synchronization

/// Write tracking for incremental dumps, without soft-dirty: a userfaultfd made by each
/// process (injected while it is frozen), with asynchronous write protection (WP_ASYNC): a
/// write to a protected page unprotects it in the fault, with no message and no thread
/// waiting, and PAGEMAP_SCAN's `written` category then tells the pages written since. Only
/// private areas are tracked (anonymous, heap, stack, private file mappings); shared memory is
/// saved whole by every dump, as it always is (its object, through map_files).
///
/// The rule for a page of the final set (present or swapped now, not the zero page, not a
/// file's own page, as in any dump): read now if it was written since the parent's
/// protection, or if its area is not one the tracker registered (mapped, remapped or made by
/// fork since, a process new since), or if the parent does not hold that very page (a page
/// dropped by MADV_DONTNEED shows as not written but is not in the final set at all);
/// otherwise it is the parent's.
enum MemoryTracking {
    /// WP_UNPOPULATED marks pages not yet there too, so a first write to one is seen.
    static let features: UserfaultFeatures = [.writeProtectAsync, .writeProtectUnpopulated]

    private static let kernelAreaPaths: Set<String> = ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"]
    private static let untrackedFlags: MemoryAreaFlags = [
        .shared, .droppable, .hugeTLB, .io, .pfnMap, .mixedMap, .doNotExpand, .synchronous, .shadowStack,
        .userfaultMissing, .userfaultMinor,
    ]

    /// Whether writes to the area are tracked: private memory only, and not what the kernel
    /// or a driver maps.
    static func isTrackable(_ mapping: MemoryMapping, _ flags: MemoryAreaFlags?) -> Bool {
        guard !mapping.shared, !kernelAreaPaths.contains(mapping.path), let flags else { return false }
        return flags.intersection(untrackedFlags).isEmpty
    }

    /// A userfaultfd for the frozen process's memory: made by an injected `userfaultfd` (it
    /// binds to its maker's mm), copied out with pidfd_getfd and closed in the process at
    /// once, so the process never sees it.
    static func makeUserfaultfd(_ session: DumpSession) throws -> Userfaultfd {
        let number = try session.injector.call(
            "userfaultfd", SyscallNumber.userfaultfd, UInt64(O_CLOEXEC | O_NONBLOCK) | UserfaultfdFlags.userModeOnly)
        defer { _ = try? session.injector.call("close userfaultfd", SyscallNumber.close, number) }
        let pidfd = try Pidfd(pid: session.pid)
        let userfaultfd = Userfaultfd(adopting: try pidfd.duplicate(Int32(number)).rawValue)
        try userfaultfd.negotiate(features)
        return userfaultfd
    }

    /// The areas (by start) whose writes `userfaultfd` tracks. An area registered by another
    /// userfaultfd (UFFDIO_REGISTER on ours fails with EBUSY), or any registration when the
    /// process is not tracked, is refused: the process uses userfaultfd itself.
    static func ownAreas(
        maps: [MemoryMapping], vmFlags: [UInt64: MemoryAreaFlags], userfaultfd: Userfaultfd?, process: ProcessName,
        tree: ProcessName
    ) throws -> Set<UInt64> {
        var own: Set<UInt64> = []
        for mapping in maps where vmFlags[mapping.start]?.contains(.userfaultWriteProtect) == true {
            let range = "0x\(String(mapping.start, radix: 16))-0x\(String(mapping.end, radix: 16))"
            guard let userfaultfd else {
                throw AmberError.unsupported(
                    process,
                    "has a userfaultfd write-protect registration (VmFlags uw) at \(range) that amber's tracking did not make: a process using userfaultfd itself is not supported yet",
                    tree: tree)
            }
            do {
                try userfaultfd.register(mapping.start..<mapping.end, .writeProtect)
            } catch {
                throw AmberError.unsupported(
                    process,
                    "has a userfaultfd registration at \(range) of another userfaultfd than amber's tracking (\(error.errno.name)): a process using userfaultfd itself is not supported yet",
                    tree: tree)
            }
            own.insert(mapping.start)
        }
        return own
    }

    /// Registers the trackable areas not registered yet and write-protects all their pages
    /// (those not there yet too), before anything is copied: a page written after this shows
    /// as written. An area the kernel will not register stays untracked (saved whole).
    /// Returns the areas registered.
    static func registerNew(
        maps: [MemoryMapping], vmFlags: [UInt64: MemoryAreaFlags], own: Set<UInt64>, userfaultfd: Userfaultfd,
        pageMap: borrowing PageMap
    ) -> Set<UInt64> {
        var registered: Set<UInt64> = []
        for mapping in maps where !own.contains(mapping.start) && isTrackable(mapping, vmFlags[mapping.start]) {
            guard (try? userfaultfd.register(mapping.start..<mapping.end, .writeProtect)) != nil else { continue }
            guard
                (try? pageMap.scan(
                    start: mapping.start, end: mapping.end, required: [.writeProtectAllowed],
                    flags: [.writeProtectMatching, .checkWriteProtectAsync])) != nil
            else {
                try? userfaultfd.unregister(mapping.start..<mapping.end)
                continue
            }
            registered.insert(mapping.start)
        }
        return registered
    }

    /// The pages of `range` written since they were protected; with `protectAgain`, they are
    /// protected again as they are found, for the next image of the chain.
    static func written(_ range: Range<UInt64>, pageMap: borrowing PageMap, protectAgain: Bool) throws -> [Range<
        UInt64
    >] {
        try pageMap.scan(
            start: range.lowerBound, end: range.upperBound, required: [.written],
            flags: protectAgain ? [.writeProtectMatching, .checkWriteProtectAsync] : [.checkWriteProtectAsync])
    }

    /// The pages present or swapped in `range` that a dump saves (not the zero page, not a file's own).
    static func wanted(_ range: Range<UInt64>, pageMap: borrowing PageMap) throws -> [Range<UInt64>] {
        try pageMap.scan(
            start: range.lowerBound, end: range.upperBound, excluded: [.zeroPage, .file], anyOf: [.present, .swapped])
    }

    /// Whether a process has a userfaultfd open: it uses userfaultfd itself (refused at pre-dump).
    static func holdsUserfaultfd(pid: Int32) -> Bool {
        guard let directory = opendir("/proc/\(pid)/fd") else { return false }
        defer { closedir(directory) }
        var buffer = [CChar](repeating: 0, count: 64)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard Int(name) != nil else { continue }
            let length = readlink("/proc/\(pid)/fd/\(name)", &buffer, buffer.count)
            if length > 0,
                String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    == "anon_inode:[userfaultfd]"
            {
                return true
            }
        }
        return false
    }
}

/// The pages of one process that the parent image holds, and how a dump refers to them.
struct ChainPages {
    /// A run of pages of the parent, in a page file of the chain (`files` index).
    private struct Run {
        let address: UInt64
        let count: UInt64
        let file: Int
        let offset: UInt64
    }

    private let runs: [Run]
    /// The page files the runs are in: depth from the image being written (1: its parent), and name.
    let files: [(depth: UInt32, name: String)]
    /// The areas tracked since the parent's protection, by start.
    let tracked: Set<UInt64>

    /// The parent's pages of `record` (nil: the process is not in the parent, or is another
    /// process of the same PID); `tracked`: the areas whose writes were tracked since.
    init(_ record: Amber_PreDumpProcess?, tracked: Set<UInt64>) {
        self.tracked = record == nil ? [] : tracked
        var files: [(depth: UInt32, name: String)] = []
        var index: [String: Int] = [:]
        var runs: [Run] = []
        if let memory = record?.memory {
            for area in memory.areas {
                for run in area.pages {
                    let depth = (memory.pageFileDepth.isEmpty ? 0 : memory.pageFileDepth[Int(run.file)]) + 1
                    let name = memory.pageFiles[Int(run.file)]
                    let key = "\(depth)/\(name)"
                    let file =
                        index[key]
                        ?? {
                            files.append((depth, name))
                            index[key] = files.count - 1
                            return files.count - 1
                        }()
                    runs.append(Run(address: run.address, count: run.count, file: file, offset: run.offset))
                }
            }
        }
        self.runs = runs.sorted { $0.address < $1.address }
        self.files = files
    }

    /// Splits `wanted` (ascending page ranges of one tracked area) into what is read now and
    /// runs referring to the parent (`file` an index into `files`): a page not `written` and
    /// held by the parent is the parent's.
    func split(_ wanted: [Range<UInt64>], written: [Range<UInt64>]) -> (read: [Range<UInt64>], chain: [Amber_PageRun]) {
        let candidates = Ranges.subtract(wanted, written)
        var chain: [Amber_PageRun] = []
        var held: [Range<UInt64>] = []
        var first = 0
        for candidate in candidates {
            while first < runs.count
                && runs[first].address + runs[first].count * MemoryState.pageSize <= candidate.lowerBound
            {
                first += 1
            }
            var index = first
            while index < runs.count && runs[index].address < candidate.upperBound {
                let run = runs[index]
                let start = max(run.address, candidate.lowerBound)
                let end = min(run.address + run.count * MemoryState.pageSize, candidate.upperBound)
                if start < end {
                    var page = Amber_PageRun()
                    page.address = start
                    page.count = (end - start) / MemoryState.pageSize
                    page.offset = run.offset + (start - run.address)
                    page.file = UInt32(run.file)
                    chain.append(page)
                    held.append(start..<end)
                }
                index += 1
            }
        }
        return (Ranges.subtract(wanted, held), chain)
    }

    /// Adds the runs referring to the chain (`chain`, by area index) to `memory`'s areas, after
    /// its own page files: each area's runs stay in ascending order.
    static func merge(
        _ chain: [Int: [Amber_PageRun]], files: [(depth: UInt32, name: String)], into memory: inout Amber_Memory,
        areas: inout [Amber_MemoryArea]
    ) {
        guard !chain.isEmpty else { return }
        let base = UInt32(memory.pageFiles.count)
        memory.pageFileDepth = [UInt32](repeating: 0, count: memory.pageFiles.count) + files.map(\.depth)
        memory.pageFiles += files.map(\.name)
        for (index, runs) in chain {
            let moved = runs.map { run -> Amber_PageRun in
                var run = run
                run.file += base
                return run
            }
            areas[index].pages = (areas[index].pages + moved).sorted { $0.address < $1.address }
        }
    }
}

/// Ascending, disjoint page ranges.
enum Ranges {
    /// What of `ranges` is not in `removed`.
    static func subtract(_ ranges: [Range<UInt64>], _ removed: [Range<UInt64>]) -> [Range<UInt64>] {
        guard !removed.isEmpty else { return ranges }
        var result: [Range<UInt64>] = []
        var index = 0
        for range in ranges {
            var start = range.lowerBound
            while index < removed.count && removed[index].upperBound <= start { index += 1 }
            var cursor = index
            while cursor < removed.count && removed[cursor].lowerBound < range.upperBound {
                if removed[cursor].lowerBound > start { result.append(start..<removed[cursor].lowerBound) }
                start = max(start, removed[cursor].upperBound)
                cursor += 1
            }
            if start < range.upperBound { result.append(start..<range.upperBound) }
        }
        return result
    }
}

/// A dump with `--prev-images-dir`: the parent pre-dump, and the tracker's userfaultfds.
final class IncrementalDump: @unchecked Sendable {
    let parent: ImageReader
    /// What the image records of its parent.
    let reference: Amber_IncrementalParent
    let tracker: TrackerClient
    /// What the tracker holds, by PID; empty when no tracker answered (every page is then read).
    private let tracked: [Int32: TrackedProcess]
    /// Whether the tracker's write bits are the parent's: it holds the parent's epoch. When
    /// not (a later pre-dump of the parent failed, or protected again), its registrations are
    /// still its own, but every page is read.
    let intact: Bool
    private let own = Mutex<[Int32: Set<UInt64>]>([:])

    /// Opens the pre-dump at `previous`, which must be a directory beside `directory`, and asks
    /// its tracker for what it holds.
    /// An encrypted pre-dump is opened with `encryptionKey`, the key of the dump that refers to it.
    init(previous: String, directory: String, encryptionKey: ImageEncryptionKey? = nil) throws(AmberError) {
        let containers = [previous, directory].map { path -> String in
            let container = ImageChain.containingDirectory(of: path)
            guard let resolved = realpath(container, nil) else { return container }
            defer { free(resolved) }
            return String(cString: resolved)
        }
        guard containers[0] == containers[1] else {
            throw AmberError(
                .failure,
                "--prev-images-dir \(previous) is not beside the image directory \(directory): an incremental image names its parent by its directory's name, in the same directory"
            )
        }
        do {
            parent = try ImageReader(directory: previous, encryptionKey: encryptionKey)
        } catch {
            throw AmberError(.badImage, error.description)
        }
        guard parent.inventory.hasPreDump else {
            throw AmberError(
                .badImage, "--prev-images-dir \(previous) is not a pre-dump (made by `amber pre-dump`)")
        }
        var reference = Amber_IncrementalParent()
        reference.directory = ImageChain.directoryName(of: previous)
        reference.inventorySha256 = Data(parent.inventoryDigest)
        self.reference = reference
        tracker = TrackerClient(name: parent.inventory.preDump.trackerSocket)
        let answer = try tracker.processes()
        tracked = Dictionary(
            (answer?.processes ?? []).map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
        intact =
            answer != nil && answer?.epoch == parent.inventory.preDump.epoch && answer?.epoch != MemoryTracker.noEpoch
    }

    /// The tracked process `pid`, if it is the one tracked (same start time).
    func tracked(_ pid: Int32, startTime: UInt64) -> TrackedProcess? {
        guard let process = tracked[pid], process.startTime == startTime else { return nil }
        return process
    }

    /// Every process the tracker holds.
    var trackedProcesses: [TrackedProcess] { Array(tracked.values) }

    /// Checks the frozen process's registrations (refusing any not the tracker's) and returns
    /// its VmFlags without the tracker's, which the dump then neither refuses nor records.
    func checkRegistrations(
        pid: Int32, startTime: UInt64, maps: [MemoryMapping], vmFlags: [UInt64: MemoryAreaFlags],
        process: ProcessName, tree: ProcessName
    ) throws -> [UInt64: MemoryAreaFlags] {
        let areas = try MemoryTracking.ownAreas(
            maps: maps, vmFlags: vmFlags, userfaultfd: tracked(pid, startTime: startTime)?.userfaultfd,
            process: process, tree: tree)
        own.withLock { $0[pid] = areas }
        var flags = vmFlags
        for start in areas { flags[start]?.remove(.userfaultWriteProtect) }
        return flags
    }

    /// The parent's pages of process `pid` and the areas tracked since.
    /// `own`: the tracked areas, when not those `checkRegistrations` found.
    func pages(pid: Int32, startTime: UInt64, own areas: Set<UInt64>? = nil) throws -> ChainPages {
        let areas = areas ?? own.withLock { $0[pid] ?? [] }
        let record = try parent.preDumpProcess(pid: pid)
        return ChainPages(record?.startTime == startTime && intact ? record : nil, tracked: areas)
    }
}
