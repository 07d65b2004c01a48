import Glibc
import SystemPackage

/// One line of /proc/PID/maps: a memory area and what backs it.
public struct MemoryMapping: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var readable: Bool
    public var writable: Bool
    public var executable: Bool
    /// MAP_SHARED ("s"); otherwise private ("p").
    public var shared: Bool
    /// Offset into the backing file, in bytes.
    public var offset: UInt64
    /// The backing file's device, encoded like glibc's `makedev(major, minor)`
    /// so that it compares equal to `FileStatus.device`.
    public var device: UInt64
    public var inode: UInt64
    /// "" for an anonymous area; "[heap]", "[stack]", "[vdso]", "[vvar]",
    /// "[vvar_vclock]", "[vsyscall]", "[anon:name]"; or the file's path
    /// without the " (deleted)" suffix. From the maps text, a newline in a path
    /// appears as the kernel escapes it, "\012"; `ProcFS.mapsWithFiles` has the
    /// kernel's own name.
    public var path: String
    /// The file was unlinked (also the case for memfd, shared anonymous and SysV shared
    /// memory areas). From the maps text: the path ended in " (deleted)", as it also does for
    /// a file named so; `ProcFS.mapsWithFiles` asks the file's link count.
    public var deleted: Bool
    /// The mapped file's file system, when `ProcFS.mapsWithFiles` could look it up.
    public var fileSystem: FileSystemKind?

    public init(
        start: UInt64, end: UInt64,
        readable: Bool, writable: Bool, executable: Bool, shared: Bool,
        offset: UInt64 = 0, device: UInt64 = 0, inode: UInt64 = 0,
        path: String = "", deleted: Bool = false, fileSystem: FileSystemKind? = nil
    ) {
        self.start = start
        self.end = end
        self.readable = readable
        self.writable = writable
        self.executable = executable
        self.shared = shared
        self.offset = offset
        self.device = device
        self.inode = inode
        self.path = path
        self.deleted = deleted
        self.fileSystem = fileSystem
    }

    /// The area's length in bytes.
    public var size: UInt64 { end &- start }

    /// The permissions as mmap/mprotect flags: PROT_READ | PROT_WRITE | PROT_EXEC.
    public var protection: Int32 {
        (readable ? PROT_READ : 0) | (writable ? PROT_WRITE : 0) | (executable ? PROT_EXEC : 0)
    }
}

/// A device number from its parts, as glibc's `gnu_dev_makedev` encodes it.
@inline(__always)
func makeDevice(major: UInt64, minor: UInt64) -> UInt64 {
    ((major & 0x0000_0fff) << 8) | ((major & 0xffff_f000) << 32)
        | (minor & 0x0000_00ff) | ((minor & 0xffff_ff00) << 12)
}

extension ProcFS {
    /// Parses the text of /proc/PID/maps.
    ///
    /// - Throws: `LinuxError(.invalidArgument, "parse /proc maps line N")` for a
    ///   malformed line, N counting from 1.
    public static func parseMaps(_ text: String) throws(LinuxError) -> [MemoryMapping] {
        try parseMaps(bytes: Array(text.utf8)[...])
    }

    static func parseMaps(bytes: ArraySlice<UInt8>) throws(LinuxError) -> [MemoryMapping] {
        var result: [MemoryMapping] = []
        for (index, line) in ProcText.lines(bytes).enumerated() {
            if ProcText.trimmed(line).isEmpty { continue }
            guard let mapping = parseMapsLine(line) else {
                throw ProcText.malformed("maps line \(index + 1)")
            }
            result.append(mapping)
        }
        return result
    }

    private static let deletedSuffix = Array(" (deleted)".utf8)

