import Glibc
import SystemPackage

/// One unix socket as sock_diag (NETLINK_SOCK_DIAG, linux/unix_diag.h) shows it.
public struct UnixSocketDiagnosis: Sendable, Equatable {
    /// Its inode on sockfs: the number in "socket:[INODE]".
    public var inode: UInt64
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    public var type: Int32
    /// TCP_ESTABLISHED (1) for a connected socket, TCP_CLOSE (7), TCP_LISTEN (10).
    public var state: UInt8
    /// Its address (UNIX_DIAG_NAME) without the family: a path, or a NUL and an abstract name;
    /// nil when it is not bound.
    public var name: [UInt8]?
    /// The socket file a path socket was bound to (UNIX_DIAG_VFS): its inode, and its device as
    /// stat(2) shows it.
    public var fileInode: UInt32?
    public var fileDevice: UInt64?
    /// The inode of the socket it is connected to (UNIX_DIAG_PEER); 0 when that one is gone.
    public var peer: UInt64?
    /// On a listener, the inodes of the sockets that connected and were not accepted yet
    /// (UNIX_DIAG_ICONS), oldest first.
    public var pendingConnections: [UInt64]
    /// UNIX_DIAG_RQLEN: bytes queued to be read (a listener: connections not accepted; a
    /// datagram socket: the size of the first datagram), and memory of what it sent that is not
    /// read yet.
    public var receiveQueue: UInt32
    public var sendQueue: UInt32
    /// RCV_SHUTDOWN 1, SEND_SHUTDOWN 2 (UNIX_DIAG_SHUTDOWN).
    public var shutdown: UInt8
    /// Its receive and send buffer sizes (UNIX_DIAG_MEMINFO's SK_MEMINFO_RCVBUF and
    /// SK_MEMINFO_SNDBUF): what getsockopt reads for SO_RCVBUF and SO_SNDBUF.
    public var receiveBuffer: UInt32?
    public var sendBuffer: UInt32?

    public static let established: UInt8 = 1
    public static let closed: UInt8 = 7
    public static let listening: UInt8 = 10
    public static let receiveShutdown: UInt8 = 1
    public static let sendShutdown: UInt8 = 2
}

/// sock_diag for unix sockets, and the socket calls the unix-socket kind makes on sockets of ours.
public enum UnixSockets {
    /// UDIAG_SHOW_NAME | VFS | PEER | ICONS | RQLEN | MEMINFO.
    private static let show: UInt32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20
    private enum Attribute: UInt16 {
        case name = 0
        case vfs = 1
        case peer = 2
        case icons = 3
        case queues = 4
        case memory = 5
        case shutdown = 6
    }

    /// SO_PASSCRED, SO_PASSSEC, SO_PEEK_OFF, SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE,
    /// SO_RCVBUFFORCE, SO_PASSPIDFD (asm-generic/socket.h).
    public static let passCredentials: Int32 = 16
    public static let passSecurity: Int32 = 34
    public static let peekOffset: Int32 = 42
    public static let sendBuffer: Int32 = 7
    public static let receiveBuffer: Int32 = 8
    public static let sendBufferForce: Int32 = 32
    public static let receiveBufferForce: Int32 = 33
    public static let passPidfd: Int32 = 76

    /// The bytes getsockopt reads for SOL_SOCKET `option` of our socket `fd` (up to a struct
    /// timeval's), or nil when this kernel has no such option (ENOPROTOOPT).
    public static func optionBytes(_ fd: FileDescriptor, _ option: Int32) throws(LinuxError) -> [UInt8]? {
        var value = timeval()
        var size = socklen_t(MemoryLayout<timeval>.size)
        guard getsockopt(fd.rawValue, SOL_SOCKET, option, &value, &size) == 0 else {
            let error = LinuxError.current("getsockopt \(option) of fd \(fd.rawValue)")
            if error.errno == .protocolNotAvailable { return nil }
            throw error
        }
        return withUnsafeBytes(of: &value) { Array($0.prefix(Int(size))) }
    }

