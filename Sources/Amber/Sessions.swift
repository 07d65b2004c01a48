import AmberImage
import Glibc
import LinuxKit
import Logging

/// What the dump reads of a frozen process from outside it, without ptrace (/proc, its memory
/// by process_vm_readv, its files by pidfd): the kinds of state read only through it run beside
/// the tracer, on another thread (see `OutsideReads`).
struct DumpTarget: Sendable {
    let pid: Int32
    let name: ProcessName
    /// Read when the process was frozen (its maps before the session mapped its scratch page).
    let snapshot: ProcessSnapshot
    let interruption: DumpInterruption
    /// Its /proc: the real one, or a fake in the engine's unit tests.
    var proc: any ProcReading = LiveProcFS()
    /// Its threads' scheduling: the kernel's, or a fake in the engine's unit tests.
    var scheduling: any ThreadScheduling = LiveThreadScheduling()
    var status: ProcessStatus { snapshot.status }
    var stat: ProcessStat { snapshot.stat }
    var maps: [MemoryMapping] { snapshot.maps }
}

/// A stopped process being dumped: what every kind of state reads from.
final class DumpSession: ScratchSpace {
    let target: DumpTarget
    var pid: Int32 { target.pid }
    var name: ProcessName { target.name }
    var status: ProcessStatus { target.status }
    var stat: ProcessStat { target.stat }
    var interruption: DumpInterruption { target.interruption }
    var proc: any ProcReading { target.proc }
    var scheduling: any ThreadScheduling { target.scheduling }
    /// The leader, into which syscalls for the whole process are injected.
    let tracee: Tracee
    /// Every thread, leader first.
    let threads: [Tracee]
    let logger: Logger
    let injector: any SyscallInjecting
    /// The target's memory, where the arguments of injected calls are written and their results read.
    let memory: any RemoteMemory
    /// Makes the injector into another of its threads.
    private let makeInjector: InjectorFactory
    /// Memory in the target for the results of injected calls: below the leader's stack
    /// pointer, its bytes put back by `finish()`, or else a private page mapped for the dump.
    let scratch: UInt64
    static let scratchSize = 256
    /// The bytes the scratch area held in the target's stack; nil for a mapped page.
    private let savedStackBytes: [UInt8]?
    /// Whether the tracer runs on the CPU of the task it injects into, moving from thread to thread.
    var followsTarget = false

