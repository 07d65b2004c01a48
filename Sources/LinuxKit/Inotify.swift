internal import CLinux
import Glibc
import SystemPackage

/// An inotify instance (inotify(7)): the watches its fdinfo shows, how each watched file is
/// found again by its handle, and what a restore makes it with.
public enum Inotify {
    /// Its /proc/PID/fd link.
    public static let link = "anon_inode:inotify"
    /// The status flags one is made with: O_RDONLY, and O_NONBLOCK if asked.
    public static let statusFlags: UInt32 = 0o4000
    /// IN_ALL_EVENTS, and the flags fdinfo shows of a watch: IN_EXCL_UNLINK, IN_ONESHOT.
    public static let events: UInt32 = 0xfff
    public static let exclusiveUnlink: UInt32 = 0x0400_0000
    public static let oneShot: UInt32 = 0x8000_0000
    public static let masks: UInt32 = events | exclusiveUnlink | oneShot

    /// A new instance, close-on-exec, with O_NONBLOCK if `nonBlocking`.
    public static func make(nonBlocking: Bool) throws(LinuxError) -> FileDescriptor {
        let flags = Int32(O_CLOEXEC) | (nonBlocking ? Int32(O_NONBLOCK) : 0)
        return FileDescriptor(rawValue: Int32(try kernelResult(amber_inotify_init1(flags), "inotify_init1").get()))
    }

    /// inotify_add_watch: the watch descriptor the kernel gave.
    public static func addWatch(_ instance: FileDescriptor, path: String, mask: UInt32) throws(LinuxError) -> Int32 {
        Int32(
            try kernelResult(amber_inotify_add_watch(instance.rawValue, path, mask), "inotify_add_watch of \(path)")
                .get())
    }

    public static func removeWatch(_ instance: FileDescriptor, _ wd: Int32) throws(LinuxError) {
        _ = try kernelResult(amber_inotify_rm_watch(instance.rawValue, wd), "inotify_rm_watch of \(wd)").get()
    }

    /// The bytes of events queued and not read (FIONREAD).
    public static func queuedBytes(_ instance: FileDescriptor) throws(LinuxError) -> Int32 {
        var count: Int32 = 0
        _ = try libcResult("ioctl FIONREAD") { ioctl(instance.rawValue, UInt(FIONREAD), &count) }.get()
        return count
    }

    /// Reads and drops every queued event of `instance`, which must be non-blocking.
    public static func discardEvents(_ instance: FileDescriptor) throws(LinuxError) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(instance.rawValue, $0.baseAddress, $0.count) }
            if count > 0 { continue }
            if count < 0 && Glibc.errno == EINTR { continue }
            if count < 0 && Glibc.errno != EAGAIN { throw LinuxError.current("read of an inotify instance") }
            return
        }
    }
}

/// One watch of an inotify instance: an "inotify wd:" line of its fdinfo.
public struct InotifyWatch: Sendable, Equatable {
    public var wd: Int32
    public var inode: UInt64
    /// The kernel's dev_t of the file's file system (major << 20 | minor).
    public var device: UInt64
    public var mask: UInt32
    public var ignoredMask: UInt32
    public var handleType: Int32
    public var handle: [UInt8]

    /// Every watch in an inotify instance's fdinfo: "inotify wd:2 ino:2e1 sdev:fe00000 mask:2
    /// ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:e102000000000000", all hexadecimal.
    public static func watches(in info: FileDescriptorInfo) throws(LinuxError) -> [InotifyWatch] {
        var watches: [InotifyWatch] = []
        for line in info.lines where line.hasPrefix("inotify ") {
            var values: [String: String] = [:]
            for word in line.dropFirst("inotify ".count).split(separator: " ") {
                guard let colon = word.firstIndex(of: ":") else { continue }
                values[String(word[..<colon])] = String(word[word.index(after: colon)...])
            }
            func hex(_ key: String) -> UInt64? { values[key].flatMap { UInt64($0, radix: 16) } }
            guard let wd = hex("wd").flatMap({ Int32(exactly: $0) }), let inode = hex("ino"),
                let device = hex("sdev"), let mask = hex("mask").flatMap({ UInt32(exactly: $0) }),
                let ignoredMask = hex("ignored_mask").flatMap({ UInt32(exactly: $0) }),
                let handleType = hex("fhandle-type").flatMap({ Int32(exactly: $0) }),
                let handleSize = hex("fhandle-bytes"), let handleText = values["f_handle"],
                handleText.count == Int(handleSize) * 2
            else {
                throw ProcText.malformed("inotify fdinfo line \(line)")
            }
            var handle: [UInt8] = []
            var index = handleText.startIndex
            while index < handleText.endIndex {
                let next = handleText.index(index, offsetBy: 2)
                guard let byte = UInt8(handleText[index..<next], radix: 16) else {
                    throw ProcText.malformed("inotify fdinfo line \(line)")
                }
                handle.append(byte)
                index = next
            }
            watches.append(
                InotifyWatch(
                    wd: wd, inode: inode, device: device, mask: mask, ignoredMask: ignoredMask, handleType: handleType,
                    handle: handle))
        }
        return watches
    }

    /// The path of the watched file as process `pid` sees it: its handle opened (as root, which
    /// open_by_handle_at needs) on a mount of its file system, found in the process's mountinfo.
    public func path(pid: Int32) throws(LinuxError) -> String {
        let major = device >> 20
        let minor = device & 0xfffff
        let mountinfo = try ProcFS.readText("/proc/\(pid)/mountinfo")
        var mountPoint: String?
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4, fields[2] == "\(major):\(minor)" {
                mountPoint = String(fields[4])
                break
            }
        }
        guard let mountPoint else { throw LinuxError(.noSuchFileOrDirectory, "a mount of device \(major):\(minor)") }
        // Not O_PATH: open_by_handle_at takes no O_PATH descriptor for the mount (EBADF).
        let mount = try libcResult("open of the mount \(mountPoint)") {
            Glibc.open("/proc/\(pid)/root" + mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }.get()
        defer { Glibc.close(mount) }
        let file = Int32(
            try kernelResult(
                amber_open_by_handle_at(
                    mount, handleType, handle, UInt32(handle.count), OpenFileFlags.pathOnly.openFlags | O_CLOEXEC),
                "open_by_handle_at of watch \(wd)"
            ).get())
        defer { Glibc.close(file) }
        return try ProcFS.fileDescriptorPath(pid: getpid(), fd: file)
    }
}