    /// Sets SOL_SOCKET `option` of our socket `fd` to the bytes getsockopt read.
    public static func setOption(_ fd: FileDescriptor, _ option: Int32, bytes: [UInt8]) throws(LinuxError) {
        _ = try libcResult("setsockopt \(option) of fd \(fd.rawValue)") {
            bytes.withUnsafeBytes { setsockopt(fd.rawValue, SOL_SOCKET, option, $0.baseAddress, socklen_t($0.count)) }
        }.get()
    }

    /// SO_GET_FILTER: the number of instructions of the classic BPF filter attached to our
    /// socket `fd`, 0 for none, or nil for an eBPF program (SO_ATTACH_BPF), which it cannot read.
    public static func filterLength(_ fd: FileDescriptor) throws(LinuxError) -> Int? {
        var size: socklen_t = 0
        guard getsockopt(fd.rawValue, SOL_SOCKET, 26, nil, &size) == 0 else {
            let error = LinuxError.current("getsockopt SO_GET_FILTER of fd \(fd.rawValue)")
            if error.errno == .permissionDenied { return nil }
            throw error
        }
        return Int(size)
    }

    /// Every unix socket of our network namespace, by inode: one sock_diag dump.
    public static func diagnoseAll() throws(LinuxError) -> [UInt64: UnixSocketDiagnosis] {
        try diagnose(inode: nil)
    }

    /// The unix socket `inode` alone.
    public static func diagnose(_ inode: UInt64) throws(LinuxError) -> UnixSocketDiagnosis {
        guard let socket = try diagnose(inode: UInt32(truncatingIfNeeded: inode))[inode] else {
            throw LinuxError(.noSuchFileOrDirectory, "sock_diag of unix socket \(inode)")
        }
        return socket
    }

    private static func diagnose(inode: UInt32?) throws(LinuxError) -> [UInt64: UnixSocketDiagnosis] {
        // unix_diag_req: family, protocol, pad, every state, inode, what to show, cookie.
        var request: [UInt8] = [UInt8(AF_UNIX), 0, 0, 0]
        request.append(le: UInt32.max)
        request.append(le: inode ?? 0)
        request.append(le: show)
        request.append(le: UInt32.max)
        request.append(le: UInt32.max)
        var sockets: [UInt64: UnixSocketDiagnosis] = [:]
        try SockDiag.ask(request, dump: inode == nil, what: "unix sockets") { message in
            if let socket = parse(message) { sockets[socket.inode] = socket }
            // One socket asked for: one answer, no NLMSG_DONE.
            return inode == nil
        }
        return sockets
    }

    /// A unix_diag_msg and its attributes.
    private static func parse(_ message: ArraySlice<UInt8>) -> UnixSocketDiagnosis? {
        let base = message.startIndex
        guard message.count >= 16 else { return nil }
        var socket = UnixSocketDiagnosis(
            inode: UInt64(message.le(UInt32.self, at: base + 4)), type: Int32(message[base + 1]),
            state: message[base + 2], name: nil, fileInode: nil, fileDevice: nil, peer: nil, pendingConnections: [],
            receiveQueue: 0, sendQueue: 0, shutdown: 0, receiveBuffer: nil, sendBuffer: nil)
        for (type, payload) in SockDiag.attributes(of: message, from: base + 16) {
            switch Attribute(rawValue: type) {
            case .name: socket.name = Array(payload)
            case .vfs where payload.count >= 8:
                socket.fileInode = payload.le(UInt32.self, at: payload.startIndex)
                // The kernel's own encoding (major << 20 | minor), as glibc's makedev encodes it.
                let device = UInt64(payload.le(UInt32.self, at: payload.startIndex + 4))
                let (major, minor) = (device >> 20, device & 0xfffff)
                socket.fileDevice =
                    (major & 0xffff_f000) << 32 | (major & 0xfff) << 8 | (minor & 0xffff_ff00) << 12 | minor & 0xff
            case .peer where payload.count >= 4: socket.peer = UInt64(payload.le(UInt32.self, at: payload.startIndex))
            case .icons:
                socket.pendingConnections = stride(from: payload.startIndex, to: payload.endIndex - 3, by: 4).map {
                    UInt64(payload.le(UInt32.self, at: $0))
                }
            case .queues where payload.count >= 8:
                socket.receiveQueue = payload.le(UInt32.self, at: payload.startIndex)
                socket.sendQueue = payload.le(UInt32.self, at: payload.startIndex + 4)
            case .memory where payload.count >= 16:
                // u32 SK_MEMINFO_RMEM_ALLOC, RCVBUF, WMEM_ALLOC, SNDBUF, ...
                socket.receiveBuffer = payload.le(UInt32.self, at: payload.startIndex + 4)
                socket.sendBuffer = payload.le(UInt32.self, at: payload.startIndex + 12)
            case .shutdown where payload.count >= 1: socket.shutdown = payload[payload.startIndex]
            default: break
            }
        }
        return socket
    }

