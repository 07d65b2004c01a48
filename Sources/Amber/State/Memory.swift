import AmberImage
import Dispatch
import FoundationEssentials
import Glibc
import LinuxKit
import Synchronization

/// Memory: every area of the address space, the pages that cannot be had from elsewhere,
/// the vDSO's place, and the mm fields (brk, arg/env area, auxv, exe).
enum MemoryState {
    static let pageSize: UInt64 = 4096

    // MARK: Dump

    /// Refuses areas Amber cannot recreate, before the target is stopped.
    /// A mapped file is mapped again by its path, which must lead to that very file: a name
    /// read from maps' text (without map_files) may be escaped, or lead elsewhere.
    /// The vDSO's areas every process here starts with, as ours show them.
    private static let startingKernelAreas: Set<String> = Set(
        ((try? ProcFS.maps(pid: getpid())) ?? []).map(\.path).filter {
            $0 != "[vsyscall]" && kernelAreaPaths.contains($0)
        })

    static func check(_ maps: [MemoryMapping], process: ProcessName, tree: ProcessName) throws(AmberError) {
        // A process that unmapped one (or the vDSO) would get it back from the restore's helper,
        // which cannot do without them.
        let kernelAreas = Set(maps.map(\.path).filter(kernelAreaPaths.contains))
        if !maps.isEmpty, let missing = startingKernelAreas.subtracting(kernelAreas).sorted().first {
            throw .unsupported(
                process, "has unmapped its \(missing) area, which a restore here cannot leave out: not supported yet",
                tree: tree)
        }
        var reached: [String: Bool] = [:]
        for mapping in maps
        where try kind(of: mapping, process: process, tree: tree) == .areaFile && !MappedUnnamedFiles.isUnnamed(mapping)
        {
            let leads =
                reached[mapping.path]
                ?? {
                    guard
                        let status = try? FileStatus.stat(
                            path: MountNamespaceState.hostPath(mapping.path, of: process.pid))
                    else { return false }
                    return status.device == mapping.device && status.inode == mapping.inode
                }()
            reached[mapping.path] = leads
            if !leads {
                throw .unsupported(
                    process,
                    "maps \(mapping.path) at 0x\(String(mapping.start, radix: 16))-0x\(String(mapping.end, radix: 16)), a file its path does not lead to (a name /proc/PID/maps escapes is read back from map_files, which needs CAP_CHECKPOINT_RESTORE or root): not supported yet",
                    tree: tree)
            }
        }
    }

    /// VmFlags that change what the process sees and that restore cannot set again, with what they mean.
    private static let unrestorableFlags: [(flag: MemoryAreaFlags, what: String)] = [
        (.userfaultMissing, "a userfaultfd registration (VmFlags um)"),
        (.userfaultWriteProtect, "a userfaultfd write-protect registration (VmFlags uw)"),
        (.userfaultMinor, "a userfaultfd minor-fault registration (VmFlags ui)"),
        (.shadowStack, "a shadow stack (VmFlags ss)"),
        (.hugeTLB, "hugetlb pages (VmFlags ht)"),
        (.synchronous, "a MAP_SYNC mapping (VmFlags sf)"),
        (.io, "a driver's I/O memory (VmFlags io)"),
        (.pfnMap, "a driver's raw page frames (VmFlags pf)"),
        (.mixedMap, "a driver's mixed mapping (VmFlags mm)"),
        (.doNotExpand, "a driver's fixed-size mapping (VmFlags de)"),
        (.architecture, "a device's memory with its own caching (VmFlags ar)"),
        (.guardRegions, "guard regions (MADV_GUARD_INSTALL, VmFlags gu)"),
        (.unknown, "an area flag this amber does not know (in its VmFlags line of /proc/PID/smaps)"),
    ]

    /// The paths of the areas the kernel makes, whose flags are its own.
    private static let kernelAreaPaths: Set<String> = ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"]

    /// Refuses areas with VmFlags restore cannot set again. Needs smaps, read once the process
    /// is frozen (`AreaFlagsPrefetch`): reading it for every process before would cost a page
    /// table walk each.
    static func check(
        _ vmFlags: [UInt64: MemoryAreaFlags], maps: [MemoryMapping], process: ProcessName, tree: ProcessName
    ) throws(AmberError) {
        for mapping in maps where !kernelAreaPaths.contains(mapping.path) {
            guard let flags = vmFlags[mapping.start] else { continue }
            for (flag, what) in unrestorableFlags where flags.contains(flag) {
                let path = mapping.path.isEmpty ? "" : " (\(mapping.path))"
                throw .unsupported(
                    process,
                    "has \(what) at 0x\(String(mapping.start, radix: 16))-0x\(String(mapping.end, radix: 16))\(path): not supported yet",
                    tree: tree)
            }
        }
    }

    /// mlockall(MCL_FUTURE) sets the mm's default flags, which /proc does not show; the area
    /// the dump session just mapped has them, and shows in VmLck if they lock it.
    struct FutureLocking {
        var locked = false
        var onFault = false
    }

    /// Whether the process has mlockall(MCL_FUTURE) on, which /proc does not show: a page it
    /// maps then comes out locked. Asked only of a process with locked memory (mlockall with
    /// MCL_CURRENT too, as is usual, locked it all): a probe page is mapped and unmapped, which
    /// shows in VmLck, and in VmPeak when that was the current size.
    static func futureLocking(_ session: DumpSession, vmFlags: [UInt64: MemoryAreaFlags]) throws -> FutureLocking {
        let locked = session.target.maps.reduce(UInt64(0)) { sum, mapping in
            vmFlags[mapping.start]?.contains(.locked) == true ? sum + (mapping.end - mapping.start) : sum
        }
        guard locked > 0 else { return FutureLocking() }
        // EAGAIN: MCL_FUTURE is on and RLIMIT_MEMLOCK reached, but not whether MCL_ONFAULT is;
        // ENOMEM: RLIMIT_AS or RLIMIT_DATA reached.
        let result = try session.injector.raw(
            SyscallNumber.mmap,
            arguments: [
                0, pageSize, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0,
            ])
        if result == -Int64(ENOMEM) || result == -Int64(EAGAIN) {
            throw AmberError.unsupported(
                session.name,
                result == -Int64(ENOMEM)
                    ? "has locked memory and is at its RLIMIT_AS or RLIMIT_DATA: amber cannot map the page that tells whether mlockall(MCL_FUTURE) is on"
                    : "has mlockall(MCL_FUTURE) on with its locked memory at RLIMIT_MEMLOCK: whether it locks on fault (MCL_ONFAULT) cannot be told"
            )
        }
        guard result >= 0 || result < -4095 else { throw LinuxError(negated: Int(result), "mmap probe page") }
        let probe = UInt64(bitPattern: result)
        defer { _ = try? session.injector.call("munmap probe page", SyscallNumber.munmap, probe, pageSize) }
        guard try ProcFS.status(pid: session.pid).lockedMemoryBytes == locked + pageSize else { return FutureLocking() }
        // Only then is smaps read again, for MCL_ONFAULT. The probe page may have merged with
        // the area below it: its area is the last to start at or below it.
        let flags = try ProcFS.memoryFlags(pid: session.pid)
        let probeArea = flags.keys.filter { $0 <= probe }.max()
        let onFault = probeArea.flatMap { flags[$0] }?.contains(.lockOnFault) ?? false
        return FutureLocking(locked: true, onFault: onFault)
    }

