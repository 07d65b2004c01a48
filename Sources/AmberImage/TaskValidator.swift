/// Checks a decoded task record against the rules of the format, so that
/// nothing downstream ever sees an out-of-range number, an unaligned or
/// overlapping area, a page run outside its page file, or a relative path.
///
/// Every failure is `.invalid`, names the record file, and names the field
/// with its index in the record, e.g. "memory.areas[3].pages[0]: ...".
struct TaskValidator {
    /// The record file, e.g. "task-123.pb".
    let file: String
    /// The PID in the record's file name.
    let pid: Int32
    /// `Inventory.xstate_size`: every non-empty xstate has exactly this size.
    let xstateSize: UInt32
    /// `Inventory.xstate_features` (XCR0): no xstate holds a feature outside it.
    let xstateFeatures: UInt64
    /// The files the inventory lists, by name: page runs are checked against their page file's size.
    let files: [String: Amber_ImageFile]
    /// The files each image of an incremental image's chain lists: its parent's first
    /// (`Memory.page_file_depth` 1), then the parent's parent.
    var ancestorFiles: [[String: Amber_ImageFile]] = []

    /// Signals whose disposition cannot be changed: SIGKILL and SIGSTOP.
    private static let unblockableSignals: Set<UInt32> = [9, 19]
    /// O_ACCMODE, O_APPEND, O_NONBLOCK, O_DSYNC, O_SYNC, O_DIRECT, O_LARGEFILE,
    /// O_NOATIME, O_PATH, O_DIRECTORY, O_NOFOLLOW and FASYNC: the status flags
    /// fdinfo shows that reopening a file can reproduce.
    private static let fileFlags: UInt32 =
        0o3 | 0o2000 | 0o4000 | 0o10000 | 0o4010000 | 0o40000 | 0o100000 | 0o1000000 | 0o10000000 | 0o200000 | 0o400000
        | 0o20000
    /// SS_ONSTACK, SS_DISABLE and SS_AUTODISARM.
    private static let alternateStackFlags: UInt32 = 1 | 2 | 1 << 31
    /// The kernel's siginfo_t is always 128 bytes.
    private static let siginfoSize = 128
    /// The SA_* flags the kernel keeps for a signal action (it clears unknown ones):
    /// SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_UNSUPPORTED, SA_EXPOSE_TAGBITS,
    /// SA_X32_ABI, SA_IA32_ABI, SA_RESTORER, SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND.
    private static let actionFlags: UInt64 =
        0x1 | 0x2 | 0x4 | 0x400 | 0x800 | 0x0100_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000
        | 0x4000_0000 | 0x8000_0000
    /// Signals below SIGRTMIN (32) are pending at most once per queue; real-time ones queue up.
    private static let realTimeSignals: ClosedRange<UInt32> = 32...64
    /// sizeof(struct robust_list_head): set_robust_list takes no other length.
    private static let robustListHeadSize: UInt64 = 24
    /// PATH_MAX counts the terminating NUL.
    private static let pathLimit = 4095
    /// The whole vsyscall page on x86_64: the kernel's fixed address, never elsewhere.
    private static let vsyscallArea: (start: UInt64, end: UInt64) = (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000)
    /// Areas the kernel makes, once per address space.
    private static let kernelAreaKinds: Set<Amber_AreaKind> = [.areaVdso, .areaVvar, .areaVvarVclock, .areaVsyscall]
    /// fs.nr_open cannot exceed this, so no fd number can either.
    private static let fdLimit: Int32 = 1 << 20
    /// RLIM_NLIMITS on Linux.
    private static let resourceCount: UInt32 = 16
    /// BPF_MAXINSNS: the longest seccomp program; a struct sock_filter instruction is 8 bytes.
    private static let seccompProgramLimit = 4096, seccompInstructionSize = 8
    /// MAX_INSNS_PER_PATH: the kernel's limit on a thread's whole chain, 4 more counted per older filter.
    private static let seccompChainLimit = 32768
    /// SECCOMP_FILTER_FLAG_LOG, the one flag a filter is recorded with.
    private static let seccompFilterFlags: UInt64 = 2

    /// SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU.
    private static let stopSignals: ClosedRange<UInt32> = 19...22

    func validate(_ task: Amber_Task) throws(ImageError) {
        try validateIdentity(task)
        try validateNamespacePIDs(task.namespacePids, of: task.pid, field: "namespace_pids")
        guard task.namespacePgids.count == task.namespacePids.count || task.namespacePgids.isEmpty,
            task.namespacePgids.allSatisfy({ $0 == 0 || ImageFormat.pidRange.contains($0) })
        else {
            throw invalid(
                "namespace_pgids", "\(task.namespacePgids) is not a group ID (or 0) at each level of namespace_pids")
        }
        guard task.stopSignal == 0 || Self.stopSignals.contains(task.stopSignal) else {
            throw invalid(
                "stop_signal",
                "\(task.stopSignal) is not a signal that stops a process (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU)")
        }
        guard task.exitSignal <= 64 else {
            throw invalid("exit_signal", "\(task.exitSignal) is not a signal")
        }
        guard task.stopSignal != 0 || !task.stopReported else {
            throw invalid("stop_reported", "set on a process that is not stopped")
        }
        if task.zombie {
            // A zombie keeps nothing but its identity and exit status.
            guard task.threads.isEmpty, !task.hasMemory, task.files.descriptors.isEmpty, !task.hasSeccomp,
                task.stopSignal == 0
            else {
                throw invalid("zombie", "a zombie cannot have threads, memory, files, seccomp or a stop")
            }
            guard task.exitStatus <= 0xffff, task.exitStatus & 0x7f != 0x7f else {
                throw invalid(
                    "exit_status", "\(hex(UInt64(task.exitStatus))) is not a wait status of a process that ended")
            }
            return
        }
        try validateThreads(task)
        try validateMemory(task.memory)
        try validateSignals(task.signals)
        try validateFiles(task.files)
        if task.hasEnvironment { try validateEnvironment(task.environment) }
        try validateProcessFlags(task.processFlags)
        try validateTimers(task.timers)
        try validateSeccomp(task)
        if task.hasShellJob { try validateShellJob(task.shellJob) }
        if task.hasNetworkNamespace { try validateNetworkNamespace(task.networkNamespace) }
        if task.hasMountNamespace { try validateMountNamespace(task.mountNamespace) }
        if task.hasUtsNamespace { try validateUTSNamespace(task.utsNamespace) }
        if task.hasIpcNamespace { try validateIPCNamespace(task.ipcNamespace) }
        if task.hasCgroupTree { try validateCgroupTree(task.cgroupTree) }
        try validateCgroupMemberships(task.cgroups)
    }

    func invalid(_ field: String, _ problem: String) -> ImageError {
        ImageError(.invalid, file: file, detail: "\(field): \(problem)")
    }

    private func validateIdentity(_ task: Amber_Task) throws(ImageError) {
        guard ImageFormat.pidRange.contains(task.pid) else {
            throw invalid("pid", "\(task.pid) is not in \(ImageFormat.pidRange)")
        }
        guard task.pid == pid else {
            throw invalid("pid", "\(task.pid) does not match the file name")
        }
        // 0: a parent, group or session outside the task's PID namespace.
        for (field, value) in [("ppid", task.ppid), ("pgid", task.pgid), ("sid", task.sid)]
        where value != 0 && !ImageFormat.pidRange.contains(value) {
            throw invalid(field, "\(value) is neither 0 nor in \(ImageFormat.pidRange)")
        }
        // TASK_COMM_LEN is 16 bytes with the terminating NUL.
        guard task.comm.utf8.count <= 15, !task.comm.utf8.contains(0) else {
            throw invalid("comm", "\"\(task.comm)\" is longer than 15 bytes or contains NUL")
        }
    }

    /// Every thread alike, the leader first: it has the process's PID, name and namespace PIDs.
    private func validateThreads(_ task: Amber_Task) throws(ImageError) {
        guard let leader = task.threads.first else {
            throw invalid("threads", "empty; a process that has not exited has at least its leader")
        }
        guard leader.tid == task.pid else {
            throw invalid(
                "threads[0].tid", "\(leader.tid) is not the process's PID \(task.pid): the leader comes first")
        }
        guard leader.comm == task.comm else {
            throw invalid("threads[0].comm", "\"\(leader.comm)\" is not the process's name \"\(task.comm)\"")
        }
        guard leader.namespaceTids == task.namespacePids else {
            throw invalid(
                "threads[0].namespace_tids",
                "\(leader.namespaceTids) is not the process's namespace_pids \(task.namespacePids)")
        }
        var tids: Set<Int32> = []
        for (index, thread) in task.threads.enumerated() {
            let field = "threads[\(index)]"
            guard ImageFormat.pidRange.contains(thread.tid), tids.insert(thread.tid).inserted else {
                throw invalid("\(field).tid", "\(thread.tid) is not in \(ImageFormat.pidRange) or is used twice")
            }
            guard thread.comm.utf8.count <= 15, !thread.comm.utf8.contains(0) else {
                throw invalid("\(field).comm", "\"\(thread.comm)\" is longer than 15 bytes or contains NUL")
            }
            try validateRegisters(thread.hasRegisters ? thread.registers : nil, field: "\(field).registers")
            try validatePending(thread.pending, field: "\(field).pending")
            try validateAlternateStack(thread.alternateStack, field: "\(field).alternate_stack")
            try validateThreadControl(thread.threadControl, field: "\(field).thread_control")
            try validateScheduling(thread.scheduling, field: "\(field).scheduling")
            try validateThreadFlags(thread.threadFlags, field: "\(field).thread_flags")
            if thread.hasCredentials { try validateCredentials(thread.credentials, field: "\(field).credentials") }
            try validateNamespacePIDs(thread.namespaceTids, of: thread.tid, field: "\(field).namespace_tids")
            guard thread.namespaceTids.count == task.namespacePids.count else {
                throw invalid(
                    "\(field).namespace_tids",
                    "has \(thread.namespaceTids.count) levels, the process \(task.namespacePids.count)")
            }
        }
    }

    /// NSpid: empty, or the task's PID at 2 to 32 levels (MAX_PID_NS_LEVEL), the outermost being its PID.
    private func validateNamespacePIDs(_ pids: [Int32], of pid: Int32, field: String) throws(ImageError) {
        guard !pids.isEmpty else { return }
        guard (2...32).contains(pids.count), pids.first == pid, pids.allSatisfy({ ImageFormat.pidRange.contains($0) })
        else {
            throw invalid(field, "\(pids) is not 2 to 32 PIDs in \(ImageFormat.pidRange) starting with \(pid)")
        }
    }

