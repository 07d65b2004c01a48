internal import CLinux
import Glibc
import SystemPackage

/// An epoll instance (epoll(7)): the watches its fdinfo shows, and what a restore makes it with.
public enum Epoll {
    /// Its /proc/PID/fd link.
    public static let link = "anon_inode:[eventpoll]"
    /// The status flags one is made with: O_RDWR, and O_NONBLOCK set by fcntl.
    public static let statusFlags: UInt32 = 0o2 | 0o4000

    /// EPOLLERR | EPOLLHUP: epoll_ctl adds them to every watch.
    public static let errorAndHangUp: UInt32 = 0x8 | 0x10
    /// The flags of a watch that are not events (EP_PRIVATE_BITS).
    public static let wakeUp: UInt32 = 1 << 29
    public static let oneShot: UInt32 = 1 << 30
    public static let edgeTriggered: UInt32 = 1 << 31
    public static let exclusive: UInt32 = 1 << 28
    public static let flags: UInt32 = wakeUp | oneShot | edgeTriggered | exclusive
    /// The events a watch can ask for (EPOLLIN ... EPOLLRDHUP, EPOLLMSG; EPOLLERR and EPOLLHUP).
    public static let events: UInt32 = 0x3fff
    /// EPOLL_CTL_ADD.
    public static let add: UInt64 = 1
    /// struct epoll_event, packed on x86_64: events (u32) then data (u64).
    public static let eventSize = 12

    /// A struct epoll_event.
    public static func event(events: UInt32, data: UInt64) -> [UInt8] {
        withUnsafeBytes(of: events.littleEndian) { Array($0) } + withUnsafeBytes(of: data.littleEndian) { Array($0) }
    }

    /// A new, empty epoll instance, close-on-exec, with O_NONBLOCK if `nonBlocking`.
    public static func make(nonBlocking: Bool) throws(LinuxError) -> FileDescriptor {
        let fd = FileDescriptor(
            rawValue: Int32(try kernelResult(amber_epoll_create1(Int32(O_CLOEXEC)), "epoll_create1").get()))
        guard nonBlocking else { return fd }
        do throws(LinuxError) {
            _ = try libcResult("fcntl F_SETFL O_NONBLOCK of a new epoll instance") {
                fcntl(fd.rawValue, F_SETFL, O_NONBLOCK)
            }.get()
        } catch {
            try? fd.close()
            throw error
        }
        return fd
    }

    /// Whether fd `fd` of process `pid` is the file of the first watch the epoll instance at
    /// its fd `epollFD` has by fd number `watchedFD` (kcmp KCMP_EPOLL_TFD).
    public static func watches(pid: Int32, fd: Int32, epollFD: Int32, watchedFD: Int32) throws(LinuxError) -> Bool {
        let result = amber_kcmp_epoll_target(pid, fd, epollFD, watchedFD)
        if result == -Int(EBADF) { return false }
        return try kernelResult(result, "kcmp of fd \(fd) and the watch of fd \(watchedFD) in epoll fd \(epollFD)")
            .get() == 0
    }

    /// The events of `events` that `file` reports ready now (poll with no wait, which takes nothing).
    public static func readyEvents(of file: FileDescriptor, among events: UInt32) throws(LinuxError) -> UInt32 {
        var entry = pollfd(fd: file.rawValue, events: Int16(truncatingIfNeeded: events & 0x7fff), revents: 0)
        _ = try libcResult("poll") { poll(&entry, 1, 0) }.get()
        return UInt32(UInt16(bitPattern: entry.revents)) & events
    }
}

/// One watch of an epoll instance: a "tfd:" line of its fdinfo.
public struct EpollWatch: Sendable, Equatable {
    /// The fd number it was added by, in the process that added it.
    public var fd: Int32
    /// Its events and flags (EPOLLET, EPOLLONESHOT...), EPOLLERR and EPOLLHUP included; a
    /// one-shot watch that fired keeps its flags alone.
    public var events: UInt32
    public var data: UInt64
    /// The watched file's inode and device (hexadecimal in fdinfo).
    public var inode: UInt64
    public var device: UInt64

    public init(fd: Int32, events: UInt32, data: UInt64, inode: UInt64, device: UInt64) {
        self.fd = fd
        self.events = events
        self.data = data
        self.inode = inode
        self.device = device
    }

    /// Every watch in an epoll instance's fdinfo:
    /// "tfd:        3 events:       19 data:             1234  pos:0 ino:3f18e9 sdev:f".
    public static func watches(in info: FileDescriptorInfo) throws(LinuxError) -> [EpollWatch] {
        var watches: [EpollWatch] = []
        for line in info.lines where line.hasPrefix("tfd:") {
            var values: [String: String] = [:]
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            var index = 0
            while index < words.count {
                let word = words[index]
                if word.hasSuffix(":") {
                    guard index + 1 < words.count else { break }
                    values[String(word.dropLast())] = String(words[index + 1])
                    index += 2
                } else if let colon = word.firstIndex(of: ":") {
                    values[String(word[..<colon])] = String(word[word.index(after: colon)...])
                    index += 1
                } else {
                    throw ProcText.malformed("epoll fdinfo line \(line)")
                }
            }
            guard let fd = values["tfd"].flatMap({ Int32($0) }),
                let events = values["events"].flatMap({ UInt32($0, radix: 16) }),
                let data = values["data"].flatMap({ UInt64($0, radix: 16) }),
                let inode = values["ino"].flatMap({ UInt64($0, radix: 16) }),
                let device = values["sdev"].flatMap({ UInt64($0, radix: 16) })
            else {
                throw ProcText.malformed("epoll fdinfo line \(line)")
            }
            watches.append(EpollWatch(fd: fd, events: events, data: data, inode: inode, device: device))
        }
        return watches
    }
}
