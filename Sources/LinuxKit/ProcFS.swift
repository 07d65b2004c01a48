import Glibc
import SystemPackage

/// Readers for /proc.
///
/// Every parser is a pure function over the file's text (`parseMaps(_:)`, …)
/// so it can be tested with fixed strings; the readers that take a pid read the
/// file and hand it to the parser. A process that is gone shows as a
/// `LinuxError` with `ENOENT` or `ESRCH` naming the path.
///
/// Names and paths are decoded as UTF-8; bytes that are not valid UTF-8 are
/// replaced, so such a name cannot be used to reopen the file.
public enum ProcFS {
    // MARK: Raw reading

    /// Reads a whole file until end of file.
    ///
    /// /proc files report size 0, so the file is read with read(2) into a
    /// growing buffer rather than sized by stat. Interrupted calls are retried.
    public static func read(_ path: String) throws(LinuxError) -> [UInt8] {
        try read(path, at: AT_FDCWD)
    }

    /// Reads the file `name` of the directory open as `directory` (AT_FDCWD: a path), which
    /// walks one component where a path under /proc walks four. `oneRecord`: the file is one
    /// seq_file record (single_open, as fdinfo is), which the kernel formats whole before the
    /// first read copies it out, so a read that leaves room in the buffer has read it all.
    public static func read(_ name: String, at directory: Int32, oneRecord: Bool = false) throws(LinuxError)
        -> [UInt8]
    {
        let path = name
        let fd = try libcResult("open \(path)") { openat(directory, path, O_RDONLY | O_CLOEXEC) }.get()
        defer { _ = close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var used = 0
        while true {
            if used == buffer.count {
                // Doubled with one memcpy: appending element by element costs seconds for the
                // tens of megabytes of smaps of a process with tens of thousands of areas.
                let grown = buffer.count * 2
                buffer = [UInt8](unsafeUninitializedCapacity: grown) { bytes, count in
                    _ = buffer.withUnsafeBytes { memcpy(bytes.baseAddress!, $0.baseAddress!, used) }
                    _ = memset(bytes.baseAddress! + used, 0, grown - used)
                    count = grown
                }
            }
            let result = buffer.withUnsafeMutableBytes { raw in
                libcResult("read \(path)") { Glibc.read(fd, raw.baseAddress! + used, raw.count - used) }
            }
            let count = try result.get()
            if count == 0 { break }
            used += count
            if oneRecord && used < buffer.count { break }
        }
        buffer.removeSubrange(used...)
        return buffer
    }

    /// Reads a whole file as UTF-8 text (invalid bytes replaced).
    public static func readText(_ path: String) throws(LinuxError) -> String {
        ProcText.string(try read(path))
    }

    /// Whether KSM merges all of the process's memory (PR_SET_MEMORY_MERGE): the ksm_merge_any
    /// line of /proc/PID/ksm_stat. Nil when the file cannot be read (a kernel without KSM).
    public static func mergesAllMemory(pid: Int32) -> Bool? {
        guard let bytes = try? read("/proc/\(pid)/ksm_stat") else { return nil }
        return ProcText.lines(bytes[...]).contains { line in
            guard let (key, value) = ProcText.keyValue(line) else { return false }
            return key.elementsEqual("ksm_merge_any".utf8) && ProcText.trimmed(value).elementsEqual("yes".utf8)
        }
    }

    /// The one value of a file that holds a number (oom_score_adj, loginuid, cap_last_cap...),
    /// its first word as `parse` reads it.
    public static func number<T>(_ path: String, _ parse: (Substring) -> T?) throws(LinuxError) -> T {
        try LiveProcFS().number(path, parse)
    }

    /// Writes `text` to a /proc file (oom_score_adj, coredump_filter...) in one write.
    public static func write(_ text: String, to path: String) throws(LinuxError) {
        let fd = try libcResult("open \(path)") { Glibc.open(path, O_WRONLY | O_CLOEXEC) }.get()
        defer { Glibc.close(fd) }
        let bytes = Array(text.utf8)
        let written = try libcResult("write \(text.debugDescription) to \(path)") {
            Glibc.write(fd, bytes, bytes.count)
        }.get()
        guard written == bytes.count else {
            throw LinuxError(.ioError, "write \(text.debugDescription) to \(path): \(written) of \(bytes.count) bytes")
        }
    }

    /// The target of a symbolic link, however long it is.
    ///
    /// readlink(2) truncates silently, so the buffer grows until the answer fits.
    public static func link(_ path: String) throws(LinuxError) -> String {
        var size = 256
        while size <= 1 << 20 {
            var buffer = [UInt8](repeating: 0, count: size)
            let result = buffer.withUnsafeMutableBytes { raw in
                libcResult("readlink \(path)") {
                    readlink(path, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
                }
            }
            let count = try result.get()
            if count < size { return ProcText.string(buffer[..<count]) }
            size *= 2
        }
        throw LinuxError(.fileNameTooLong, "readlink \(path)")
    }

    /// The numeric entries of a directory (pids, tids or fds), sorted.
    static func numericEntries(_ path: String) throws(LinuxError) -> [Int32] {
        let directory = try openDirectory(path)
        defer { closedir(directory) }
        return try numericEntries(directory, path: path)
    }

    /// Every descriptor of process `pid` with its /proc link, in number order, read through its
    /// /proc/PID/fd directory open once: each readlinkat walks one component where a path walks
    /// four. A descriptor closed while they are read is left out.
    public static func fileDescriptorLinks(pid: Int32) throws(LinuxError) -> [(fd: Int32, link: String)] {
        let path = "/proc/\(pid)/fd"
        let directory = try openDirectory(path)
        defer { closedir(directory) }
        let descriptor = dirfd(directory)
        var links: [(fd: Int32, link: String)] = []
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        for fd in try numericEntries(directory, path: path) {
            let count = buffer.withUnsafeMutableBytes { raw in
                readlinkat(descriptor, "\(fd)", raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
            }
            if count < 0 { continue }
            if count < buffer.count {
                links.append((fd, ProcText.string(buffer[..<count])))
            } else if let link = try? link("\(path)/\(fd)") {
                links.append((fd, link))
            }
        }
        return links
    }

    private static func numericEntries(_ directory: OpaquePointer, path: String) throws(LinuxError) -> [Int32] {
        var result: [Int32] = []
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                if errno != 0 { throw LinuxError(Errno(rawValue: errno), "readdir \(path)") }
                break
            }
            let number: Int32? = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let name = raw.prefix { $0 != 0 }
                return ProcText.unsigned(name).flatMap { Int32(exactly: $0) }
            }
            if let number { result.append(number) }
        }
        return result.sorted()
    }