    /// What an area is. A file's kind comes from its file system and its deletion from its link
    /// count (`ProcFS.mapsWithFiles`); the names the kernel gives its own files tell them apart,
    /// and are what is left to go by when map_files could not be read.
    static func kind(of mapping: MemoryMapping, process: ProcessName, tree: ProcessName? = nil) throws(AmberError)
        -> Amber_AreaKind
    {
        // Only for messages: most processes have none, and a dump classifies every area twice.
        var range: String { "0x\(String(mapping.start, radix: 16))-0x\(String(mapping.end, radix: 16))" }
        func refuse(_ what: String) -> AmberError {
            .unsupported(process, "\(what) at \(range): not supported yet", tree: tree)
        }
        switch mapping.path {
        case "[vdso]": return .areaVdso
        case "[vvar]": return .areaVvar
        case "[vvar_vclock]": return .areaVvarVclock
        case "[vsyscall]": return .areaVsyscall
        case "[heap]": return .areaHeap
        case "[stack]": return .areaStack
        case "": return .areaAnonymous
        case _ where mapping.path.hasPrefix("[anon:"): return .areaAnonymous
        default: break
        }
        let unknownFileSystem = mapping.fileSystem == nil
        if mapping.fileSystem == .hugetlbfs || unknownFileSystem && mapping.deleted && mapping.path == "/anon_hugepage"
        {
            throw refuse("maps hugetlb memory (\(mapping.path))")
        }
        if mapping.fileSystem == .aioRing || unknownFileSystem && mapping.deleted && mapping.path == "/[aio]" {
            throw refuse("has an AIO ring (io_setup)")
        }
        let kernelShmem = mapping.deleted && (mapping.fileSystem == .shmem || unknownFileSystem)
        switch mapping.path {
        case "/dev/zero" where kernelShmem && mapping.shared: return .areaAnonymous
        case "/dev/zero" where kernelShmem:
            throw refuse("maps SysV/shmem shared memory (shared anonymous memory mapped again privately)")
        case _ where kernelShmem && mapping.path.hasPrefix(MemoryFile.linkPrefix):
            return .areaFile
        case _ where kernelShmem && mapping.path.hasPrefix("/SYSV"):
            // The segment lives outside the tree (any process may attach it by key or id), and
            // its id, key, owner and times could not all be made again: refused by name.
            let key = mapping.path.dropFirst("/SYSV".count)
            throw refuse("has System V shared memory attached (shmid \(mapping.inode), key 0x\(key))")
        case _ where mapping.deleted && mapping.path.hasPrefix("/"): return .areaFile
        case _ where mapping.path.hasPrefix("/"): return .areaFile
        default:
            throw refuse("has the special mapping \(mapping.path)")
        }
    }

    /// Reads only from outside the process. `vmFlags`: the process's smaps VmFlags by area start
    /// (see `AreaFlagsPrefetch`); `brk`: its current break, which only the process can tell (`currentBreak`).
    /// The pages go into page files of `image`; `buffers`: one per thread that reads them.
    static func dump(
        _ target: DumpTarget, vmFlags: [UInt64: MemoryAreaFlags], brk: UInt64, futureLocking: FutureLocking,
        image: ImageWriter, buffers: [PageReadBuffer], fileSizes: inout FileSizes,
        sharedAnonymous: inout SharedAnonymousMemory.Objects, fileContents: FileContentsDump,
        copyOnWrite: CopyOnWriteDump? = nil, chainPages: ChainPages? = nil
    ) throws -> Amber_Memory {
        var memory = Amber_Memory()
        memory.lockFuture = futureLocking.locked
        memory.lockFutureOnFault = futureLocking.onFault
        let pageMap = try PageMap(pid: target.pid)
        var wanted: [AreaReader.Wanted] = []
        // Built apart and stored once: a message's repeated field is copied whole when changed in place.
        var areas: [Amber_MemoryArea] = []
        areas.reserveCapacity(target.maps.count)
        var unnamedFiles = MappedUnnamedFiles.Records()
        var chainRuns: [Int: [Amber_PageRun]] = [:]
        for mapping in target.maps {
            var area = Amber_MemoryArea()
            area.start = mapping.start
            area.end = mapping.end
            area.protection = UInt32(mapping.protection)
            area.shared = mapping.shared
            area.kind = try kind(of: mapping, process: target.name)
            if area.kind == .areaAnonymous, mapping.path.hasPrefix("[anon:"), mapping.path.hasSuffix("]") {
                area.anonymousName = String(mapping.path.dropFirst("[anon:".count).dropLast())
            }
            if let flags = vmFlags[mapping.start] { record(flags, in: &area) }
            if area.kind == .areaFile {
                area.path = mapping.path
                area.device = mapping.device
                area.inode = mapping.inode
                area.fileOffset = mapping.offset
                if MappedUnnamedFiles.isUnnamed(mapping) {
                    try MappedUnnamedFiles.identify(
                        mapping, in: &area, target: target, records: &unnamedFiles, contents: fileContents)
                } else {
                    (area.fileSize, area.fileModificationTimeNs) = fileSizes.size(of: mapping, pid: target.pid)
                }
            }
            if area.kind == .areaAnonymous && area.shared { SharedAnonymousMemory.identify(mapping, in: &area) }
            if let excluded = pagesFoundElsewhere(in: area) {
                var ranges = try pageMap.scan(
                    start: area.start, end: area.end, excluded: excluded, anyOf: [.present, .swapped])
                if let chainPages, chainPages.tracked.contains(mapping.start) {
                    let written = try MemoryTracking.written(
                        area.start..<area.end, pageMap: pageMap, protectAgain: false)
                    let split = chainPages.split(ranges, written: written)
                    ranges = split.read
                    if !split.chain.isEmpty { chainRuns[areas.count] = split.chain }
                }
                wanted.append(
                    AreaReader.Wanted(
                        area: areas.count, ranges: ranges, readable: mapping.readable,
                        keepsZeroPages: area.kind == .areaFile))
            }
            areas.append(area)
        }
        let total = wanted.reduce(0) { sum, area in area.ranges.reduce(sum) { $0 + ($1.upperBound - $1.lowerBound) } }
        MemoryProgress.expect(total)
        let parts =
            total >= twoThreadDumpSize && buffers.count >= 2
            ? split(wanted, at: total / 2 / pageSize * pageSize) : [wanted]
        let jobs = try parts.enumerated().map { part, wanted in
            PageDumpJob(
                wanted: wanted, file: UInt32(part),
                pages: try image.makePageFile(name: ImageFormat.pageFileName(pid: target.pid, part: part)),
                buffer: buffers[part])
        }
        memory.pageFiles = jobs.map(\.pages.name)
        let (pid, interruption) = (target.pid, target.interruption)
        let save = { (overlays: [any PageOverlay]) throws -> [Int: [Amber_PageRun]] in
            let results = jobs.enumerated().map { ($0, $1) }.concurrentMap { part, job in
                Result {
                    try AreaReader(
                        pid: pid, interruption: interruption, buffer: job.buffer,
                        overlay: overlays.isEmpty ? nil : overlays[part]
                    ).save(job.wanted, into: job.pages, file: job.file)
                }
            }
            // The first part holds the lower addresses: each area's runs stay in ascending order.
            var pages: [Int: [Amber_PageRun]] = [:]
            for result in results {
                for (index, runs) in try result.get() { pages[index, default: []] += runs }
            }
            return pages
        }
        if let copyOnWrite {
            // `dump --cow`: copied once the tree runs again, under write protection.
            copyOnWrite.deferPages(
                of: pid,
                CopyOnWriteDump.Deferred(
                    areas: areas, passes: parts.map { $0.map { ($0.area, $0.ranges) } }, save: save))
        } else {
            for (index, runs) in try save([]) { areas[index].pages += runs }
        }
        if let chainPages { ChainPages.merge(chainRuns, files: chainPages.files, into: &memory, areas: &areas) }
        memory.sharedAnonymous = try SharedAnonymousMemory.dump(
            target, areas: areas, objects: &sharedAnonymous, image: image, buffer: buffers[0])
        memory.memfds = unnamedFiles.memfds
        memory.deletedFiles = unnamedFiles.deletedFiles
        memory.areas = areas
        memory.mm = try mmFields(target, brk: brk)
        return memory
    }

