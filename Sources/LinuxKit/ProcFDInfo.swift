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
    public static let pipes: Int? = pipeMount?.id

    public static let sockets: Int? = socketMount?.id

    /// The mount ID and the device number (st_dev) of pipefs and of sockfs: every pipe, and
    /// every socket, is on the one instance the kernel mounts at boot.
    private static let pipeMount: (id: Int, device: UInt64)? = {
        guard let ends = try? PipeBuffer.make() else { return nil }
        defer {
            try? ends.read.close()
            try? ends.write.close()
        }
        return mount(of: ends.read.rawValue)
    }()

    private static let socketMount: (id: Int, device: UInt64)? = {
        let socket = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return nil }
        defer { close(socket) }
        return mount(of: socket)
    }()

    private static func mount(of fd: Int32) -> (id: Int, device: UInt64)? {
        guard let info = try? ProcFS.fileDescriptorInfo(pid: getpid(), fd: fd),
            let status = try? FileStatus.fstat(fd: fd)
        else { return nil }
        return (info.mountID, status.device)
    }

    /// The device number and inode of the pipe or socket the descriptor `info` describes, as
    /// fstat would show them; nil when it is neither.
    public static func identity(of info: FileDescriptorInfo) -> (device: UInt64, inode: UInt64)? {
        guard let inode = info.inode else { return nil }
        if let pipes = pipeMount, info.mountID == pipes.id { return (pipes.device, inode) }
        if let sockets = socketMount, info.mountID == sockets.id { return (sockets.device, inode) }
        return nil
    }

    /// The /proc/PID/fd link of the descriptor `info` describes, when it is an anonymous pipe
    /// or a socket; nil otherwise.
    public static func link(of info: FileDescriptorInfo) -> String? {
        guard let inode = info.inode else { return nil }
        if info.mountID == pipes { return "pipe:[\(inode)]" }
        if info.mountID == sockets { return "socket:[\(inode)]" }
        return nil
    }
}

extension AnonymousFileMounts {
    /// What /proc/PID/fdinfo/FD shows of a descriptor on an anonymous pipe or a socket, read
    /// through `copy`, a descriptor of ours on its open file description (pidfd_getfd), with the
    /// copy's status; nil when it is neither, or when a POSIX or OFD lock is on its file
    /// (F_GETLK finds any, as our process owns none), which only the fdinfo shows. Four calls
    /// that walk no path and make no /proc inode, where an fdinfo read opens one. It lacks what
    /// belongs to the target's descriptor and not to the description: O_CLOEXEC is never in
    /// its flags, and a flock lock, which F_GETLK does not see, is never in its lines; nor are
    /// the lines a socket's family adds (a unix socket's scm_fds). A pipe's or socket's position
    /// is always 0.
    public static func info(ofCopy copy: FileDescriptor) throws(LinuxError) -> (FileDescriptorInfo, FileStatus)? {
        let status = try FileStatus.fstat(fd: copy.rawValue)
        let mount: Int
        if status.isFIFO, let pipes = pipeMount, status.device == pipes.device {
            mount = pipes.id
        } else if status.isSocket, let sockets = socketMount, status.device == sockets.device {
            mount = sockets.id
        } else {
            return nil
        }
        let flags = fcntl(copy.rawValue, F_GETFL)
        guard flags >= 0 else { throw LinuxError.current("fcntl(F_GETFL)") }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        guard fcntl(copy.rawValue, F_GETLK, &lock) == 0 else { throw LinuxError.current("fcntl(F_GETLK)") }
        guard lock.l_type == Int16(F_UNLCK) else { return nil }
        let text = "pos:\t0\nflags:\t0\(String(flags, radix: 8))\nmnt_id:\t\(mount)\nino:\t\(status.inode)\n"
        let info = FileDescriptorInfo(
            position: 0, flags: UInt32(bitPattern: flags), mountID: mount, inode: status.inode, text: Array(text.utf8))
        return (info, status)
    }
}
