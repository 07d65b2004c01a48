extension TaskValidator {
    /// The most a mount point, an option string or a file's path may hold.
    private static let mountPathLimit = 4096
    /// Character devices a tmpfs of the image may hold: null, zero, full, random, urandom, tty
    /// (st_rdev as glibc's makedev encodes 1:3, 1:5, 1:7, 1:8, 1:9, 5:0).
    static let mountNamespaceDevices: Set<UInt64> = [0x103, 0x105, 0x107, 0x108, 0x109, 0x500]
    /// The mount flags a record may have (`Mount.flags`): MS_RDONLY, MS_NOSUID, MS_NODEV,
    /// MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME.
    private static let mountFlags: UInt64 = 0x1 | 0x2 | 0x4 | 0x8 | 0x400 | 0x800 | 0x200000 | 0x1000000
    private static let fsTypes: [Amber_MountNamespaceMount.Kind: String] = [
        .tmpfs: "tmpfs", .proc: "proc", .sysfs: "sysfs", .mqueue: "mqueue", .devpts: "devpts",
    ]
    /// What an internal bind mount may bind a file of: a mount the restore makes.
    private static let bindSources: Set<Amber_MountNamespaceMount.Kind> = [.tmpfs, .proc, .sysfs, .devpts]
    /// The options a devpts record may give mount(2): its mode, ptmx's, their group and owner,
    /// the most ptys.
    private static let devptsOptions: Set<String> = ["rw", "ro", "uid", "gid", "mode", "ptmxmode", "max"]

    /// A mount namespace the restore can make without doing anything else: the root mount
    /// first, at /, and no other; each mount's parent before it; mount points absolute and
    /// normal, each once; filesystem types amber mounts; options mount(2) parses and nothing
    /// else; the files of a tmpfs with normal relative paths, each after its directory, of
    /// types the restore makes.
    func validateMountNamespace(_ namespace: Amber_MountNamespace) throws(ImageError) {
        func invalid(_ field: String, _ problem: String) -> ImageError {
            ImageError(.invalid, file: file, detail: "mount_namespace.\(field): \(problem)")
        }
        guard let first = namespace.mounts.first, first.kind == .root, first.mountPoint == "/" else {
            throw invalid("mounts[0]", "the first mount is not the root mount at /")
        }
        var ids: Set<UInt32> = []
        var points: Set<String> = []
        for (index, mount) in namespace.mounts.enumerated() {
            let field = "mounts[\(index)]"
            guard mount.kind != .root || index == 0, Amber_MountNamespaceMount.Kind.allCases.contains(mount.kind) else {
                throw invalid("\(field).kind", "\(mount.kind) is not a kind of mount here")
            }
            guard ids.insert(mount.id).inserted, index == 0 || ids.contains(mount.parentID) else {
                throw invalid(
                    "\(field).id", "\(mount.id) is there twice, or its parent \(mount.parentID) is not before it")
            }
            guard Self.isNormalPath(mount.mountPoint, absolute: true), points.insert(mount.mountPoint).inserted else {
                throw invalid(
                    "\(field).mount_point", "\"\(mount.mountPoint)\" is not a normal absolute path, or is there twice")
            }
            if let type = Self.fsTypes[mount.kind], mount.fsType != type {
                throw invalid("\(field).fs_type", "\"\(mount.fsType)\" for a mount of kind \(mount.kind)")
            }
            guard mount.flags & ~Self.mountFlags == 0 else {
                throw invalid("\(field).flags", "0x\(String(mount.flags, radix: 16)) has flags a mount does not keep")
            }
            let mounted = mount.kind != .root && mount.kind != .external
            guard Self.isOptionText(mount.options), Self.isOptionText(mount.fsType),
                !mounted || Self.isOptionText(mount.source)
            else {
                throw invalid("\(field).options", "\"\(mount.options)\" is not a list of mount options")
            }
            guard (mount.kind == .external) == !mount.externalKey.isEmpty,
                mount.externalKey.utf8.count <= Self.mountPathLimit
            else {
                throw invalid("\(field).external_key", "an external mount has a key, and no other")
            }
            guard mount.kind == .tmpfs || (mount.files.isEmpty && !mount.hasRoot) else {
                throw invalid("\(field).files", "only a tmpfs has files")
            }
            if mount.kind == .tmpfs { try validateTmpfsFiles(mount, field: field, invalid) }
            if mount.kind == .devpts {
                for option in mount.options.split(separator: ",") {
                    let name = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
                    guard Self.devptsOptions.contains(name) else {
                        throw invalid("\(field).options", "\"\(option)\" is not an option of devpts amber mounts")
                    }
                }
            }
            guard (mount.kind == .internalBind) == (mount.bindOf != 0 || !mount.bindPath.isEmpty) else {
                throw invalid("\(field).bind_of", "an internal bind mount names its source, and no other")
            }
            if mount.kind == .internalBind {
                guard let source = namespace.mounts[..<index].first(where: { $0.id == mount.bindOf }),
                    Self.bindSources.contains(source.kind), source.fsType == mount.fsType
                else {
                    throw invalid(
                        "\(field).bind_of",
                        "\(mount.bindOf) is not a tmpfs, proc, sysfs or devpts mount of the same type before it")
                }
                guard Self.isNormalPath(mount.bindPath, absolute: false) else {
                    throw invalid("\(field).bind_path", "\"\(mount.bindPath)\" is not a normal relative path")
                }
            }
        }
    }

    private func validateTmpfsFiles(
        _ mount: Amber_MountNamespaceMount, field: String, _ invalid: (String, String) -> ImageError
    ) throws(ImageError) {
        guard mount.hasRoot, mount.root.path.isEmpty, mount.root.mode & 0o170000 == 0o040000 else {
            throw invalid("\(field).root", "a tmpfs's root is a directory with an empty path")
        }
        var directories: Set<String> = [""]
        var paths: Set<String> = []
        for (index, file) in mount.files.enumerated() {
            let at = "\(field).files[\(index)]"
            guard Self.isNormalPath(file.path, absolute: false), paths.insert(file.path).inserted else {
                throw invalid("\(at).path", "\"\(file.path)\" is not a normal relative path, or is there twice")
            }
            let parent = file.path.split(separator: "/").dropLast().joined(separator: "/")
            guard directories.contains(parent) else {
                throw invalid("\(at).path", "\"\(file.path)\" is not after its directory")
            }
            switch file.mode & 0o170000 {
            case 0o040000: directories.insert(file.path)
            case 0o100000, 0o120000: break
            case 0o020000:
                guard Self.mountNamespaceDevices.contains(file.device) else {
                    throw invalid(
                        "\(at).device", "0x\(String(file.device, radix: 16)) is not a device a tmpfs may hold")
                }
            default:
                throw invalid("\(at).mode", "0o\(String(file.mode, radix: 8)) is not a type a tmpfs file may have")
            }
            guard file.mode & 0o170000 == 0o100000 || file.contents.isEmpty,
                file.mode & 0o170000 == 0o120000
                    ? !file.target.isEmpty && file.target.utf8.count < Self.mountPathLimit
                        && !file.target.utf8.contains(0) : file.target.isEmpty
            else {
                throw invalid(at, "only a regular file has contents, and only a symbolic link a target")
            }
        }
    }

    /// "/a/b" (absolute) or "a/b": no empty, "." or ".." component, no NUL, not too long.
    private static func isNormalPath(_ path: String, absolute: Bool) -> Bool {
        guard path.utf8.count < mountPathLimit, !path.utf8.contains(0) else { return false }
        if absolute {
            guard path.hasPrefix("/") else { return false }
            if path == "/" { return true }
        }
        let components = (absolute ? path.dropFirst() : path[...]).split(
            separator: "/", omittingEmptySubsequences: false)
        return !components.isEmpty && components.allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    private static func isOptionText(_ text: String) -> Bool { ImageFormat.isMountOptionText(text) }
}

extension ImageFormat {
    /// Printable ASCII without spaces, shorter than a page: what a record's mount options,
    /// sources and types may hold (what mount(2) is given back).
    public static func isMountOptionText(_ text: String) -> Bool {
        text.utf8.count < 4096 && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }
}

extension CrossRecordCheck {
    /// A tree is in one mount namespace: only the root's record says which.
    static func checkMountNamespace(_ tasks: [Amber_Task]) throws(ImageError) {
        for task in tasks.dropFirst() where task.hasMountNamespace {
            throw ImageError(
                .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                detail: "mount_namespace: only the root's record holds the tree's mount namespace")
        }
    }
}