    /// A process with this many bytes of pages to save or more has them read, hashed and written
    /// by two threads, half each, into a page file each: one thread doing all three keeps one CPU
    /// busy, and ext4 serialises writers of one file on its inode lock (docs/measurements.md).
    static let twoThreadDumpSize: UInt64 = 64 << 20

    /// The pages one thread of a dump saves into a page file of its own, with its own buffer;
    /// none of it is touched by another thread while the job runs.
    private struct PageDumpJob: @unchecked Sendable {
        let wanted: [AreaReader.Wanted]
        /// The page file's index in `Memory.page_files`.
        let file: UInt32
        let pages: PageFileWriter
        let buffer: PageReadBuffer
    }

    /// Splits the ranges to save into the first `bytes` (page-aligned) and the rest, in address order.
    private static func split(_ wanted: [AreaReader.Wanted], at bytes: UInt64) -> [[AreaReader.Wanted]] {
        var lower: [AreaReader.Wanted] = []
        var upper: [AreaReader.Wanted] = []
        var remaining = bytes
        for area in wanted {
            var below: [Range<UInt64>] = []
            var above: [Range<UInt64>] = []
            for range in area.ranges {
                let cut = range.lowerBound + min(remaining, range.upperBound - range.lowerBound)
                if cut > range.lowerBound { below.append(range.lowerBound..<cut) }
                if cut < range.upperBound { above.append(cut..<range.upperBound) }
                remaining -= cut - range.lowerBound
            }
            if !below.isEmpty {
                lower.append(
                    AreaReader.Wanted(
                        area: area.area, ranges: below, readable: area.readable, keepsZeroPages: area.keepsZeroPages))
            }
            if !above.isEmpty {
                upper.append(
                    AreaReader.Wanted(
                        area: area.area, ranges: above, readable: area.readable, keepsZeroPages: area.keepsZeroPages))
            }
        }
        return [lower, upper]
    }

    /// Keeps the VmFlags restore sets again.
    private static func record(_ flags: MemoryAreaFlags, in area: inout Amber_MemoryArea) {
        area.accounted = flags.contains(.accounted)
        area.noReserve = flags.contains(.noReserve)
        area.growsDown = flags.contains(.growsDown)
        area.droppable = flags.contains(.droppable)
        area.mayWrite = flags.contains(.mayWrite)
        area.dontFork = flags.contains(.doNotCopy)
        area.wipeOnFork = flags.contains(.wipeOnFork)
        area.dontDump = flags.contains(.doNotDump)
        area.sequentialRead = flags.contains(.sequentialRead)
        area.randomRead = flags.contains(.randomRead)
        area.hugePage = flags.contains(.hugePage)
        area.noHugePage = flags.contains(.noHugePage)
        area.mergeable = flags.contains(.mergeable)
        area.locked = flags.contains(.locked)
        area.lockOnFault = flags.contains(.lockOnFault)
        area.sealed = flags.contains(.sealed)
    }

    /// The sizes and modification times of the files the tree maps, each looked up once: every
    /// process of a tree maps the same executable and libraries, several times each.
    struct FileSizes {
        private var sizes: [FileKey: (size: UInt64, modified: UInt64)] = [:]

        private struct FileKey: Hashable {
            let path: String
            let device: UInt64
            let inode: UInt64
        }

        /// 0 and 0 when the file cannot be looked up.
        mutating func size(of mapping: MemoryMapping, pid: Int32) -> (size: UInt64, modified: UInt64) {
            let key = FileKey(path: mapping.path, device: mapping.device, inode: mapping.inode)
            if let known = sizes[key] { return known }
            let status = try? FileStatus.stat(path: MountNamespaceState.hostPath(mapping.path, of: pid))
            let known = (status?.size ?? 0, status?.modificationTimeNs ?? 0)
            sizes[key] = known
            return known
        }
    }

    /// /proc does not show the current brk; brk(0) in the process returns it.
    static func currentBreak(_ session: DumpSession) throws -> UInt64 {
        try session.injector.call("brk(0)", SyscallNumber.brk, 0)
    }

    /// The kinds of present page of an area whose data is found elsewhere (the zero page, the file),
    /// so are not saved; nil when no page of the area needs saving.
    private static func pagesFoundElsewhere(in area: Amber_MemoryArea) -> PageCategories? {
        switch area.kind {
        case .areaAnonymous, .areaHeap, .areaStack:
            // Shared anonymous pages are their object's, saved once with it (SharedAnonymousMemory).
            return area.shared ? nil : [.zeroPage, .file]
        case .areaFile:
            // Private file mappings: only pages copied on write; shared ones live in the file.
            return area.shared ? nil : [.file, .zeroPage]
        default:
            return nil
        }
    }

    private static func mmFields(_ target: DumpTarget, brk: UInt64) throws -> Amber_MmFields {
        var mm = Amber_MmFields()
        let stat = target.stat
        mm.startCode = stat.startCode
        mm.endCode = stat.endCode
        mm.startData = stat.startData
        mm.endData = stat.endData
        mm.startBrk = stat.startBrk
        mm.startStack = stat.startStack
        mm.argStart = stat.argStart
        mm.argEnd = stat.argEnd
        mm.envStart = stat.envStart
        mm.envEnd = stat.envEnd
        mm.brk = brk
        mm.auxv = Data(try ProcFS.auxv(pid: target.pid))
        let exe = try ProcFS.executable(pid: target.pid)
        mm.exePath = exe
        if let status = try? FileStatus.stat(path: "/proc/\(target.pid)/exe") {
            mm.exeDevice = status.device
            mm.exeInode = status.inode
        }
        return mm
    }

    // MARK: Restore

    /// Empties the helper's address space but for its vDSO, which is moved to the image's place.
    static func prepareAddressSpace(_ session: RestoreSession) throws {
        // Through a local: an existential property of a class cannot be passed inout to a generic.
        var injector = session.injector
        try prepareAddressSpace(for: session.task, &injector)
        session.injector = injector
    }