    /// /proc/sys/net/core/`name` (wmem_max, rmem_max): the largest buffer SO_SNDBUF or
    /// SO_RCVBUF sets without CAP_NET_ADMIN, before the kernel doubles it.
    public static func bufferMaximum(_ name: String) throws(LinuxError) -> UInt64 {
        let text = try ProcFS.read("/proc/sys/net/core/\(name)")
        guard let value = ProcText.unsigned(text[...].prefix { $0 != UInt8(ascii: "\n") }) else {
            throw LinuxError(.invalidArgument, "parse /proc/sys/net/core/\(name)")
        }
        return value
    }

    /// SO_PEERCRED and SO_PEERGROUPS of our socket `fd`: the credentials the kernel recorded
    /// for its peer side when the socket was made, listened or was connected to (a process ID
    /// of 0 for none), as effective IDs and groups.
    public static func peerCredentials(_ fd: FileDescriptor) throws(LinuxError) -> (pid: Int32, EffectiveIdentity) {
        // struct ucred: pid_t pid, uid_t uid, gid_t gid.
        var credentials: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var size = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        _ = try libcResult("getsockopt SO_PEERCRED of fd \(fd.rawValue)") {
            getsockopt(fd.rawValue, SOL_SOCKET, SO_PEERCRED, &credentials, &size)
        }.get()
        var groups = [gid_t](repeating: 0, count: 64)
        while true {
            var groupsSize = socklen_t(groups.count * MemoryLayout<gid_t>.size)
            if getsockopt(fd.rawValue, SOL_SOCKET, SO_PEERGROUPS, &groups, &groupsSize) == 0 {
                groups = Array(groups.prefix(Int(groupsSize) / MemoryLayout<gid_t>.size))
                break
            }
            let error = LinuxError.current("getsockopt SO_PEERGROUPS of fd \(fd.rawValue)")
            // ERANGE gives the size it needs; ENODATA: no credentials to give groups of.
            if error.errno == .outOfRange, Int(groupsSize) > groups.count * MemoryLayout<gid_t>.size {
                groups = [gid_t](repeating: 0, count: Int(groupsSize) / MemoryLayout<gid_t>.size)
                continue
            }
            if error.errno == .noData {
                groups = []
                break
            }
            throw error
        }
        return (credentials.pid, EffectiveIdentity(uid: credentials.uid, gid: credentials.gid, groups: groups))
    }

    /// An int socket option (SOL_SOCKET) of our socket `fd`.
    public static func option(_ fd: FileDescriptor, _ name: Int32) throws(LinuxError) -> Int32 {
        var value: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = try libcResult("getsockopt \(name) of fd \(fd.rawValue)") {
            getsockopt(fd.rawValue, SOL_SOCKET, name, &value, &size)
        }.get()
        return value
    }

