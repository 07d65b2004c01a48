import Glibc
import SystemPackage

/// What /proc/PID/fdinfo/FD says about one open file description. The four fields every
/// descriptor has are parsed at once; the others are kept as the kernel wrote them and split
/// only when asked for: a dump reads the fdinfo of every descriptor, twice.
public struct FileDescriptorInfo: Sendable, Equatable {
    /// pos: the file offset.
    public var position: UInt64
    /// flags: the open(2) flags, octal in the file; includes O_CLOEXEC
    /// (0o2000000) when the descriptor has it, although that flag belongs to
    /// the descriptor and not the file description.
    public var flags: UInt32
    /// mnt_id: the mount the file lives on, as in /proc/PID/mountinfo.
    public var mountID: Int
    /// ino: the inode number (Linux 5.12 and later).
    public var inode: UInt64?
    /// The text as the kernel wrote it.
    public var text: [UInt8]

    /// Every "key: value" line split at its first colon, value trimmed of
    /// surrounding blanks. For a key that repeats (epoll's "tfd", inotify's
    /// "inotify wd", …) this holds the first occurrence; `lines` holds them all.
    public var fields: [String: String] {
        var fields: [String: String] = [:]
        for line in ProcText.lines(text[...]) {
            guard let (key, value) = ProcText.keyValue(line) else { continue }
            let name = ProcText.string(ProcText.trimmed(key))
            if fields[name] == nil { fields[name] = ProcText.string(ProcText.trimmed(value)) }
        }
        return fields
    }

    /// Every line, in order, as the kernel wrote it.
    public var lines: [String] { ProcText.lines(text[...]).map { ProcText.string($0) } }

    /// The lines that start with `prefix` ("lock:"), the others left unsplit.
    public func lines(startingWith prefix: String) -> [String] {
        let start = Array(prefix.utf8)
        return ProcText.lines(text[...]).filter { $0.starts(with: start) }.map { ProcText.string($0) }
    }
}

extension ProcFS {
    /// Parses the text of /proc/PID/fdinfo/FD; unknown lines are kept in `fields` and `lines`.
    ///
    /// - Throws: `LinuxError(.invalidArgument, "parse /proc fdinfo field KEY")`
    ///   when pos, flags or mnt_id is missing or malformed.
    public static func parseFileDescriptorInfo(_ text: String) throws(LinuxError) -> FileDescriptorInfo {
        try parseFileDescriptorInfo(bytes: Array(text.utf8)[...])
    }

    static func parseFileDescriptorInfo(bytes: ArraySlice<UInt8>) throws(LinuxError) -> FileDescriptorInfo {
        var position: ArraySlice<UInt8>?
        var flags: ArraySlice<UInt8>?
        var mountID: ArraySlice<UInt8>?
        var inode: ArraySlice<UInt8>?
        for line in ProcText.lines(bytes) {
            guard let (keyBytes, valueBytes) = ProcText.keyValue(line) else { continue }
            let key = ProcText.trimmed(keyBytes)
            if position == nil, key.elementsEqual("pos".utf8) {
                position = ProcText.trimmed(valueBytes)
            } else if flags == nil, key.elementsEqual("flags".utf8) {
                flags = ProcText.trimmed(valueBytes)
            } else if mountID == nil, key.elementsEqual("mnt_id".utf8) {
                mountID = ProcText.trimmed(valueBytes)
            } else if inode == nil, key.elementsEqual("ino".utf8) {
                inode = ProcText.trimmed(valueBytes)
            }
        }
        func required<T>(_ key: String, _ text: ArraySlice<UInt8>?, _ parse: (ArraySlice<UInt8>) -> T?)
            throws(LinuxError) -> T
        {
            guard let text, let value = parse(text) else { throw ProcText.malformed("fdinfo field \(key)") }
            return value
        }
        return FileDescriptorInfo(
            position: try required("pos", position) { ProcText.unsigned($0) },
            flags: try required("flags", flags) { ProcText.unsigned($0, radix: 8).flatMap { UInt32(exactly: $0) } },
            mountID: try required("mnt_id", mountID, ProcText.int),
            inode: inode == nil ? nil : try required("ino", inode) { ProcText.unsigned($0) },
            text: Array(bytes)
        )
    }
}

/// The kernel's internal mounts of anonymous pipes (pipefs) and sockets (sockfs), by the mount
/// ID fdinfo shows, read once from a pipe and a socket of our own: a descriptor on one of them
/// has the /proc link "pipe:[INODE]" or "socket:[INODE]", which its fdinfo alone then gives,
/// without a readlink per descriptor.
public enum AnonymousFileMounts {
    public static let pipes: Int? = {
        guard let ends = try? PipeBuffer.make() else { return nil }
        defer {
            try? ends.read.close()
            try? ends.write.close()
        }
        return try? ProcFS.fileDescriptorInfo(pid: getpid(), fd: ends.read.rawValue).mountID
    }()

    public static let sockets: Int? = {
        let socket = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return nil }
        defer { close(socket) }
        return try? ProcFS.fileDescriptorInfo(pid: getpid(), fd: socket).mountID
    }()

    /// The /proc/PID/fd link of the descriptor `info` describes, when it is an anonymous pipe
    /// or a socket; nil otherwise.
    public static func link(of info: FileDescriptorInfo) -> String? {
        guard let inode = info.inode else { return nil }
        if info.mountID == pipes { return "pipe:[\(inode)]" }
        if info.mountID == sockets { return "socket:[\(inode)]" }
        return nil
    }
}