    /// Empties the address space of the helper `injector` runs in but for its vDSO, moved to
    /// where `task` had it. Done to the root's helper (a copy of amber) before any process is
    /// cloned from it too: a clone then copies no page tables of amber's, and each process
    /// finds its vDSO in place (a forked child has its parent's) and next to nothing to unmap.
    static func prepareAddressSpace(for task: Amber_Task, _ injector: inout some SyscallInjecting) throws {
        let record = task.memory
        let helperMaps = try ProcFS.maps(pid: injector.tracee.pid)
        let kernelAreas: [Amber_AreaKind: String] = [
            .areaVvar: "[vvar]", .areaVvarVclock: "[vvar_vclock]", .areaVdso: "[vdso]",
        ]
        var moves: [(from: UInt64, to: UInt64, size: UInt64, name: String)] = []
        for area in record.areas {
            guard let name = kernelAreas[area.kind] else { continue }
            guard let current = helperMaps.first(where: { $0.path == name }),
                current.end - current.start == area.end - area.start
            else {
                let here = helperMaps.filter { kernelAreas.values.contains($0.path) }.map {
                    "\($0.path) \(($0.end - $0.start) / 1024) KiB"
                }
                throw AmberError(
                    .incompatibleHost,
                    "this kernel lays out the vDSO differently from the image's (image \(name) \((area.end - area.start) / 1024) KiB; here: \(here.joined(separator: ", "))): restore on a host with the same kernel"
                )
            }
            moves.append((current.start, area.start, area.end - area.start, name))
        }
        let imageNames = Set(moves.map(\.name))
        if let extra = helperMaps.first(where: { kernelAreas.values.contains($0.path) && !imageNames.contains($0.path) }
        ) {
            throw AmberError(
                .incompatibleHost,
                "this kernel has a \(extra.path) area the image does not: restore on a host with the same kernel")
        }
        guard !moves.isEmpty else {
            throw AmberError(.badImage, "image file \(ImageFormat.taskRecordName(pid: task.pid)) has no [vdso] area")
        }

        try ThreadControlState.unregisterHelperRseq(injector)

        let currentStart: UInt64 = moves.map(\.from).min()!
        let currentEnd: UInt64 = moves.map { (move) -> UInt64 in move.from + move.size }.max()!
        let targetStart: UInt64 = moves.map(\.to).min()!
        let targetEnd: UInt64 = moves.map { (move) -> UInt64 in move.to + move.size }.max()!
        if currentStart != targetStart {
            if currentStart < targetEnd && targetStart < currentEnd {
                // Overlapping blocks: park the vDSO out of the way first.
                let parking = max(currentEnd, targetEnd) + (1 << 30)
                let parked = moves.map { (move) -> (from: UInt64, to: UInt64, size: UInt64, name: String) in
                    (move.from, parking + (move.from - currentStart), move.size, move.name)
                }
                try move(&injector, parked)
                try move(
                    &injector,
                    zip(parked, moves).map { (parked, move) -> (from: UInt64, to: UInt64, size: UInt64, name: String) in
                        (parked.to, move.to, move.size, move.name)
                    })
            } else {
                try move(&injector, moves)
            }
        }
        // A process cloned from the emptied root's helper has one page left to unmap (where its
        // parent wrote the clone3 arguments): one munmap of it, not two of everything around the vDSO.
        let leftovers = helperMaps.filter {
            !kernelAreas.values.contains($0.path) && $0.end <= ImageFormat.userAddressLimit
        }
        if leftovers.count < 2 {
            for area in leftovers {
                try injector.call(
                    "munmap helper memory at 0x\(String(area.start, radix: 16))", SyscallNumber.munmap, area.start,
                    area.end - area.start)
            }
            return
        }
        if targetStart > 0 {
            try injector.call("munmap helper memory below the vDSO", SyscallNumber.munmap, 0, targetStart)
        }
        try injector.call(
            "munmap helper memory above the vDSO", SyscallNumber.munmap, targetEnd,
            ImageFormat.userAddressLimit - targetEnd)
    }

    /// mremaps kernel areas; the vDSO (holding the syscall instruction in use) goes last.
    private static func move(
        _ injector: inout some SyscallInjecting, _ moves: [(from: UInt64, to: UInt64, size: UInt64, name: String)]
    ) throws {
        let ordered = moves.filter { $0.name != "[vdso]" } + moves.filter { $0.name == "[vdso]" }
        for move in ordered {
            try injector.call(
                "mremap \(move.name)", SyscallNumber.mremap, move.from, move.size, move.size,
                MemoryAdvice.remapMayMove | MemoryAdvice.remapFixed, move.to)
            if move.name == "[vdso]" {
                injector.instruction = injector.instruction - move.from + move.to
            }
        }
    }

    /// Recreates every area and fills in its saved pages.
    static func restoreAreas(_ session: RestoreSession) throws {
        let record = session.task.memory
        let injector = session.injector
        var opened: [TreeFiles.Key: TaskFile] = [:]
        let sharedAnonymous = SharedAnonymousMemory.TaskObjects(session)
        let unnamedFiles = MappedUnnamedFiles.TaskFiles(session)
        defer {
            for file in opened.values { try? session.closeInTask(file) }
            try? sharedAnonymous.close()
            try? unnamedFiles.close()
        }
        var temporary: [Amber_MemoryArea] = []
        var previous: Amber_MemoryArea?
        var pending: PendingMapping?
        for area in record.areas {
            let protection = mappingProtection(area)
            let separate = continuesIdenticalArea(area, previous)
            previous = area
            if protection != area.protection { temporary.append(area) }
            var flags =
                MAP_FIXED | (area.droppable ? MemoryAdvice.mapDroppable : area.shared ? MAP_SHARED : MAP_PRIVATE)
            if area.noReserve { flags |= MAP_NORESERVE }
            if area.growsDown { flags |= MAP_GROWSDOWN }
            var fd: Int32 = -1
            switch area.kind {
            case .areaVdso, .areaVvar, .areaVvarVclock, .areaVsyscall:
                continue
            case .areaAnonymous where area.sharedAnonymousID != 0:
                fd = try sharedAnonymous.descriptor(of: area.sharedAnonymousID)
            case .areaAnonymous, .areaHeap:
                flags |= MAP_ANONYMOUS
            case .areaStack:
                flags |= MAP_ANONYMOUS | MAP_GROWSDOWN
            case .areaFile where area.memfdID != 0 || area.deletedFileID != 0:
                fd = try unnamedFiles.descriptor(for: area)
            case .areaFile:
                let key = fileKey(of: area)
                let file =
                    try opened[key]
                    ?? session.openInTask(key, what: "the file mapped at 0x\(String(area.start, radix: 16))")
                opened[key] = file
                if area.fileSize != 0, file.status.size != area.fileSize {
                    throw AmberError(
                        .restoreFailed,
                        "\(area.path) changed since the dump (size \(file.status.size), was \(area.fileSize)): the mapping at 0x\(String(area.start, radix: 16)) cannot be restored"
                    )
                }
                // A program or library replaced (upgraded) keeps its path, maybe its size: the
                // process would run other code than its memory expects. A shared mapping shows
                // the file as it is, whoever wrote it since.
                if !area.shared, area.fileModificationTimeNs != 0,
                    file.status.modificationTimeNs != area.fileModificationTimeNs
                {
                    throw AmberError(
                        .restoreFailed,
                        "\(area.path) changed since the dump (modified at \(file.status.modificationTimeNs) ns, was \(area.fileModificationTimeNs) ns): the mapping at 0x\(String(area.start, radix: 16)) cannot be restored"
                    )
                }
                fd = file.fd
            case .UNRECOGNIZED:
                throw AmberError(
                    .badImage,
                    "image file \(ImageFormat.taskRecordName(pid: session.task.pid)) has an area of unknown kind")
            }
            let length = area.end - area.start
            let name = "mmap 0x\(String(area.start, radix: 16))-0x\(String(area.end, radix: 16))"
            if separate {
                // Its neighbour is mapped first, as it lies below.
                try pending?.map(injector)
                pending = nil
                // Mapped elsewhere and moved into place: its page offset then does not continue its neighbour's.
                let elsewhere = try injector.call(
                    name, SyscallNumber.mmap, 0, length, UInt64(protection), UInt64(flags & ~MAP_FIXED), UInt64.max, 0)
                // mremap resets the page offset of an area that never faulted: fault one page (with zeros) first.
                let memFile = try ProcessMemoryFile(pid: session.pid, writable: true)
                try [UInt8](repeating: 0, count: 8).withUnsafeBytes { zeros throws in
                    try memFile.write(zeros, at: elsewhere)
                }
                try injector.call(
                    "mremap into place", SyscallNumber.mremap, elsewhere, length, length,
                    MemoryAdvice.remapMayMove | MemoryAdvice.remapFixed, area.start)
            } else {
                let mapping = PendingMapping(
                    start: area.start, end: area.end, protection: protection, flags: flags, fd: fd,
                    offset: area.fileOffset)
                if pending?.continues(with: mapping) == true {
                    pending?.append(mapping)
                } else {
                    try pending?.map(injector)
                    pending = mapping
                }
            }
        }
        try pending?.map(injector)
        // Its areas keep each object: the task's descriptors of them go before it runs.
        try sharedAnonymous.close()
        try unnamedFiles.close()
        if let server = session.lazyPages {
            try LazyMemory.register(session, with: server)
        } else {
            try fillPages(session)
        }
        try injector.call(
            temporary.map { area in
                Syscall(
                    "mprotect 0x\(String(area.start, radix: 16))", SyscallNumber.mprotect, area.start,
                    area.end - area.start, UInt64(area.protection))
            })
        try restoreAdvice(record.areas, injector)
    }