    public static func setOption(_ fd: FileDescriptor, _ name: Int32, _ value: Int32) throws(LinuxError) {
        var value = value
        _ = try libcResult("setsockopt \(name) of fd \(fd.rawValue)") {
            setsockopt(fd.rawValue, SOL_SOCKET, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }.get()
    }

    /// What a socket's receive queue holds, copied without consuming it.
    public struct Queue: Sendable {
        /// Its messages in order: a stream socket's bytes as one, each datagram or record as one.
        public var messages: [[UInt8]] = []
        /// Some message carries descriptors (SCM_RIGHTS) or more control data than fits.
        public var carriesDescriptors = false
        /// A stream holds an out-of-band byte (MSG_OOB), which a peek of its bytes reads as an
        /// ordinary one.
        public var holdsOutOfBand = false
    }

    /// Whether a socket (of any family) has an error pending, as a peer's reset leaves one: poll(2)
    /// shows POLLERR without taking it, where SO_ERROR or a receive, even MSG_PEEK, clears it.
    public static func hasPendingError(_ fd: FileDescriptor) throws(LinuxError) -> Bool {
        try Epoll.readyEvents(of: fd, among: UInt32(POLLERR)) != 0
    }

    /// Copies the receive queue of our socket `fd` (`type`, its queue `queued` bytes long as
    /// sock_diag counts them) without consuming it: peeks from offset 0 on (SO_PEEK_OFF), then
    /// gives the socket back the peek offset it had. A stream's bytes are read until `queued`; a
    /// datagram socket's until none is left (a zero-length datagram is peeked once, then
    /// skipped), or, `shutDown` for reading (where an empty queue reads as a zero-length
    /// record), a seqpacket socket's until its `queued` bytes. `previous` is the socket's
    /// SO_PEEK_OFF as read by the caller: a stream whose peek offset is off (-1) is first peeked
    /// from its head without it, and left as it is when that one peek reads the whole queue.
    public static func peekQueue(_ fd: FileDescriptor, type: Int32, queued: UInt32, shutDown: Bool, previous: Int32)
        throws(LinuxError) -> Queue
    {
        if previous == -1, type == Int32(SOCK_STREAM.rawValue), let whole = try peekWholeStream(fd, queued: Int(queued))
        {
            return whole
        }
        try setOption(fd, peekOffset, 0)
        var result: Result<Queue, LinuxError>
        if type == Int32(SOCK_STREAM.rawValue) {
            result = Result { () throws(LinuxError) -> Queue in try peekStream(fd, queued: Int(queued)) }
        } else {
            result = Result { () throws(LinuxError) -> Queue in
                try peekDatagrams(fd, until: shutDown ? Int(queued) : nil)
            }
        }
        do {
            try setOption(fd, peekOffset, previous)
        } catch {
            result = .failure(error)
        }
        return try result.get()
    }

    private static let peekFlags =
        Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)
        | Int32(MSG_CMSG_CLOEXEC)

    /// A stream's queue read by one peek from its head, which a peek takes with no peek offset
    /// set; nil when that peek stops short (at bytes sent with other credentials, say), for the
    /// caller to read it through the peek offset.
    private static func peekWholeStream(_ fd: FileDescriptor, queued: Int) throws(LinuxError) -> Queue? {
        var queue = Queue()
        guard queued > 0 else { return queue }
        queue.holdsOutOfBand = holdsOutOfBand(fd)
        var bytes = [UInt8](repeating: 0, count: queued)
        let (count, rights) = try peek(fd, into: &bytes, at: 0, flags: peekFlags)
        guard count == queued else { return nil }
        queue.carriesDescriptors = rights
        queue.messages = [bytes]
        return queue
    }

    /// Whether a stream holds an out-of-band byte, peeked.
    private static func holdsOutOfBand(_ fd: FileDescriptor) -> Bool {
        var urgent: UInt8 = 0
        return recv(fd.rawValue, &urgent, 1, Int32(MSG_OOB) | Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) == 1
    }

    private static func peekStream(_ fd: FileDescriptor, queued: Int) throws(LinuxError) -> Queue {
        var queue = Queue()
        guard queued > 0 else { return queue }
        queue.holdsOutOfBand = holdsOutOfBand(fd)
        var bytes = [UInt8](repeating: 0, count: queued)
        var total = 0
        while total < queued {
            let (count, rights) = try peek(fd, into: &bytes, at: total, flags: peekFlags)
            queue.carriesDescriptors = queue.carriesDescriptors || rights
            guard count > 0 else {
                throw LinuxError(.ioError, "peek of fd \(fd.rawValue): \(queued - total) of \(queued) bytes missing")
            }
            total += count
        }
        queue.messages = [bytes]
        return queue
    }

