import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit

/// `--external mnt[...]:...`, CRIU's forms: on dump `mnt[MOUNT_POINT]:KEY` records the bind
/// mount at MOUNT_POINT (as the tree sees it) as one of the host's, by KEY alone; on restore
/// `mnt[KEY]:PATH` binds the host's PATH in its place.
public struct ExternalMount: Sendable, Hashable {
    /// Dump: the mount point; restore: the key.
    public let inside: String
    /// Dump: the key; restore: the host's path.
    public let outside: String

    /// nil when `argument` is not "mnt[INSIDE]:OUTSIDE", both non-empty.
    public init?(argument: String) {
        guard argument.hasPrefix("mnt["), let close = argument.firstRange(of: "]:") else { return nil }
        inside = String(argument[argument.index(argument.startIndex, offsetBy: 4)..<close.lowerBound])
        outside = String(argument[close.upperBound...])
        guard !inside.isEmpty, !outside.isEmpty else { return nil }
    }

    public var argument: String { "mnt[\(inside)]:\(outside)" }
}

/// What `restore` is given for a tree dumped in a mount namespace of its own: `--root PATH`,
/// the directory its root mount becomes, and `--external mnt[KEY]:PATH` for each of its bind
/// mounts of the host.
public struct MountNamespaceRestore: Sendable {
    public var root: String?
    public var externals: [ExternalMount]
    /// An external whose key the image has no bind mount for is left out rather than refused,
    /// as CRIU does with the ext_mnt of a RESTORE: runc names every bind mount and device of
    /// the container's configuration, including those the tree's namespace did not have.
    public var ignoresUnknownKeys: Bool

    public init(root: String? = nil, externals: [ExternalMount] = [], ignoresUnknownKeys: Bool = false) {
        self.root = root
        self.externals = externals
        self.ignoresUnknownKeys = ignoresUnknownKeys
    }
}

/// The mount namespace of a tree, when it is not amber's: every process of the tree must be in
/// its root's, as a container runtime makes one (unshare(CLONE_NEWNS), the mounts private, a
/// root directory entered with pivot_root). The dump records every mount of it on the root's
/// record, the files of each tmpfs with it; the restore clones the root with CLONE_NEWNS,
/// makes the mounts from a thread of amber's in its namespace, enters the root with pivot_root
/// and checks the result against the record, before any other process is cloned from it. Paths of the image
/// are the tree's: at the dump amber reaches them through /proc/PID/root, at the restore every
/// path is resolved under the restored root's root directory (`PathOpening.useRoot`).
enum MountNamespaceState {
    /// The bytes the files of all the tmpfs mounts of a tree may hold, which go into its record.
    static let tmpfsLimit = 64 << 20

    /// Character devices a tmpfs may hold (made again with mknod): null, zero, full, random,
    /// urandom and tty, which grant nothing.
    static let harmlessDevices: Set<UInt64> = [
        makeDevice(1, 3), makeDevice(1, 5), makeDevice(1, 7), makeDevice(1, 8), makeDevice(1, 9), makeDevice(5, 0),
    ]

    /// The mounts an internal bind mount may bind a file of: those the restore makes itself.
    static let bindSources: Set<Amber_MountNamespaceMount.Kind> = [.tmpfs, .proc, .sysfs, .devpts]

    static func makeDevice(_ major: UInt64, _ minor: UInt64) -> UInt64 {
        (major & 0xfff) << 8 | (major & ~0xfff) << 32 | (minor & 0xff) | (minor & ~0xff) << 12
    }

    private static let own: String? = try? ProcFS.namespace(pid: getpid(), kind: "mnt")

    static func namespace(of pid: Int32) throws -> String { try ProcFS.namespace(pid: pid, kind: "mnt") }

    static func isOwnNamespace(of pid: Int32) throws -> Bool { try namespace(of: pid) == own }

