internal import CLinux
import Glibc
import SystemPackage

/// One line of /proc/PID/mountinfo (proc(5)): a mount of the process's mount namespace that
/// its root directory reaches.
public struct MountInfo: Sendable, Equatable {
    public let id: UInt32
    public let parentID: UInt32
    /// The device of its filesystem, "major:minor".
    public let device: String
    /// The directory of its filesystem it shows (not "/" for a bind mount of a subdirectory).
    public let root: String
    /// Where it is mounted, relative to the process's root directory.
    public let mountPoint: String
    /// The mount's own options: "rw" or "ro", then "nosuid", "nodev", "noexec", "relatime"...
    public let mountOptions: [String]
    /// "shared:N", "master:N", "propagate_from:N", "unbindable".
    public let optionalFields: [String]
    public let fsType: String
    public let source: String
    /// The options of its filesystem (its superblock's).
    public let superOptions: String

    /// The mount's own flags its options stand for (`MountFlags`).
    public var flags: UInt64 {
        var flags: UInt64 = 0
        for option in mountOptions {
            switch option {
            case "ro": flags |= MountFlags.readOnly
            case "nosuid": flags |= MountFlags.noSetID
            case "nodev": flags |= MountFlags.noDevices
            case "noexec": flags |= MountFlags.noExec
            case "noatime": flags |= MountFlags.noAccessTime
            case "nodiratime": flags |= MountFlags.noDirectoryAccessTime
            case "relatime": flags |= MountFlags.relativeAccessTime
            default: break
            }
        }
        // Neither noatime nor relatime: strictatime.
        if flags & (MountFlags.noAccessTime | MountFlags.relativeAccessTime) == 0 {
            flags |= MountFlags.strictAccessTime
        }
        return flags
    }

    /// The mount's own options `flags` does not stand for ("nosymfollow", "idmapped"...).
    public var otherOptions: [String] {
        mountOptions.filter {
            !["rw", "ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime"].contains($0)
        }
    }