    private static func peekDatagrams(_ fd: FileDescriptor, until total: Int?) throws(LinuxError) -> Queue {
        var queue = Queue()
        var bytes = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        var message: [UInt8] = []
        var remaining = 0
        while total.map({ bytes < $0 }) ?? true {
            let length: Int
            let rights: Bool
            do {
                (length, rights) = try peek(fd, into: &buffer, at: 0, flags: peekFlags | Int32(MSG_TRUNC))
            } catch  where error.errno == Errno.wouldBlock && remaining == 0 {
                return queue
            }
            queue.carriesDescriptors = queue.carriesDescriptors || rights
            // MSG_TRUNC: the length is what is left of the datagram from the peek offset.
            let copied = min(length, buffer.count)
            if remaining == 0 { message = [] }
            message += buffer.prefix(copied)
            remaining = length - copied
            bytes += copied
            if remaining == 0 { queue.messages.append(message) }
            guard queue.messages.count <= maximumDatagrams else {
                throw LinuxError(.ioError, "peek of fd \(fd.rawValue): more than \(maximumDatagrams) datagrams")
            }
        }
        return queue
    }

    /// Far more datagrams than a receive queue holds (about net.unix.max_dgram_qlen, 10 by
    /// default): a peek that keeps returning zero-length ones has not found the queue's end.
    private static let maximumDatagrams = 65536

    /// One recvmsg with `flags` into `buffer` from `offset`: the count it returns, and whether
    /// it carried descriptors (SCM_RIGHTS, closed at once) or had its control data cut.
    private static func peek(_ fd: FileDescriptor, into buffer: inout [UInt8], at offset: Int, flags: Int32)
        throws(LinuxError) -> (Int, Bool)
    {
        var control = [UInt8](repeating: 0, count: 512)
        var messageFlags: Int32 = 0
        var controlLength = 0
        let count = try libcResult("peek of fd \(fd.rawValue)") {
            buffer.withUnsafeMutableBytes { bytes in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: bytes.baseAddress! + offset, iov_len: bytes.count - offset)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var header = msghdr()
                        header.msg_iov = vectorPointer
                        header.msg_iovlen = 1
                        header.msg_control = controlBytes.baseAddress
                        header.msg_controllen = controlBytes.count
                        let count = recvmsg(fd.rawValue, &header, flags)
                        messageFlags = header.msg_flags
                        controlLength = header.msg_controllen
                        return count
                    }
                }
            }
        }.get()
        var rights = messageFlags & Int32(MSG_CTRUNC) != 0
        // struct cmsghdr: size_t length, int level, int type, then the data, each aligned to 8.
        var position = 0
        while position + 16 <= controlLength {
            let length = Int(control.le(UInt64.self, at: position))
            let level = Int32(bitPattern: control.le(UInt32.self, at: position + 8))
            let type = Int32(bitPattern: control.le(UInt32.self, at: position + 12))
            guard length >= 16, position + length <= controlLength else { break }
            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                rights = true
                for descriptor in stride(from: position + 16, to: position + length - 3, by: 4) {
                    close(Int32(bitPattern: control.le(UInt32.self, at: descriptor)))
                }
            }
            position += (length + 7) & ~7
        }
        return (count, rights)
    }

    /// A new socket pair of `type` (with SOCK_CLOEXEC).
    public static func makePair(type: Int32) throws(LinuxError) -> (FileDescriptor, FileDescriptor) {
        var ends: [Int32] = [-1, -1]
        _ = try libcResult("socketpair") { socketpair(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) }.get()
        return (FileDescriptor(rawValue: ends[0]), FileDescriptor(rawValue: ends[1]))
    }

    /// A new unix socket of `type` (with SOCK_CLOEXEC).
    public static func make(type: Int32) throws(LinuxError) -> FileDescriptor {
        FileDescriptor(
            rawValue: try libcResult("socket(AF_UNIX)") { socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
                .get())
    }

    /// Sends `bytes` as one message without waiting (a full queue fails with EAGAIN).
    public static func send(_ fd: FileDescriptor, _ bytes: [UInt8]) throws(LinuxError) {
        var sent = 0
        repeat {
            let count = try libcResult("send on fd \(fd.rawValue)") {
                bytes.withUnsafeBytes {
                    Glibc.send(
                        fd.rawValue, $0.baseAddress.map { $0 + sent }, bytes.count - sent,
                        Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
                }
            }.get()
            sent += count
        } while sent < bytes.count
    }

    /// The most bytes of sun_path.
    public static let addressCapacity = 108

    /// bind(2) or connect(2) (`connecting`) of our socket `fd` to `address` (sun_path's bytes: a
    /// path, or a NUL and an abstract name).
    public static func attach(_ fd: FileDescriptor, to address: [UInt8], connecting: Bool) throws(LinuxError) {
        guard address.count <= addressCapacity else {
            throw LinuxError(.fileNameTooLong, "an address of \(address.count) bytes for a unix socket")
        }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: address) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let call = connecting ? "connect" : "bind"
        _ = try libcResult("\(call) of fd \(fd.rawValue)") {
            withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connecting ? Glibc.connect(fd.rawValue, $0, length) : Glibc.bind(fd.rawValue, $0, length)
                }
            }
        }.get()
    }

    /// listen(2) with `backlog` connections not yet accepted.
    public static func listen(_ fd: FileDescriptor, backlog: Int32) throws(LinuxError) {
        _ = try libcResult("listen on fd \(fd.rawValue)") { Glibc.listen(fd.rawValue, backlog) }.get()
    }

    /// shutdown(2) of the directions in `mask` (RCV_SHUTDOWN 1, SEND_SHUTDOWN 2), if any.
    public static func shutdown(_ fd: FileDescriptor, mask: UInt8) throws(LinuxError) {
        guard mask & 3 != 0 else { return }
        let how: Int32 = mask & 3 == 3 ? Int32(SHUT_RDWR) : (mask & 1 != 0 ? Int32(SHUT_RD) : Int32(SHUT_WR))
        _ = try libcResult("shutdown of fd \(fd.rawValue)") { Glibc.shutdown(fd.rawValue, how) }.get()
    }
}