    convenience init(_ process: FrozenProcess, interruption: DumpInterruption, logger: Logger) throws(LinuxError) {
        let pid = process.pid
        let target = DumpTarget(pid: pid, name: process.name, snapshot: process.snapshot, interruption: interruption)
        let tracee = process.threads[0]
        let registers = try tracee.registers()
        var instruction = SyscallInjector.syscallInstruction(before: registers.rip, pid: pid)
        if instruction == nil {
            guard let vdso = target.maps.first(where: { $0.path == "[vdso]" }) else {
                throw LinuxError(.noSuchFileOrDirectory, "find the [vdso] of process \(pid)")
            }
            instruction = try SyscallInjector.findSyscallInstruction(pid: pid, vdso: vdso.start..<vdso.end)
        }
        let injector = try SyscallInjector(tracee: tracee, instruction: instruction!)
        let memory = ProcessMemory(pid: pid)
        if let (address, bytes) = DumpSession.stackScratch(pid: pid, stackPointer: registers.rsp, maps: target.maps) {
            self.init(
                target: target, threads: process.threads, injector: injector, memory: memory,
                makeInjector: SyscallInjector.init(tracee:instruction:), scratch: address, savedStackBytes: bytes,
                logger: logger)
            return
        }
        let scratch: UInt64
        do {
            scratch = try injector.call(
                "mmap scratch page", SyscallNumber.mmap, 0, 4096, UInt64(PROT_READ | PROT_WRITE),
                UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
        } catch {
            try? injector.finish()
            throw error
        }
        self.init(
            target: target, threads: process.threads, injector: injector, memory: memory,
            makeInjector: SyscallInjector.init(tracee:instruction:), scratch: scratch, savedStackBytes: nil,
            logger: logger)
    }

    /// A session over what it is given; the engine's unit tests give it fakes and no process.
    init(
        target: DumpTarget, threads: [Tracee], injector: any SyscallInjecting, memory: any RemoteMemory,
        makeInjector: @escaping InjectorFactory, scratch: UInt64, savedStackBytes: [UInt8]?, logger: Logger
    ) {
        self.target = target
        self.threads = threads
        tracee = threads[0]
        self.injector = injector
        self.memory = memory
        self.makeInjector = makeInjector
        self.scratch = scratch
        self.savedStackBytes = savedStackBytes
        self.logger = logger
    }

    /// The session's injector for the leader, a new one for another of its threads.
    func injector(for tracee: Tracee) throws(LinuxError) -> any SyscallInjecting {
        tracee.pid == pid ? injector : try makeInjector(tracee, injector.instruction)
    }

    /// Scratch space a dump needs (a few results of at most 128 bytes) taken from below the
    /// leader's stack pointer and its 128-byte red zone, which the ABI leaves free (a signal
    /// frame may land there at any time): mapping a page instead would show in the target's
    /// VmPeak. Only where that is a writable private area whose page is present and not
    /// shared with another process, so that no fault and no copy-on-write is caused; returns
    /// the address and the bytes there to put back.
    private static func stackScratch(pid: Int32, stackPointer: UInt64, maps: [MemoryMapping]) -> (UInt64, [UInt8])? {
        guard stackPointer > 4096 + 128 + UInt64(scratchSize) else { return nil }
        let address = (stackPointer - 128 - UInt64(scratchSize)) & ~15
        let end = address + UInt64(scratchSize)
        guard let area = maps.first(where: { $0.start <= address && end <= $0.end }), area.writable, area.readable,
            !area.shared,
            let pageMap = try? PageMap(pid: pid),
            (try? pageMap.isPresentAndExclusive(address)) == true, (try? pageMap.isPresentAndExclusive(end - 1)) == true
        else { return nil }
        var bytes = [UInt8](repeating: 0, count: scratchSize)
        let read = bytes.withUnsafeMutableBytes { buffer in
            try? ProcessMemory(pid: pid).read(into: buffer, from: [(address, scratchSize)])
        }
        return read == scratchSize ? (address, bytes) : nil
    }

    /// A thread's /proc status as the frozen process has it.
    func threadStatus(_ tid: Int32) throws(LinuxError) -> ProcessStatus {
        guard let status = target.snapshot.threadStatuses[tid] else {
            throw LinuxError(.noSuchProcess, "find thread \(tid) among the frozen threads of process \(pid)")
        }
        return status
    }

    /// Puts back the scratch area's bytes (or unmaps its page), the target's registers and signal mask.
    func finish() throws(LinuxError) {
        if let savedStackBytes {
            _ = try savedStackBytes.withUnsafeBytes { bytes in
                Result { () throws(LinuxError) in try memory.write(bytes, to: [(scratch, bytes.count)]) }
            }.get()
        } else {
            try injector.call("munmap scratch page", SyscallNumber.munmap, scratch, 4096)
        }
        try injector.finish()
    }
}

/// Scratch memory in a task for the arguments and results of injected calls.
protocol ScratchSpace {
    var pid: Int32 { get }
    /// The task's memory, where the scratch area is.
    var memory: any RemoteMemory { get }
    var scratch: UInt64 { get }
    static var scratchSize: Int { get }
}

extension ScratchSpace {
    /// The live task's, for the tree's helpers; the sessions hold theirs, a fake in unit tests.
    var memory: any RemoteMemory { ProcessMemory(pid: pid) }

    /// The whole scratch area, empty, for the arguments of one injected call.
    func arguments() -> ScratchArena {
        ScratchArena(pid: pid, memory: memory, base: scratch, size: Self.scratchSize)
    }
}

/// Makes an injector into a thread (the tracee) with the `syscall` instruction its process's injector uses.
typealias InjectorFactory = (Tracee, UInt64) throws(LinuxError) -> any SyscallInjecting

/// What every helper starts with, being a copy of the restorer (or of a helper whose state is
/// not restored yet): a restore step injects a call only for what differs from it.
struct HelperBaseline {
    let personality: UInt32
    let umask: UInt32
    let timerSlackNs: UInt64
    let thpDisable: UInt32
    let machineCheckKill: UInt32
    let dumpable: UInt32
    /// The leader's; a thread made with CLONE_VM starts with none.
    let alternateStack: Amber_SignalStack
    let credentials: Amber_Credentials