    private static func openDirectory(_ path: String) throws(LinuxError) -> OpaquePointer {
        while true {
            if let directory = opendir(path) { return directory }
            let err = Errno(rawValue: errno)
            if err != .interrupted { throw LinuxError(err, "opendir \(path)") }
        }
    }

    /// Reads `path` and parses it, naming the path in a parse error.
    static func parse<T>(_ path: String, _ parser: (ArraySlice<UInt8>) throws(LinuxError) -> T) throws(LinuxError) -> T
    {
        let bytes = try read(path)
        do {
            return try parser(bytes[...])
        } catch {
            throw LinuxError(error.errno, "\(path): \(error.operation)")
        }
    }

    // MARK: Per-process files

    /// The memory areas of a process, from /proc/PID/maps.
    public static func maps(pid: Int32) throws(LinuxError) -> [MemoryMapping] {
        try parse("/proc/\(pid)/maps", parseMaps(bytes:))
    }

    /// The status of a process, from /proc/PID/status.
    public static func status(pid: Int32) throws(LinuxError) -> ProcessStatus {
        try parse("/proc/\(pid)/status", parseStatus(bytes:))
    }

    /// The status of one thread, from /proc/PID/task/TID/status: its own
    /// blocked mask, thread-directed pending signals and credentials.
    public static func threadStatus(pid: Int32, tid: Int32) throws(LinuxError) -> ProcessStatus {
        try parse("/proc/\(pid)/task/\(tid)/status", parseStatus(bytes:))
    }

