import Glibc

/// A SOCK_SEQPACKET unix socket named in the abstract namespace (no file: nothing to clean up
/// when its owner dies), carrying short text messages, each with a few descriptors
/// (SCM_RIGHTS). Amber talks to its memory tracker through one.
public final class MessageSocket {
    public let fd: Int32
    /// The most descriptors one message carries here.
    public static let maximumDescriptors = 8

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// A listening socket bound to `name` in the abstract namespace of this network namespace.
    public static func listen(name: String) throws(LinuxError) -> MessageSocket {
        let socket = try make()
        _ = try libcResult("bind @\(name)") {
            withAddress(name) { address, length in bind(socket.fd, address, length) }
        }.get()
        _ = try libcResult("listen @\(name)") { Glibc.listen(socket.fd, 8) }.get()
        return socket
    }

    /// A socket connected to the listener bound to `name`.
    public static func connect(name: String) throws(LinuxError) -> MessageSocket {
        let socket = try make()
        _ = try libcResult("connect @\(name)") {
            withAddress(name) { address, length in Glibc.connect(socket.fd, address, length) }
        }.get()
        return socket
    }

    private static func make() throws(LinuxError) -> MessageSocket {
        let fd = try libcResult("socket(AF_UNIX, SOCK_SEQPACKET)") {
            socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }.get()
        return MessageSocket(fd: fd)
    }

    private static func withAddress<T>(_ name: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// The next connection; nil when none waits (the listener is non-blocking) or on EINTR.
    public func accept() throws(LinuxError) -> MessageSocket? {
        let connection = Glibc.accept(fd, nil, nil)
        if connection < 0 {
            if errno == EAGAIN || errno == EINTR { return nil }
            throw LinuxError.current("accept")
        }
        _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
        return MessageSocket(fd: connection)
    }

    /// The PID and effective UID of the process at the other end when it connected (SO_PEERCRED).
    public func peer() throws(LinuxError) -> (pid: Int32, uid: UInt32) {
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(12)
        _ = try libcResult("getsockopt(SO_PEERCRED)") {
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length)
        }.get()
        return (credentials.0, credentials.1)
    }

    /// Sends `text` (at most 4 KiB) with `descriptors` (at most `maximumDescriptors`) as one message.
    public func send(_ text: String, descriptors: [Int32] = []) throws(LinuxError) {
        var payload = Array(text.utf8)
        if payload.isEmpty { payload = [0] }
        var control = [UInt8](
            repeating: 0, count: descriptors.isEmpty ? 0 : DescriptorPassing.controlSize(count: descriptors.count))
        if !descriptors.isEmpty {
            control.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: 16 + 4 * descriptors.count, toByteOffset: 0, as: Int.self)
                bytes.storeBytes(of: SOL_SOCKET, toByteOffset: 8, as: Int32.self)
                bytes.storeBytes(of: Int32(SCM_RIGHTS), toByteOffset: 12, as: Int32.self)
                for (index, descriptor) in descriptors.enumerated() {
                    bytes.storeBytes(of: descriptor, toByteOffset: 16 + 4 * index, as: Int32.self)
                }
            }
        }
        let sent = payload.withUnsafeMutableBytes { payloadBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.count > 0 ? controlBytes.baseAddress : nil
                    message.msg_controllen = controlBytes.count
                    return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                }
            }
        }
        guard sent == payload.count else { throw LinuxError.current("sendmsg") }
    }

    /// The next message, its descriptors close-on-exec and ours to close; nil when the other end
    /// closed.
    public func receive() throws(LinuxError) -> (text: String, descriptors: [Int32])? {
        var payload = [UInt8](repeating: 0, count: 4096)
        var control = [UInt8](repeating: 0, count: DescriptorPassing.controlSize(count: Self.maximumDescriptors))
        var received = 0
        var controlLength = 0
        repeat {
            received = payload.withUnsafeMutableBytes { payloadBytes in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: payloadBytes.baseAddress, iov_len: payloadBytes.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        let count = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                        controlLength = message.msg_controllen
                        return count
                    }
                }
            }
        } while received < 0 && errno == EINTR
        guard received >= 0 else { throw LinuxError.current("recvmsg") }
        guard received > 0 else { return nil }
        var descriptors: [Int32] = []
        control.withUnsafeBytes { bytes in
            var offset = 0
            while offset + 16 <= controlLength {
                let length = bytes.load(fromByteOffset: offset, as: Int.self)
                let level = bytes.load(fromByteOffset: offset + 8, as: Int32.self)
                let type = bytes.load(fromByteOffset: offset + 12, as: Int32.self)
                guard length >= 16 else { break }
                if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                    for index in 0..<((length - 16) / 4) {
                        descriptors.append(bytes.load(fromByteOffset: offset + 16 + 4 * index, as: Int32.self))
                    }
                }
                offset += (length + 7) & ~7
            }
        }
        let text = String(decoding: payload[..<received].filter { $0 != 0 }, as: UTF8.self)
        return (text, descriptors)
    }
}