    /// Read from the restorer's own main thread, the one that makes the helpers.
    static func ofRestorer() throws -> HelperBaseline {
        let stack = try ProcessControl.alternateStack()
        var alternateStack = Amber_SignalStack()
        alternateStack.base = stack.base
        alternateStack.flags = UInt32(bitPattern: stack.flags)
        alternateStack.size = stack.size
        guard let umask = try ProcFS.status(pid: getpid()).umask else {
            throw LinuxError(.invalidArgument, "read the Umask line of /proc/self/status")
        }
        return HelperBaseline(
            personality: try ProcessControl.personality(),
            umask: umask,
            timerSlackNs: try ProcessControl.value(of: .timerSlack),
            thpDisable: UInt32(try ProcessControl.value(of: .thpDisable)),
            machineCheckKill: UInt32(try ProcessControl.value(of: .machineCheckKill)),
            dumpable: UInt32(try ProcessControl.value(of: .dumpable)),
            alternateStack: alternateStack,
            credentials: try CredentialState.restorerCredentials())
    }
}

/// A helper task becoming the restored process: what every kind of state writes to.
final class RestoreSession: ScratchSpace {
    let task: Amber_Task
    /// Nil only in the engine's unit tests, whose sessions restore no memory.
    let image: ImageReader!
    let tracee: Tracee
    /// Every thread, leader first, as they are recreated.
    var threads: [Tracee]
    /// Open files made once for the whole tree, so that tasks sharing one share it again.
    let openFiles: OpenFileTable
    let logger: Logger
    var injector: any SyscallInjecting
    /// The task's memory, where the arguments of injected calls are written and their results read.
    let memory: any RemoteMemory
    /// Its /proc: the real one, or a fake in the engine's unit tests.
    let proc: any ProcReading
    /// Its threads' scheduling: the kernel's, or a fake in the engine's unit tests.
    let scheduling: any ThreadScheduling
    /// Makes the injector into another of its threads.
    private let makeInjector: InjectorFactory
    let baseline: HelperBaseline
    /// The files every process of the tree inherited from the root's helper, if any.
    let treeFiles: TreeFiles?
    /// Whether a thread's credentials were set: that resets dumpable and the parent-death signal.
    var credentialsChanged = false
    /// Scratch memory in the task for the arguments of injected calls (set once memory is restored).
    var scratch: UInt64 = 0
    static let scratchSize = 16 * 4096
    /// The task's descriptor of a pidfd for this restorer, through which it fetches our files:
    /// every helper inherits one at `RestoreSession.inheritedPidfd`, moved above the image's descriptors on first use.
    private var restorerPidfd: Int32?
    /// Where each helper has the restorer's pidfd; a task in another PID namespace could not open one by PID.
    let inheritedPidfd: Int32
    /// First descriptor above every descriptor of the image: temporaries live from here up.
    let firstFreeDescriptor: Int32
    /// The descriptors the restore's temporaries may take from `firstFreeDescriptor` up (as
    /// many as the hard RLIMIT_NOFILE leaves).
    static let temporaryDescriptors: Int32 = 16
    /// Whether the task's soft RLIMIT_NOFILE was raised for the temporaries (an image
    /// descriptor at the helper's limit): the environment step sets it back to the image's.
    private(set) var descriptorLimitRaised = false
    /// Whether the image is authenticated or trusted with --trust-image: only then may the
    /// restorer open with its own rights a file the task may not open itself.
    let imageTrusted: Bool
    /// With `restore --lazy-pages`: serves the pages of the areas `LazyMemory` leaves to it.
    var lazyPages: LazyPageServer?

    convenience init(
        task: Amber_Task, image: ImageReader, imageTrusted: Bool, tracee: Tracee, injector: SyscallInjector,
        baseline: HelperBaseline, treeFiles: TreeFiles?, openFiles: OpenFileTable, inheritedPidfd: Int32, logger: Logger
    ) {
        self.init(
            task: task, image: image, imageTrusted: imageTrusted, tracee: tracee, injector: injector,
            memory: ProcessMemory(pid: tracee.pid), proc: LiveProcFS(), scheduling: LiveThreadScheduling(),
            makeInjector: SyscallInjector.init(tracee:instruction:),
            baseline: baseline, treeFiles: treeFiles, openFiles: openFiles, inheritedPidfd: inheritedPidfd,
            logger: logger)
    }

