import Amber
import AmberImage
import Glibc
import LinuxKit
import Logging

/// One DUMP, PRE_DUMP or RESTORE of `amber swrk`: its directories (descriptors of the
/// requesting process, reached through /proc/PEER/fd, as CRIU does), its log, its
/// notifications, and the library call.
struct SwrkSession {
    let socket: PacketSocket
    let options: SwrkOptions
    let imagesPath: String
    let logger: Logger
    /// For a RESTORE: the image in `imagesPath`, if it was read while the runtime got ready to ask.
    let checkedImage: Restore.CheckedImage?
    /// The standard error amber was started with, kept when an inherit_fd names it (runc hands
    /// a container's stderr pipe that way) before the log took its place.
    private let keptStandardError: Int32?

    /// `preread`: the image read in advance, for a RESTORE.
    init(socket: PacketSocket, options: SwrkOptions, preread: SwrkImagePreread? = nil) throws(SwrkServer.Failure) {
        self.socket = socket
        self.options = options
        let peer = try Self.peer(of: socket)
        let images = try Self.openImages(options, peer: peer)
        defer { close(images) }
        // The image directory by its path: the writer and reader follow no symbolic link, /proc's included.
        imagesPath = try Self.path(of: images)
        checkedImage = preread?.take(path: imagesPath, images: images)
        keptStandardError = try Self.redirectLog(options, peer: peer, images: images)
        // CRIU's levels: 0 and 1 errors, 2 warnings, 3 information, 4 debugging.
        logger = GlobalOptions.makeLogger(verbosity: options.logLevel >= 4 ? 2 : options.logLevel == 3 ? 1 : 0)
    }

    /// For a refused request: amber's standard error goes into its log, when its directories open.
    static func redirectLog(of options: SwrkOptions, socket: PacketSocket) {
        guard let peer = try? peer(of: socket), let images = try? openImages(options, peer: peer) else { return }
        defer { close(images) }
        _ = try? redirectLog(options, peer: peer, images: images)
    }

    private static func peer(of socket: PacketSocket) throws(SwrkServer.Failure) -> Int32 {
        do { return try socket.peerPID() } catch { throw SwrkServer.Failure(message: "\(error)") }
    }

    private static func openImages(_ options: SwrkOptions, peer: Int32) throws(SwrkServer.Failure) -> Int32 {
        switch options.images {
        case .path(let path): try openDirectory(path, what: "images_dir")
        case .peerDescriptor(let fd): try openDirectory("/proc/\(peer)/fd/\(fd)", what: "images_dir_fd")
        }
    }

    /// `log_file` in the work directory (else the image directory) takes amber's standard error.
    /// Returns a copy of the standard error it replaced when an inherit_fd names it.
    private static func redirectLog(_ options: SwrkOptions, peer: Int32, images: Int32) throws(SwrkServer.Failure)
        -> Int32?
    {
        guard let name = options.logFile, !options.logToStandardError else { return nil }
        let work = try options.workDirectoryFD.map { fd throws(SwrkServer.Failure) in
            try openDirectory("/proc/\(peer)/fd/\(fd)", what: "work_dir_fd")
        }
        defer { if let work { close(work) } }
        let log = openat(work ?? images, name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard log >= 0 else {
            throw SwrkServer.Failure(message: "log_file \(name): \(LinuxError.current("open").errno.name)")
        }
        let named = options.inheritFDs.contains { InheritedFile(argument: $0)?.fd == STDERR_FILENO }
        let kept = named ? fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3) : -1
        dup2(log, STDERR_FILENO)
        close(log)
        return kept >= 0 ? kept : nil
    }

    func run(_ kind: SwrkRequest.Kind, type: Swrk_RequestType) throws(SwrkServer.Failure) -> Swrk_Response {
        if let file = options.configFile, access(file, F_OK) == 0 {
            throw SwrkServer.Failure(
                message: "config_file \(file): amber reads no CRIU configuration file, and this one exists")
        }
        logger.notice(
            "amber swrk: \(type.name) of \(kind == .restore ? "the image" : "process \(options.pid)") in \(imagesPath)")
        for mount in options.externalMounts { logger.info("ext_mnt: \(mount)") }
        if let root = options.root { logger.info("root: \(root)") }
        if kind == .restore {
            logger.info("manage_cgroups: mode \(options.cgroupMode)")
            for (controller, path) in options.cgroupRoots.sorted(by: { $0.key < $1.key }) {
                logger.info("cg_root: \(controller.isEmpty ? "(every other hierarchy)" : controller) \(path)")
            }
        }
        var response = Swrk_Response()
        switch kind {
        case .dump:
            try dump()
            response.dump.restored = false
        case .preDump:
            try checkCgroup()
            let previous = try previous()
            do {
                let summary = try PreDump.run(
                    pid: options.pid, directory: imagesPath, previous: previous, amongOtherFiles: true, logger: logger)
                logger.notice("pre-dumped process \(summary.pid): memory tracker PID \(summary.trackerPID)")
            } catch {
                throw SwrkServer.Failure(message: error.message)
            }
        case .restore:
            response.restore.pid = try restore()
        case .check, .featureCheck, .version, .notify:
            throw SwrkServer.Failure(message: "\(type.name) is not a session")
        }
        return response
    }

