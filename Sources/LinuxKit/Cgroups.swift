internal import CLinux
import Glibc
import SystemPackage

/// One line of /proc/PID/cgroup: a process's cgroup on one hierarchy.
public struct CgroupLine: Sendable, Equatable {
    /// The hierarchy's ID on this boot; 0 for cgroup v2.
    public let id: Int
    /// Its controllers as the kernel lists them ("cpu,cpuacct", "name=systemd"); "" for v2.
    public let controllers: String
    /// The cgroup, absolute in the hierarchy as the reader's cgroup namespace shows it.
    public let path: String

    /// Parses "ID:CONTROLLERS:PATH" (the path may hold colons); nil for anything else.
    public init?(_ line: String) {
        let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, let id = Int(fields[0]), fields[2].hasPrefix("/") else { return nil }
        self.id = id
        controllers = String(fields[1])
        path = String(fields[2])
    }
}

/// A cgroup hierarchy mounted in the caller's mount namespace: a v1 one (its controllers, or
/// its name) or the v2 one.
public struct CgroupHierarchyMount: Sendable {
    /// Its controllers as /proc/PID/cgroup lists them; "" for v2.
    public let controllers: String
    public let mountPoint: String
    /// The cgroup its mount point shows ("/" unless a cgroup below the root was mounted).
    public let root: String

    /// The directory of `path` (absolute in the hierarchy) under the mount point, relative to
    /// it ("" for the mount's root); nil when the mount does not show that cgroup.
    public func relativePath(of path: String) -> String? {
        CgroupPaths.relative(path, below: root)
    }
}

/// cgroup paths: absolute in a hierarchy ("/a/b"), or relative to a cgroup ("a/b", "" for it).
public enum CgroupPaths {
    /// `path` relative to `ancestor` when it is that cgroup or below it.
    public static func relative(_ path: String, below ancestor: String) -> String? {
        let components = path.split(separator: "/")
        let above = ancestor.split(separator: "/")
        guard components.count >= above.count, Array(components.prefix(above.count)) == above else { return nil }
        return components.dropFirst(above.count).joined(separator: "/")
    }

    /// `relative` below `base` ("/" + "a/b" is "/a/b").
    public static func join(_ base: String, _ relative: String) -> String {
        let parts = base.split(separator: "/") + relative.split(separator: "/")
        return "/" + parts.joined(separator: "/")
    }
}

/// The cgroup filesystems: where each hierarchy is mounted, which cgroups a process is in, and
/// the files of a cgroup, reached below its hierarchy's mount with no symbolic link.
public enum CgroupFS {
    /// openat2's RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH.
    private static let beneath: UInt64 = 0x02 | 0x04 | 0x08
    /// CLONE_NEWCGROUP.
    public static let newNamespaceFlag: Int32 = 0x0200_0000

    /// The lines of /proc/PID/cgroup (of one thread with `tid`).
    public static func lines(pid: Int32, tid: Int32? = nil) throws(LinuxError) -> [CgroupLine] {
        let path = tid.map { "/proc/\(pid)/task/\($0)/cgroup" } ?? "/proc/\(pid)/cgroup"
        return try ProcFS.readText(path).split(separator: "\n").compactMap { CgroupLine(String($0)) }
    }

    /// The lines of /proc/PID/cgroup as a reader in the process's own cgroup namespace sees
    /// them: relative to the namespace's root cgroup ("/.." when outside it).
    public static func linesInOwnNamespace(pid: Int32) throws(LinuxError) -> [CgroupLine] {
        let theirs = Glibc.open("/proc/\(pid)/ns/cgroup", O_RDONLY | O_CLOEXEC)
        guard theirs >= 0 else { throw LinuxError.current("open /proc/\(pid)/ns/cgroup") }
        defer { Glibc.close(theirs) }
        let own = Glibc.open("/proc/thread-self/ns/cgroup", O_RDONLY | O_CLOEXEC)
        guard own >= 0 else { throw LinuxError.current("open /proc/thread-self/ns/cgroup") }
        defer { Glibc.close(own) }
        _ = try kernelResult(amber_setns(theirs, newNamespaceFlag), "setns into the cgroup namespace of \(pid)").get()
        let lines = Result { () throws(LinuxError) in try self.lines(pid: pid) }
        // This thread reads other processes' cgroups after: it must not stay in another view.
        if amber_setns(own, newNamespaceFlag) < 0 { abort() }
        return try lines.get()
    }