    /// Whether `path` (the tree's) is in a tmpfs of `namespace`, directly or through a bind
    /// mount of one: a file the restore made there from the image.
    static func isMadeByRestore(_ path: String, in namespace: Amber_MountNamespace) -> Bool {
        let holding = namespace.mounts.filter { mount in
            mount.mountPoint == "/" || path == mount.mountPoint || path.hasPrefix(mount.mountPoint + "/")
        }
        guard let mount = holding.max(by: { $0.mountPoint.count < $1.mountPoint.count }) else { return false }
        switch mount.kind {
        case .tmpfs: return true
        case .internalBind: return namespace.mounts.first { $0.id == mount.bindOf }?.kind == .tmpfs
        default: return false
        }
    }

    /// `path` as process `pid` sees it, as amber reaches it: through /proc/PID/root when the
    /// process is in another mount namespace.
    static func hostPath(_ path: String, of pid: Int32) -> String {
        guard path.hasPrefix("/"), let theirs = try? namespace(of: pid), theirs != own else { return path }
        return "/proc/\(pid)/root\(path)"
    }

    // MARK: Dump

    /// The mounts of the namespace of `root`, classified: every one a restore makes again, or
    /// a refusal naming the first that it cannot. `externals`: the bind mounts the dump names
    /// as the host's, key by mount point.
    static func mounts(of root: ProcessName, externals: [String: String]) throws -> [Amber_MountNamespaceMount] {
        let pid = root.pid
        let infos = try ProcFS.mountInfo(pid: pid)
        func refuse(_ mount: MountInfo, _ why: String) -> AmberError {
            .unsupported(
                root,
                "has the mount \(mount.mountPoint) (\(mount.fsType) from \(mount.source)) in its mount namespace: \(why)"
            )
        }
        guard let rootMount = infos.first(where: { $0.mountPoint == "/" }), infos.first?.mountPoint == "/" else {
            throw AmberError.unsupported(
                root,
                "has no mount at / in its mount namespace as it sees it (a root directory that is not the root of a mount: chroot inside its namespace): not supported"
            )
        }
        let ids = Set(infos.map(\.id))
        let devices = Dictionary(infos.map { ($0.id, $0.device) }, uniquingKeysWith: { first, _ in first })
        var seenPoints: Set<String> = []
        var tmpfsDevices: Set<String> = []
        var records: [Amber_MountNamespaceMount] = []
        for info in infos {
            guard seenPoints.insert(info.mountPoint).inserted else {
                throw refuse(
                    info, "it is mounted over another mount at the same place: stacked mounts are not supported")
            }
            if info.id != rootMount.id && !ids.contains(info.parentID) {
                throw refuse(info, "its parent mount is not in the namespace as the tree sees it")
            }
            if let option = info.otherOptions.first {
                throw refuse(info, "its mount option \(option) is not restored")
            }
            if info.root.hasSuffix("//deleted") {
                throw refuse(info, "it is a bind mount of \(info.root.dropLast(9)), deleted since")
            }
            for (what, text) in [("options", info.superOptions), ("type", info.fsType)]
            where !ImageFormat.isMountOptionText(text) {
                throw refuse(info, "its \(what) \"\(text)\" has a space or a byte mount(2) would not be given back")
            }
            for field in info.optionalFields where field != "unbindable" {
                let what =
                    field.hasPrefix("shared:")
                    ? "it is shared (\(field)): propagation to and from its peers is not restored, only private and unbindable mounts"
                    : "it receives propagation (\(field)): only private and unbindable mounts are restored"
                throw refuse(info, what)
            }
            var record = Amber_MountNamespaceMount()
            record.id = info.id
            record.parentID = info.parentID
            record.mountPoint = info.mountPoint
            record.fsType = info.fsType
            record.source = info.source
            record.options = info.superOptions
            record.flags = info.flags
            record.unbindable = info.optionalFields.contains("unbindable")
            if info.id == rootMount.id {
                record.kind = .root
            } else if let key = externals[info.mountPoint] {
                record.kind = .external
                record.externalKey = key
            } else if info.root != "/",
                let source = records.first(where: { bindSources.contains($0.kind) && devices[$0.id] == info.device })
            {
                record.kind = .internalBind
                record.bindOf = source.id
                record.bindPath = String(info.root.drop { $0 == "/" })
            } else if info.root != "/" {
                throw refuse(
                    info,
                    "it is a bind mount of \(info.root) of its filesystem: a bind mount is restored only as one of the host's, which dump --external mnt[\(info.mountPoint)]:KEY names"
                )
            } else {
                switch info.fsType {
                case "tmpfs":
                    guard tmpfsDevices.insert(info.device).inserted else {
                        throw refuse(info, "its tmpfs is mounted twice in the namespace: not supported")
                    }
                    record.kind = .tmpfs
                case "proc":
                    try checkProcOfTree(info, root: root)
                    record.kind = .proc
                case "sysfs": record.kind = .sysfs
                case "mqueue":
                    let names = (try? FileTree.read("/proc/\(pid)/root\(info.mountPoint)", limit: 0).count) ?? 0
                    guard names == 1 else {
                        throw refuse(info, "it holds message queues: only an empty mqueue mount is restored")
                    }
                    record.kind = .mqueue
                case "devpts":
                    let names =
                        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root\(info.mountPoint)"))
                        ?? []
                    guard names == ["ptmx"] else {
                        throw refuse(
                            info,
                            "it holds the ptys \(names.filter { $0 != "ptmx" }.sorted().joined(separator: ", ")): only a devpts without ptys is restored (a container's terminal is not)"
                        )
                    }
                    record.kind = .devpts
                default:
                    throw refuse(
                        info,
                        "a mount of type \(info.fsType) inside the namespace is not restored (only tmpfs, proc, sysfs, mqueue, and bind mounts named by dump --external mnt[\(info.mountPoint)]:KEY)"
                    )
                }
            }
            if record.kind != .root && record.kind != .external && !ImageFormat.isMountOptionText(info.source) {
                throw refuse(
                    info, "its source \"\(info.source)\" has a space or a byte mount(2) would not be given back")
            }
            records.append(record)
        }
        for mountPoint in externals.keys.sorted() where !seenPoints.contains(mountPoint) {
            throw AmberError(
                .failure, "--external mnt[\(mountPoint)]:...: the tree of \(root) has no mount at \(mountPoint)")
        }
        return records
    }