    private func dump() throws(SwrkServer.Failure) {
        try checkCgroup()
        let previous = try previous()
        try notify("pre-dump")
        // CRIU locks the network of a tree in a network namespace of its own; the runtime's
        // handlers for these notifications do what the runtime set up for the container.
        let ownNetwork = Self.namespace(options.pid) != Self.namespace(getpid())
        if ownNetwork { try notify("network-lock") }
        let standardStreams = standardStreamPipesHeldOutside()
        for name in standardStreams {
            logger.info("\(name) at the tree root's standard streams, held outside the tree: external")
        }
        do {
            let summary = try Checkpoint.run(
                pid: options.pid, directory: imagesPath, leaveRunning: options.leaveRunning,
                externalFiles: Set(options.externalFiles + externalMountsOfTree() + standardStreams),
                shellJob: options.shellJob,
                tcpEstablished: options.tcpEstablished, previous: previous, amongOtherFiles: true,
                networkMadeAgain: true, logger: logger)
            logger.notice(
                "dumped process \(summary.pid) (\(summary.comm)) and its tree: \(summary.processes) processes, \(summary.threads) threads"
            )
        } catch {
            if ownNetwork { try? notify("network-unlock") }
            throw SwrkServer.Failure(message: error.message)
        }
        try markComplete()
        try notify("post-dump")
        if ownNetwork && options.leaveRunning { try notify("network-unlock") }
    }

    /// Restores the image; the tree is swrk's child until swrk exits, or with `rst_sibling` the
    /// runtime's. The notifications come
    /// once the tree runs: amber's restore has no step between making the tree and letting it go.
    private func restore() throws(SwrkServer.Failure) -> Int32 {
        let inherited = options.inheritFDs.compactMap(InheritedFile.init(argument:)).map { file in
            file.fd == STDERR_FILENO ? InheritedFile(fd: keptStandardError ?? file.fd, name: file.name) : file
        }
        let veths = options.externalVeths.compactMap(ExternalVeth.init(argument:))
        let mounts = options.externalMounts.compactMap(ExternalMount.init(argument:))
        guard inherited.count == options.inheritFDs.count, veths.count == options.externalVeths.count,
            mounts.count == options.externalMounts.count
        else {
            throw SwrkServer.Failure(
                message:
                    "inherit_fd, external or ext_mnt: \((options.inheritFDs + options.externalVeths + options.externalMounts).joined(separator: ", ")) not understood"
            )
        }
        let restored: Restore.Restored
        do {
            restored = try Restore.run(
                directory: imagesPath, inheritedFiles: inherited, shellJob: options.shellJob, externalVeths: veths,
                logger: logger,
                mounts: MountNamespaceRestore(root: options.root, externals: mounts, ignoresUnknownKeys: true),
                cgroups: CgroupRestoreOptions(
                    mode: CgroupMode(rawValue: options.cgroupMode) ?? .soft, roots: options.cgroupRoots),
                sibling: options.restoreSibling, checkedImage: checkedImage)
        } catch {
            throw SwrkServer.Failure(message: error.message)
        }
        for file in inherited { close(file.fd) }
        logger.notice("restored process \(restored.rootPID)")
        try notify("setup-namespaces", pid: restored.rootPID)
        try notify("post-restore", pid: restored.rootPID)
        return restored.rootPID
    }

    /// The ext_mnt of a DUMP that name a mount point of the tree's namespace. runc names
    /// every bind mount and device of the container's configuration, some of which it did not
    /// mount (device nodes it made instead); CRIU ignores a key no mount has, and so does swrk.
    /// A mount the tree has and no ext_mnt names is still refused by the dump.
    private func externalMountsOfTree() -> [String] {
        guard !options.externalMounts.isEmpty, let infos = try? ProcFS.mountInfo(pid: options.pid) else {
            return options.externalMounts
        }
        let mountPoints = Set(infos.map(\.mountPoint))
        return options.externalMounts.filter { argument in
            guard let mount = ExternalMount(argument: argument), mountPoints.contains(mount.inside) else {
                logger.info("ext_mnt \(argument): no such mount in the tree's namespace, left out as CRIU does")
                return false
            }
            return true
        }
    }