    /// The memory areas of a process, each mapped file named, classified and found deleted or
    /// not by the kernel: through /proc/PID/map_files/START-END, its link (the name unescaped)
    /// and its status (a link count of 0 for a deleted file; "x (deleted)" may be a file's
    /// name). Looked up once per file. Reading map_files needs CAP_CHECKPOINT_RESTORE or
    /// CAP_SYS_ADMIN: without, the maps text is all there is (EPERM).
    public static func mapsWithFiles(pid: Int32) throws(LinuxError) -> [MemoryMapping] {
        var maps = try maps(pid: pid)
        struct FileKey: Hashable {
            let device: UInt64
            let inode: UInt64
            let path: String
            let deleted: Bool
        }
        var seen: [FileKey: (path: String, deleted: Bool, fileSystem: FileSystemKind)] = [:]
        for index in maps.indices where maps[index].inode != 0 || maps[index].path.hasPrefix("/") {
            let mapping = maps[index]
            let key = FileKey(
                device: mapping.device, inode: mapping.inode, path: mapping.path, deleted: mapping.deleted)
            if seen[key] == nil {
                let entry =
                    "/proc/\(pid)/map_files/\(String(mapping.start, radix: 16))-\(String(mapping.end, radix: 16))"
                do {
                    var name = try link(entry)
                    let status = try FileStatus.stat(path: entry)
                    if status.isDeleted, name.hasSuffix(" (deleted)") { name.removeLast(deletedSuffix.count) }
                    seen[key] = (name, status.isDeleted, try FileSystemKind.of(path: entry))
                } catch  where error.errno == .notPermitted {
                    return maps
                } catch  where error.errno == .noSuchFileOrDirectory {
                    // A running process unmapped the area meanwhile: a frozen one is read again.
                    continue
                }
            }
            let file = seen[key]!
            maps[index].path = file.path
            maps[index].deleted = file.deleted
            maps[index].fileSystem = file.fileSystem
        }
        return maps
    }

    /// "start-end perms offset major:minor inode   path"
    private static func parseMapsLine(_ line: ArraySlice<UInt8>) -> MemoryMapping? {
        var rest = line
        func word() -> ArraySlice<UInt8>? {
            guard let start = rest.firstIndex(where: { !ProcText.isBlank($0) }) else { return nil }
            let end = rest[start...].firstIndex(where: ProcText.isBlank) ?? rest.endIndex
            defer { rest = rest[end...] }
            return rest[start..<end]
        }
        guard let range = word(), let dash = range.firstIndex(of: 0x2D),
            let start = ProcText.unsigned(range[..<dash], radix: 16),
            let end = ProcText.unsigned(range[(dash + 1)...], radix: 16), start <= end,
            let perms = word(), perms.count == 4,
            let offsetText = word(), let offset = ProcText.unsigned(offsetText, radix: 16),
            let deviceText = word(), let colon = deviceText.firstIndex(of: 0x3A),
            let major = ProcText.unsigned(deviceText[..<colon], radix: 16), major <= UInt32.max,
            let minor = ProcText.unsigned(deviceText[(colon + 1)...], radix: 16), minor <= UInt32.max,
            let inodeText = word(), let inode = ProcText.unsigned(inodeText)
        else { return nil }

        func flag(_ at: Int, _ set: UInt8) -> Bool? {
            let byte = perms[perms.startIndex + at]
            return byte == set ? true : byte == 0x2D ? false : nil
        }
        guard let readable = flag(0, 0x72), let writable = flag(1, 0x77), let executable = flag(2, 0x78) else {
            return nil
        }
        let shared: Bool
        switch perms[perms.startIndex + 3] {
        case 0x73: shared = true  // s
        case 0x70: shared = false  // p
        default: return nil
        }

        // The path is the rest of the line after the padding: it may hold spaces.
        var path = rest.drop(while: ProcText.isBlank)
        var deleted = false
        if path.count > deletedSuffix.count, path.suffix(deletedSuffix.count).elementsEqual(deletedSuffix) {
            path = path.dropLast(deletedSuffix.count)
            deleted = true
        }
        return MemoryMapping(
            start: start, end: end,
            readable: readable, writable: writable, executable: executable, shared: shared,
            offset: offset, device: makeDevice(major: major, minor: minor), inode: inode,
            path: ProcText.string(path), deleted: deleted
        )
    }
}