    /// The scheduler line of a process, from /proc/PID/stat.
    public static func stat(pid: Int32) throws(LinuxError) -> ProcessStat {
        try parse("/proc/\(pid)/stat", parseStat(bytes:))
    }

    /// A process's parent, its tracer's thread (0 for none), its thread group and its number of
    /// threads, from the first lines of /proc/PID/status that hold them (PPid, TracerPid, Tgid,
    /// Threads); not its other fields.
    public static func relations(pid: Int32) throws(LinuxError) -> TaskRelations {
        try parse("/proc/\(pid)/status", parseRelations(bytes:))
    }

    /// The same of one thread, from /proc/PID/task/TID/status: its own tracer.
    public static func threadRelations(pid: Int32, tid: Int32) throws(LinuxError) -> TaskRelations {
        try parse("/proc/\(pid)/task/\(tid)/status", parseRelations(bytes:))
    }

    static func parseRelations(bytes: ArraySlice<UInt8>) throws(LinuxError) -> TaskRelations {
        var parent: Int32?
        var tracer: Int32?
        var group: Int32?
        var threads: Int?
        var processGroup: Int32?
        var session: Int32?
        for line in ProcText.lines(bytes) {
            guard let (key, value) = ProcText.keyValue(line) else { continue }
            if key.elementsEqual("NSpgid".utf8) {
                processGroup = ProcText.int32(ProcText.trimmed(value).prefix { $0 != UInt8(ascii: "\t") })
            } else if key.elementsEqual("NSsid".utf8) {
                session = ProcText.int32(ProcText.trimmed(value).prefix { $0 != UInt8(ascii: "\t") })
            } else if key.elementsEqual("PPid".utf8) {
                parent = ProcText.int32(ProcText.trimmed(value))
            } else if key.elementsEqual("TracerPid".utf8) {
                tracer = ProcText.int32(ProcText.trimmed(value))
            } else if key.elementsEqual("Tgid".utf8) {
                group = ProcText.int32(ProcText.trimmed(value))
            } else if key.elementsEqual("Threads".utf8) {
                threads = ProcText.int(ProcText.trimmed(value))
            } else {
                continue
            }
            if let parent, let tracer, let group, let threads, let processGroup, let session {
                return TaskRelations(
                    parent: parent, tracer: tracer, threadGroup: group, threads: threads, processGroup: processGroup,
                    session: session)
            }
        }
        throw ProcText.malformed("status PPid, TracerPid, Tgid, Threads, NSpgid or NSsid")
    }

    /// The scheduler line of one thread, from /proc/PID/task/TID/stat: the CPU it last ran on.
    public static func threadStat(pid: Int32, tid: Int32) throws(LinuxError) -> ProcessStat {
        try parse("/proc/\(pid)/task/\(tid)/stat", parseStat(bytes:))
    }

    /// The resource limits of a process, from /proc/PID/limits.
    ///
    /// Read from outside because prlimit(2) on another process needs more
    /// privilege than reading this file does.
    public static func limits(pid: Int32) throws(LinuxError) -> [ResourceLimitEntry] {
        try parse("/proc/\(pid)/limits", parseLimits(bytes:))
    }

    /// The open file descriptors of a process, from /proc/PID/fd, sorted.
    public static func fileDescriptors(pid: Int32) throws(LinuxError) -> [Int32] {
        try numericEntries("/proc/\(pid)/fd")
    }

    /// Position, flags and mount of one descriptor, from /proc/PID/fdinfo/FD.
    public static func fileDescriptorInfo(pid: Int32, fd: Int32) throws(LinuxError) -> FileDescriptorInfo {
        try parse("/proc/\(pid)/fdinfo/\(fd)", parseFileDescriptorInfo(bytes:))
    }