    /// One mmap for a run of private areas back to back, with the same flags and the same file
    /// at offsets that continue each other, then an mprotect for each stretch of them mapped
    /// with another protection: what an mmap of each would make (the kernel merges alike areas
    /// either way), in fewer injected calls. A run mapped writable takes only areas that are
    /// accounted too (an mprotect never drops VM_ACCOUNT). A thread's guard and stack (glibc
    /// maps both PROT_NONE, then opens the stack): one mmap for all the process's stacks, one
    /// mprotect each, instead of two mmaps each.
    private struct PendingMapping {
        let start: UInt64
        var end: UInt64
        let protection: UInt32
        let flags: Int32
        let fd: Int32
        let offset: UInt64
        /// Stretches of the run whose areas are mapped with another protection.
        var changes: [(start: UInt64, end: UInt64, protection: UInt32)] = []

        init(start: UInt64, end: UInt64, protection: UInt32, flags: Int32, fd: Int32, offset: UInt64) {
            (self.start, self.end, self.protection, self.flags, self.fd, self.offset) =
                (start, end, protection, flags, fd, offset)
        }

        func continues(with next: PendingMapping) -> Bool {
            let writable = protection & UInt32(PROT_WRITE) != 0
            return flags & MAP_PRIVATE != 0 && flags & MAP_GROWSDOWN == 0 && next.start == end && next.flags == flags
                && next.fd == fd && (fd == -1 || next.offset == offset + (end - start))
                && (!writable || next.protection & UInt32(PROT_WRITE) != 0 || flags & MAP_NORESERVE != 0)
        }

        mutating func append(_ next: PendingMapping) {
            end = next.end
            guard next.protection != protection else { return }
            if let last = changes.last, last.end == next.start, last.protection == next.protection {
                changes[changes.count - 1].end = next.end
            } else {
                changes.append((next.start, next.end, next.protection))
            }
        }

        func map(_ injector: any SyscallInjecting) throws {
            let mapping = Syscall(
                "mmap 0x\(String(start, radix: 16))-0x\(String(end, radix: 16))", SyscallNumber.mmap, start,
                end - start, UInt64(protection), UInt64(flags), UInt64(bitPattern: Int64(fd)), offset)
            try injector.call(
                [mapping]
                    + changes.map { change in
                        Syscall(
                            "mprotect 0x\(String(change.start, radix: 16))-0x\(String(change.end, radix: 16))",
                            SyscallNumber.mprotect, change.start, change.end - change.start, UInt64(change.protection))
                    })
        }
    }

    /// Gives each area its madvise advice and locks, once its pages are in (names and seals
    /// follow in `nameAndSealAreas`). A root restorer's helper still has CAP_IPC_LOCK here
    /// (credentials come later), so mlock is not held to RLIMIT_MEMLOCK: the task locked these
    /// pages once, under its own limit or with the capability. Without it the helper has the
    /// restorer's limit (the task's own comes later, with its environment).
    private static func restoreAdvice(_ areas: [Amber_MemoryArea], _ injector: any SyscallInjecting) throws {
        let areas = areas.filter { !kernelAreaKinds.contains($0.kind) }
        let advice: [((Amber_MemoryArea) -> Bool, UInt64, String)] = [
            ({ $0.dontFork }, MemoryAdvice.dontFork, "MADV_DONTFORK"),
            // A droppable area has these from its mmap.
            ({ $0.wipeOnFork && !$0.droppable }, MemoryAdvice.wipeOnFork, "MADV_WIPEONFORK"),
            ({ $0.dontDump && !$0.droppable }, MemoryAdvice.dontDump, "MADV_DONTDUMP"),
            ({ $0.sequentialRead }, MemoryAdvice.sequential, "MADV_SEQUENTIAL"),
            ({ $0.randomRead }, MemoryAdvice.random, "MADV_RANDOM"),
            ({ $0.hugePage }, MemoryAdvice.hugePage, "MADV_HUGEPAGE"),
            ({ $0.noHugePage }, MemoryAdvice.noHugePage, "MADV_NOHUGEPAGE"),
            ({ $0.mergeable }, MemoryAdvice.mergeable, "MADV_MERGEABLE"),
        ]
        // One madvise for areas back to back that take the same advice (every thread's stack and
        // guard take MADV_NOHUGEPAGE from MAP_STACK): the kernel applies it to each area in the range.
        var calls: [Syscall] = []
        for (wanted, value, name) in advice {
            var run: (start: UInt64, end: UInt64)?
            func flush() {
                guard let run else { return }
                calls.append(
                    Syscall(
                        "madvise(0x\(String(run.start, radix: 16))-0x\(String(run.end, radix: 16)), \(name))",
                        SyscallNumber.madvise, run.start, run.end - run.start, value))
            }
            for area in areas where wanted(area) {
                if let current = run, current.end == area.start {
                    run = (current.start, area.end)
                } else {
                    flush()
                    run = (area.start, area.end)
                }
            }
            flush()
        }
        try injector.call(calls)
        for area in areas where area.locked {
            let length = area.end - area.start
            let result = try injector.raw(
                SyscallNumber.mlock2, area.start, length, area.lockOnFault ? MemoryAdvice.lockOnFault : 0)
            if result == -Int64(ENOMEM) || result == -Int64(EPERM) {
                throw AmberError(
                    .restoreFailed,
                    "cannot lock the \(length / 1024) KiB area at 0x\(String(area.start, radix: 16)) again (mlock): the restorer's RLIMIT_MEMLOCK is too low, and going past it needs CAP_IPC_LOCK"
                )
            } else if result < 0 {
                throw LinuxError(
                    negated: Int(result), "mlock2 0x\(String(area.start, radix: 16)) in task \(injector.tracee.pid)"
                )
            }
        }
    }

    /// Names anonymous areas (PR_SET_VMA_ANON_NAME), which needs the scratch area for the
    /// names, then seals the sealed areas, which take no more changes.
    static func nameAndSealAreas(_ session: RestoreSession) throws {
        for area in session.task.memory.areas where !area.anonymousName.isEmpty {
            var arguments = session.arguments()
            let address = try arguments.place(Array((area.anonymousName + "\0").utf8))
            try session.injector.call(
                "prctl(PR_SET_VMA_ANON_NAME, 0x\(String(area.start, radix: 16)), \(area.anonymousName))",
                SyscallNumber.prctl, MemoryAdvice.setVMA, MemoryAdvice.setVMAAnonymousName, area.start,
                area.end - area.start, address)
        }
        for area in session.task.memory.areas where area.sealed && !kernelAreaKinds.contains(area.kind) {
            try session.injector.call(
                "mseal 0x\(String(area.start, radix: 16))", SyscallNumber.mseal, area.start, area.end - area.start, 0)
        }
    }