    private func validateRegisters(_ registers: Amber_Registers?, field: String) throws(ImageError) {
        guard let registers else { throw invalid(field, "missing") }
        for (name, value) in [("fs_base", registers.fsBase), ("gs_base", registers.gsBase)]
        where value >= ImageFormat.userAddressLimit {
            throw invalid(
                "\(field).\(name)",
                "\(hex(value)) is not below the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
        let xstate = registers.xstate
        guard !xstate.isEmpty else { return }
        guard ImageFormat.xstateSizes.contains(UInt32(clamping: xstate.count)), xstate.count == Int(xstateSize) else {
            throw invalid(
                "\(field).xstate",
                "\(xstate.count) bytes; expected \(ImageFormat.xstateSizes) bytes and equal to the inventory's xstate_size \(xstateSize)"
            )
        }
        // The XSAVE header after the 512-byte legacy area: xstate_bv, then xcomp_bv, which
        // is 0 in the standard format that ptrace uses; the kernel refuses other headers.
        let (features, compaction) = xstate.withUnsafeBytes {
            (
                $0.loadUnaligned(fromByteOffset: 512, as: UInt64.self),
                $0.loadUnaligned(fromByteOffset: 520, as: UInt64.self)
            )
        }
        guard features & ~xstateFeatures == 0 else {
            throw invalid(
                "\(field).xstate",
                "its header names features \(hex(features)) outside the inventory's xstate_features \(hex(xstateFeatures))"
            )
        }
        guard compaction == 0 else {
            throw invalid("\(field).xstate", "its header's xcomp_bv is \(hex(compaction)), not 0 (the standard format)")
        }
    }

    private func validateMemory(_ memory: Amber_Memory) throws(ImageError) {
        let pageSize = ImageFormat.pageSize
        var pageFiles: [(name: String, size: UInt64)] = []
        try validatePageFileDepths(memory)
        for (index, name) in memory.pageFiles.enumerated() {
            let field = "memory.page_files[\(index)]"
            let depth = memory.pageFileDepth.isEmpty ? 0 : Int(memory.pageFileDepth[index])
            guard let size = (depth == 0 ? files : ancestorFiles[depth - 1])[name]?.size else {
                throw invalid(
                    field,
                    "\(name) is not listed in the inventory\(depth == 0 ? "" : " of the image \(depth) up the chain")")
            }
            guard size % pageSize == 0 else {
                throw invalid(field, "\(name) has \(size) bytes, not a whole number of pages")
            }
            pageFiles.append((name, size))
        }
        var previousEnd: UInt64 = 0
        var kernelAreas: Set<Amber_AreaKind> = []
        for (index, area) in memory.areas.enumerated() {
            let field = "memory.areas[\(index)]"
            if case .UNRECOGNIZED(let kind) = area.kind {
                throw invalid("\(field).kind", "\(kind) is not a known area kind")
            }
            guard area.start < area.end else {
                throw invalid(field, "ends at \(hex(area.end)), not after its start \(hex(area.start))")
            }
            guard area.start % pageSize == 0, area.end % pageSize == 0 else {
                throw invalid(field, "\(hex(area.start))-\(hex(area.end)) is not page-aligned")
            }
            if area.kind == .areaVsyscall {
                guard area.start == Self.vsyscallArea.start, area.end == Self.vsyscallArea.end else {
                    throw invalid(
                        field,
                        "a vsyscall area is \(hex(Self.vsyscallArea.start))-\(hex(Self.vsyscallArea.end)), not \(hex(area.start))-\(hex(area.end))"
                    )
                }
            } else {
                guard area.end <= ImageFormat.userAddressLimit else {
                    throw invalid(
                        "\(field).end",
                        "\(hex(area.end)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
                }
            }
            if Self.kernelAreaKinds.contains(area.kind) {
                guard kernelAreas.insert(area.kind).inserted else {
                    throw invalid("\(field).kind", "a second \(area.kind) area; the kernel makes one")
                }
            }
            guard index == 0 || area.start >= previousEnd else {
                throw invalid(
                    field, "starts at \(hex(area.start)), before memory.areas[\(index - 1)] ends at \(hex(previousEnd))"
                )
            }
            previousEnd = area.end
            guard area.protection & ~7 == 0 else {
                throw invalid(
                    "\(field).protection", "\(area.protection) has bits other than PROT_READ, PROT_WRITE and PROT_EXEC")
            }
            if area.kind == .areaFile {
                try validatePath(area.path, field: "\(field).path")
                // mmap's offset: page-aligned, and the mapped range inside the largest file size (MAX_LFS_FILESIZE).
                guard area.fileOffset % pageSize == 0, area.fileOffset <= UInt64(Int64.max) - (area.end - area.start)
                else {
                    throw invalid(
                        "\(field).file_offset",
                        "\(hex(area.fileOffset)) is not a page-aligned offset that a file can have for \(area.end - area.start) bytes"
                    )
                }
            }
            try validateAreaFlags(area, field: field)
            try validatePageRuns(of: area, field: field, pageFiles: pageFiles)
            try validateSharedAnonymousArea(area, field: field, objects: memory.sharedAnonymous)
            try validateMappedUnnamedArea(area, field: field, memory: memory)
        }
        try validateSharedAnonymousObjects(memory)
        try validateMappedUnnamedFiles(memory)
        if memory.lockFutureOnFault && !memory.lockFuture {
            throw invalid("memory.lock_future_on_fault", "is set without lock_future (MCL_ONFAULT needs MCL_FUTURE)")
        }
        try validateMm(memory.mm)
    }

    /// An area of shared anonymous memory names an object of the process's, at an offset mmap
    /// takes; no other area names one.
    private func validateSharedAnonymousArea(
        _ area: Amber_MemoryArea, field: String, objects: [Amber_SharedAnonymousMemory]
    ) throws(ImageError) {
        let sharedAnonymous = area.kind == .areaAnonymous && area.shared
        guard sharedAnonymous == (area.sharedAnonymousID != 0) else {
            throw invalid(
                "\(field).shared_anonymous_id",
                sharedAnonymous
                    ? "is 0: a shared anonymous area maps an object of memory.shared_anonymous"
                    : "\(area.sharedAnonymousID) on an area that is not shared anonymous memory")
        }
        guard sharedAnonymous else { return }
        guard objects.contains(where: { $0.id == area.sharedAnonymousID }) else {
            throw invalid("\(field).shared_anonymous_id", "\(area.sharedAnonymousID) is not in memory.shared_anonymous")
        }
        guard area.fileOffset % ImageFormat.pageSize == 0, area.fileOffset <= ImageFormat.userAddressLimit else {
            throw invalid(
                "\(field).file_offset",
                "\(hex(area.fileOffset)) is not a page-aligned offset below \(hex(ImageFormat.userAddressLimit))")
        }
    }

    /// An area of a memfd or deleted file is a file area naming one file the process describes.
    private func validateMappedUnnamedArea(_ area: Amber_MemoryArea, field: String, memory: Amber_Memory)
        throws(ImageError)
    {
        guard area.memfdID != 0 || area.deletedFileID != 0 else { return }
        guard area.kind == .areaFile, area.memfdID == 0 || area.deletedFileID == 0 else {
            throw invalid(field, "names a memfd or deleted file but is not a file area of one file")
        }
        if area.memfdID != 0, !memory.memfds.contains(where: { $0.memfdID == area.memfdID }) {
            throw invalid("\(field).memfd_id", "\(area.memfdID) is not in memory.memfds")
        }
        if area.deletedFileID != 0, !memory.deletedFiles.contains(where: { $0.fileID == area.deletedFileID }) {
            throw invalid("\(field).deleted_file_id", "\(area.deletedFileID) is not in memory.deleted_files")
        }
    }

    /// Each mapped memfd and deleted file: valid as an open one's record, its id once, mapped
    /// by an area of the process.
    private func validateMappedUnnamedFiles(_ memory: Amber_Memory) throws(ImageError) {
        var memfds: Set<UInt64> = []
        for (index, memfd) in memory.memfds.enumerated() {
            let field = "memory.memfds[\(index)]"
            try validateMemfd(memfd, field: field)
            guard memfds.insert(memfd.memfdID).inserted, memory.areas.contains(where: { $0.memfdID == memfd.memfdID })
            else {
                throw invalid("\(field).memfd_id", "\(memfd.memfdID) is a second memfd's or mapped by no area")
            }
        }
        var deletedFiles: Set<UInt64> = []
        for (index, file) in memory.deletedFiles.enumerated() {
            let field = "memory.deleted_files[\(index)]"
            try validateDeletedFile(file, field: field)
            guard deletedFiles.insert(file.fileID).inserted,
                memory.areas.contains(where: { $0.deletedFileID == file.fileID })
            else {
                throw invalid("\(field).file_id", "\(file.fileID) is a second file's or mapped by no area")
            }
        }
    }

    /// Each object of shared anonymous memory: its id once, a size of whole pages no larger than
    /// an address space, its own page file, and its pages inside it and inside that file, ascending.
    private func validateSharedAnonymousObjects(_ memory: Amber_Memory) throws(ImageError) {
        let pageSize = ImageFormat.pageSize
        var ids: Set<UInt64> = []
        for (index, object) in memory.sharedAnonymous.enumerated() {
            let field = "memory.shared_anonymous[\(index)]"
            guard object.id != 0, ids.insert(object.id).inserted else {
                throw invalid("\(field).id", "\(object.id) is 0 or a second object's")
            }
            guard memory.areas.contains(where: { $0.sharedAnonymousID == object.id }) else {
                throw invalid("\(field).id", "\(object.id) is mapped by no area of the process")
            }
            guard object.size > 0, object.size % pageSize == 0, object.size <= ImageFormat.userAddressLimit else {
                throw invalid(
                    "\(field).size",
                    "\(object.size) is not a whole number of pages up to \(hex(ImageFormat.userAddressLimit))")
            }
            let expectedName = ImageFormat.sharedAnonymousFileName(id: object.id)
            guard object.pageFile == expectedName, let fileSize = files[object.pageFile]?.size else {
                throw invalid(
                    "\(field).page_file", "\"\(object.pageFile)\" is not \(expectedName) listed in the inventory")
            }
            var previousEnd: UInt64 = 0
            for (runIndex, run) in object.pages.enumerated() {
                let runField = "\(field).pages[\(runIndex)]"
                guard run.count >= 1, run.file == 0 else {
                    throw invalid(runField, "has no pages, or a file other than 0")
                }
                guard run.address % pageSize == 0, run.address >= previousEnd, run.address < object.size,
                    run.count <= (object.size - run.address) / pageSize
                else {
                    throw invalid(
                        "\(runField).address",
                        "\(run.count) pages at \(hex(run.address)) are not page-aligned, ascending and inside the object's \(object.size) bytes"
                    )
                }
                previousEnd = run.address + run.count * pageSize
                guard run.offset % pageSize == 0, run.offset <= fileSize,
                    run.count <= (fileSize - run.offset) / pageSize
                else {
                    throw invalid(
                        "\(runField).offset",
                        "\(run.count) pages at offset \(run.offset) are not inside \(object.pageFile)'s \(fileSize) bytes"
                    )
                }
            }
        }
    }

    /// The flag pairs the kernel keeps exclusive, and flags only some kinds of area can have.
    private func validateAreaFlags(_ area: Amber_MemoryArea, field: String) throws(ImageError) {
        if area.sequentialRead && area.randomRead {
            throw invalid("\(field).random_read", "is set with sequential_read: an area has one access pattern")
        }
        if area.hugePage && area.noHugePage {
            throw invalid("\(field).no_huge_page", "is set with huge_page")
        }
        if area.lockOnFault && !area.locked {
            throw invalid("\(field).lock_on_fault", "is set on an area that is not locked")
        }
        let privateAnonymous =
            !area.shared && (area.kind == .areaAnonymous || area.kind == .areaHeap || area.kind == .areaStack)
        if area.droppable && !privateAnonymous {
            throw invalid(
                "\(field).droppable",
                "is set on a \(area.shared ? "shared " : "")\(area.kind) area: only private anonymous memory is droppable"
            )
        }
        if !area.anonymousName.isEmpty {
            guard privateAnonymous, area.anonymousName.utf8.count <= 80,
                area.anonymousName.utf8.allSatisfy({ (0x20...0x7e).contains($0) && !"[]\\$`".utf8.contains($0) })
            else {
                throw invalid(
                    "\(field).anonymous_name",
                    "\"\(area.anonymousName)\" is not a name PR_SET_VMA_ANON_NAME gives a private anonymous area (at most 80 printable bytes but [ ] \\ $ `)"
                )
            }
        }
        if area.wipeOnFork && !privateAnonymous {
            throw invalid(
                "\(field).wipe_on_fork",
                "is set on a \(area.shared ? "shared " : "")\(area.kind) area: only private anonymous memory is wiped on fork"
            )
        }
    }

    func validatePageRuns(of area: Amber_MemoryArea, field: String, pageFiles: [(name: String, size: UInt64)])
        throws(ImageError)
    {
        guard !area.pages.isEmpty else { return }
        let pageSize = ImageFormat.pageSize
        // Kernel areas are recreated by the kernel, and shared file pages live in the file itself.
        switch area.kind {
        // Shared anonymous pages are their object's (Memory.shared_anonymous).
        case .areaAnonymous where !area.shared, .areaHeap, .areaStack: break
        case .areaFile where !area.shared: break
        default:
            throw invalid(
                "\(field).pages", "a \(area.shared ? "shared " : "")\(area.kind) area cannot have saved pages")
        }
        guard !pageFiles.isEmpty else {
            throw invalid("\(field).pages", "page runs need memory.page_files")
        }
        var previousEnd = area.start
        for (index, run) in area.pages.enumerated() {
            let runField = "\(field).pages[\(index)]"
            guard run.count >= 1 else { throw invalid("\(runField).count", "is 0") }
            guard run.address % pageSize == 0, run.address >= area.start, run.address < area.end else {
                throw invalid(
                    "\(runField).address",
                    "\(hex(run.address)) is not a page address inside the area \(hex(area.start))-\(hex(area.end))")
            }
            guard run.count <= (area.end - run.address) / pageSize else {
                throw invalid(
                    "\(runField).count",
                    "\(run.count) pages from \(hex(run.address)) go past the area end \(hex(area.end))")
            }
            guard run.address >= previousEnd else {
                throw invalid(
                    "\(runField).address",
                    "\(hex(run.address)) is before the end \(hex(previousEnd)) of the previous run")
            }
            previousEnd = run.address + run.count * pageSize
            guard run.offset % pageSize == 0 else {
                throw invalid("\(runField).offset", "\(run.offset) is not page-aligned")
            }
            guard run.file < pageFiles.count else {
                throw invalid(
                    "\(runField).file", "\(run.file) is not an index into memory.page_files (\(pageFiles.count) files)")
            }
            let file = pageFiles[Int(run.file)]
            guard run.offset <= file.size, run.count <= (file.size - run.offset) / pageSize else {
                throw invalid(
                    "\(runField).offset",
                    "\(run.count) pages at offset \(run.offset) go past the end of the \(file.size)-byte page file \(file.name)"
                )
            }
        }
    }

    private func validateMm(_ mm: Amber_MmFields) throws(ImageError) {
        let addresses: [(String, UInt64)] = [
            ("start_code", mm.startCode), ("end_code", mm.endCode), ("start_data", mm.startData),
            ("end_data", mm.endData),
            ("start_brk", mm.startBrk), ("brk", mm.brk), ("start_stack", mm.startStack), ("arg_start", mm.argStart),
            ("arg_end", mm.argEnd), ("env_start", mm.envStart), ("env_end", mm.envEnd),
        ]
        for (name, address) in addresses where address > ImageFormat.userAddressLimit {
            throw invalid(
                "memory.mm.\(name)",
                "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
        let ranges: [(String, UInt64, String, UInt64)] = [
            ("start_code", mm.startCode, "end_code", mm.endCode), ("start_data", mm.startData, "end_data", mm.endData),
            ("start_brk", mm.startBrk, "brk", mm.brk), ("arg_start", mm.argStart, "arg_end", mm.argEnd),
            ("env_start", mm.envStart, "env_end", mm.envEnd),
        ]
        for (startName, start, endName, end) in ranges where start > end {
            throw invalid("memory.mm.\(endName)", "\(hex(end)) is below \(startName) \(hex(start))")
        }
        // PR_SET_MM_MAP takes at most AT_VECTOR_SIZE words of auxv (well under 1024 bytes).
        guard mm.auxv.count % 16 == 0, mm.auxv.count <= 1024 else {
            throw invalid("memory.mm.auxv", "\(mm.auxv.count) bytes; expected whole 16-byte pairs, at most 1024 bytes")
        }
        if !mm.auxv.isEmpty {
            let lastType = mm.auxv.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: $0.count - 16, as: UInt64.self) }
            guard lastType == 0 else {
                throw invalid("memory.mm.auxv", "its last pair has type \(lastType), not AT_NULL (0)")
            }
        }
        if !mm.exePath.isEmpty {
            try validatePath(mm.exePath, field: "memory.mm.exe_path")
        }
    }

    private func validateSignals(_ signals: Amber_Signals) throws(ImageError) {
        var seen: Set<UInt32> = []
        for (index, action) in signals.actions.enumerated() {
            let field = "signals.actions[\(index)].signal"
            guard (1...64).contains(action.signal), !Self.unblockableSignals.contains(action.signal) else {
                throw invalid(field, "\(action.signal) is not a signal whose action can be set")
            }
            guard seen.insert(action.signal).inserted else {
                throw invalid(field, "\(action.signal) has more than one action")
            }
            let actionField = "signals.actions[\(index)]"
            for (name, address) in [("handler", action.handler), ("restorer", action.restorer)]
            where address > ImageFormat.userAddressLimit {
                throw invalid(
                    "\(actionField).\(name)",
                    "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
            }
            guard action.flags & ~Self.actionFlags == 0 else {
                throw invalid("\(actionField).flags", "\(hex(action.flags)) has bits that are no SA_* flag")
            }
        }
        try validatePending(signals.pending, field: "signals.pending")
    }

    /// One queue: the process's or a thread's.
    private func validatePending(_ pending: [Amber_PendingSignal], field list: String) throws(ImageError) {
        var pendingOnce: Set<UInt32> = []
        for (index, pending) in pending.enumerated() {
            let field = "\(list)[\(index)]"
            guard (1...64).contains(pending.signal) else {
                throw invalid("\(field).signal", "\(pending.signal) is not in 1...64")
            }
            guard pending.siginfo.count == Self.siginfoSize else {
                throw invalid("\(field).siginfo", "\(pending.siginfo.count) bytes; expected \(Self.siginfoSize)")
            }
            let number = pending.siginfo.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            guard number == pending.signal else {
                throw invalid("\(field).siginfo", "its si_signo is \(number), not the signal \(pending.signal)")
            }
            guard Self.realTimeSignals.contains(pending.signal) || pendingOnce.insert(pending.signal).inserted else {
                throw invalid(
                    "\(field).signal",
                    "\(pending.signal) is pending twice on one queue; only real-time signals queue up")
            }
        }
    }

    private func validateAlternateStack(_ stack: Amber_SignalStack, field: String) throws(ImageError) {
        let flags = stack.flags
        guard flags & ~Self.alternateStackFlags == 0 else {
            throw invalid(
                "\(field).flags", "\(hex(UInt64(flags))) has bits other than SS_ONSTACK, SS_DISABLE and SS_AUTODISARM")
        }
        if flags & 2 == 0 {
            guard stack.base <= ImageFormat.userAddressLimit, stack.size <= ImageFormat.userAddressLimit - stack.base
            else {
                throw invalid(
                    field,
                    "\(stack.size) bytes at \(hex(stack.base)) go past the user address limit \(hex(ImageFormat.userAddressLimit))"
                )
            }
        }
    }

    private func validateFiles(_ files: Amber_Files) throws(ImageError) {
        var descriptions: Set<UInt32> = []
        for (index, description) in files.descriptions.enumerated() {
            let field = "files.descriptions[\(index)]"
            guard descriptions.insert(description.id).inserted else {
                throw invalid("\(field).id", "\(description.id) is used twice")
            }
            // Each kind's record by its own validator.
            switch description.file {
            case .regularFile(let file): try validateRegularFile(file, field: "\(field).regular_file")
            case .directory(let directory): try validateDirectory(directory, field: "\(field).directory")
            case .characterDevice(let device): try validateCharacterDevice(device, field: "\(field).character_device")
            case .fifo(let fifo): try validateFifo(fifo, flags: description.flags, field: "\(field).fifo")
            case .pipeEnd(let end): try validatePipeEnd(end, flags: description.flags, field: "\(field).pipe_end")
            case .eventFd(let eventFD): try validateEventFD(eventFD, description: description, field: field)
            case .signalFd(let signalFD): try validateSignalFD(signalFD, description: description, field: field)
            case .timerFd(let timerFD): try validateTimerFD(timerFD, description: description, field: field)
            case .externalFile(let external):
                try validateExternalFile(external, flags: description.flags, field: "\(field).external_file")
            case .inetSocket(let socket): try validateInetSocket(socket, description: description, field: field)
            case .netlinkSocket(let socket): try validateNetlinkSocket(socket, description: description, field: field)
            case .unixSocket(let socket): try validateUnixSocket(socket, description: description, field: field)
            case .memfd(let memfd): try validateMemfd(memfd, field: "\(field).memfd")
            case .deletedFile(let file): try validateDeletedFile(file, field: "\(field).deleted_file")
            case .epoll(let epoll): try validateEpoll(epoll, description: description, field: field)
            case .pidfd(let pidfd): try validatePidfd(pidfd, description: description, field: field)
            case .inotify(let inotify): try validateInotify(inotify, description: description, field: field)
            case .tcpConnection(let connection):
                try validateTcpConnection(connection, description: description, field: field)
            case .ptyMaster(let master): try validatePtyMaster(master, description: description, field: field)
            case .ptySlave(let slave): try validatePtySlave(slave, description: description, field: field)
            case .shellJobTerminal(let terminal):
                try validateShellJobTerminal(terminal, flags: description.flags, field: "\(field).shell_job_terminal")
            case nil: throw invalid("\(field).file", "holds no kind of open file this amber knows")
            }
            guard description.offset <= UInt64(Int64.max) else {
                throw invalid("\(field).offset", "\(description.offset) is above the largest file offset \(Int64.max)")
            }
            // PIDFD_THREAD is O_EXCL, which validatePidfd allows a pidfd; O_TMPFILE stays in the
            // flags of the description that made an O_TMPFILE file.
            var allowedFlags = Self.fileFlags
            if case .pidfd = description.file { allowedFlags |= 0o200 }
            if case .deletedFile(let file) = description.file, file.temporary { allowedFlags |= 0o20200000 }
            guard description.flags & ~allowedFlags == 0 else {
                throw invalid(
                    "\(field).flags",
                    "0o\(String(description.flags, radix: 8)) has flags outside 0o\(String(allowedFlags, radix: 8))")
            }
            try validateDescriptionLocks(description.locks, field: "\(field).locks")
        }
        var fds: Set<Int32> = []
        for (index, descriptor) in files.descriptors.enumerated() {
            let field = "files.descriptors[\(index)]"
            guard (0..<Self.fdLimit).contains(descriptor.fd) else {
                throw invalid("\(field).fd", "\(descriptor.fd) is not in 0..<\(Self.fdLimit)")
            }
            guard fds.insert(descriptor.fd).inserted else {
                throw invalid("\(field).fd", "\(descriptor.fd) is used twice")
            }
            guard descriptions.contains(descriptor.descriptionID) else {
                throw invalid(
                    "\(field).description_id", "\(descriptor.descriptionID) names no entry of files.descriptions")
            }
        }
        try validatePOSIXLocks(files.posixLocks, descriptions: descriptions)
    }

    /// Locks of one list: the kernel merges a process's adjacent locks of one type, and each
    /// takes an injected call at restore.
    private static let lockLimit = 4096

    /// A description's flock (at most one, on the whole file) and OFD locks.
    private func validateDescriptionLocks(_ locks: [Amber_FileLock], field: String) throws(ImageError) {
        guard locks.count <= Self.lockLimit else {
            throw invalid(field, "\(locks.count) locks, more than \(Self.lockLimit)")
        }
        for (index, lock) in locks.enumerated() {
            let field = "\(field)[\(index)]"
            switch lock.kind {
            case .flock:
                guard lock.start == 0, lock.length == 0 else {
                    throw invalid(
                        field, "a flock lock is on the whole file, not from \(lock.start) for \(lock.length) bytes")
                }
                guard index == locks.firstIndex(where: { $0.kind == .flock }) else {
                    throw invalid(field, "a second flock lock on one open file")
                }
            case .ofd:
                try validateLockRange(lock, field: field)
            default:
                throw invalid("\(field).kind", "\(lock.kind) is not a lock of an open file description (FLOCK or OFD)")
            }
            guard lock.descriptionID == 0 else {
                throw invalid("\(field).description_id", "only a POSIX lock names a description")
            }
        }
    }

    /// The process's POSIX locks, each through a description of its fd table.
    private func validatePOSIXLocks(_ locks: [Amber_FileLock], descriptions: Set<UInt32>) throws(ImageError) {
        guard locks.count <= Self.lockLimit else {
            throw invalid("files.posix_locks", "\(locks.count) locks, more than \(Self.lockLimit)")
        }
        for (index, lock) in locks.enumerated() {
            let field = "files.posix_locks[\(index)]"
            guard lock.kind == .posix else { throw invalid("\(field).kind", "\(lock.kind) is not POSIX") }
            guard descriptions.contains(lock.descriptionID) else {
                throw invalid("\(field).description_id", "\(lock.descriptionID) names no entry of files.descriptions")
            }
            try validateLockRange(lock, field: field)
        }
    }

    /// A record lock's bytes are within the largest file offset.
    private func validateLockRange(_ lock: Amber_FileLock, field: String) throws(ImageError) {
        let largest = UInt64(Int64.max)
        guard lock.start <= largest else {
            throw invalid("\(field).start", "\(lock.start) is above the largest file offset \(largest)")
        }
        guard lock.length <= largest - lock.start + 1 else {
            throw invalid(
                "\(field).length", "\(lock.length) bytes from \(lock.start) run past the largest file offset \(largest)"
            )
        }
    }

    private func validateRegularFile(_ file: Amber_RegularFile, field: String) throws(ImageError) {
        try validatePath(file.path, field: "\(field).path")
    }

    private func validateDirectory(_ directory: Amber_Directory, field: String) throws(ImageError) {
        try validatePath(directory.path, field: "\(field).path")
    }

    private func validateCharacterDevice(_ device: Amber_CharacterDevice, field: String) throws(ImageError) {
        try validatePath(device.path, field: "\(field).path")
        guard ImageFormat.reopenableDevices[device.path] != nil else {
            throw invalid(
                "\(field).path",
                "\(device.path) is not a device amber reopens (\(ImageFormat.reopenableDevices.keys.sorted().joined(separator: ", ")))"
            )
        }
    }

    /// What a FIFO holds is on a description open for reading, and needs its capacity (0 for
    /// one not known, left as reopening makes it).
    private func validateFifo(_ fifo: Amber_Fifo, flags: UInt32, field: String) throws(ImageError) {
        try validatePath(fifo.path, field: "\(field).path")
        let holds = !fifo.packets.isEmpty || !fifo.data.isEmpty
        guard fifo.capacity != 0 || holds else { return }
        guard !holds || flags & 3 != 1 else {
            throw invalid(
                "\(field).data", "a description open for writing only holds no data: a FIFO's is on a reader's")
        }
        try validatePipeContents(
            capacity: fifo.capacity, packetSizes: fifo.packets.map(\.count), dataSize: fifo.data.count, field: field)
    }

    /// A pipe's capacity is a power of two pages up to `ImageFormat.maximumPipeCapacity`, and
    /// what it holds (on its read end alone) fits in it, each packet at most a page.
    private func validatePipeEnd(_ end: Amber_PipeEnd, flags: UInt32, field: String) throws(ImageError) {
        guard end.pipeID != 0 else { throw invalid("\(field).pipe_id", "is 0") }
        let accessMode = flags & 3
        guard accessMode == (end.writeEnd ? 1 : 0) else {
            throw invalid(
                "\(field).write_end",
                "\(end.writeEnd) disagrees with the access mode \(accessMode) of the description's flags")
        }
        guard !end.writeEnd || (end.packets.isEmpty && end.data.isEmpty) else {
            throw invalid("\(field).data", "a write end holds no data: a pipe's is on its read end")
        }
        try validatePipeContents(
            capacity: end.capacity, packetSizes: end.packets.map(\.count), dataSize: end.data.count, field: field)
    }

    /// An object outside the tree: a name as `--inherit-fd` gives it, on a description open for
    /// reading or writing (the access mode the caller's descriptor must allow).
    private func validateExternalFile(_ external: Amber_ExternalFile, flags: UInt32, field: String)
        throws(ImageError)
    {
        guard ExternalFileName.isValid(external.name) else {
            throw invalid(
                "\(field).name", "\"\(external.name.prefix(64))\" is not a name such as pipe:[INODE] or unix:[INODE]")
        }
        guard flags & 3 != 3 else {
            throw invalid("\(field)", "the description's access mode 3 is none a descriptor has")
        }
    }

    /// A capacity of a power of two pages up to `ImageFormat.maximumPipeCapacity`, and contents
    /// that fit in it, each packet at most a page.
    private func validatePipeContents(capacity: UInt32, packetSizes: [Int], dataSize: Int, field: String)
        throws(ImageError)
    {
        let bytes = UInt64(capacity)
        guard bytes >= ImageFormat.pageSize, bytes <= ImageFormat.maximumPipeCapacity, bytes & (bytes - 1) == 0 else {
            throw invalid(
                "\(field).capacity",
                "\(capacity) is not a power of two from a page to \(ImageFormat.maximumPipeCapacity) bytes")
        }
        var held = UInt64(dataSize)
        for (index, size) in packetSizes.enumerated() {
            guard (1...Int(ImageFormat.pageSize)).contains(size) else {
                throw invalid(
                    "\(field).packets[\(index)]", "\(size) bytes: a packet is 1 to \(ImageFormat.pageSize) bytes")
            }
            held += UInt64(size)
        }
        // Each packet takes a page of the pipe's ring, the plain bytes the pages they fill.
        let pages = UInt64(packetSizes.count) + (UInt64(dataSize) + ImageFormat.pageSize - 1) / ImageFormat.pageSize
        guard held <= bytes, pages <= bytes / ImageFormat.pageSize else {
            throw invalid(
                "\(field).data",
                "\(held) bytes in \(packetSizes.count) packets and plain bytes do not fit the pipe's capacity of \(capacity) bytes"
            )
        }
    }

    /// O_RDWR and O_NONBLOCK: what an eventfd, signalfd or timerfd is made with.
    private static let eventFileFlags: UInt32 = 0o2 | 0o4000
    /// The largest eventfd counter.
    private static let largestEventFDCount: UInt64 = 0xffff_ffff_ffff_fffe
    /// CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME: the clocks a timerfd is made again on.
    private static let timerFDClocks: Set<Int32> = [0, 1, 7]
    /// TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET.
    private static let timerFDSettimeFlags: UInt32 = 1 | 2

    private func validateEventFileFlags(_ description: Amber_OpenFileDescription, field: String) throws(ImageError) {
        guard description.flags & ~Self.eventFileFlags == 0, description.flags & 0o3 == 0o2 else {
            throw invalid(
                "\(field).flags",
                "0o\(String(description.flags, radix: 8)) is not O_RDWR with or without O_NONBLOCK, as an eventfd, signalfd or timerfd is made"
            )
        }
        guard description.offset == 0 else {
            throw invalid("\(field).offset", "\(description.offset): an eventfd, signalfd or timerfd has no offset")
        }
    }

    /// The most bytes a unix socket's queue keeps in an image: more than net.core.wmem_max lets
    /// a peer queue without CAP_NET_ADMIN, by far.
    static let largestUnixSocketQueue = 1 << 28
    static let largestUnixSocketMessages = 65536

    private func validateUnixSocket(_ socket: Amber_UnixSocket, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        let field = "\(field).unix_socket"
        guard description.flags & ~Self.eventFileFlags == 0, description.flags & 0o3 == 0o2, description.offset == 0
        else {
            throw invalid(
                "\(field)",
                "flags 0o\(String(description.flags, radix: 8)) and offset \(description.offset): a socket is O_RDWR, with or without O_NONBLOCK, and has no offset"
            )
        }
        guard socket.inode != 0 else { throw invalid("\(field).inode", "is 0") }
        guard [1, 2, 5].contains(socket.type) else {
            throw invalid("\(field).type", "\(socket.type) is not SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET")
        }
        let pairID = socket.peerInode == 0 ? socket.inode : min(socket.inode, socket.peerInode)
        guard socket.pairID == 0 ? socket.peerInode == 0 : socket.pairID == pairID && socket.peerInode != socket.inode
        else {
            throw invalid(
                "\(field).pair_id",
                "\(socket.pairID) is not the smaller inode of the socket \(socket.inode) and its peer \(socket.peerInode)"
            )
        }
        guard socket.shutdown & ~3 == 0 else {
            throw invalid("\(field).shutdown", "\(socket.shutdown) is not a mask of 1 and 2")
        }
        guard socket.pairID != 0 || socket.messages.isEmpty else {
            throw invalid("\(field).messages", "a socket connected to none holds no messages")
        }
        guard socket.type != 1 || socket.messages.count <= 1, socket.messages.count <= Self.largestUnixSocketMessages
        else { throw invalid("\(field).messages", "\(socket.messages.count) messages are more than its queue holds") }
        let bytes = socket.messages.reduce(0) { $0 + $1.count }
        guard bytes <= Self.largestUnixSocketQueue else {
            throw invalid(
                "\(field).messages", "\(bytes) bytes are more than the \(Self.largestUnixSocketQueue) an image keeps")
        }
        guard socket.sendBuffer <= UInt32(Int32.max), socket.receiveBuffer <= UInt32(Int32.max) else {
            throw invalid("\(field).send_buffer", "a buffer is at most \(Int32.max) bytes")
        }
        guard socket.peekOffset >= -1 else { throw invalid("\(field).peek_offset", "\(socket.peekOffset) is below -1") }
        guard socket.peerCredentials.groups.count <= Self.groupLimit else {
            throw invalid(
                "\(field).peer_credentials.groups",
                "\(socket.peerCredentials.groups.count) groups; at most \(Self.groupLimit) (NGROUPS_MAX)")
        }
        var optionNames: Set<Int32> = []
        for (index, option) in socket.options.enumerated() {
            let field = "\(field).options[\(index)]"
            guard ImageFormat.unixSocketOptions.contains(where: { $0.name == option.name }),
                optionNames.insert(option.name).inserted
            else { throw invalid("\(field).name", "\(option.name) is no option a restore sets, or is set twice") }
            guard option.value.count == ImageFormat.unixSocketOptionSize(option.name) else {
                throw invalid(
                    "\(field).value",
                    "\(option.value.count) bytes, not \(ImageFormat.unixSocketOptionSize(option.name))")
            }
            if option.name == ImageFormat.unixSocketPriority,
                option.value.withUnsafeBytes({ $0.loadUnaligned(as: Int32.self) }) > ImageFormat.unixSocketPriorityLimit
            {
                throw invalid(
                    "\(field).value", "a priority above \(ImageFormat.unixSocketPriorityLimit) needs CAP_NET_ADMIN")
            }
        }
        try validateUnixSocketAddress(socket, field: field)
        let connectionType = socket.type == 1 || socket.type == 5
        if socket.listening {
            guard connectionType, !socket.address.isEmpty, socket.pairID == 0, socket.messages.isEmpty,
                socket.backlog <= UInt32(Int32.max)
            else {
                throw invalid(
                    "\(field).listening",
                    "a listener is a bound stream or seqpacket socket, connected to none, holding no data, with a backlog up to \(Int32.max)"
                )
            }
            guard socket.pendingConnections.count <= Self.largestUnixSocketMessages,
                !socket.pendingConnections.contains(0),
                Set(socket.pendingConnections).count == socket.pendingConnections.count
            else {
                throw invalid(
                    "\(field).pending_connections", "are not distinct inodes, up to \(Self.largestUnixSocketMessages)")
            }
            guard socket.acceptedConnections.count <= Self.largestUnixSocketMessages,
                !socket.acceptedConnections.contains(0),
                Set(socket.acceptedConnections).count == socket.acceptedConnections.count
            else {
                throw invalid(
                    "\(field).accepted_connections", "are not distinct inodes, up to \(Self.largestUnixSocketMessages)")
            }
        } else {
            guard socket.backlog == 0, socket.pendingConnections.isEmpty, socket.acceptedConnections.isEmpty else {
                throw invalid(
                    "\(field).pending_connections", "only a listener has a backlog and connections waiting or accepted")
            }
        }
        if socket.acceptedFrom != 0 {
            guard connectionType, socket.address.isEmpty, socket.peerInode != 0, socket.listenerInode == 0,
                !socket.listening, socket.acceptedFrom != socket.inode, socket.acceptedFrom != socket.peerInode
            else {
                throw invalid(
                    "\(field).accepted_from",
                    "a connection accepted from a listener is an unbound stream or seqpacket socket connected to another, not the listener"
                )
            }
        }
        if socket.listenerInode != 0 {
            guard connectionType, socket.address.isEmpty, socket.pairID == 0, socket.messages.isEmpty,
                socket.listenerInode != socket.inode
            else {
                throw invalid(
                    "\(field).listener_inode",
                    "a socket waiting on a listener is an unbound stream or seqpacket socket, connected to no other, holding no data"
                )
            }
        }
    }

    /// An abstract name, or an absolute path without `.`, `..` or empty components: the path a
    /// restore binds, in the directory it opens as the task.
    private func validateUnixSocketAddress(_ socket: Amber_UnixSocket, field: String) throws(ImageError) {
        guard socket.address.count <= 108 else {
            throw invalid("\(field).address", "\(socket.address.count) bytes are more than sun_path's 108")
        }
        guard let first = socket.address.first, first != 0 else {
            guard socket.fileDirectory.isEmpty else {
                throw invalid("\(field).file_directory", "a socket not bound to a path has no socket file")
            }
            guard socket.fileDevice == 0, socket.fileInode == 0, socket.fileMode == 0, socket.fileUid == 0,
                socket.fileGid == 0
            else { throw invalid("\(field).file_inode", "a socket not bound to a path has no socket file") }
            guard !socket.address.isEmpty || !socket.listening else {
                throw invalid("\(field).listening", "a listener is bound")
            }
            guard socket.address.isEmpty || socket.pairID == 0 else {
                throw invalid("\(field).address", "a bound socket of the image is connected to none")
            }
            return
        }
        let path = String(decoding: socket.address, as: UTF8.self)
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard first == UInt8(ascii: "/"), !socket.address.contains(0), components.count >= 1,
            !components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
            Array(path.utf8) == Array(socket.address)
        else { throw invalid("\(field).address", "\(path) is not an absolute path without ., .. or empty components") }
        guard socket.fileInode != 0, socket.fileMode & ~0o7777 == 0 else {
            throw invalid("\(field).file_mode", "a socket file has an inode and permission bits alone")
        }
        if !socket.fileDirectory.isEmpty {
            let components = socket.fileDirectory.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            guard socket.fileDirectory.hasPrefix("/"), socket.fileDirectory.utf8.count < 4096,
                !socket.fileDirectory.utf8.contains(0),
                socket.fileDirectory == "/" || !components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." })
            else {
                throw invalid(
                    "\(field).file_directory",
                    "\(socket.fileDirectory) is not an absolute path without ., .. or empty components")
            }
        }
        guard socket.pairID == 0 else {
            throw invalid("\(field).address", "a bound socket of the image is connected to none")
        }
    }

    private func validateEventFD(_ eventFD: Amber_EventFD, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        try validateEventFileFlags(description, field: field)
        guard eventFD.count <= Self.largestEventFDCount else {
            throw invalid(
                "\(field).event_fd.count",
                "\(eventFD.count) is above the largest eventfd counter \(Self.largestEventFDCount)")
        }
    }

    private func validateSignalFD(_ signalFD: Amber_SignalFD, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        try validateEventFileFlags(description, field: field)
        // SIGKILL (9) and SIGSTOP (19): signalfd4 drops them, so no dump shows them.
        guard signalFD.mask & (1 << 8 | 1 << 18) == 0 else {
            throw invalid(
                "\(field).signal_fd.mask", "\(hex(signalFD.mask)) has SIGKILL or SIGSTOP, which a signalfd never reads")
        }
    }

    private func validateTimerFD(_ timerFD: Amber_TimerFD, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        try validateEventFileFlags(description, field: field)
        let timerField = "\(field).timer_fd"
        guard Self.timerFDClocks.contains(timerFD.clock) else {
            throw invalid(
                "\(timerField).clock",
                "\(timerFD.clock) is not CLOCK_REALTIME (0), CLOCK_MONOTONIC (1) or CLOCK_BOOTTIME (7)")
        }
        guard timerFD.settimeFlags & ~Self.timerFDSettimeFlags == 0 else {
            throw invalid(
                "\(timerField).settime_flags",
                "\(timerFD.settimeFlags) has bits other than TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET")
        }
        for (name, value) in [
            ("remaining_ns", timerFD.remainingNs), ("interval_ns", timerFD.intervalNs),
            ("realtime_expiry_ns", timerFD.realtimeExpiryNs),
        ] {
            guard value <= UInt64(Int64.max) else {
                throw invalid("\(timerField).\(name)", "\(value) is above the largest kernel time \(Int64.max) ns")
            }
        }
        let realtimeAbsolute = timerFD.clock == 0 && timerFD.settimeFlags & 1 != 0 && timerFD.remainingNs > 0
        guard realtimeAbsolute == (timerFD.realtimeExpiryNs != 0) else {
            throw invalid(
                "\(timerField).realtime_expiry_ns",
                realtimeAbsolute
                    ? "is 0 for an armed absolute CLOCK_REALTIME timer"
                    : "is set for a timer that is not an armed absolute CLOCK_REALTIME one")
        }
    }

    /// Watches of one epoll instance: each is an injected epoll_ctl at restore.
    private static let epollWatchLimit = 1 << 16
    /// EPOLLIN ... EPOLLRDHUP, EPOLLMSG, EPOLLERR, EPOLLHUP; EPOLLEXCLUSIVE, EPOLLONESHOT, EPOLLET
    /// (EPOLLWAKEUP is refused at dump).
    private static let epollWatchEvents: UInt32 = 0x3fff | 1 << 28 | 1 << 30 | 1 << 31

    private func validateEpoll(_ epoll: Amber_Epoll, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        try validateEventFileFlags(description, field: field)
        guard ImageFormat.pidRange.contains(epoll.watcherPid) else {
            throw invalid("\(field).epoll.watcher_pid", "\(epoll.watcherPid) is not a process ID")
        }
        guard epoll.watches.count <= Self.epollWatchLimit else {
            throw invalid("\(field).epoll.watches", "\(epoll.watches.count) watches, more than \(Self.epollWatchLimit)")
        }
        var fds: Set<Int32> = []
        for (index, watch) in epoll.watches.enumerated() {
            let watchField = "\(field).epoll.watches[\(index)]"
            guard (0..<Self.fdLimit).contains(watch.fd), fds.insert(watch.fd).inserted else {
                throw invalid("\(watchField).fd", "\(watch.fd) is not in 0..<\(Self.fdLimit), or watched twice")
            }
            guard watch.events & ~Self.epollWatchEvents == 0, watch.events & 0x3fff != 0 else {
                throw invalid(
                    "\(watchField).events",
                    "\(hex(UInt64(watch.events))) asks no event, or for what epoll_ctl does not take")
            }
            guard !watch.reported || watch.events & 1 << 31 != 0 else {
                throw invalid("\(watchField).reported", "is set on a watch that is not edge-triggered")
            }
        }
    }

    /// IN_ALL_EVENTS, IN_EXCL_UNLINK, IN_ONESHOT.
    private static let inotifyMasks: UInt32 = 0xfff | 0x0400_0000 | 0x8000_0000

    private func validateInotify(_ inotify: Amber_Inotify, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        guard description.flags & ~0o4000 == 0 else {
            throw invalid(
                "\(field).flags", "0o\(String(description.flags, radix: 8)) is not O_RDONLY with or without O_NONBLOCK")
        }
        guard description.offset == 0 else {
            throw invalid("\(field).offset", "\(description.offset): an inotify instance has no offset")
        }
        guard inotify.watches.count <= Self.epollWatchLimit else {
            throw invalid(
                "\(field).inotify.watches", "\(inotify.watches.count) watches, more than \(Self.epollWatchLimit)")
        }
        var previous: Int32 = 0
        for (index, watch) in inotify.watches.enumerated() {
            let watchField = "\(field).inotify.watches[\(index)]"
            // The wds in between are used up one injected-free call pair each: keep them few.
            guard watch.wd > previous, watch.wd <= previous + Int32(Self.epollWatchLimit) else {
                throw invalid(
                    "\(watchField).wd", "\(watch.wd) does not follow \(previous) by 1 to \(Self.epollWatchLimit)")
            }
            previous = watch.wd
            guard watch.mask & ~Self.inotifyMasks == 0, watch.mask & 0xfff != 0 else {
                throw invalid(
                    "\(watchField).mask", "\(hex(UInt64(watch.mask))) asks no event, or for what amber does not know")
            }
            try validatePath(watch.path, field: "\(watchField).path")
        }
    }

    private func validatePidfd(_ pidfd: Amber_Pidfd, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        guard description.flags & ~(Self.eventFileFlags | 0o200) == 0, description.flags & 0o3 == 0o2 else {
            throw invalid(
                "\(field).flags",
                "0o\(String(description.flags, radix: 8)) is not O_RDWR with or without PIDFD_NONBLOCK and PIDFD_THREAD"
            )
        }
        guard description.offset == 0 else {
            throw invalid("\(field).offset", "\(description.offset): a pidfd has no offset")
        }
        guard ImageFormat.pidRange.contains(pidfd.pid) else {
            throw invalid("\(field).pidfd.pid", "\(pidfd.pid) is not a process ID")
        }
    }

    private func validateEnvironment(_ environment: Amber_Environment) throws(ImageError) {
        try validatePath(environment.cwd, field: "environment.cwd")
        if environment.hasDeletedCwd {
            guard environment.deletedCwd.directoryID != 0 else {
                throw invalid("environment.deleted_cwd.directory_id", "is 0")
            }
            let path = environment.cwd.dropLast(" (deleted)".count)
            guard environment.cwd.hasSuffix(" (deleted)"), let name = path.split(separator: "/").last, name != ".",
                !path.hasSuffix("/")
            else {
                throw invalid(
                    "environment.cwd", "\"\(environment.cwd)\" does not end in a directory's name to make again")
            }
            try validateUnnamedMode(environment.deletedCwd.mode, field: "environment.deleted_cwd.mode")
        }
        guard environment.umask <= 0o777 else {
            throw invalid("environment.umask", "0o\(String(environment.umask, radix: 8)) is above 0o777")
        }
        var resources: Set<UInt32> = []
        for (index, limit) in environment.limits.enumerated() {
            let field = "environment.limits[\(index)]"
            guard limit.resource < Self.resourceCount else {
                throw invalid("\(field).resource", "\(limit.resource) is not an RLIMIT_* number")
            }
            guard resources.insert(limit.resource).inserted else {
                throw invalid("\(field).resource", "\(limit.resource) has more than one limit")
            }
            guard limit.soft <= limit.hard else {
                throw invalid("\(field).soft", "\(limit.soft) is above the hard limit \(limit.hard)")
            }
        }
    }

    private func validateThreadControl(_ control: Amber_ThreadControl, field: String) throws(ImageError) {
        for (name, address) in [
            ("child_tid_address", control.childTidAddress), ("robust_list_head", control.robustListHead),
        ] where address > ImageFormat.userAddressLimit {
            throw invalid(
                "\(field).\(name)",
                "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
        // The kernel walks at most ROBUST_LIST_LIMIT (2048) entries, two addresses each, and the head's.
        guard control.exitAddresses.count <= 2 * 2048 + 4 else {
            throw invalid(
                "\(field).exit_addresses", "\(control.exitAddresses.count) addresses; at most \(2 * 2048 + 4)")
        }
        if let address = control.exitAddresses.first(where: { $0 > ImageFormat.userAddressLimit }) {
            throw invalid(
                "\(field).exit_addresses",
                "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
        guard control.robustListHead == 0 || control.robustListLength == Self.robustListHeadSize else {
            throw invalid(
                "\(field).robust_list_length",
                "\(control.robustListLength); set_robust_list takes only \(Self.robustListHeadSize)")
        }
        // The kernel accepts an rseq area of at least 32 bytes, aligned to 32.
        guard control.rseqSize == 0 || ((32...4096).contains(control.rseqSize) && control.rseqAddress % 32 == 0) else {
            throw invalid(
                "\(field).rseq_size",
                "\(control.rseqSize) bytes at \(hex(control.rseqAddress)); expected 0, or 32 to 4096 bytes at a 32-byte-aligned address"
            )
        }
        guard control.rseqSize == 0 || control.rseqAddress <= ImageFormat.userAddressLimit - UInt64(control.rseqSize)
        else {
            throw invalid(
                "\(field).rseq_address",
                "\(control.rseqSize) bytes at \(hex(control.rseqAddress)) go past the user address limit \(hex(ImageFormat.userAddressLimit))"
            )
        }
    }

    /// SCHED_OTHER, FIFO, RR, BATCH and IDLE.
    private static let policies: Set<UInt32> = [0, 1, 2, 3, 5]

    private func validateScheduling(_ scheduling: Amber_Scheduling, field: String) throws(ImageError) {
        guard Self.policies.contains(scheduling.policy) else {
            throw invalid("\(field).policy", "\(scheduling.policy) is not SCHED_OTHER, FIFO, RR, BATCH or IDLE")
        }
        let realtime = scheduling.policy == 1 || scheduling.policy == 2
        guard realtime ? (1...99).contains(scheduling.rtPriority) : scheduling.rtPriority == 0 else {
            throw invalid(
                "\(field).rt_priority", "\(scheduling.rtPriority) is not a priority of policy \(scheduling.policy)")
        }
        guard (-20...19).contains(scheduling.nice) else {
            throw invalid("\(field).nice", "\(scheduling.nice) is not in -20...19")
        }
        // The kernel's CPU masks stop at 8192 CPUs.
        guard scheduling.affinity.count <= 128 else {
            throw invalid("\(field).affinity", "\(scheduling.affinity.count) words; at most 128")
        }
        // Classes none, RT, BE and idle; levels 0 to 7.
        guard scheduling.ioPriority >> 13 <= 3, scheduling.ioPriority & 0x1fff < 8 else {
            throw invalid("\(field).io_priority", "\(hex(UInt64(scheduling.ioPriority))) is not an I/O class and level")
        }
    }

    private func validateThreadFlags(_ flags: Amber_ThreadFlags, field: String) throws(ImageError) {
        guard flags.parentDeathSignal <= 64 else {
            throw invalid("\(field).parent_death_signal", "\(flags.parentDeathSignal) is not a signal")
        }
        guard flags.machineCheckKill <= 2 else {
            throw invalid(
                "\(field).machine_check_kill", "\(flags.machineCheckKill) is not late (0), early (1) or default (2)")
        }
    }

    /// NGROUPS_MAX.
    private static let groupLimit = 65536
    /// SECBIT_NOROOT to SECBIT_EXEC_DENY_INTERACTIVE_LOCKED: the bits PR_SET_SECUREBITS takes.
    private static let securebits: UInt32 = 0xfff

    /// The kernel's own invariants: (uid_t)-1 means "unchanged" to setresuid and is no ID;
    /// effective within permitted; ambient within permitted and inheritable.
    private func validateCredentials(_ credentials: Amber_Credentials, field: String) throws(ImageError) {
        let ids = [
            ("uid", credentials.uid), ("euid", credentials.euid), ("suid", credentials.suid),
            ("fsuid", credentials.fsuid),
            ("gid", credentials.gid), ("egid", credentials.egid), ("sgid", credentials.sgid),
            ("fsgid", credentials.fsgid),
        ]
        for (name, id) in ids where id == UInt32.max {
            throw invalid("\(field).\(name)", "\(id) is (uid_t)-1, not an ID")
        }
        guard credentials.groups.count <= Self.groupLimit else {
            throw invalid(
                "\(field).groups", "\(credentials.groups.count) groups; at most \(Self.groupLimit) (NGROUPS_MAX)")
        }
        if let index = credentials.groups.firstIndex(of: UInt32.max) {
            throw invalid("\(field).groups[\(index)]", "\(UInt32.max) is (gid_t)-1, not a group")
        }
        guard credentials.capEffective & ~credentials.capPermitted == 0 else {
            throw invalid(
                "\(field).cap_effective",
                "\(hex(credentials.capEffective)) is not within cap_permitted \(hex(credentials.capPermitted))")
        }
        guard credentials.capAmbient & ~(credentials.capPermitted & credentials.capInheritable) == 0 else {
            throw invalid(
                "\(field).cap_ambient",
                "\(hex(credentials.capAmbient)) is not within both cap_permitted and cap_inheritable")
        }
        guard credentials.securebits & ~Self.securebits == 0 else {
            throw invalid(
                "\(field).securebits",
                "\(hex(UInt64(credentials.securebits))) has bits beyond \(hex(UInt64(Self.securebits)))")
        }
    }

    private func validateProcessFlags(_ flags: Amber_ProcessFlags) throws(ImageError) {
        guard flags.dumpable <= 1 else { throw invalid("process_flags.dumpable", "\(flags.dumpable) is not 0 or 1") }
        guard [0, 1, 3].contains(flags.thpDisable) else {
            throw invalid("process_flags.thp_disable", "\(flags.thpDisable) is not 0, 1 or 3")
        }
        guard (-1000...1000).contains(flags.oomScoreAdj) else {
            throw invalid("process_flags.oom_score_adj", "\(flags.oomScoreAdj) is not in -1000...1000")
        }
        guard [0, 1, 3].contains(flags.memoryDenyWriteExecute) else {
            throw invalid("process_flags.memory_deny_write_execute", "\(flags.memoryDenyWriteExecute) is not 0, 1 or 3")
        }
        guard flags.coredumpFilter < 1 << 9 else {
            throw invalid(
                "process_flags.coredump_filter",
                "0x\(String(flags.coredumpFilter, radix: 16)) has bits above the nine kinds of memory")
        }
        guard
            flags.futexHashSlots == 0
                || (flags.futexHashSlots <= 1 << 20 && flags.futexHashSlots & (flags.futexHashSlots - 1) == 0)
        else {
            throw invalid(
                "process_flags.futex_hash_slots", "\(flags.futexHashSlots) is not 0 or a power of two up to 2^20")
        }
    }

    private func validateTimers(_ timers: Amber_Timers) throws(ImageError) {
        let second: UInt64 = 1_000_000_000
        // Far enough for any timer and small enough that its seconds fit a time_t.
        let longest = UInt64(Int64.max / 2)
        var kinds: Set<UInt32> = []
        for (index, timer) in timers.intervalTimers.enumerated() {
            let field = "timers.interval_timers[\(index)]"
            guard timer.which <= 2, kinds.insert(timer.which).inserted else {
                throw invalid("\(field).which", "\(timer.which) is not ITIMER_REAL, VIRTUAL or PROF, or is there twice")
            }
            guard timer.remainingNs / second < longest, timer.intervalNs / second < longest else {
                throw invalid(field, "a time is out of range")
            }
        }
        var ids: Set<Int32> = []
        for (index, timer) in timers.posixTimers.enumerated() {
            let field = "timers.posix_timers[\(index)]"
            guard timer.id >= 0, ids.insert(timer.id).inserted else {
                throw invalid("\(field).id", "\(timer.id) is negative or used twice")
            }
            // SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID (with SIGEV_SIGNAL).
            guard [0, 1, 4].contains(timer.notify) else {
                throw invalid("\(field).notify", "\(timer.notify) is not SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD_ID")
            }
            guard timer.notify == 1 ? timer.signal <= 64 : (1...64).contains(timer.signal) else {
                throw invalid("\(field).signal", "\(timer.signal) is not a signal")
            }
            guard timer.notify != 4 || ImageFormat.pidRange.contains(timer.thread) else {
                throw invalid("\(field).thread", "\(timer.thread) is not a thread ID")
            }
            guard timer.remainingNs / second < longest, timer.intervalNs / second < longest else {
                throw invalid(field, "a time is out of range")
            }
        }
    }

    /// Programs 1 to BPF_MAXINSNS instructions with only the LOG flag; every thread's mode known,
    /// its chain (distinct filters, each in the table) non-empty exactly in filter mode and
    /// within the kernel's limit; no filter outside every chain.
    private func validateSeccomp(_ task: Amber_Task) throws(ImageError) {
        let filters = task.seccomp.filters
        for (index, filter) in filters.enumerated() {
            let field = "seccomp.filters[\(index)]"
            let count = filter.program.count / Self.seccompInstructionSize
            guard filter.program.count % Self.seccompInstructionSize == 0,
                (1...Self.seccompProgramLimit).contains(count)
            else {
                throw invalid(
                    "\(field).program",
                    "\(filter.program.count) bytes; a program is 1 to \(Self.seccompProgramLimit) instructions of \(Self.seccompInstructionSize) bytes"
                )
            }
            guard filter.flags & ~Self.seccompFilterFlags == 0 else {
                throw invalid(
                    "\(field).flags", "\(hex(filter.flags)) has flags other than SECCOMP_FILTER_FLAG_LOG (0x2)")
            }
        }
        var referenced: Set<UInt32> = []
        let threads = task.threads.enumerated().map { ("threads[\($0.offset)].seccomp", $0.element.seccomp) }
        for (field, thread) in threads {
            if case .UNRECOGNIZED(let mode) = thread.mode {
                throw invalid("\(field).mode", "\(mode) is not a seccomp mode")
            }
            guard thread.chain.isEmpty == (thread.mode != .filter) else {
                throw invalid(
                    "\(field).chain",
                    "\(thread.chain.count) filters in mode \(thread.mode); a thread has filters exactly in SECCOMP_MODE_FILTER"
                )
            }
            var instructions = 0
            for (position, index) in thread.chain.enumerated() {
                guard index < filters.count,
                    referenced.insert(index).inserted || !thread.chain[..<position].contains(index)
                else {
                    throw invalid(
                        "\(field).chain[\(position)]",
                        "\(index) is not an index of seccomp.filters (\(filters.count)) or is in the chain twice")
                }
                instructions +=
                    filters[Int(index)].program.count / Self.seccompInstructionSize + (position == 0 ? 0 : 4)
            }
            guard instructions <= Self.seccompChainLimit else {
                throw invalid(
                    "\(field).chain",
                    "\(instructions) instructions with the kernel's 4 per filter, more than the \(Self.seccompChainLimit) a chain may have"
                )
            }
        }
        guard referenced.count == filters.count else {
            throw invalid(
                "seccomp.filters",
                "\(filters.count - referenced.count) of \(filters.count) filters are in no thread's chain")
        }
    }

    /// A memfd's name fits memfd_create, its seals and mode are bits the kernel has.
    private func validateMemfd(_ memfd: Amber_Memfd, field: String) throws(ImageError) {
        guard memfd.memfdID != 0 else { throw invalid("\(field).memfd_id", "is 0") }
        guard memfd.name.utf8.count <= 249, !memfd.name.utf8.contains(0) else {
            throw invalid("\(field).name", "is longer than memfd_create's 249 bytes or holds a NUL")
        }
        guard memfd.seals & ~0x3f == 0 else {
            throw invalid("\(field).seals", "0x\(String(memfd.seals, radix: 16)) has bits outside the seals 0x3f")
        }
        try validateUnnamedMode(memfd.mode, field: "\(field).mode")
        try validateFileContents(memfd.contents, field: "\(field).contents")
    }

    /// A deleted file's path is an absolute path to a name in a directory (made again there).
    private func validateDeletedFile(_ file: Amber_DeletedFile, field: String) throws(ImageError) {
        guard file.fileID != 0 else { throw invalid("\(field).file_id", "is 0") }
        try validatePath(file.path, field: "\(field).path")
        guard let name = file.path.split(separator: "/").last, name != ".", !file.path.hasSuffix("/") else {
            throw invalid("\(field).path", "\"\(file.path)\" does not end in a file's name")
        }
        try validateUnnamedMode(file.mode, field: "\(field).mode")
        try validateFileContents(file.contents, field: "\(field).contents")
    }

    private func validateUnnamedMode(_ mode: UInt32, field: String) throws(ImageError) {
        guard mode & ~0o7777 == 0 else {
            throw invalid(field, "0o\(String(mode, radix: 8)) has bits outside the permission bits 0o7777")
        }
    }

    /// A file's data lies in its image file, listed in the inventory: whole pages, in order, within
    /// the file's size; what a restore writes is never more than the image carries (a sparse
    /// size costs no space).
    private func validateFileContents(_ contents: Amber_FileContents, field: String) throws(ImageError) {
        let pageSize = ImageFormat.pageSize
        guard contents.size <= UInt64(Int64.max) - pageSize else {
            throw invalid("\(field).size", "\(contents.size) is above the largest file size")
        }
        guard !contents.extents.isEmpty else { return }
        guard let imageSize = files[contents.imageFile]?.size, contents.imageFile.hasPrefix("contents-") else {
            throw invalid("\(field).image_file", "\(contents.imageFile) is no contents file the inventory lists")
        }
        let end = (contents.size + pageSize - 1) / pageSize * pageSize
        var previousEnd: UInt64 = 0
        for (index, extent) in contents.extents.enumerated() {
            let field = "\(field).extents[\(index)]"
            guard extent.offset % pageSize == 0, extent.length % pageSize == 0, extent.length > 0,
                extent.imageOffset % pageSize == 0
            else {
                throw invalid(
                    field,
                    "\(extent.length) bytes at \(extent.offset) (image \(extent.imageOffset)) are not whole pages")
            }
            guard extent.offset >= previousEnd, extent.length <= end, extent.offset <= end - extent.length else {
                throw invalid(
                    field,
                    "\(extent.length) bytes at \(extent.offset) overlap the one before or pass the size \(contents.size)"
                )
            }
            guard extent.imageOffset <= imageSize, extent.length <= imageSize - extent.imageOffset else {
                throw invalid(
                    field, "\(extent.length) bytes at \(extent.imageOffset) pass the end of \(contents.imageFile)")
            }
            previousEnd = extent.offset + extent.length
        }
    }

    /// An absolute path without NUL and without ".." components, at most PATH_MAX:
    /// reopening it cannot be steered outside the path the dump recorded.
    private func validatePath(_ path: String, field: String) throws(ImageError) {
        guard path.utf8.count <= Self.pathLimit else {
            throw invalid(field, "\(path.utf8.count) bytes; a path has at most \(Self.pathLimit)")
        }
        // Bytes, not Characters: an image has a path for every mapped area of every process.
        let bytes = path.utf8
        guard bytes.first == UInt8(ascii: "/"), !bytes.contains(0),
            !bytes.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual("..".utf8) })
        else {
            throw invalid(field, "\"\(path)\" is not an absolute path without NUL and \"..\"")
        }
    }
}

extension TaskValidator {
    /// AF_INET and AF_INET6, with the size of their addresses.
    private static let inetAddressSizes: [Int32: Int] = [2: 4, 10: 16]
    /// SOCK_STREAM with IPPROTO_TCP, SOCK_DGRAM with IPPROTO_UDP.
    private static let inetSocketProtocols: Set<[Int32]> = [[1, 6], [2, 17]]

    /// A peer only a bound UDP socket has (connect binds it): an address of the socket's family
    /// and a port, as getpeername gave them.
    private func validateInetSocketPeer(_ socket: Amber_InetSocket, addressSize: Int, field: String)
        throws(ImageError)
    {
        guard socket.type == 2, socket.state == .bound else {
            throw invalid("\(field).peer_address", "only a bound UDP socket is restored connected")
        }
        guard socket.peerAddress.count == addressSize else {
            throw invalid(
                "\(field).peer_address", "\(socket.peerAddress.count) bytes; expected \(addressSize) for its family")
        }
        guard socket.peerPort > 0, socket.peerPort <= UInt32(UInt16.max) else {
            throw invalid("\(field).peer_port", "\(socket.peerPort) is not a port from 1 to 65535")
        }
        guard socket.family == 10 || socket.peerScopeID == 0 else {
            throw invalid("\(field).peer_scope_id", "\(socket.peerScopeID) on an AF_INET address")
        }
    }

    /// A socket made again by the restorer: O_RDWR, with or without O_NONBLOCK, and no offset.
    fileprivate func validateSocketDescription(_ description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        guard description.flags & ~Self.eventFileFlags == 0, description.flags & 0o3 == 0o2 else {
            throw invalid(
                "\(field).flags",
                "0o\(String(description.flags, radix: 8)) is not O_RDWR with or without O_NONBLOCK, as a socket is made"
            )
        }
        guard description.offset == 0 else {
            throw invalid("\(field).offset", "\(description.offset): a socket has no offset")
        }
    }

    fileprivate func validateInetSocket(
        _ socket: Amber_InetSocket, description: Amber_OpenFileDescription, field: String
    ) throws(ImageError) {
        let socketField = "\(field).inet_socket"
        try validateSocketDescription(description, field: field)
        guard let addressSize = Self.inetAddressSizes[socket.family] else {
            throw invalid("\(socketField).family", "\(socket.family) is not AF_INET (2) or AF_INET6 (10)")
        }
        guard Self.inetSocketProtocols.contains([socket.type, socket.protocol]) else {
            throw invalid(
                "\(socketField).type",
                "type \(socket.type) with protocol \(socket.protocol) is not TCP (1, 6) or UDP (2, 17)")
        }
        switch socket.state {
        case .fresh:
            guard socket.address.isEmpty, socket.port == 0, socket.scopeID == 0 else {
                throw invalid("\(socketField).address", "a fresh socket has no address, port or scope")
            }
        case .bound, .listening:
            guard socket.address.count == addressSize else {
                throw invalid(
                    "\(socketField).address", "\(socket.address.count) bytes; expected \(addressSize) for its family")
            }
            guard socket.port <= UInt32(UInt16.max) else {
                throw invalid("\(socketField).port", "\(socket.port) is above 65535")
            }
            guard socket.family == 10 || socket.scopeID == 0 else {
                throw invalid("\(socketField).scope_id", "\(socket.scopeID) on an AF_INET address")
            }
        case .unspecified, .UNRECOGNIZED:
            throw invalid("\(socketField).state", "\(socket.state.rawValue) is not FRESH, BOUND or LISTENING")
        }
        guard socket.state == .listening ? socket.type == 1 : socket.backlog == 0 else {
            throw invalid(
                "\(socketField).backlog", "only a TCP socket listens; a socket that does not has no backlog")
        }
        guard socket.backlog <= UInt32(Int32.max) else {
            throw invalid("\(socketField).backlog", "\(socket.backlog) is above \(Int32.max)")
        }
        if !socket.peerAddress.isEmpty || socket.peerPort != 0 || socket.peerScopeID != 0 {
            try validateInetSocketPeer(socket, addressSize: addressSize, field: socketField)
        }
        try validateSocketOptions(socket.options, allowed: ImageFormat.inetSocketOptions, field: socketField)
    }

    /// A shell job's terminal is shown, never opened (the restore gives the job amber's own):
    /// its name and settings need only be of sane sizes.
    private func validateShellJob(_ job: Amber_ShellJob) throws(ImageError) {
        guard job.terminal.utf8.count <= Self.pathLimit, !job.terminal.utf8.contains(0) else {
            throw invalid("shell_job.terminal", "not a terminal's name of at most \(Self.pathLimit) bytes without NUL")
        }
        let settings = job.settings
        guard settings.controlCharacters.count <= 32, settings.lineDiscipline <= 0xff, settings.rows <= 0xffff,
            settings.columns <= 0xffff
        else {
            throw invalid(
                "shell_job.settings",
                "not a termios and window size (at most 32 control characters, a line discipline below 256, rows and columns below 65536)"
            )
        }
    }

    /// A descriptor on a shell job's terminal: the restore opens amber's terminal with the
    /// description's access mode, by no path of the image.
    private func validateShellJobTerminal(_ terminal: Amber_ShellJobTerminal, flags: UInt32, field: String)
        throws(ImageError)
    {
        try validatePath(terminal.path, field: "\(field).path")
        guard flags & 3 != 3 else {
            throw invalid(field, "the description's access mode 3 is none a descriptor has")
        }
    }
}

extension TaskValidator {
    /// The largest queue a connection's record may carry: more than any socket buffer holds
    /// (net.core.wmem_max and rmem_max cap what the restore can force).
    static let largestTcpQueue = 1 << 30

    /// An established connection: addresses of its family, ports, queues no longer than the
    /// sequence space allows, window scales TCP allows (RFC 7323: 14), an MSS, options as an
    /// inet socket's, and a lock table of amber's own, which the restore deletes.
    fileprivate func validateTcpConnection(
        _ connection: Amber_TcpConnection, description: Amber_OpenFileDescription, field: String
    ) throws(ImageError) {
        let recordField = "\(field).tcp_connection"
        try validateSocketDescription(description, field: field)
        guard let addressSize = Self.inetAddressSizes[connection.family] else {
            throw invalid("\(recordField).family", "\(connection.family) is not AF_INET (2) or AF_INET6 (10)")
        }
        for (name, address, port) in [
            ("local", connection.localAddress, connection.localPort),
            ("peer", connection.peerAddress, connection.peerPort),
        ] {
            guard address.count == addressSize else {
                throw invalid(
                    "\(recordField).\(name)_address", "\(address.count) bytes; expected \(addressSize) for its family")
            }
            guard port > 0, port <= UInt32(UInt16.max) else {
                throw invalid("\(recordField).\(name)_port", "\(port) is not a port of a connection (1-65535)")
            }
        }
        guard connection.family == 10 || connection.scopeID == 0 else {
            throw invalid("\(recordField).scope_id", "\(connection.scopeID) on an AF_INET address")
        }
        guard connection.sendQueue.count <= Self.largestTcpQueue, connection.receiveQueue.count <= Self.largestTcpQueue
        else {
            throw invalid("\(recordField).send_queue", "a queue is above \(Self.largestTcpQueue) bytes")
        }
        guard connection.unsentLength <= UInt32(connection.sendQueue.count) else {
            throw invalid(
                "\(recordField).unsent_length",
                "\(connection.unsentLength) is more than the \(connection.sendQueue.count) bytes of the send queue")
        }
        guard connection.sendWindowScale <= 14, connection.receiveWindowScale <= 14,
            connection.windowScaling || (connection.sendWindowScale == 0 && connection.receiveWindowScale == 0)
        else {
            throw invalid(
                "\(recordField).send_window_scale",
                "\(connection.sendWindowScale), \(connection.receiveWindowScale): a window scale is at most 14, and 0 without window scaling"
            )
        }
        guard connection.mss > 0, connection.mss <= UInt32(UInt16.max) else {
            throw invalid("\(recordField).mss", "\(connection.mss) is not an MSS (1-65535)")
        }
        guard connection.timestamps || connection.timestamp == 0 else {
            throw invalid("\(recordField).timestamp", "a timestamp on a connection without timestamps")
        }
        guard connection.sendBuffer <= UInt32(Int32.max), connection.receiveBuffer <= UInt32(Int32.max),
            connection.bufferLock & ~3 == 0
        else {
            throw invalid(
                "\(recordField).send_buffer", "buffer sizes above \(Int32.max) or a SO_BUF_LOCK other than 0-3")
        }
        let prefix = "amber-lock-"
        let pid = connection.lockTable.dropFirst(prefix.count)
        guard connection.lockTable.hasPrefix(prefix), !pid.isEmpty, pid.count <= 10,
            pid.allSatisfy({ $0.isASCII && $0.isNumber })
        else {
            throw invalid(
                "\(recordField).lock_table",
                "\"\(connection.lockTable)\" is not a table of amber's lock (amber-lock-PID)")
        }
        try validateSocketOptions(connection.options, allowed: ImageFormat.inetSocketOptions, field: recordField)
    }
}

extension TaskValidator {
    /// The largest multicast group a netlink socket's record may name (NETLINK_ROUTE has about 40).
    private static let maximumNetlinkGroup: UInt32 = 1024

    fileprivate func validateNetlinkSocket(
        _ socket: Amber_NetlinkSocket, description: Amber_OpenFileDescription, field: String
    ) throws(ImageError) {
        let socketField = "\(field).netlink_socket"
        try validateSocketDescription(description, field: field)
        guard socket.type == 2 || socket.type == 3 else {
            throw invalid("\(socketField).type", "\(socket.type) is not SOCK_DGRAM (2) or SOCK_RAW (3)")
        }
        guard ImageFormat.netlinkProtocols.contains(socket.protocol) else {
            throw invalid(
                "\(socketField).protocol", "\(socket.protocol) is not NETLINK_ROUTE (0) or NETLINK_SOCK_DIAG (4)")
        }
        var previous: UInt32 = 0
        for (index, group) in socket.groups.enumerated() {
            guard group > previous, group <= Self.maximumNetlinkGroup else {
                throw invalid(
                    "\(socketField).groups[\(index)]",
                    "\(group) is not a group from 1 to \(Self.maximumNetlinkGroup) above the one before")
            }
            previous = group
        }
        try validateSocketOptions(socket.options, allowed: ImageFormat.netlinkSocketOptions, field: socketField)
    }
}

extension TaskValidator {
    /// `Memory.page_file_depth`: one per page file, each naming an image of the chain.
    func validatePageFileDepths(_ memory: Amber_Memory) throws(ImageError) {
        guard !memory.pageFileDepth.isEmpty else { return }
        guard memory.pageFileDepth.count == memory.pageFiles.count else {
            throw invalid(
                "memory.page_file_depth",
                "has \(memory.pageFileDepth.count) entries for \(memory.pageFiles.count) page files")
        }
        for (index, depth) in memory.pageFileDepth.enumerated() where depth > ancestorFiles.count {
            throw invalid(
                "memory.page_file_depth[\(index)]",
                "\(depth) is past the end of the image's chain of \(ancestorFiles.count) parents")
        }
    }
}

extension TaskValidator {
    /// An inet, TCP or netlink socket's options: each one amber sets again (`allowed`), of its
    /// size, and set once.
    func validateSocketOptions(
        _ options: [Amber_InetSocketOption], allowed: [InetSocketOptionKind], field: String
    ) throws(ImageError) {
        var seen: Set<[Int32]> = []
        for (index, option) in options.enumerated() {
            let optionField = "\(field).options[\(index)]"
            guard let kind = allowed.first(where: { $0.level == option.level && $0.name == option.name }) else {
                throw invalid(optionField, "level \(option.level), name \(option.name) is no option amber sets again")
            }
            guard option.value.count == kind.size else {
                throw invalid("\(optionField).value", "\(option.value.count) bytes; \(kind.label) takes \(kind.size)")
            }
            guard seen.insert([option.level, option.name]).inserted else {
                throw invalid(optionField, "\(kind.label) is set twice")
            }
        }
    }
}