    /// Whether net_cls or net_prio is bound to a v1 hierarchy (/proc/cgroups shows a hierarchy
    /// other than 0 for it). Then a socket's class and priority index follow whoever last took a
    /// descriptor on it: pidfd_getfd and SCM_RIGHTS set them to the receiver's cgroup's.
    public static func classifiesSocketsByReceiver() -> Bool {
        guard let text = try? ProcFS.readText("/proc/cgroups") else { return true }
        return text.split(separator: "\n").contains { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count >= 2 && (fields[0] == "net_cls" || fields[0] == "net_prio") && fields[1] != "0"
        }
    }

    /// The cgroup hierarchies mounted in the caller's mount namespace, from
    /// /proc/self/mountinfo: one mount of each (the one showing the hierarchy's root if any).
    public static func mounts() throws(LinuxError) -> [CgroupHierarchyMount] {
        let subsystems = Set(
            try ProcFS.readText("/proc/cgroups").split(separator: "\n").filter { !$0.hasPrefix("#") }
                .compactMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) })
        var found: [CgroupHierarchyMount] = []
        for line in try ProcFS.readText("/proc/self/mountinfo").split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let separator = fields.firstIndex(of: "-"), separator >= 6, fields.count >= separator + 4 else {
                continue
            }
            let type = fields[separator + 1]
            guard type == "cgroup" || type == "cgroup2" else { continue }
            let root = unescape(fields[3])
            let mountPoint = unescape(fields[4])
            // The kernel lists a v1 hierarchy's controllers in its subsystems' order, then its name.
            let options = fields[separator + 3].split(separator: ",").map(String.init)
            let controllers =
                type == "cgroup2"
                ? ""
                : (subsystems.sorted().filter(options.contains) + options.filter { $0.hasPrefix("name=") })
                    .joined(separator: ",")
            if type == "cgroup" && controllers.isEmpty { continue }
            let mount = CgroupHierarchyMount(controllers: controllers, mountPoint: mountPoint, root: root)
            if let index = found.firstIndex(where: { sameHierarchy($0.controllers, controllers) }) {
                if found[index].root != "/" && root == "/" { found[index] = mount }
            } else {
                found.append(mount)
            }
        }
        return found
    }

    /// Whether two controller lists name the same hierarchy, whatever their order.
    public static func sameHierarchy(_ one: String, _ other: String) -> Bool {
        Set(one.split(separator: ",")) == Set(other.split(separator: ","))
    }

    /// mountinfo's octal escapes (\040 for a space...).
    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
                let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Opens the mount point of a hierarchy as a directory to reach its cgroups from.
    public static func openHierarchy(_ mount: CgroupHierarchyMount) throws(LinuxError) -> Int32 {
        let fd = Glibc.open(mount.mountPoint, OpenFileFlags.pathOnly.openFlags | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LinuxError.current("open \(mount.mountPoint)") }
        return fd
    }

    /// Opens `relative` (a clean relative path, "" for the directory itself) below `directory`,
    /// with no symbolic link and without leaving it.
    public static func open(_ relative: String, below directory: Int32, flags: Int32) throws(LinuxError) -> Int32 {
        let how = UInt64(UInt32(bitPattern: flags | O_CLOEXEC))
        return Int32(
            try kernelResult(
                amber_openat2_in_root(directory, relative.isEmpty ? "." : relative, how, 0, beneath),
                "open \(relative)"
            ).get())
    }

    /// Whether the cgroup `relative` below `directory` exists.
    public static func exists(_ relative: String, below directory: Int32) -> Bool {
        guard let fd = try? open(relative, below: directory, flags: OpenFileFlags.pathOnly.openFlags | O_DIRECTORY)
        else { return false }
        Glibc.close(fd)
        return true
    }

    /// A file of the cgroup `relative`, without its final newline; nil when it has no such file.
    public static func read(_ file: String, of relative: String, below directory: Int32) throws(LinuxError) -> String? {
        let fd: Int32
        do {
            fd = try open(relative.isEmpty ? file : relative + "/" + file, below: directory, flags: O_RDONLY)
        } catch  where error.errno == .noSuchFileOrDirectory {
            return nil
        }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = try libcResult("read \(relative)/\(file)") { Glibc.read(fd, &buffer, buffer.count) }.get()
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        var text = String(decoding: bytes, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    /// The names of the files of the cgroup `relative` below `directory` (not its child cgroups), sorted.
    public static func files(of relative: String, below directory: Int32) throws(LinuxError) -> [String] {
        let fd = try open(relative, below: directory, flags: O_RDONLY | O_DIRECTORY)
        guard let stream = fdopendir(fd) else {
            let error = LinuxError.current("fdopendir \(relative)")
            Glibc.close(fd)
            throw error
        }
        defer { closedir(stream) }
        var files: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw LinuxError(Errno(rawValue: errno), "readdir \(relative)") }
                break
            }
            guard entry.pointee.d_type == UInt8(DT_REG) else { continue }
            files.append(
                withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        }
        return files.sorted()
    }

    /// Whether the mode of the file `file` of the cgroup `relative` lets it be written: asked
    /// only of the files whose value matters only when they are (a v1 memory cgroup has about
    /// 100, most of them counters, and a stat of each cost more than the dump's reads).
    public static func isWritable(_ file: String, of relative: String, below directory: Int32) throws(LinuxError)
        -> Bool
    {
        let path = relative.isEmpty ? file : relative + "/" + file
        let fd = try open(path, below: directory, flags: OpenFileFlags.pathOnly.openFlags)
        defer { Glibc.close(fd) }
        var status = stat()
        _ = try libcResult("stat \(path)") { fstat(fd, &status) }.get()
        return status.st_mode & 0o222 != 0
    }

    /// Writes `value` into the file `file` of the cgroup `relative`, in one write.
    public static func write(_ value: String, to file: String, of relative: String, below directory: Int32)
        throws(LinuxError)
    {
        let fd = try open(relative.isEmpty ? file : relative + "/" + file, below: directory, flags: O_WRONLY)
        defer { Glibc.close(fd) }
        try write(value, toOpen: fd, what: "\(relative)/\(file)")
    }

    /// Writes `value` to an open file of a cgroup, in one write.
    public static func write(_ value: String, toOpen fd: Int32, what: String) throws(LinuxError) {
        let bytes = Array(value.utf8)
        let written = try libcResult("write \(value) to \(what)") { Glibc.write(fd, bytes, bytes.count) }.get()
        guard written == bytes.count else { throw LinuxError(.ioError, "short write of \(value) to \(what)") }
    }

    /// Makes the cgroup `name` in the cgroup `parent` (relative) below `directory`.
    public static func makeCgroup(_ name: String, in parent: String, below directory: Int32) throws(LinuxError) {
        let fd = try open(parent, below: directory, flags: OpenFileFlags.pathOnly.openFlags | O_DIRECTORY)
        defer { Glibc.close(fd) }
        _ = try libcResult("mkdir \(parent)/\(name)") { mkdirat(fd, name, 0o755) }.get()
    }

    /// Removes the (empty) cgroup `relative` below `directory`.
    public static func removeCgroup(_ relative: String, below directory: Int32) throws(LinuxError) {
        let slash = relative.lastIndex(of: "/")
        let parent = slash.map { String(relative[..<$0]) } ?? ""
        let name = slash.map { String(relative[relative.index(after: $0)...]) } ?? relative
        let fd = try open(parent, below: directory, flags: OpenFileFlags.pathOnly.openFlags | O_DIRECTORY)
        defer { Glibc.close(fd) }
        _ = try libcResult("rmdir \(relative)") { unlinkat(fd, name, AT_REMOVEDIR) }.get()
    }
}

extension SyscallNumber {
    /// Injected to give a restored tree its cgroup namespace.
    public static let unshare = 272
    public static let setns = 308
}