    /// A proc mount must be of the tree's PID namespace: the one the restored root mounts.
    private static func checkProcOfTree(_ info: MountInfo, root: ProcessName) throws {
        let pid = root.pid
        let inner = (try? ProcFS.status(pid: pid))?.namespacePIDs.last ?? pid
        let shown = try? ProcFS.link("/proc/\(pid)/root\(info.mountPoint)/\(inner)/ns/pid")
        let own = try ProcFS.link("/proc/\(pid)/ns/pid")
        guard shown == own else {
            throw AmberError.unsupported(
                root,
                "has the proc mount \(info.mountPoint) of another PID namespace than its own: the restored tree's proc shows its own"
            )
        }
    }

    /// The record of the namespace of `dump`'s process, the root: its mounts, with the files of
    /// each tmpfs read from a detached copy of that mount alone (what mounts on it hide too).
    static func record(of dump: ProcessDump, externals: [String: String]) throws -> Amber_MountNamespace {
        var record = Amber_MountNamespace()
        let link = try namespace(of: dump.pid)
        record.inode = UInt64(link.drop { !$0.isNumber }.prefix { $0.isNumber }) ?? 0
        record.mounts = try mounts(of: dump.tree, externals: externals)
        var left = tmpfsLimit
        for index in record.mounts.indices where record.mounts[index].kind == .tmpfs {
            let mountPoint = record.mounts[index].mountPoint
            let entries: [FileTreeEntry]
            do {
                let fd = try MountNamespaceAccess.detachedCopy(of: mountPoint, inNamespaceOf: dump.pid)
                defer { close(fd) }
                entries = try FileTree.read("/proc/self/fd/\(fd)", limit: left)
            } catch {
                throw AmberError.unsupported(
                    dump.name,
                    "has the tmpfs \(mountPoint) in its mount namespace, whose files amber cannot read: \(error)\(error.errno == .fileTooLarge ? " (a tree's tmpfs files are saved into its image, up to \(tmpfsLimit >> 20) MiB in all)" : "")"
                )
            }
            for entry in entries {
                left -= entry.contents.count
                if let why = refusal(of: entry) {
                    throw AmberError.unsupported(
                        dump.name, "has \(mountPoint)/\(entry.path) in the tmpfs \(mountPoint): \(why)")
                }
            }
            record.mounts[index].root = file(entries[0])
            record.mounts[index].files = entries.dropFirst().map(file)
        }
        return record
    }

    /// Why a file of a tmpfs is not saved; nil when it is.
    private static func refusal(of entry: FileTreeEntry) -> String? {
        if entry.type != FileTreeEntry.directory, entry.links > 1 {
            return "it has \(entry.links) names (hard links): each name would be made again as a file of its own"
        }
        if entry.attributeNamesLength > 0 {
            return "it has extended attributes (or a POSIX ACL), which are not saved"
        }
        if entry.inodeFlags & (FileAttributes.setByChattr | FileAttributes.inheritedFromDirectory) != 0 {
            return "it has the inode flags 0x\(String(entry.inodeFlags, radix: 16)) (chattr), which are not saved"
        }
        switch entry.type {
        case FileTreeEntry.directory, FileTreeEntry.regular, FileTreeEntry.symbolicLink: return nil
        case FileTreeEntry.characterDevice:
            return harmlessDevices.contains(entry.device)
                ? nil
                : "a character device other than null, zero, full, random, urandom and tty is not made again"
        default:
            return "a socket, FIFO or block device in a tmpfs is not made again"
        }
    }

    private static func file(_ entry: FileTreeEntry) -> Amber_MountNamespaceFile {
        var file = Amber_MountNamespaceFile()
        file.path = entry.path
        file.mode = entry.mode
        file.uid = entry.uid
        file.gid = entry.gid
        file.modifiedNs = entry.modifiedNs
        file.accessedNs = entry.accessedNs
        file.contents = Data(entry.contents)
        file.target = entry.target
        file.device = entry.device
        return file
    }

    // MARK: Restore

    /// Refuses `options` that do not fit the image's `root` task: --root and an --external
    /// mnt[KEY]:PATH for each bind mount of the host for a tree in a mount namespace of its
    /// own, neither for another; --root a directory.
    static func checkOptions(_ options: MountNamespaceRestore, for root: Amber_Task) throws(AmberError) {
        guard root.hasMountNamespace else {
            if let path = options.root {
                throw AmberError(.failure, "--root \(path): the image's tree was in amber's own mount namespace")
            }
            if let external = options.externals.first, !options.ignoresUnknownKeys {
                throw AmberError(
                    .failure, "--external \(external.argument): the image's tree was in amber's own mount namespace")
            }
            return
        }
        let record = root.mountNamespace
        guard let rootPath = options.root else {
            throw AmberError(
                .failure,
                "the image's tree was in a mount namespace of its own: restore --root PATH names the directory its root mount becomes"
            )
        }
        guard rootPath.hasPrefix("/"), (try? FileStatus.stat(path: rootPath))?.isDirectory == true else {
            throw AmberError(.failure, "--root \(rootPath): not an absolute path to a directory")
        }
        let keys = Set(options.externals.map(\.inside))
        for external in options.externals
        where !options.ignoresUnknownKeys
            && !record.mounts.contains(where: { $0.kind == .external && $0.externalKey == external.inside })
        {
            throw AmberError(
                .failure, "--external \(external.argument): the image has no bind mount with the key \(external.inside)"
            )
        }
        for mount in record.mounts where mount.kind == .external && !keys.contains(mount.externalKey) {
            throw AmberError(
                .failure,
                "the image's tree had the host's directory bound at \(mount.mountPoint): restore --external mnt[\(mount.externalKey)]:PATH names the one bound there now"
            )
        }
    }

    /// Makes the namespace `root` (the image's root, just cloned with CLONE_NEWNS, in a copy of
    /// amber's) is restored in, from a thread of amber's in it with the root's root and working
    /// directories (`MountNamespaceThread`), by the calls the root would make: every mount
    /// private, the root directory `options.root` bound on itself, each mount of the record
    /// made on it in order (a tmpfs filled before the mounts on it), pivot_root into it and the
    /// old root detached; then checks the namespace against the record. A proc mount shows the
    /// PID namespace of its caller: it is injected into the root. pivot_root moves the root
    /// directory of the root with the thread's; its working directory is moved by a chdir
    /// injected into it. Returns a descriptor of the new root directory, under which the
    /// restore resolves the image's paths.
    static func make(in root: TreeTask, options: MountNamespaceRestore, imageTrusted: Bool) throws -> Int32 {
        let record = root.record.mountNamespace
        let rootPath = options.root ?? "/"
        if !imageTrusted { try checkUntrustedFiles(record) }
        let top: Int32
        do { top = try kernelResultOpen("/proc/\(root.pid)/root") } catch {
            throw AmberError(.restoreFailed, "cannot open the root directory of the restored tree's root: \(error)")
        }
        defer { close(top) }
        do {
            try MountNamespaceThread.run(for: root.pid) { thread in
                try makeMounts(record, options: options, on: thread, in: root, top: top)
            }
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot enter the mount namespace of the restored tree's root to make its mounts: \(error)")
        }
        do {
            var arguments = root.arguments()
            let slash = try arguments.place(Array("/".utf8) + [0])
            try root.injector.call("chdir /", SyscallNumber.chdir, slash)
        } catch {
            throw AmberError(
                .restoreFailed, "cannot enter --root \(rootPath) as the restored tree's root directory: \(error)")
        }
        try check(record, pid: root.pid)
        do {
            return try kernelResultOpen("/proc/\(root.pid)/root")
        } catch {
            throw AmberError(.restoreFailed, "cannot open the restored tree's root directory: \(error)")
        }
    }

    /// The mounts of `record` and pivot_root into the new root, made by `thread` (`make`);
    /// `top` is the root's root directory.
    private static func makeMounts(
        _ record: Amber_MountNamespace, options: MountNamespaceRestore, on thread: MountNamespaceThread,
        in root: TreeTask, top: Int32
    ) throws {
        let rootPath = options.root ?? "/"
        let keys = Dictionary(
            options.externals.map { ($0.inside, $0.outside) }, uniquingKeysWith: { first, _ in first })
        let base = String(rootPath.reversed().drop { $0 == "/" }.reversed())
        func makeMount(
            _ what: String, source: String?, target: String, type: String?, flags: UInt64, data: String?,
            injected: Bool = false
        ) throws {
            do {
                if injected {
                    try thread.onStarter {
                        try injectMount(
                            what, in: root, source: source, target: target, type: type, flags: flags, data: data)
                    }
                } else {
                    try MountCalls.mount(
                        "mount \(what) in task \(root.pid)", source: source, target: target, type: type, flags: flags,
                        data: data)
                }
            } catch {
                throw AmberError(.restoreFailed, "cannot make the mount \(what) of the restored tree: \(error)")
            }
        }
        try makeMount(
            "/ private", source: nil, target: "/", type: nil, flags: MountFlags.recursive | MountFlags.private,
            data: nil)
        for mount in record.mounts {
            let target = mount.kind == .root ? base.isEmpty ? "/" : base : base + mount.mountPoint
            let what = "\(mount.mountPoint) (\(mount.fsType))"
            let ownFlags = mount.flags & MountFlags.perMount
            switch mount.kind {
            case .root, .external:
                guard let source = mount.kind == .root ? rootPath : keys[mount.externalKey] else {
                    throw AmberError(.failure, "no --external mnt[\(mount.externalKey)]:PATH for \(mount.mountPoint)")
                }
                try makeMount(what, source: source, target: target, type: nil, flags: MountFlags.bind, data: nil)
                try makeMount(
                    "\(what) flags", source: nil, target: target, type: nil,
                    flags: MountFlags.remount | MountFlags.bind | ownFlags, data: nil)
            case .tmpfs:
                // Filled writable, then made read-only as recorded.
                let options = mount.options.split(separator: ",").filter { $0 != "ro" }.joined(separator: ",")
                try makeMount(
                    what, source: mount.source, target: target, type: mount.fsType,
                    flags: ownFlags & ~MountFlags.readOnly, data: options)
                try fill(mount, at: target, top: top)
                if options != mount.options {
                    try makeMount(
                        "\(what) read-only", source: nil, target: target, type: nil,
                        flags: MountFlags.remount | MountFlags.readOnly | ownFlags, data: nil)
                } else if ownFlags & MountFlags.readOnly != 0 {
                    try makeMount(
                        "\(what) flags", source: nil, target: target, type: nil,
                        flags: MountFlags.remount | MountFlags.bind | ownFlags, data: nil)
                }
            case .proc, .sysfs, .mqueue, .devpts:
                try makeMount(
                    what, source: mount.source, target: target, type: mount.fsType, flags: ownFlags,
                    data: mount.options, injected: mount.kind == .proc)
            case .internalBind:
                let source = try bindSource(of: mount, in: record, base: base, top: top)
                try makeMount(what, source: source, target: target, type: nil, flags: MountFlags.bind, data: nil)
                try makeMount(
                    "\(what) flags", source: nil, target: target, type: nil,
                    flags: MountFlags.remount | MountFlags.bind | ownFlags, data: nil)
            case .UNRECOGNIZED:
                throw AmberError(.badImage, "the mount \(mount.mountPoint) is of no kind amber knows")
            }
            if mount.unbindable {
                try makeMount(
                    "\(what) unbindable", source: nil, target: target, type: nil, flags: MountFlags.unbindable,
                    data: nil)
            }
        }
        // pivot_root(".", "."): the old root goes on top of the new one, and is detached.
        do {
            let task = "in task \(root.pid)"
            try MountCalls.changeDirectory("chdir \(rootPath) \(task)", base.isEmpty ? "/" : base)
            try MountCalls.pivotRoot("pivot_root \(task)", newRoot: ".", putOld: ".")
            try MountCalls.unmount("umount2 the old root \(task)", ".", flags: MountFlags.detach)
        } catch {
            throw AmberError(
                .restoreFailed, "cannot enter --root \(rootPath) as the restored tree's root directory: \(error)")
        }
    }

    /// The path (in the root's namespace, before pivot_root) of the file an internal bind mount
    /// binds, in the mount made before it: checked to have no symbolic link on it, so that an
    /// image binds nothing but a file of that mount. `top` is the root's root directory.
    private static func bindSource(
        of mount: Amber_MountNamespaceMount, in record: Amber_MountNamespace, base: String, top: Int32
    ) throws -> String {
        guard let source = record.mounts.first(where: { $0.id == mount.bindOf }) else {
            throw AmberError(.badImage, "the bind mount \(mount.mountPoint) binds no mount of the image")
        }
        let path = base + (source.mountPoint == "/" ? "" : source.mountPoint) + "/" + mount.bindPath
        do {
            close(try MountNamespaceAccess.open(path, under: top, flags: OpenFileFlags.pathOnly.openFlags))
        } catch {
            throw AmberError(
                .restoreFailed,
                "cannot bind \(source.mountPoint)/\(mount.bindPath) at \(mount.mountPoint) of the restored tree: \(error)"
            )
        }
        return path
    }

    /// Injects one mount(2) into `root`.
    private static func injectMount(
        _ what: String, in root: TreeTask, source: String?, target: String, type: String?, flags: UInt64,
        data: String?
    ) throws {
        var arguments = root.arguments()
        func string(_ text: String?) throws -> UInt64 {
            guard let text else { return 0 }
            return try arguments.place(Array(text.utf8) + [0])
        }
        let sourceAddress = try string(source)
        let targetAddress = try string(target)
        let typeAddress = try string(type)
        let dataAddress = try string(data)
        try root.injector.call(
            "mount \(what)", SyscallNumber.mount, sourceAddress, targetAddress, typeAddress, flags, dataAddress)
    }

    private static func kernelResultOpen(_ path: String) throws -> Int32 {
        let fd = open(path, OpenFileFlags.pathOnly.openFlags | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError.current("open \(path)") }
        return fd
    }

    /// Fills the tmpfs just mounted at `target` (a path of the root's namespace, before
    /// pivot_root) with its recorded files, through the root's root directory `top`.
    private static func fill(_ mount: Amber_MountNamespaceMount, at target: String, top: Int32) throws {
        let entries = [entry(mount.root)] + mount.files.map(entry)
        do {
            let directory = try MountNamespaceAccess.open(target, under: top, flags: O_RDONLY | O_DIRECTORY)
            defer { close(directory) }
            try FileTree.make(entries, under: directory)
        } catch {
            throw AmberError(.restoreFailed, "cannot make the files of the tmpfs \(mount.mountPoint) again: \(error)")
        }
    }

    private static func entry(_ file: Amber_MountNamespaceFile) -> FileTreeEntry {
        FileTreeEntry(
            path: file.path, mode: file.mode, uid: file.uid, gid: file.gid, modifiedNs: file.modifiedNs,
            accessedNs: file.accessedNs, contents: Array(file.contents), target: file.target, device: file.device)
    }

    /// An image not authenticated with this host's key makes no set-user-ID or set-group-ID
    /// file: the restorer makes the files of a tmpfs with its own rights, and such a file would
    /// give whoever runs it an owner the image names.
    private static func checkUntrustedFiles(_ record: Amber_MountNamespace) throws {
        for mount in record.mounts {
            for file in mount.files where file.mode & 0o6000 != 0 && file.mode & 0o170000 == FileTreeEntry.regular {
                throw AmberError(
                    .permissionDenied,
                    "the image's tmpfs \(mount.mountPoint) holds the set-user-ID or set-group-ID file \(file.path), and the image is not authenticated, so amber does not make it (restore with --trust-image only an image you trust)"
                )
            }
        }
    }

    /// The namespace of process `pid` has the recorded mounts, in order, with their types,
    /// flags and propagation, and no other.
    private static func check(_ record: Amber_MountNamespace, pid: Int32) throws {
        let made: [MountInfo]
        do { made = try ProcFS.mountInfo(pid: pid) } catch {
            throw AmberError(.restoreFailed, "cannot read the restored tree's mounts: \(error)")
        }
        let expected = record.mounts.map {
            "\($0.mountPoint) \($0.fsType) flags 0x\(String($0.flags & MountFlags.perMount, radix: 16))\($0.unbindable ? " unbindable" : "")"
        }
        let found = made.map {
            "\($0.mountPoint) \($0.fsType) flags 0x\(String($0.flags, radix: 16))\($0.optionalFields.isEmpty ? "" : " " + $0.optionalFields.joined(separator: " "))"
        }
        let comparable = zip(record.mounts, made).allSatisfy { recorded, info in
            recorded.mountPoint == info.mountPoint && info.flags == recorded.flags & MountFlags.perMount
                && info.optionalFields == (recorded.unbindable ? ["unbindable"] : [])
                && (recorded.kind == .root || recorded.kind == .external || recorded.fsType == info.fsType)
        }
        guard comparable, made.count == record.mounts.count else {
            throw AmberError(
                .restoreFailed,
                "the restored tree's mounts are not the image's: made [\(found.joined(separator: ", "))], recorded [\(expected.joined(separator: ", "))]"
            )
        }
    }
}

extension MountNamespaceState: StateKind {
    static var namespaceKinds: [String] { ["mnt"] }