    /// Sends a notification when the request asked for them, and waits for the runtime's answer.
    func notify(_ script: String, pid: Int32? = nil) throws(SwrkServer.Failure) {
        guard options.notifyScripts else { return }
        var response = SwrkServer.response(.notify, success: true)
        response.notify.script = script
        if let pid { response.notify.pid = pid }
        logger.debug("notifying the runtime: \(script)")
        do {
            try socket.send(try response.serializedBytes())
            guard case .packet(let bytes) = try socket.receive(maximum: SwrkRequest.maximumSize) else {
                throw SwrkServer.Failure(message: "the runtime did not answer the \(script) notification")
            }
            let answer = try SwrkRequest.decode(bytes)
            guard answer.kind == .notify else {
                throw SwrkServer.Failure(message: "a \(answer.type.name) request where the answer to \(script) was due")
            }
            guard answer.notifySuccess else {
                throw SwrkServer.Failure(message: "the runtime's \(script) callback failed")
            }
            logger.trace("the runtime answered \(script)")
        } catch let error as SwrkServer.Failure {
            throw error
        } catch {
            throw SwrkServer.Failure(message: "notification \(script): \(error)")
        }
    }

    /// parent_img, relative to the image directory, as a path (the pre-dump must be beside the image).
    private func previous() throws(SwrkServer.Failure) -> String? {
        guard let parent = options.parentImage else { return nil }
        var components: [Substring] = []
        for component in (parent.hasPrefix("/") ? parent : imagesPath + "/" + parent).split(separator: "/") {
            if component == ".." { _ = components.popLast() } else if component != "." { components.append(component) }
        }
        return "/" + components.joined(separator: "/")
    }

    /// freeze_cgroup (a cgroup directory): every process in it must be in the tree, as amber
    /// freezes the tree itself.
    private func checkCgroup() throws(SwrkServer.Failure) {
        guard let cgroup = options.freezeCgroup else { return }
        guard let procs = Self.readText("\(cgroup)/cgroup.procs") else {
            throw SwrkServer.Failure(
                message: "freeze_cgroup \(cgroup): no cgroup.procs to read")
        }
        let members = Set(procs.split(separator: "\n").compactMap { Int32($0) })
        let tree = Self.tree(of: options.pid)
        // A member gone by the time the tree is walked (a shell's short-lived child) is no longer one.
        if let outsider = members.subtracting(tree).filter({ kill($0, 0) == 0 || errno != ESRCH }).min() {
            throw SwrkServer.Failure(
                message:
                    "freeze_cgroup \(cgroup) holds process \(outsider) (\(Self.comm(outsider))), outside the tree of process \(options.pid): amber freezes the tree only"
            )
        }
    }

    /// `root` and its descendants, by their children files.
    static func tree(of root: Int32) -> Set<Int32> {
        var tree: Set<Int32> = [root]
        var pending = [root]
        while let pid = pending.popLast() {
            guard let directory = opendir("/proc/\(pid)/task") else { continue }
            defer { closedir(directory) }
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard Int32(name) != nil, let children = readText("/proc/\(pid)/task/\(name)/children") else {
                    continue
                }
                for child in children.split(separator: " ").compactMap({ Int32($0) }) where tree.insert(child).inserted
                {
                    pending.append(child)
                }
            }
        }
        return tree
    }

    static func comm(_ pid: Int32) -> String {
        readText("/proc/\(pid)/comm")?.split(separator: "\n").first.map(String.init) ?? "?"
    }

    static func namespace(_ pid: Int32) -> UInt64? {
        var status = stat()
        return stat("/proc/\(pid)/ns/net", &status) == 0 ? UInt64(status.st_ino) : nil
    }

    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func openDirectory(_ path: String, what: String) throws(SwrkServer.Failure) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SwrkServer.Failure(message: "\(what): cannot open \(path): \(LinuxError.current("open").errno.name)")
        }
        return fd
    }

    static func path(of fd: Int32) throws(SwrkServer.Failure) -> String {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count)
        guard length > 0, buffer[0] == UInt8(ascii: "/") else {
            throw SwrkServer.Failure(message: "cannot find the image directory's path (/proc/self/fd/\(fd))")
        }
        return String(decoding: buffer[..<length], as: UTF8.self)
    }
}
