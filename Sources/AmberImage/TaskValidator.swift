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

    /// Signals whose disposition cannot be changed: SIGKILL and SIGSTOP.
    private static let unblockableSignals: Set<UInt32> = [9, 19]
    /// O_ACCMODE, O_APPEND, O_NONBLOCK, O_DSYNC, O_SYNC, O_DIRECT, O_LARGEFILE,
    /// O_NOATIME, O_PATH, O_DIRECTORY, O_NOFOLLOW and FASYNC: the status flags
    /// fdinfo shows that reopening a file can reproduce.
    private static let fileFlags: UInt32 =
        0o3 | 0o2000 | 0o4000 | 0o10000 | 0o4010000 | 0o40000 | 0o100000 | 0o1000000 | 0o10000000 | 0o200000 | 0o400000 | 0o20000
    /// SS_ONSTACK, SS_DISABLE and SS_AUTODISARM.
    private static let alternateStackFlags: UInt32 = 1 | 2 | 1 << 31
    /// The kernel's siginfo_t is always 128 bytes.
    private static let siginfoSize = 128
    /// The SA_* flags the kernel keeps for a signal action (it clears unknown ones):
    /// SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_UNSUPPORTED, SA_EXPOSE_TAGBITS,
    /// SA_X32_ABI, SA_IA32_ABI, SA_RESTORER, SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND.
    private static let actionFlags: UInt64 =
        0x1 | 0x2 | 0x4 | 0x400 | 0x800 | 0x0100_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x4000_0000 | 0x8000_0000
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

    func validate(_ task: Amber_Task) throws(ImageError) {
        try validateIdentity(task)
        try validateRegisters(task)
        try validateMemory(task.memory)
        try validateSignals(task.signals)
        try validateFiles(task.files)
        if task.hasEnvironment { try validateEnvironment(task.environment) }
        try validateThreadControl(task.threadControl)
    }

    private func invalid(_ field: String, _ problem: String) -> ImageError {
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
        for (field, value) in [("ppid", task.ppid), ("pgid", task.pgid), ("sid", task.sid)] where value != 0 && !ImageFormat.pidRange.contains(value) {
            throw invalid(field, "\(value) is neither 0 nor in \(ImageFormat.pidRange)")
        }
        // TASK_COMM_LEN is 16 bytes with the terminating NUL.
        guard task.comm.utf8.count <= 15, !task.comm.utf8.contains(0) else {
            throw invalid("comm", "\"\(task.comm)\" is longer than 15 bytes or contains NUL")
        }
    }

    private func validateRegisters(_ task: Amber_Task) throws(ImageError) {
        guard task.hasRegisters else { throw invalid("registers", "missing") }
        let registers = task.registers
        for (field, value) in [("fs_base", registers.fsBase), ("gs_base", registers.gsBase)] where value >= ImageFormat.userAddressLimit {
            throw invalid("registers.\(field)", "\(hex(value)) is not below the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
        let xstate = registers.xstate
        guard !xstate.isEmpty else { return }
        guard ImageFormat.xstateSizes.contains(UInt32(clamping: xstate.count)), xstate.count == Int(xstateSize) else {
            throw invalid("registers.xstate", "\(xstate.count) bytes; expected \(ImageFormat.xstateSizes) bytes and equal to the inventory's xstate_size \(xstateSize)")
        }
        // The XSAVE header after the 512-byte legacy area: xstate_bv, then xcomp_bv, which
        // is 0 in the standard format that ptrace uses; the kernel refuses other headers.
        let (features, compaction) = xstate.withUnsafeBytes {
            ($0.loadUnaligned(fromByteOffset: 512, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 520, as: UInt64.self))
        }
        guard features & ~xstateFeatures == 0 else {
            throw invalid("registers.xstate", "its header names features \(hex(features)) outside the inventory's xstate_features \(hex(xstateFeatures))")
        }
        guard compaction == 0 else {
            throw invalid("registers.xstate", "its header's xcomp_bv is \(hex(compaction)), not 0 (the standard format)")
        }
    }

    private func validateMemory(_ memory: Amber_Memory) throws(ImageError) {
        let pageSize = ImageFormat.pageSize
        var pagesFileSize: UInt64?
        if !memory.pagesFile.isEmpty {
            guard let size = files[memory.pagesFile]?.size else {
                throw invalid("memory.pages_file", "\(memory.pagesFile) is not listed in the inventory")
            }
            pagesFileSize = size
        }
        if let pagesFileSize, pagesFileSize % pageSize != 0 {
            throw invalid("memory.pages_file", "\(memory.pagesFile) has \(pagesFileSize) bytes, not a whole number of pages")
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
                    throw invalid(field, "a vsyscall area is \(hex(Self.vsyscallArea.start))-\(hex(Self.vsyscallArea.end)), not \(hex(area.start))-\(hex(area.end))")
                }
            } else {
                guard area.end <= ImageFormat.userAddressLimit else {
                    throw invalid("\(field).end", "\(hex(area.end)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
                }
            }
            if Self.kernelAreaKinds.contains(area.kind) {
                guard kernelAreas.insert(area.kind).inserted else {
                    throw invalid("\(field).kind", "a second \(area.kind) area; the kernel makes one")
                }
            }
            guard index == 0 || area.start >= previousEnd else {
                throw invalid(field, "starts at \(hex(area.start)), before memory.areas[\(index - 1)] ends at \(hex(previousEnd))")
            }
            previousEnd = area.end
            guard area.protection & ~7 == 0 else {
                throw invalid("\(field).protection", "\(area.protection) has bits other than PROT_READ, PROT_WRITE and PROT_EXEC")
            }
            if area.kind == .areaFile {
                try validatePath(area.path, field: "\(field).path")
                // mmap's offset: page-aligned, and the mapped range inside the largest file size (MAX_LFS_FILESIZE).
                guard area.fileOffset % pageSize == 0, area.fileOffset <= UInt64(Int64.max) - (area.end - area.start) else {
                    throw invalid("\(field).file_offset", "\(hex(area.fileOffset)) is not a page-aligned offset that a file can have for \(area.end - area.start) bytes")
                }
            }
            try validatePageRuns(of: area, field: field, pagesFileSize: pagesFileSize)
        }
        try validateMm(memory.mm)
    }

    private func validatePageRuns(of area: Amber_MemoryArea, field: String, pagesFileSize: UInt64?) throws(ImageError) {
        guard !area.pages.isEmpty else { return }
        let pageSize = ImageFormat.pageSize
        // Kernel areas are recreated by the kernel, and shared file pages live in the file itself.
        switch area.kind {
        case .areaAnonymous, .areaHeap, .areaStack: break
        case .areaFile where !area.shared: break
        default: throw invalid("\(field).pages", "a \(area.shared ? "shared " : "")\(area.kind) area cannot have saved pages")
        }
        guard let pagesFileSize else {
            throw invalid("\(field).pages", "page runs need memory.pages_file")
        }
        var previousEnd = area.start
        for (index, run) in area.pages.enumerated() {
            let runField = "\(field).pages[\(index)]"
            guard run.count >= 1 else { throw invalid("\(runField).count", "is 0") }
            guard run.address % pageSize == 0, run.address >= area.start, run.address < area.end else {
                throw invalid("\(runField).address", "\(hex(run.address)) is not a page address inside the area \(hex(area.start))-\(hex(area.end))")
            }
            guard run.count <= (area.end - run.address) / pageSize else {
                throw invalid("\(runField).count", "\(run.count) pages from \(hex(run.address)) go past the area end \(hex(area.end))")
            }
            guard run.address >= previousEnd else {
                throw invalid("\(runField).address", "\(hex(run.address)) is before the end \(hex(previousEnd)) of the previous run")
            }
            previousEnd = run.address + run.count * pageSize
            guard run.offset % pageSize == 0 else {
                throw invalid("\(runField).offset", "\(run.offset) is not page-aligned")
            }
            guard run.offset <= pagesFileSize, run.count <= (pagesFileSize - run.offset) / pageSize else {
                throw invalid("\(runField).offset", "\(run.count) pages at offset \(run.offset) go past the end of the \(pagesFileSize)-byte page file")
            }
        }
    }

    private func validateMm(_ mm: Amber_MmFields) throws(ImageError) {
        let addresses: [(String, UInt64)] = [
            ("start_code", mm.startCode), ("end_code", mm.endCode), ("start_data", mm.startData), ("end_data", mm.endData),
            ("start_brk", mm.startBrk), ("brk", mm.brk), ("start_stack", mm.startStack), ("arg_start", mm.argStart),
            ("arg_end", mm.argEnd), ("env_start", mm.envStart), ("env_end", mm.envEnd),
        ]
        for (name, address) in addresses where address > ImageFormat.userAddressLimit {
            throw invalid("memory.mm.\(name)", "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
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
            for (name, address) in [("handler", action.handler), ("restorer", action.restorer)] where address > ImageFormat.userAddressLimit {
                throw invalid("\(actionField).\(name)", "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
            }
            guard action.flags & ~Self.actionFlags == 0 else {
                throw invalid("\(actionField).flags", "\(hex(action.flags)) has bits that are no SA_* flag")
            }
        }
        var pendingOnce: Set<[UInt32]> = []
        for (index, pending) in signals.pending.enumerated() {
            let field = "signals.pending[\(index)]"
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
            guard Self.realTimeSignals.contains(pending.signal) || pendingOnce.insert([pending.signal, pending.shared ? 1 : 0]).inserted else {
                throw invalid("\(field).signal", "\(pending.signal) is pending twice on the \(pending.shared ? "process" : "thread") queue; only real-time signals queue up")
            }
        }
        let flags = signals.alternateStack.flags
        guard flags & ~Self.alternateStackFlags == 0 else {
            throw invalid("signals.alternate_stack.flags", "\(hex(UInt64(flags))) has bits other than SS_ONSTACK, SS_DISABLE and SS_AUTODISARM")
        }
        let stack = signals.alternateStack
        if flags & 2 == 0 {
            guard stack.base <= ImageFormat.userAddressLimit, stack.size <= ImageFormat.userAddressLimit - stack.base else {
                throw invalid("signals.alternate_stack", "\(stack.size) bytes at \(hex(stack.base)) go past the user address limit \(hex(ImageFormat.userAddressLimit))")
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
            if case .UNRECOGNIZED(let kind) = description.kind {
                throw invalid("\(field).kind", "\(kind) is not a known file kind")
            }
            try validatePath(description.path, field: "\(field).path")
            guard description.offset <= UInt64(Int64.max) else {
                throw invalid("\(field).offset", "\(description.offset) is above the largest file offset \(Int64.max)")
            }
            guard description.flags & ~Self.fileFlags == 0 else {
                throw invalid("\(field).flags", "0o\(String(description.flags, radix: 8)) has flags outside 0o\(String(Self.fileFlags, radix: 8))")
            }
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
            guard descriptions.contains(descriptor.description_p) else {
                throw invalid("\(field).description", "\(descriptor.description_p) names no entry of files.descriptions")
            }
        }
    }

    private func validateEnvironment(_ environment: Amber_Environment) throws(ImageError) {
        try validatePath(environment.cwd, field: "environment.cwd")
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

    private func validateThreadControl(_ control: Amber_ThreadControl) throws(ImageError) {
        for (field, address) in [("child_tid_address", control.childTidAddress), ("robust_list_head", control.robustListHead)] where address > ImageFormat.userAddressLimit {
            throw invalid("thread_control.\(field)", "\(hex(address)) is above the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
        guard control.robustListHead == 0 || control.robustListLength == Self.robustListHeadSize else {
            throw invalid("thread_control.robust_list_length", "\(control.robustListLength); set_robust_list takes only \(Self.robustListHeadSize)")
        }
        // The kernel accepts an rseq area of at least 32 bytes, aligned to 32.
        guard control.rseqSize == 0 || ((32...4096).contains(control.rseqSize) && control.rseqAddress % 32 == 0) else {
            throw invalid("thread_control.rseq_size", "\(control.rseqSize) bytes at \(hex(control.rseqAddress)); expected 0, or 32 to 4096 bytes at a 32-byte-aligned address")
        }
        guard control.rseqSize == 0 || control.rseqAddress <= ImageFormat.userAddressLimit - UInt64(control.rseqSize) else {
            throw invalid("thread_control.rseq_address", "\(control.rseqSize) bytes at \(hex(control.rseqAddress)) go past the user address limit \(hex(ImageFormat.userAddressLimit))")
        }
    }

    /// An absolute path without NUL and without ".." components, at most PATH_MAX:
    /// reopening it cannot be steered outside the path the dump recorded.
    private func validatePath(_ path: String, field: String) throws(ImageError) {
        guard path.utf8.count <= Self.pathLimit else {
            throw invalid(field, "\(path.utf8.count) bytes; a path has at most \(Self.pathLimit)")
        }
        guard path.hasPrefix("/"), !path.utf8.contains(0), !path.split(separator: "/").contains("..") else {
            throw invalid(field, "\"\(path)\" is not an absolute path without NUL and \"..\"")
        }
    }
}