/// A socket file in a directory we have open (O_PATH), reached with no symbolic link: what
/// binding a unix socket to a path makes.
public enum SocketFiles {
    /// The file `name` in `directory`, not following a link: nil when there is none.
    public static func status(in directory: Int32, _ name: String) throws(LinuxError) -> FileStatus? {
        var status = stat()
        guard fstatat(directory, name, &status, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw LinuxError.current("fstatat \(name)")
        }
        return FileStatus(
            device: UInt64(status.st_dev), inode: UInt64(status.st_ino), mode: status.st_mode,
            size: UInt64(status.st_size), rdev: UInt64(status.st_rdev),
            changeTimeNs: UInt64(status.st_ctim.tv_sec) * 1_000_000_000 + UInt64(status.st_ctim.tv_nsec),
            linkCount: UInt64(status.st_nlink), uid: status.st_uid, gid: status.st_gid)
    }

    public static func unlink(in directory: Int32, _ name: String) throws(LinuxError) {
        _ = try libcResult("unlink \(name)") { unlinkat(directory, name, 0) }.get()
    }

    /// Sets the permission bits of `name`, not following a link.
    public static func setMode(in directory: Int32, _ name: String, _ mode: UInt32) throws(LinuxError) {
        _ = try libcResult("chmod \(name)") { fchmodat(directory, name, mode_t(mode), AT_SYMLINK_NOFOLLOW) }.get()
    }

    /// Sets the owner of `name`, not following a link.
    public static func setOwner(in directory: Int32, _ name: String, uid: UInt32, gid: UInt32) throws(LinuxError) {
        _ = try libcResult("chown \(name)") { fchownat(directory, name, uid, gid, AT_SYMLINK_NOFOLLOW) }.get()
    }
}
