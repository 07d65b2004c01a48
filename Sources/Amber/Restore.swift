import AmberImage
import Glibc
import LinuxKit
import Logging

/// Brings a process tree back from an image directory.
public enum Restore {
    /// An image read and checked as `run` reads it, with this host's key. `amber swrk` reads
    /// the image a runtime is about to name while the runtime still sets up the restorer
    /// (`SwrkImagePreread`); reading changes nothing, so a read nobody takes is dropped.
    public struct CheckedImage: Sendable {
        /// The directory it was read from, as given.
        public let directory: String
        public let image: ImageReader
        /// Every task record, the root's first, checked against one another.
        public let tasks: [Amber_Task]
        /// Read in advance: the new network namespace made for the tree, with no veth
        /// (`NetworkNamespaceState.makeInAdvance`); nil when it has none or it could not be made.
        let network: NetworkNamespace?

        /// `read`, and the tree's new network namespace made with no veth: what a restore with
        /// nothing but `directory` given would do first. Nothing outside the new namespace is
        /// changed.
        public static func readInAdvance(directory: String) throws(AmberError) -> CheckedImage {
            let checked = try read(directory: directory)
            return CheckedImage(
                directory: directory, image: checked.image, tasks: checked.tasks,
                network: try? NetworkNamespaceState.makeInAdvance(for: checked.tasks[0]))
        }

        /// Reads the image in `directory` (or from `pageServer`), checks every file and record
        /// of it, and that this host can run it.
        public static func read(
            directory: String, lazyPages: Bool = false, encryptionKey: ImageEncryptionKey? = nil,
            pageServer: String? = nil
        ) throws(AmberError) -> CheckedImage {
            let key = try HostImageKey.forCheck()
            do {
                let image: ImageReader
                if let pageServer {
                    image = try ImageReader(
                        pageServer: try PostCopy.connect(to: pageServer), address: pageServer, key: key,
                        checkPages: !lazyPages, encryptionKey: encryptionKey)
                } else {
                    image = try ImageReader(
                        directory: directory, key: key, checkPages: !lazyPages, encryptionKey: encryptionKey,
                        keepDecodedPages: true)
                }
                try checkHost(image.inventory)
                return CheckedImage(directory: directory, image: image, tasks: try image.tasks(), network: nil)
            } catch let error as ImageError {
                throw AmberError(.badImage, error.description)
            } catch let error as AmberError {
                throw error
            } catch {
                throw AmberError(.badImage, "\(error)")
            }
        }
    }

    /// The restored tree, running: the caller is the parent of `childPID` and reaps it.
    public struct Restored: Sendable {
        /// The root's PID here (in a new PID namespace, its PID inside is the old one).
        public let rootPID: Int32
        /// Our child: the root, or the init of the new PID namespace, which exits with the root's status.
        public let childPID: Int32
        /// For a shell job restored with -j: the job control the caller waits for the root with.
        public let shellJob: ShellJobControl?
        /// With `lazyPages`: what serves the tree's pages; the caller waits for it.
        public let lazyPages: LazyPageServer?
    }

    /// A file of /proc/PID the tree has open, restored into a new PID namespace with this
    /// host's /proc (the tree has no mount namespace of its own to mount one in), would name the
    /// process with that number here, not the one it named at the dump: refused.
    private static func refuseProcessFilesInNewPIDNamespace(_ tasks: [Amber_Task]) throws(AmberError) {
        for task in tasks {
            for description in task.files.descriptions {
                guard let path = OpenFileKinds.reopenedPath(of: description), path.hasPrefix("/proc/"),
                    let first = path.dropFirst(6).split(separator: "/").first, first.allSatisfy(\.isNumber)
                else { continue }
                throw AmberError(
                    .unsupported,
                    "process \(task.pid) (\(task.comm)) has \(path) open: in a new PID namespace, with this host's /proc, it would name another process; restore it without --new-pidns"
                )
            }
        }
    }