    /// Once amber has frozen the tree (traces it), its root's record step reads the mounts and
    /// refuses the same: they are read once while it is frozen, not twice.
    static func check(tree processes: [CheckedProcess]) throws {
        guard let root = processes.first?.tree, !processes.allSatisfy({ $0.status.tracerPID == getpid() }),
            try !isOwnNamespace(of: root.pid)
        else { return }
        _ = try mounts(of: root, externals: externalKeys(processes.first?.externalFiles ?? []))
    }

    /// The key of each bind mount `--external mnt[MOUNT_POINT]:KEY` names, by mount point.
    static func externalKeys(_ names: Set<String>) -> [String: String] {
        Dictionary(
            names.compactMap(ExternalMount.init(argument:)).map { ($0.inside, $0.outside) },
            uniquingKeysWith: { first, _ in first })
    }

    static func makeDumpState(_ dump: TreeDump) throws -> [String: String] { externalKeys(dump.externalFiles) }

    static var dumpSteps: [DumpStep<[String: String]>] {
        [
            DumpStep("mount-namespace", .outside) { dump, externals in
                guard dump.pid == dump.tree.pid, try !isOwnNamespace(of: dump.pid) else { return }
                dump.task.mountNamespace = try record(of: dump, externals: externals)
            }
        ]
    }
}