    /// Parses one line; nil when it is not one.
    public init?(line: String) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 10, let separator = fields.firstIndex(of: "-"), separator >= 6,
            fields.count == separator + 4, let id = UInt32(fields[0]), let parentID = UInt32(fields[1])
        else { return nil }
        self.id = id
        self.parentID = parentID
        device = fields[2]
        root = Self.unescaped(fields[3])
        mountPoint = Self.unescaped(fields[4])
        mountOptions = fields[5].split(separator: ",").map(String.init)
        optionalFields = Array(fields[6..<separator])
        fsType = fields[separator + 1]
        source = Self.unescaped(fields[separator + 2])
        superOptions = fields[separator + 3]
    }

    /// The kernel writes a space, tab, newline and backslash of a path as \040, \011, \012, \134.
    static func unescaped(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        let source = Array(text.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
                let value = UInt8(String(decoding: source[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension ProcFS {
    /// The mounts process `pid`'s root directory reaches, in the order the kernel lists them.
    public static func mountInfo(pid: Int32) throws(LinuxError) -> [MountInfo] {
        let path = "/proc/\(pid)/mountinfo"
        var mounts: [MountInfo] = []
        for line in try readText(path).split(separator: "\n") {
            guard let mount = MountInfo(line: String(line)) else {
                throw LinuxError(.invalidArgument, "parse a line of \(path): \(line)")
            }
            mounts.append(mount)
        }
        return mounts
    }
}

/// mount(2)'s flags.
public enum MountFlags {
    public static let readOnly: UInt64 = 0x1
    public static let noSetID: UInt64 = 0x2
    public static let noDevices: UInt64 = 0x4
    public static let noExec: UInt64 = 0x8
    public static let remount: UInt64 = 0x20
    public static let noAccessTime: UInt64 = 0x400
    public static let noDirectoryAccessTime: UInt64 = 0x800
    public static let bind: UInt64 = 0x1000
    public static let recursive: UInt64 = 0x4000
    public static let unbindable: UInt64 = 0x20000
    public static let `private`: UInt64 = 0x40000
    public static let relativeAccessTime: UInt64 = 0x200000
    public static let strictAccessTime: UInt64 = 0x1000000
    /// The flags a mount has of its own, which a bind mount's remount sets.
    public static let perMount: UInt64 =
        readOnly | noSetID | noDevices | noExec | noAccessTime | noDirectoryAccessTime | relativeAccessTime
        | strictAccessTime
    /// umount2's MNT_DETACH.
    public static let detach: UInt64 = 0x2
    /// open_tree's OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC: a detached copy of one mount.
    public static let openTreeCloneWithoutExec: UInt64 = 0x1 | UInt64(O_CLOEXEC)
}

extension SyscallNumber {
    public static let chdir = 80
    public static let pivotRoot = 155
    public static let mount = 165
    public static let umount2 = 166
    public static let openTree = 428
}

/// A file of a directory tree as lstat(2) shows it, read or made by `FileTree`.
public struct FileTreeEntry: Sendable {
    /// Relative to the tree's top, "" for the top itself.
    public var path: String
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var modifiedNs: Int64
    public var accessedNs: Int64
    public var contents: [UInt8]
    /// A symbolic link's target.
    public var target: String
    /// A device file's st_rdev.
    public var device: UInt64
    /// Its names (st_nlink).
    public var links: UInt64 = 1
    /// The length of its extended attributes' names (POSIX ACLs among them), and its inode
    /// flags (FS_IOC_GETFLAGS): read of regular files and directories only.
    public var attributeNamesLength = 0
    public var inodeFlags: UInt32 = 0

    public init(
        path: String, mode: UInt32, uid: UInt32, gid: UInt32, modifiedNs: Int64, accessedNs: Int64,
        contents: [UInt8] = [], target: String = "", device: UInt64 = 0
    ) {
        self.path = path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.modifiedNs = modifiedNs
        self.accessedNs = accessedNs
        self.contents = contents
        self.target = target
        self.device = device
    }

    public var type: UInt32 { mode & 0o170000 }
    public static let directory: UInt32 = 0o040000
    public static let regular: UInt32 = 0o100000
    public static let symbolicLink: UInt32 = 0o120000
    public static let characterDevice: UInt32 = 0o020000
}

/// Reading a whole directory tree into entries, and making one from them, through descriptors
/// and names only: no symbolic link is followed.
public enum FileTree {
    /// AT_EMPTY_PATH, which Glibc's module lacks.
    private static let emptyPath: Int32 = 0x1000

    /// Every file under the directory `top` (its own entry first, then parents before children),
    /// with the bytes of its regular files; throws once they pass `limit` bytes in all.
    public static func read(_ top: String, limit: Int) throws(LinuxError) -> [FileTreeEntry] {
        let fd = try kernelResult(Int(Glibc.open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC)), "open \(top)").get()
        defer { close(Int32(fd)) }
        var top = try entry(at: Int32(fd), name: "", path: "")
        try readAttributes(Int32(fd), into: &top)
        var entries = [top]
        var total = 0
        try read(directory: Int32(fd), path: "", into: &entries, total: &total, limit: limit)
        return entries
    }

    private static func read(
        directory: Int32, path: String, into entries: inout [FileTreeEntry], total: inout Int, limit: Int
    ) throws(LinuxError) {
        for name in try names(in: directory, path: path) {
            let relative = path.isEmpty ? name : "\(path)/\(name)"
            var entry = try entry(at: directory, name: name, path: relative)
            switch entry.type {
            case FileTreeEntry.regular:
                let file = try open(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, relative)
                defer { close(file) }
                try readAttributes(file, into: &entry)
                entry.contents = try readAll(file, path: relative, total: &total, limit: limit)
                entries.append(entry)
            case FileTreeEntry.symbolicLink:
                var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
                let count = try libcResult("readlink \(relative)") {
                    readlinkat(directory, name, &buffer, buffer.count)
                }.get()
                entry.target = String(decoding: buffer[..<count], as: UTF8.self)
                entries.append(entry)
            case FileTreeEntry.directory:
                let child = try open(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, relative)
                defer { close(child) }
                try readAttributes(child, into: &entry)
                entries.append(entry)
                try read(directory: child, path: relative, into: &entries, total: &total, limit: limit)
            default:
                entries.append(entry)
            }
        }
    }

    /// Opens `name` without touching its access time (O_NOATIME) where we may: reading a live
    /// tree's files must not change them.
    private static func open(_ directory: Int32, _ name: String, _ flags: Int32, _ path: String) throws(LinuxError)
        -> Int32
    {
        let fd = openat(directory, name, flags | OpenFileFlags.noAccessTime.openFlags)
        if fd >= 0 { return fd }
        return Int32(try kernelResult(Int(openat(directory, name, flags)), "open \(path)").get())
    }

    private static func readAttributes(_ fd: Int32, into entry: inout FileTreeEntry) throws(LinuxError) {
        entry.attributeNamesLength = try FileAttributes.extendedAttributeNamesLength(FileDescriptor(rawValue: fd))
        entry.inodeFlags = try FileAttributes.inodeFlags(FileDescriptor(rawValue: fd))
    }

    private static func entry(at directory: Int32, name: String, path: String) throws(LinuxError) -> FileTreeEntry {
        var status = Glibc.stat()
        _ = try libcResult("lstat \(path.isEmpty ? "." : path)") {
            fstatat(directory, name, &status, name.isEmpty ? emptyPath : AT_SYMLINK_NOFOLLOW)
        }.get()
        var entry = FileTreeEntry(
            path: path, mode: UInt32(status.st_mode), uid: status.st_uid, gid: status.st_gid,
            modifiedNs: Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec),
            accessedNs: Int64(status.st_atim.tv_sec) * 1_000_000_000 + Int64(status.st_atim.tv_nsec),
            device: UInt64(status.st_rdev))
        entry.links = UInt64(status.st_nlink)
        return entry
    }

    /// The names in a directory, sorted, without "." and "..".
    private static func names(in directory: Int32, path: String) throws(LinuxError) -> [String] {
        let copy = try kernelResult(Int(fcntl(directory, F_DUPFD_CLOEXEC, 0)), "dup \(path)").get()
        guard let stream = fdopendir(Int32(copy)) else {
            close(Int32(copy))
            throw LinuxError.current("fdopendir \(path)")
        }
        defer { closedir(stream) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw LinuxError(Errno(rawValue: errno), "readdir \(path)") }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    private static func readAll(_ fd: Int32, path: String, total: inout Int, limit: Int) throws(LinuxError)
        -> [UInt8]
    {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try libcResult("read \(path)") { Glibc.read(fd, &buffer, buffer.count) }.get()
            if count == 0 { return bytes }
            total += count
            guard total <= limit else {
                throw LinuxError(.fileTooLarge, "read \(path): the files hold more than \(limit) bytes in all")
            }
            bytes += buffer[..<count]
        }
    }

    /// Makes `entries` (as `read` gives them, the top's own first) under the directory `top`:
    /// each file with its type, bytes, owner, permission bits and times; the top gets its
    /// owner, permission bits and times. A name taken refuses it (EEXIST).
    public static func make(_ entries: [FileTreeEntry], under top: Int32) throws(LinuxError) {
        for entry in entries where !entry.path.isEmpty {
            let what = entry.path
            let permissions = mode_t(entry.mode & 0o7777)
            switch entry.type {
            case FileTreeEntry.directory:
                _ = try libcResult("mkdir \(what)") { mkdirat(top, entry.path, 0o700) }.get()
            case FileTreeEntry.regular:
                let fd = try kernelResult(
                    Int(openat(top, entry.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)),
                    "create \(what)"
                ).get()
                defer { close(Int32(fd)) }
                // Pages of zeros are left holes: a tmpfs gives no page to one, as it gave none to
                // the sparse file read (a full tmpfs held it).
                let size = entry.contents.count
                _ = try libcResult("ftruncate \(what)") { ftruncate(Int32(fd), off_t(size)) }.get()
                var offset = 0
                while offset < size {
                    let end = min(offset + 4096, size)
                    if entry.contents[offset..<end].contains(where: { $0 != 0 }) {
                        var written = offset
                        while written < end {
                            let count = try libcResult("write \(what)") {
                                entry.contents[written..<end].withUnsafeBytes {
                                    pwrite(Int32(fd), $0.baseAddress, $0.count, off_t(written))
                                }
                            }.get()
                            written += count
                        }
                    }
                    offset = end
                }
            case FileTreeEntry.symbolicLink:
                _ = try libcResult("symlink \(what)") { symlinkat(entry.target, top, entry.path) }.get()
            case FileTreeEntry.characterDevice:
                _ = try libcResult("mknod \(what)") {
                    mknodat(top, entry.path, mode_t(FileTreeEntry.characterDevice) | 0o600, dev_t(entry.device))
                }.get()
            default:
                throw LinuxError(.invalidArgument, "make \(what): a file of type 0o\(String(entry.type, radix: 8))")
            }
            try setAttributes(entry, at: top, name: entry.path, permissions: permissions)
        }
        // Directories last: making a file in one changes its modification time.
        for entry in entries.reversed() where entry.type == FileTreeEntry.directory {
            try setAttributes(entry, at: top, name: entry.path, permissions: mode_t(entry.mode & 0o7777))
        }
    }

    private static func setAttributes(_ entry: FileTreeEntry, at top: Int32, name: String, permissions: mode_t)
        throws(LinuxError)
    {
        let what = name.isEmpty ? "the top directory" : name
        let flags = name.isEmpty ? emptyPath : AT_SYMLINK_NOFOLLOW
        _ = try libcResult("chown \(what)") { fchownat(top, name, entry.uid, entry.gid, flags) }.get()
        // chown clears the set-ID bits: the mode after it. A symbolic link has none.
        if entry.type != FileTreeEntry.symbolicLink {
            if name.isEmpty {
                _ = try libcResult("chmod \(what)") { fchmod(top, permissions) }.get()
            } else {
                _ = try libcResult("chmod \(what)") { fchmodat(top, name, permissions, 0) }.get()
            }
        }
        var times = [
            timespec(tv_sec: Int(entry.accessedNs / 1_000_000_000), tv_nsec: Int(entry.accessedNs % 1_000_000_000)),
            timespec(tv_sec: Int(entry.modifiedNs / 1_000_000_000), tv_nsec: Int(entry.modifiedNs % 1_000_000_000)),
        ]
        if name.isEmpty {
            _ = try libcResult("utimens \(what)") { futimens(top, &times) }.get()
        } else {
            _ = try libcResult("utimens \(what)") { utimensat(top, name, &times, AT_SYMLINK_NOFOLLOW) }.get()
        }
    }
}

/// Mounts of another process's mount namespace, reached from amber's.
public enum MountNamespaceAccess {
    /// A detached copy of the mount at `path` of the mount namespace of process `pid` (that
    /// mount alone, with what the mounts on it hide), for the caller to close.
    public static func detachedCopy(of path: String, inNamespaceOf pid: Int32) throws(LinuxError) -> Int32 {
        let namespace = try kernelResult(
            Int(Glibc.open("/proc/\(pid)/ns/mnt", O_RDONLY | O_CLOEXEC)), "open the mount namespace of process \(pid)"
        ).get()
        defer { close(Int32(namespace)) }
        return Int32(
            try kernelResult(
                amber_open_tree_in_namespace(Int32(namespace), path),
                "open_tree \(path) in the mount namespace of process \(pid)"
            ).get())
    }

    /// Opens `path` (absolute) resolved under the directory `root` as the root directory, with
    /// no symbolic link on it.
    public static func open(_ path: String, under root: Int32, flags: Int32) throws(LinuxError) -> Int32 {
        let relative = String(path.drop { $0 == "/" })
        return Int32(
            try kernelResult(
                amber_openat2_in_root(
                    root, relative.isEmpty ? "." : relative, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), 0,
                    0x02 | 0x04 | 0x10),
                "open \(path)"
            ).get())
    }
}

extension CloneFlags {
    /// CLONE_NEWNS: the child gets a copy of its parent's mount namespace.
    public static let newMountNamespace: UInt64 = 0x20000
}