    /// A session over what it is given; the engine's unit tests give it fakes, no image and no process.
    init(
        task: Amber_Task, image: ImageReader?, imageTrusted: Bool, tracee: Tracee, injector: any SyscallInjecting,
        memory: any RemoteMemory, proc: any ProcReading, scheduling: any ThreadScheduling,
        makeInjector: @escaping InjectorFactory,
        baseline: HelperBaseline, treeFiles: TreeFiles?, openFiles: OpenFileTable, inheritedPidfd: Int32, logger: Logger
    ) {
        self.memory = memory
        self.proc = proc
        self.scheduling = scheduling
        self.makeInjector = makeInjector
        self.imageTrusted = imageTrusted
        self.inheritedPidfd = inheritedPidfd
        self.baseline = baseline
        self.treeFiles = treeFiles
        self.task = task
        self.image = image
        self.tracee = tracee
        threads = [tracee]
        self.openFiles = openFiles
        self.injector = injector
        self.logger = logger
        firstFreeDescriptor = (task.files.descriptors.map(\.fd).max() ?? 2) + 1
    }

    var pid: Int32 { tracee.pid }

    /// The session's injector for the leader, a new one for another of its threads.
    func injector(for tracee: Tracee) throws(LinuxError) -> any SyscallInjecting {
        tracee.pid == pid ? injector : try makeInjector(tracee, injector.instruction)
    }

    /// A new injector into the leader that takes the registers it has now: for a step after the
    /// registers were restored, which must put back those and not the helper's.
    func injectorOnRestoredRegisters() throws(LinuxError) -> any SyscallInjecting {
        try makeInjector(tracee, injector.instruction)
    }

    /// Copies one of our descriptors into the task; returns its number there (close-on-exec set).
    func install(_ descriptor: Int32) throws(LinuxError) -> Int32 {
        let pidfd = try movedRestorerPidfd()
        return Int32(
            try injector.call(
                "pidfd_getfd(\(descriptor))", SyscallNumber.pidfdGetfd, UInt64(pidfd), UInt64(descriptor), 0))
    }

    /// The task's descriptor of the restorer's pidfd, moved above every descriptor of the image
    /// the first time: before a descriptor of the image is placed at its number.
    func movedRestorerPidfd() throws(LinuxError) -> Int32 {
        if let existing = restorerPidfd { return existing }
        try makeRoomForTemporaries()
        let low = UInt64(inheritedPidfd)
        let high = try injector.call(
            "fcntl F_DUPFD_CLOEXEC", SyscallNumber.fcntl, low, UInt64(F_DUPFD_CLOEXEC), UInt64(firstFreeDescriptor))
        try injector.call("close", SyscallNumber.close, low)
        restorerPidfd = Int32(high)
        return Int32(high)
    }

    /// Raises the task's soft RLIMIT_NOFILE (inherited from us, up to its hard limit) where the
    /// image's descriptors reach so near it that the temporaries above them would not fit. From
    /// here, not injected: the memory step may install a mapped file's descriptor before the
    /// scratch area is there, and the helper still has our credentials.
    private func makeRoomForTemporaries() throws(LinuxError) {
        var limit = rlimit()
        let needed = UInt64(firstFreeDescriptor + Self.temporaryDescriptors)
        guard getrlimit(__rlimit_resource_t(ResourceLimit.openFiles), &limit) == 0, UInt64(limit.rlim_cur) < needed
        else { return }
        try ResourceLimit.set(
            ResourceLimit.openFiles, of: pid, soft: min(needed, UInt64(limit.rlim_max)), hard: UInt64(limit.rlim_max))
        descriptorLimitRaised = true
    }

    /// Opens a file of the image as the task could have opened it itself: with its filesystem
    /// IDs and groups, and refusing a symbolic link anywhere on the path (the paths of an image
    /// are the kernel's resolved ones, so a link on one was put there after the dump). A file
    /// the task may not open is opened with the restorer's rights only if it is the very file
    /// the task had open at the dump (`dumped`: its device and inode then): one it opened before
    /// it gave up privilege, unchanged since (same device, inode and change time; an inode
    /// number alone is soon reused), and only for a `trusted` image: the device, inode and
    /// change time come from the image, so a user who wrote them could name any file.
    /// See docs/security.md.
    func openAsTask(_ path: String, flags: Int32, what: String, dumped: FileStatus?) throws(AmberError) -> Int32 {
        try Self.openAsTask(path, flags: flags, what: what, task: task, dumped: dumped, trusted: imageTrusted)
    }