    private static let kernelAreaKinds: Set<Amber_AreaKind> = [.areaVdso, .areaVvar, .areaVvarVclock, .areaVsyscall]

    /// How the file of a file-backed area is opened to map it: for writing only if the mapping
    /// is shared and writable, or may be made writable (VM_MAYWRITE: its file was open for
    /// writing, and mprotect can make it writable).
    static func openFlags(of area: Amber_MemoryArea) -> Int32 {
        area.shared && (area.mayWrite || area.protection & UInt32(PROT_WRITE) != 0) ? O_RDWR : O_RDONLY
    }

    /// The protection an area is first mapped with: writable if it was accounted, as VM_ACCOUNT
    /// stays once set; the final protection follows by mprotect after the pages are in.
    private static func mappingProtection(_ area: Amber_MemoryArea) -> UInt32 {
        area.shared || !area.accounted ? area.protection : area.protection | UInt32(PROT_WRITE)
    }

    /// Whether an anonymous area sits right above one that looks the same. The kernel kept them
    /// apart (an mremap gave one a page offset that does not continue the other's), and a plain
    /// mmap at that address would merge them into one area.
    private static func continuesIdenticalArea(_ area: Amber_MemoryArea, _ previous: Amber_MemoryArea?) -> Bool {
        guard let previous, area.kind == .areaAnonymous, previous.kind == .areaAnonymous, !area.shared, !previous.shared
        else { return false }
        // Alike in everything but place and pages: areas that differ in a flag are kept apart by it.
        func behaviour(_ area: Amber_MemoryArea) -> Amber_MemoryArea {
            var copy = area
            copy.start = 0
            copy.end = 0
            copy.pages = []
            return copy
        }
        return previous.end == area.start && behaviour(previous) == behaviour(area)
    }

    /// Writes the saved pages: process_vm_writev where the area is writable, /proc/PID/mem elsewhere.
    /// Runs that lie back to back in one page file (as the dump writes them) go in one
    /// process_vm_writev, however many areas they span; a run it could not write goes through /proc/PID/mem.
    private static func fillPages(_ session: RestoreSession) throws {
        let record = session.task.memory
        guard record.areas.contains(where: { !$0.pages.isEmpty }) else { return }
        // A page file of an incremental image may be its parent's, or further up its chain.
        let pageFiles = try record.pageFiles.enumerated().map { index, name throws(ImageError) in
            try session.image.pageFile(
                named: name, depth: record.pageFileDepth.isEmpty ? 0 : Int(record.pageFileDepth[index]))
        }
        // The pages handed out are valid only while their page files are alive.
        defer { withExtendedLifetime(pageFiles) {} }
        let memory = ProcessMemory(pid: session.pid)
        var memFile: ProcessMemoryFile?
        /// The `count` pages from `run`'s on, through the page file's bounds check.
        @Sendable func pages(from run: Amber_PageRun, count: UInt64) throws(ImageError) -> UnsafeRawBufferPointer {
            try pageFiles[Int(run.file)].pages(offset: run.offset, count: count)
        }
        func writeThroughMemFile(_ run: Amber_PageRun) throws {
            if memFile == nil { memFile = try ProcessMemoryFile(pid: session.pid, writable: true) }
            try memFile!.write(pages(from: run, count: run.count), at: run.address)
            MemoryProgress.copied(run.count * pageSize)
        }
        /// Writes runs that lie back to back in one page file with process_vm_writev; returns
        /// the runs it could not write whole (a page the call may not write).
        @Sendable func write(_ runs: [Amber_PageRun]) -> Result<[Amber_PageRun], any Error> {
            let first = runs[0]
            let last = runs[runs.count - 1]
            return Result {
                let bytes = try pages(from: first, count: (last.offset - first.offset) / pageSize + last.count)
                let written = try memory.write(bytes, to: runs.map { ($0.address, Int($0.count * pageSize)) })
                MemoryProgress.copied(UInt64(written))
                return runs.filter { $0.offset + $0.count * pageSize > first.offset + UInt64(written) }
            }
        }
        var batch: [Amber_PageRun] = []
        func flush() throws {
            guard let first = batch.first, let last = batch.last else { return }
            // Writing faults in every page of the task: a large batch goes in two halves at
            // once, so that both CPUs take the faults.
            let halves =
                last.offset + last.count * pageSize - first.offset >= twoThreadFillSize ? split(batch) : [batch]
            for result in halves.concurrentMap(write) {
                for run in try result.get() { try writeThroughMemFile(run) }
            }
            batch.removeAll(keepingCapacity: true)
        }
        for area in record.areas where !area.pages.isEmpty {
            let writable = area.protection & UInt32(PROT_WRITE) != 0 || area.accounted
            for run in area.pages {
                guard writable else {
                    try writeThroughMemFile(run)
                    continue
                }
                if let last = batch.last, last.file != run.file || last.offset + last.count * pageSize != run.offset {
                    try flush()
                }
                batch.append(run)
            }
        }
        try flush()
    }

    /// Page runs from this many bytes on are written by two threads.
    static let twoThreadFillSize: UInt64 = 64 << 20

    /// Splits runs that lie back to back in the page file into two halves of about the same
    /// size, cutting the run that straddles the middle at a page.
    private static func split(_ runs: [Amber_PageRun]) -> [[Amber_PageRun]] {
        let start = runs[0].offset
        let middle =
            start + (runs[runs.count - 1].offset + runs[runs.count - 1].count * pageSize - start) / 2 / pageSize
            * pageSize
        var halves: [[Amber_PageRun]] = [[], []]
        for run in runs {
            let end = run.offset + run.count * pageSize
            if end <= middle {
                halves[0].append(run)
            } else if run.offset >= middle {
                halves[1].append(run)
            } else {
                let lowerCount = (middle - run.offset) / pageSize
                var lower = run
                var upper = run
                lower.count = lowerCount
                upper.address = run.address + lowerCount * pageSize
                upper.offset = middle
                upper.count = run.count - lowerCount
                halves[0].append(lower)
                halves[1].append(upper)
            }
        }
        return halves.filter { !$0.isEmpty }
    }

    /// How a restore opens the task's executable by its path.
    static func executableKey(of task: Amber_Task) -> TreeFiles.Key {
        let mm = task.memory.mm
        return TreeFiles.Key(path: mm.exePath, flags: O_RDONLY, device: mm.exeDevice, inode: mm.exeInode)
    }

    /// How a restore opens the file a file area maps by its path.
    static func fileKey(of area: Amber_MemoryArea) -> TreeFiles.Key {
        TreeFiles.Key(path: area.path, flags: openFlags(of: area), device: area.device, inode: area.inode)
    }

    /// The area mapping the task's executable when that is a deleted file (a program upgraded
    /// or removed while it ran) or a memfd (fexecve of a memfd, as runc re-executes itself):
    /// the file is made again with the areas, not reopened by path.
    static func deletedExecutable(of task: Amber_Task) -> Amber_MemoryArea? {
        let mm = task.memory.mm
        guard mm.exePath.hasSuffix(DeletedWorkingDirectory.suffix) else { return nil }
        return task.memory.areas.first { ($0.deletedFileID != 0 || $0.memfdID != 0) && $0.inode == mm.exeInode }
    }