    /// Checks the whole image, recreates the tree with its PIDs and lets it run: the root is our
    /// child, or with `newPIDNamespace` the child of an init of a new PID namespace that is our
    /// child. On failure no task is left behind and the image is untouched. An image that is
    /// not authenticated with this host's key, unless `trustImage`, gets nothing from the
    /// restorer's privileges that the credentials it names do not hold (docs/security.md).
    /// `inheritedFiles` are our descriptors that take the place of the image's objects outside
    /// the tree (`ExternalFiles`), one for each. `shellJob` (-j) restores an image of a shell
    /// job on the terminal amber runs on, as its foreground job (`ShellJobControl`). The tree is
    /// made in the network namespace at `joinNetwork` when given, as it is (`NetworkNamespaceState`);
    /// else in a new one made as the image says, with the other end of each of its veths as
    /// `externalVeths` name them. With `lazyPages` the tree runs before the pages of its private
    /// anonymous areas are in (`LazyMemory`); the page files are checked chunk by chunk as their
    /// pages are served. A tree dumped in a mount namespace of its own comes back in a new one,
    /// its root directory and bind mounts of the host as `mounts` name them (`MountNamespaceState`).
    /// `joinNamespaces` names, by kind ("uts", "ipc"), the namespaces of other kinds the tree is
    /// made in as they are (`UTSNamespaceState`, `IPCNamespaceState`). With `pageServer`
    /// ("HOST:PORT") the image is read from the page server there rather than from `directory`
    /// (`PostCopy`): post-copy migration, with `lazyPages`. `cgroups` says which cgroups the
    /// tree is put into and made (`CgroupRestore`). With `sibling` the root is made the child
    /// of our parent instead (CRIU's --restore-sibling: a container runtime that started the
    /// restorer waits for the root as its own child); not with `newPIDNamespace`. `checkedImage`,
    /// the image in `directory` read and checked already (`CheckedImage.read`, nothing else
    /// given), is not read again.
    public static func run(
        directory: String, newPIDNamespace: Bool = false, trustImage: Bool = false,
        inheritedFiles: [InheritedFile] = [], shellJob: Bool = false, joinNetwork: String? = nil,
        externalVeths: [ExternalVeth] = [], lazyPages: Bool = false, encryptionKey: ImageEncryptionKey? = nil,
        logger: Logger, mounts: MountNamespaceRestore = MountNamespaceRestore(),
        joinNamespaces: [String: String] = [:], pageServer: String? = nil,
        cgroups cgroupOptions: CgroupRestoreOptions = CgroupRestoreOptions(), sibling: Bool = false,
        checkedImage: CheckedImage? = nil
    ) throws(AmberError) -> Restored {
        let started = ContinuousClock.now
        // An image read in advance stands for the one in `directory` only as read the way this restore reads it.
        let readInAdvance = checkedImage.flatMap {
            $0.directory == directory && pageServer == nil && !lazyPages && encryptionKey == nil ? $0 : nil
        }
        let checked: CheckedImage
        if let readInAdvance {
            checked = readInAdvance
        } else {
            checked = try CheckedImage.read(
                directory: directory, lazyPages: lazyPages, encryptionKey: encryptionKey, pageServer: pageServer)
        }
        let image = checked.image
        let tasks = checked.tasks
        try FaultPoints.reached(restore: FaultPoints.read)
        logger.trace("image read and checked\(readInAdvance == nil ? "" : " in advance"): \(tasks.count) processes")
        if !lazyPages {
            MemoryProgress.expect(
                tasks.reduce(0) { total, task in
                    task.memory.areas.reduce(total) { $0 + $1.pages.reduce(0) { $0 + $1.count } * MemoryState.pageSize }
                })
        }
        if lazyPages, image.parent != nil {
            throw AmberError(
                .unsupported,
                "--lazy-pages serves pages from the image's own page files only, and this image is incremental (its pages are also in the pre-dumps it refers to): restore it without --lazy-pages"
            )
        }
        if sibling && newPIDNamespace {
            throw AmberError(
                .failure, "the root is made our parent's child, or the child of a new PID namespace's init: not both")
        }
        try CredentialState.checkRestorable(tasks)
        if newPIDNamespace && !tasks[0].hasMountNamespace { try refuseProcessFilesInNewPIDNamespace(tasks) }
        try MountNamespaceState.checkOptions(mounts, for: tasks[0])
        let terminal = try ShellJobControl.terminal(for: tasks, requested: shellJob, logger: logger)
        let inherited = try ExternalFiles.descriptors(inheritedFiles, for: tasks)
        let imageTrusted = trustImage || image.authenticity.isAuthenticated
        logger.debug("image \(image.authenticity)\(trustImage ? "; trusted with --trust-image" : "")")
        if !imageTrusted {
            try ImagePrivileges.refuseUnheld(tasks, authenticity: image.authenticity)
            try ImagePrivileges.refuseUnopenableFiles(tasks, authenticity: image.authenticity)
        }
        for task in tasks where !newPIDNamespace {
            for pid in task.zombie ? [task.pid] : task.threads.map(\.tid) where Signals.processExists(pid) {
                throw TreeState.pidTaken(pid)
            }
        }
        // Injected syscalls cost several times more when the restorer and the task run on
        // different CPUs: all stay on this one until they are let go (the helpers inherit it).
        let ownAffinity = try? CPUAffinity.of(0)
        try? CPUAffinity(cpu: CPUAffinity.currentCPU).apply(to: 0)
        defer { try? ownAffinity?.apply(to: 0) }
        // Orphans of a failed restore come to us, so that we can reap them and free their PIDs.
        try? ProcessControl.setChildSubreaper(true)
        defer { try? ProcessControl.setChildSubreaper(false) }
        // The tree's processes and the sockets made for them are in the restoring thread's
        // network namespace: it enters the tree's until the tree runs.
        let ownNetwork = try NetworkNamespaceState.enter(
            for: tasks[0], joining: joinNetwork, veths: externalVeths, madeInAdvance: readInAdvance?.network)
        defer { ownNetwork?.enterOrAbort() }
        TcpConnectionKind.prepareLocks(tasks, namespaceMade: ownNetwork != nil && joinNetwork == nil)
        let cgroups = try CgroupRestore(
            tasks: tasks, options: cgroupOptions, imageTrusted: imageTrusted, logger: logger)
        let ownUTS = try UTSNamespaceState.enter(for: tasks[0], joining: joinNamespaces["uts"])
        defer { ownUTS?.enterOrAbort() }
        let ownIPC = try IPCNamespaceState.enter(for: tasks[0], joining: joinNamespaces["ipc"])
        defer { ownIPC?.enterOrAbort() }
        var created: [Tracee] = []
        // Paths of the image are the tree's, under this root directory, until the tree runs.
        var mountRoot: Int32?
        defer {
            if let mountRoot {
                PathOpening.useRoot(nil)
                close(mountRoot)
            }
        }
        let openFiles = OpenFileTable(inherited: inherited, image: image)
        var jobControl: ShellJobControl?
        var server: LazyPageServer?
        do {
            if lazyPages { server = try LazyPageServer(image: image, started: started, logger: logger) }
            if let terminal { _ = try openFiles.objects.object(ShellJobTerminal.objectID) { terminal } }
            let instruction = try syscallInstruction()
            let restorerPidfd = try Pidfd(pid: getpid())
            let boundingDrop = CredentialState.helperBoundingDrop(tasks)
            let namespaceInit =
                try newPIDNamespace
                ? NamespaceInit(
                    root: tasks[0], instruction: instruction, restorerPidfd: restorerPidfd.fd, created: &created,
                    boundingDrop: boundingDrop) : nil
            logger.trace("helper ready")
            var treeFiles: TreeFiles?
            let built = try TreeState.build(
                tasks, instruction: instruction, restorerPidfd: restorerPidfd.fd, imageTrusted: imageTrusted,
                namespaceInit: namespaceInit, created: &created, treeFiles: &treeFiles, openFiles: openFiles,
                logger: logger, mounts: mounts, mountRoot: &mountRoot, sibling: sibling, boundingDrop: boundingDrop)
            try cgroups.apply(to: built, restorerPidfd: restorerPidfd.fd)
            let baseline = try HelperBaseline.ofRestorer()
            var sessions: [RestoreSession] = []
            for task in built {
                let session = RestoreSession(
                    task: task.record, image: image, imageTrusted: imageTrusted, tracee: task.tracee,
                    injector: task.injector, baseline: baseline, treeFiles: treeFiles, openFiles: openFiles,
                    inheritedPidfd: restorerPidfd.fd, logger: logger)
                session.lazyPages = server
                try restore(session)
                sessions.append(session)
            }
            openFiles.close()
            try? ProcessControl.setChildSubreaper(false)
            let child = namespaceInit?.pid ?? built[0].pid
            try ownAffinity?.apply(to: child)
            for step in StateKinds.restoreSteps(.tree) {
                try step.reached()
                for session in sessions { try step.run(session) }
            }
            try TcpConnectionKind.unlock(tasks)
            try FaultPoints.reached(restore: FaultPoints.detach)
            if let terminal {
                let job = tasks[0].shellJob
                jobControl = try ShellJobControl(
                    terminal: terminal, group: getpgid(built[0].pid), settings: job.hasSettings ? job.settings : nil)
            }
            let stopped = try TreeState.letGoStopped(sessions)
            for session in sessions where !stopped.contains(where: { $0 === session }) {
                for thread in session.threads { try thread.detach() }
            }
            try namespaceInit?.tracee.detach()
            jobControl?.announceWindowSize()
            server?.treeRuns()
            return Restored(rootPID: built[0].pid, childPID: child, shellJob: jobControl, lazyPages: server)
        } catch {
            jobControl?.takeBack()
            killAll(created)
            cgroups.removeMade()
            server?.stop()
            openFiles.close()
            openFiles.removeMadeFiles()
            if let failure = server?.failed { throw failure }
            if let error = error as? AmberError { throw error }
            throw AmberError(.restoreFailed, "restore of process \(tasks[0].pid) (\(tasks[0].comm)) failed: \(error)")
        }
    }