    /// The same, through the process's /proc/PID/fdinfo directory open as `directory`.
    public static func fileDescriptorInfo(pid: Int32, fd: Int32, in directory: Int32) throws(LinuxError)
        -> FileDescriptorInfo
    {
        let bytes = try read("\(fd)", at: directory, oneRecord: true)
        do {
            return try parseFileDescriptorInfo(bytes: bytes[...])
        } catch {
            throw LinuxError(error.errno, "/proc/\(pid)/fdinfo/\(fd): \(error.operation)")
        }
    }

    /// The /proc/PID/fdinfo directory of a process, opened to read many of its descriptors'
    /// fdinfo (`fileDescriptorInfo(pid:fd:in:)`), for the caller to close.
    public static func openFileDescriptorInfoDirectory(pid: Int32) throws(LinuxError) -> Int32 {
        try libcResult("open /proc/\(pid)/fdinfo") {
            open("/proc/\(pid)/fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }.get()
    }

    /// What a descriptor refers to: a path (maybe ending in " (deleted)"),
    /// or a name such as "pipe:[1234]", "socket:[1234]" or "anon_inode:[eventfd]".
    public static func fileDescriptorPath(pid: Int32, fd: Int32) throws(LinuxError) -> String {
        try link("/proc/\(pid)/fd/\(fd)")
    }

    /// The working directory of a process.
    public static func cwd(pid: Int32) throws(LinuxError) -> String {
        try link("/proc/\(pid)/cwd")
    }

    /// The executable of a process (maybe ending in " (deleted)").
    public static func executable(pid: Int32) throws(LinuxError) -> String {
        try link("/proc/\(pid)/exe")
    }

    /// The raw ELF auxiliary vector of a process: pairs of native 64-bit words,
    /// ending with AT_NULL.
    public static func auxv(pid: Int32) throws(LinuxError) -> [UInt8] {
        try read("/proc/\(pid)/auxv")
    }

    /// The thread IDs of a process, from /proc/PID/task, sorted.
    public static func threads(pid: Int32) throws(LinuxError) -> [Int32] {
        try numericEntries("/proc/\(pid)/task")
    }

    /// The children of a process, sorted.
    ///
    /// The kernel lists a child under the thread that created it, so this is
    /// the union of /proc/PID/task/TID/children over every thread. A thread
    /// that exits while we look is skipped.
    public static func children(pid: Int32) throws(LinuxError) -> [Int32] {
        var result: Set<Int32> = []
        for tid in try threads(pid: pid) {
            let path = "/proc/\(pid)/task/\(tid)/children"
            let bytes: [UInt8]
            do {
                bytes = try read(path)
            } catch
                where (error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess)
                && tid != pid && access("/proc/\(pid)/task/\(tid)", F_OK) != 0
            {
                continue
            }
            for word in ProcText.words(bytes[...]) {
                guard let child = ProcText.int32(word), child > 0 else {
                    throw LinuxError(.invalidArgument, "\(path): parse /proc children")
                }
                result.insert(child)
            }
        }
        return result.sorted()
    }

    /// The command name of a process (at most 15 bytes as the kernel keeps it),
    /// without the trailing newline.
    public static func comm(pid: Int32) throws(LinuxError) -> String {
        try commText("/proc/\(pid)/comm")
    }

    /// The name of one thread of a process, as `comm(pid:)`.
    public static func comm(pid: Int32, tid: Int32) throws(LinuxError) -> String {
        try commText("/proc/\(pid)/task/\(tid)/comm")
    }

    private static func commText(_ path: String) throws(LinuxError) -> String {
        var bytes = try read(path)
        if bytes.last == ProcText.newline { bytes.removeLast() }
        return ProcText.string(bytes)
    }
}

/// What /proc/PID/status says of a task's place among others (`ProcFS.relations`).
public struct TaskRelations: Sendable, Equatable {
    public let parent: Int32
    /// The thread tracing it (ptrace), 0 for none.
    public let tracer: Int32
    public let threadGroup: Int32
    public let threads: Int
    /// Its process group and session, in the PID namespace of the /proc read (NSpgid, NSsid).
    public let processGroup: Int32
    public let session: Int32
}