    static func openAsTask(
        _ path: String, flags: Int32, what: String, task: Amber_Task, dumped: FileStatus?, trusted: Bool
    ) throws(AmberError) -> Int32 {
        let identity = task.processCredentials.map {
            FileAccessIdentity(uid: $0.fsuid, gid: $0.fsgid, groups: $0.groups)
        }
        let who = identity.map { " as uid \($0.uid), gid \($0.gid)" } ?? ""
        do {
            return try PathOpening.open(path, flags: flags, as: identity)
        } catch  where error.errno == .tooManySymbolicLinkLevels {
            throw AmberError(
                .restoreFailed,
                "cannot reopen \(what) \(path) for process \(task.pid): a symbolic link is on its path now (there was none when it was dumped)"
            )
        } catch
            where (error.errno == .permissionDenied || error.errno == .notPermitted) && identity != nil && dumped != nil
        {
            let denied = error
            guard trusted else {
                throw AmberError(
                    .permissionDenied,
                    "cannot reopen \(what) \(path) for process \(task.pid) (\(task.comm)): it may not open it itself (\(denied.errno.name)\(who)), and the image is not authenticated, so amber does not open it with its own rights (restore with --trust-image only an image you trust)"
                )
            }
            guard let fd = try? PathOpening.open(path, flags: flags, as: nil) else {
                throw AmberError(
                    .restoreFailed, "cannot reopen \(what) \(path) for process \(task.pid)\(who): \(denied)")
            }
            // An image that records no change time (a mapped file, the executable: their size is
            // checked apart) asks for the same file only.
            if let status = try? FileStatus.fstat(fd: fd), let dumped, status.device == dumped.device,
                status.inode == dumped.inode, dumped.changeTimeNs == 0 || status.changeTimeNs == dumped.changeTimeNs
            {
                return fd
            }
            close(fd)
            throw AmberError(
                .restoreFailed,
                "cannot reopen \(what) \(path) for process \(task.pid): it may not open it itself (\(denied.errno.name)\(who)), and it is not the file the process had open when it was dumped, unchanged"
            )
        } catch {
            throw AmberError(.restoreFailed, "cannot reopen \(what) \(path) for process \(task.pid)\(who): \(error)")
        }
    }

    /// A file a step needs open in the task by path (a mapped file, the executable, the working
    /// directory): the one the whole tree inherited, or else opened as the task and installed.
    func openInTask(_ key: TreeFiles.Key, what: String) throws -> TaskFile {
        if let shared = treeFiles?.files[key] {
            return TaskFile(fd: shared.fd, status: shared.status, temporary: false)
        }
        let fd = try openAsTask(key.path, flags: key.flags, what: what, dumped: key.dumped)
        defer { Glibc.close(fd) }
        let status = try FileStatus.fstat(fd: fd)
        return TaskFile(fd: try install(fd), status: status, temporary: true)
    }

    /// Closes a file `openInTask` opened for this task alone; inherited ones go at clean-up.
    func closeInTask(_ file: TaskFile) throws(LinuxError) {
        if file.temporary { try injector.call("close", SyscallNumber.close, UInt64(file.fd)) }
    }

    func mapScratch() throws(LinuxError) {
        scratch = try injector.call(
            "mmap scratch", SyscallNumber.mmap, 0, UInt64(Self.scratchSize), UInt64(PROT_READ | PROT_WRITE),
            UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
    }

    /// Removes what the restorer put into the task: its pidfd, the files the tree inherited
    /// and the scratch area.
    func cleanUp() throws(LinuxError) {
        try injector.call("close restorer pidfd", SyscallNumber.close, UInt64(restorerPidfd ?? inheritedPidfd))
        restorerPidfd = nil
        if let range = treeFiles?.descriptors {
            try injector.call(
                "close_range the tree's files", SyscallNumber.closeRange, UInt64(range.lowerBound),
                UInt64(range.upperBound), 0)
        }
        if scratch != 0 {
            try injector.call("munmap scratch", SyscallNumber.munmap, scratch, UInt64(Self.scratchSize))
            scratch = 0
        }
    }
}

/// A file open in a task being restored, for a step that needs it by descriptor.
struct TaskFile {
    let fd: Int32
    /// As it was when opened, to check that it did not change since the dump.
    let status: FileStatus
    /// Opened for this step alone, and closed once used.
    let temporary: Bool
}

/// Files that several processes of the tree need by path (mapped files, executables, working
/// directories) or share an open file description of (a terminal or log inherited across
/// fork), opened once and installed in the root's helper before any process is cloned from it:
/// every process inherits them at the same numbers, above every descriptor of the image, and
/// closes them at its clean-up. That saves each process an open and two injected calls per
/// file. Only when every process opens files with the same identity (filesystem IDs and
/// groups): then a file one may open is one each of the others may open.
final class TreeFiles {
    struct Key: Hashable {
        let path: String
        let flags: Int32
        /// The file the image records at the path (0 and 0 when it records none): a task that
        /// may not open it itself gets it with our rights only if it is that file.
        var device: UInt64 = 0
        var inode: UInt64 = 0