    /// The address of a `syscall` instruction in our own vDSO, which every helper inherits.
    private static func syscallInstruction() throws -> UInt64 {
        guard let vdso = try ProcFS.maps(pid: getpid()).first(where: { $0.path == "[vdso]" }) else {
            throw AmberError(.incompatibleHost, "this kernel gives processes no vDSO")
        }
        return try SyscallInjector.findSyscallInstruction(pid: getpid(), vdso: vdso.start..<vdso.end)
    }

    /// Kills every task made so far and reaps it: as their tracer and (for orphans) their subreaper.
    private static func killAll(_ created: [Tracee]) {
        for tracee in created { _ = Glibc.kill(tracee.pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(-1, &status, __WALL) > 0 || errno == EINTR {}
    }

    /// Refuses an image this host cannot run: other architecture, or CPU state features it lacks.
    static func checkHost(_ inventory: Amber_Inventory) throws(AmberError) {
        var names = utsname()
        uname(&names)
        let machine = withUnsafeBytes(of: names.machine) {
            String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        guard inventory.machine == machine else {
            throw AmberError(.incompatibleHost, "the image was taken on \(inventory.machine), this host is \(machine)")
        }
        let missing = inventory.xstateFeatures & ~HostCPU.xstateFeatures
        guard missing == 0 else {
            throw AmberError(
                .incompatibleHost,
                "this CPU lacks xstate features the image uses (XCR0 bits 0x\(String(missing, radix: 16)); image 0x\(String(inventory.xstateFeatures, radix: 16)), here 0x\(String(HostCPU.xstateFeatures, radix: 16)))"
            )
        }
    }

    /// Turns one stopped helper into its old self, each kind of state by its steps in their
    /// order (`StateKinds`); every thread is left stopped.
    private static func restore(_ session: RestoreSession) throws {
        let task = session.task
        func run(_ steps: [RestoreStep]) throws {
            for step in steps {
                try step.reached()
                try step.run(session)
                session.logger.trace("process \(task.pid): \(step.name) restored")
            }
        }
        try run(StateKinds.restoreSteps(.process))
        try FaultPoints.reached(restore: FaultPoints.cleanup)
        try session.cleanUp()
        try run(StateKinds.restoreSteps(.afterCleanUp))
        session.logger.debug("process \(task.pid): \(session.threads.count) threads, registers set")
    }
}