    /// Sets brk, the arg/env area, auxv and the exe link in one PR_SET_MM_MAP.
    static func restoreMmFields(_ session: RestoreSession) throws {
        let mm = session.task.memory.mm
        let deletedExe = deletedExecutable(of: session.task)
        let unnamedFiles = MappedUnnamedFiles.TaskFiles(session)
        defer { try? unnamedFiles.close() }
        let exe =
            try deletedExe.map {
                TaskFile(
                    fd: try unnamedFiles.descriptor(for: $0),
                    status: FileStatus(device: 0, inode: 0, mode: 0, size: 0, rdev: 0), temporary: false)
            }
            ?? session.openInTask(executableKey(of: session.task), what: "the executable")
        var arguments = session.arguments()
        let auxvAddress = try arguments.place([UInt8](mm.auxv))
        var map = PrctlMemoryMap()
        map.startCode = mm.startCode
        map.endCode = mm.endCode
        map.startData = mm.startData
        map.endData = mm.endData
        map.startBrk = mm.startBrk
        map.brk = mm.brk
        map.startStack = mm.startStack
        map.argStart = mm.argStart
        map.argEnd = mm.argEnd
        map.envStart = mm.envStart
        map.envEnd = mm.envEnd
        map.auxv = auxvAddress
        map.auxvSize = UInt32(mm.auxv.count)
        map.exeFD = UInt32(exe.fd)
        let mapAddress = try arguments.place(map.bytes)
        try session.injector.call(
            "prctl(PR_SET_MM, PR_SET_MM_MAP)", SyscallNumber.prctl, TaskControl.setMM, TaskControl.setMMMap, mapAddress,
            UInt64(PrctlMemoryMap.byteCount))
        try session.closeInTask(exe)
        // After every area is made: MCL_FUTURE alone locks only what is mapped from now on.
        if session.task.memory.lockFuture {
            let flags =
                MemoryAdvice.lockFuture | (session.task.memory.lockFutureOnFault ? MemoryAdvice.lockOnFaultAll : 0)
            try session.injector.call("mlockall(MCL_FUTURE)", SyscallNumber.mlockall, flags)
        }
    }
}

/// Reads the VmFlags of every frozen process from /proc/PID/smaps on another CPU, from the
/// freeze on, while the frozen tree is checked and the dump injects into the processes one by
/// one: smaps makes the kernel walk every page table, the slowest read of a small process's
/// dump (about 2 ms each on this VM) and of a large one's frozen time (tens of milliseconds a
/// GiB in 4 KiB pages). Each process's read ends before the dump maps its scratch page, which
/// may merge with a neighbouring area (`flags(of:)` waits for it first).
final class AreaFlagsPrefetch: @unchecked Sendable {
    private let results: UnsafeMutableBufferPointer<Result<[UInt64: MemoryAreaFlags], LinuxError>?>
    private let ready: [DispatchSemaphore]
    private let pids: [Int32]

    init(_ pids: [Int32]) {
        self.pids = pids
        results = .allocate(capacity: self.pids.count)
        results.initialize(repeating: nil)
        ready = self.pids.map { _ in DispatchSemaphore(value: 0) }
        guard !self.pids.isEmpty else { return }
        let queue = DispatchQueue(label: "amber.smaps")
        for index in self.pids.indices {
            queue.async { [self] in
                results[index] = Result { () throws(LinuxError) in try ProcFS.memoryFlags(pid: self.pids[index]) }
                ready[index].signal()
            }
        }
    }

    deinit {
        // Every read must be over before the buffer goes.
        for semaphore in ready { semaphore.wait() }
        results.deallocate()
    }

    /// The flags of process `pid`, waiting for them if need be.
    func flags(of pid: Int32) throws(LinuxError) -> [UInt64: MemoryAreaFlags] {
        guard let index = pids.firstIndex(of: pid) else { return try ProcFS.memoryFlags(pid: pid) }
        ready[index].wait()
        defer { ready[index].signal() }
        return try results[index]!.get()
    }
}

/// A buffer a dump reads pages into, one per reading thread for every process of the tree: it
/// stays faulted in.
final class PageReadBuffer {
    /// Read, filtered, hashed and written 1 MiB at a time: the chunk is still in the CPU cache for
    /// each pass, and the buffer costs 256 first-touch page faults instead of 8192 (docs/measurements.md).
    static let size = 1 << 20
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)

    deinit { bytes.deallocate() }
}

/// Reads present pages of the target and appends the non-zero ones to the page file.
private final class AreaReader {
    /// The ranges of present pages of one area (`area` its index), to be saved.
    struct Wanted {
        let area: Int
        let ranges: [Range<UInt64>]
        let readable: Bool
        /// A private file area's page copied on write and cleared since: restored, the area
        /// shows the file where no page is written, so its zero pages are saved too.
        let keepsZeroPages: Bool
    }

    private struct Piece {
        let area: Int
        let address: UInt64
        let length: Int
        let readable: Bool
        let keepsZeroPages: Bool
    }

    let pid: Int32
    let interruption: DumpInterruption
    let memory: ProcessMemory
    var memFile: ProcessMemoryFile?
    let buffer: UnsafeMutableRawBufferPointer
    /// `dump --cow`: what settles each stretch read from the running process.
    let overlay: (any PageOverlay)?

    init(pid: Int32, interruption: DumpInterruption, buffer: PageReadBuffer, overlay: (any PageOverlay)? = nil) {
        self.pid = pid
        self.interruption = interruption
        memory = ProcessMemory(pid: pid)
        self.buffer = buffer.bytes
        self.overlay = overlay
    }

    /// Returns the page runs of each area by index, each naming page file `file`. A small process's pages come as many short
    /// ranges over many areas: as many as fit in the buffer are read by one process_vm_readv, and
    /// their non-zero pages are moved together and written by one append.
    func save(_ wanted: [Wanted], into pages: PageFileWriter, file: UInt32) throws -> [Int: [Amber_PageRun]] {
        var runs: [Int: [Amber_PageRun]] = [:]
        var batch: [Piece] = []
        var batched = 0
        for area in wanted {
            for range in area.ranges {
                var cursor = range.lowerBound
                while cursor < range.upperBound {
                    try interruption.check(FaultPoints.pages)
                    let length = Int(min(UInt64(buffer.count), range.upperBound - cursor))
                    if batched + length > buffer.count || batch.count == ProcessMemory.maxSegments {
                        try save(batch, length: batched, into: pages, file: file, runs: &runs)
                        batch.removeAll(keepingCapacity: true)
                        batched = 0
                    }
                    batch.append(
                        Piece(
                            area: area.area, address: cursor, length: length, readable: area.readable,
                            keepsZeroPages: area.keepsZeroPages))
                    batched += length
                    cursor += UInt64(length)
                }
            }
        }
        try save(batch, length: batched, into: pages, file: file, runs: &runs)
        return runs
    }