        /// That file, as `RestoreSession.openAsTask` compares it.
        var dumped: FileStatus? {
            inode == 0 ? nil : FileStatus(device: device, inode: inode, mode: 0, size: 0, rdev: 0)
        }
    }

    let files: [Key: (fd: Int32, status: FileStatus)]
    /// The open file descriptions of the image (by id) that two or more processes share.
    let descriptions: [UInt32: Int32]
    let descriptors: ClosedRange<Int32>

    private init(
        files: [Key: (fd: Int32, status: FileStatus)], descriptions: [UInt32: Int32], descriptors: ClosedRange<Int32>
    ) {
        self.files = files
        self.descriptions = descriptions
        self.descriptors = descriptors
    }

    /// What a process opens by path while it is restored.
    static func keys(of task: Amber_Task) -> Set<Key> {
        var keys: Set<Key> = []
        // A deleted executable is made again, not reopened.
        if MemoryState.deletedExecutable(of: task) == nil {
            keys.insert(MemoryState.executableKey(of: task))
        }
        // A deleted working directory is made again, not reopened.
        if !task.environment.hasDeletedCwd {
            keys.insert(EnvironmentState.workingDirectoryKey(of: task.environment))
        }
        // A file without a name is made again, not reopened.
        for area in task.memory.areas where area.kind == .areaFile && area.memfdID == 0 && area.deletedFileID == 0 {
            keys.insert(MemoryState.fileKey(of: area))
        }
        return keys
    }

    /// Opens and installs in `root` the files two or more of `tasks` need; nil when there is
    /// nothing to share or the processes open files as different users.
    static func install(
        for tasks: [Amber_Task], in root: TreeTask, restorerPidfd: Int32, imageTrusted: Bool, openFiles: OpenFileTable
    ) throws -> TreeFiles? {
        let live = tasks.filter { !$0.zombie }
        func identity(_ task: Amber_Task) -> FileAccessIdentity? {
            task.processCredentials.map { FileAccessIdentity(uid: $0.fsuid, gid: $0.fsgid, groups: $0.groups) }
        }
        guard live.count > 1, live.allSatisfy({ identity($0) == identity(live[0]) }) else { return nil }
        var uses: [Key: Int] = [:]
        for task in live {
            for key in keys(of: task) { uses[key, default: 0] += 1 }
        }
        let shared = uses.filter { $0.value > 1 }.keys.sorted { ($0.path, $0.flags) < ($1.path, $1.flags) }
        let sharedDescriptions = OpenFileTable.sharedDescriptions(of: live)
        let count = shared.count + sharedDescriptions.count
        let base = max(live.flatMap { $0.files.descriptors.map(\.fd) }.max() ?? 2, restorerPidfd) + 1
        var limit = rlimit()
        guard count > 0, getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0,
            UInt64(base) + UInt64(count) < UInt64(limit.rlim_cur)
        else { return nil }
        var next = base
        /// Installs our `fd` at the next number in the root's helper, and closes ours.
        func install(_ fd: Int32) throws -> Int32 {
            defer { Glibc.close(fd) }
            let target = next
            next += 1
            let installed = try root.injector.call(
                "pidfd_getfd(\(fd))", SyscallNumber.pidfdGetfd, UInt64(restorerPidfd), UInt64(fd), 0)
            try root.injector.call(
                "dup3 to fd \(target)", SyscallNumber.dup3, installed, UInt64(target), UInt64(O_CLOEXEC))
            try root.injector.call("close", SyscallNumber.close, installed)
            return target
        }
        var files: [Key: (fd: Int32, status: FileStatus)] = [:]
        for key in shared {
            let fd = try RestoreSession.openAsTask(
                key.path, flags: key.flags, what: "the file (needed by several processes of the tree)",
                task: root.record, dumped: key.dumped, trusted: imageTrusted)
            let status: FileStatus
            do { status = try FileStatus.fstat(fd: fd) } catch {
                Glibc.close(fd)
                throw error
            }
            files[key] = (try install(fd), status)
        }
        var descriptions: [UInt32: Int32] = [:]
        for description in sharedDescriptions {
            descriptions[description.id] = try install(
                try openFiles.make(description, as: root.record, imageTrusted: imageTrusted))
        }
        return TreeFiles(files: files, descriptions: descriptions, descriptors: base...(next - 1))
    }
}