    private func save(
        _ batch: [Piece], length: Int, into pages: PageFileWriter, file: UInt32, runs: inout [Int: [Amber_PageRun]]
    ) throws {
        guard !batch.isEmpty else { return }
        try read(batch, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]))
        MemoryProgress.copied(UInt64(length))
        if let overlay {
            var offset = 0
            for piece in batch {
                try overlay.settle(
                    piece.address, UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + piece.length)]))
                offset += piece.length
            }
        }
        // Non-zero pages move down over the zero ones, a stretch at a time; each lands at the
        // offset `kept` from where the append starts.
        let pageSize = Int(MemoryState.pageSize)
        let base = pages.size
        var kept = 0
        var position = 0
        for piece in batch {
            let end = position + piece.length
            while position < end {
                let zero = { (at: Int) in
                    !piece.keepsZeroPages && self.isZeroPage(UnsafeRawBufferPointer(self.buffer), at)
                }
                while position < end && zero(position) { position += pageSize }
                let first = position
                while position < end && !zero(position) { position += pageSize }
                guard position > first else { continue }
                if kept != first {
                    (buffer.baseAddress! + kept).copyMemory(
                        from: buffer.baseAddress! + first, byteCount: position - first)
                }
                let address = piece.address + UInt64(first - (end - piece.length))
                let offset = base + UInt64(kept)
                let count = UInt64((position - first) / pageSize)
                kept += position - first
                var areaRuns = runs.removeValue(forKey: piece.area) ?? []
                if let last = areaRuns.last, last.address + last.count * MemoryState.pageSize == address,
                    last.offset + last.count * MemoryState.pageSize == offset
                {
                    areaRuns[areaRuns.count - 1].count += count
                } else {
                    var run = Amber_PageRun()
                    run.address = address
                    run.count = count
                    run.offset = offset
                    run.file = file
                    areaRuns.append(run)
                }
                runs[piece.area] = areaRuns
            }
        }
        if kept > 0 {
            _ = try pages.append(UnsafeRawBufferPointer(rebasing: buffer[0..<kept]))
        }
    }

    /// Reads each piece into its place in `data`: the readable ones by process_vm_readv, a
    /// stretch at a time; the rest (and whatever it could not read) through /proc/PID/mem,
    /// which may force the read.
    private func read(_ batch: [Piece], into data: UnsafeMutableRawBufferPointer) throws {
        var start = 0
        var offset = 0
        while start < batch.count {
            var end = start
            var length = 0
            while end < batch.count && batch[end].readable == batch[start].readable {
                length += batch[end].length
                end += 1
            }
            let stretch = batch[start..<end]
            let read =
                batch[start].readable
                ? try memory.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: data[offset..<(offset + length)]),
                    from: stretch.map { ($0.address, $0.length) })
                : 0
            var pieceOffset = offset
            for piece in stretch {
                let pieceEnd = pieceOffset + piece.length
                if pieceEnd > offset + read {
                    if memFile == nil { memFile = try ProcessMemoryFile(pid: pid, writable: false) }
                    let from = max(offset + read, pieceOffset)
                    let address = piece.address + UInt64(from - pieceOffset)
                    let got = try memFile!.read(
                        into: UnsafeMutableRawBufferPointer(rebasing: data[from..<pieceEnd]), at: address)
                    guard got == pieceEnd - from else {
                        throw LinuxError(
                            .badAddress,
                            "read memory of process \(pid) at 0x\(String(address + UInt64(got), radix: 16))")
                    }
                }
                pieceOffset = pieceEnd
            }
            offset += length
            start = end
        }
    }

    private func isZeroPage(_ chunk: UnsafeRawBufferPointer, _ offset: Int) -> Bool {
        let words = chunk.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt64.self)
        // Most pages that hold data differ from zero in their first word: that check is nearly free.
        if words[0] != 0 { return false }
        var accumulated: UInt64 = 0
        for index in 0..<(Int(MemoryState.pageSize) / 8) { accumulated |= words[index] }
        return accumulated == 0
    }
}

extension MemoryState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(process.maps, process: process.name, tree: process.tree)
        try MappedUnnamedFiles.check(process)
    }

    static func check(tree processes: [CheckedProcess]) throws {
        try SharedAnonymousMemory.check(tree: processes)
    }

    /// What the memory steps of one dump share: the areas' flags, read ahead on another CPU;
    /// what the traced steps learn of each process for the outside one; the page buffers.
    final class DumpState: @unchecked Sendable {
        struct Learned {
            var vmFlags: [UInt64: MemoryAreaFlags] = [:]
            var brk: UInt64 = 0
            var futureLocking = FutureLocking()
        }

        let areaFlags: AreaFlagsPrefetch
        let writer: ImageWriter
        /// Two: a large process's pages are read by two threads (`twoThreadDumpSize`).
        let buffers = [PageReadBuffer(), PageReadBuffer()]
        /// Touched by the outside step only.
        var fileSizes = FileSizes()
        /// Touched by the outside step only.
        var sharedAnonymous = SharedAnonymousMemory.Objects()
        /// What files without a name hold, shared with the files step (both outside).
        let fileContents: FileContentsDump
        /// `dump --cow`: takes each process's pages to copy once the tree runs again.
        let copyOnWrite: CopyOnWriteDump?
        let incremental: IncrementalDump?
        /// Written by the tracer, read by the outside step one process behind.
        private var learned: [Int32: Learned] = [:]
        private let lock = Mutex(())

        init(_ dump: TreeDump) {
            areaFlags = dump.areaFlags
            writer = dump.writer
            fileContents = dump.fileContents
            copyOnWrite = dump.copyOnWrite
            incremental = dump.incremental
        }

        func update(_ pid: Int32, _ change: (inout Learned) -> Void) {
            lock.withLock { _ in change(&learned[pid, default: Learned()]) }
        }

        func take(_ pid: Int32) -> Learned {
            lock.withLock { _ in learned.removeValue(forKey: pid) ?? Learned() }
        }

        func vmFlags(_ pid: Int32) -> [UInt64: MemoryAreaFlags] {
            lock.withLock { _ in learned[pid]?.vmFlags ?? [:] }
        }
    }

    static func makeDumpState(_ dump: TreeDump) -> DumpState { DumpState(dump) }

    static var dumpSteps: [DumpStep<DumpState>] {
        [
            // Before the session maps its scratch page into the process.
            DumpStep("area-flags", .frozen) { process, state in
                var vmFlags = try state.areaFlags.flags(of: process.pid)
                if let incremental = state.incremental {
                    vmFlags = try incremental.checkRegistrations(
                        pid: process.pid, startTime: process.target.stat.startTime, maps: process.target.maps,
                        vmFlags: vmFlags, process: process.name, tree: process.tree)
                }
                try check(vmFlags, maps: process.target.maps, process: process.name, tree: process.tree)
                state.update(process.pid) { $0.vmFlags = vmFlags }
            },
            DumpStep("break", .traced) { process, state in
                let brk = try currentBreak(process.session)
                state.update(process.pid) { $0.brk = brk }
            },
            DumpStep("future-locking", .traced) { process, state in
                let locking = try futureLocking(process.session, vmFlags: state.vmFlags(process.pid))
                state.update(process.pid) { $0.futureLocking = locking }
            },
            DumpStep("memory", .outside) { process, state in
                let learned = state.take(process.pid)
                let chainPages = try state.incremental?.pages(
                    pid: process.pid, startTime: process.target.stat.startTime)
                process.task.memory = try dump(
                    process.target, vmFlags: learned.vmFlags, brk: learned.brk, futureLocking: learned.futureLocking,
                    image: state.writer, buffers: state.buffers, fileSizes: &state.fileSizes,
                    sharedAnonymous: &state.sharedAnonymous, fileContents: state.fileContents,
                    copyOnWrite: state.copyOnWrite, chainPages: chainPages)
            },
        ]
    }

    static var restoreSteps: [RestoreStep] {
        [
            // First: everything else points into it. The restorer's scratch area comes with it.
            RestoreStep("memory", order: 100) { session in
                try prepareAddressSpace(session)
                try restoreAreas(session)
                try session.mapScratch()
                try nameAndSealAreas(session)
            },
            RestoreStep("mm-fields", order: 500) { try restoreMmFields($0) },
        ]
    }
}
