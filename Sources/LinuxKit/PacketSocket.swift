import Glibc

/// One end of a SOCK_SEQPACKET socket pair a peer hands over by descriptor number (`amber swrk
/// FD`): whole packets in and out, and the peer's PID from the kernel.
public struct PacketSocket: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    /// The PID of the process that made the pair (SO_PEERCRED), in amber's PID namespace.
    public func peerPID() throws(LinuxError) -> Int32 {
        // struct ucred: pid, uid, gid.
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(12)
        _ = try libcResult("getsockopt(SO_PEERCRED)") {
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length)
        }.get()
        return credentials.0
    }

    /// Whether `fd` is a SOCK_SEQPACKET socket.
    public func isPacketSocket() -> Bool {
        var type: Int32 = 0
        var length = socklen_t(4)
        return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == Int32(SOCK_SEQPACKET.rawValue)
    }

    public enum Received: Equatable, Sendable {
        case packet([UInt8])
        /// The peer closed its end (or shut down writing).
        case end
        /// A packet longer than the limit, which the kernel cut.
        case tooLong
    }

    /// Receives one packet of at most `maximum` bytes. Descriptors sent with it are closed
    /// at once: nothing amber receives carries any.
    public func receive(maximum: Int) throws(LinuxError) -> Received {
        var buffer = [UInt8](repeating: 0, count: maximum + 1)
        var control = [UInt8](repeating: 0, count: 256)
        var flags: Int32 = 0
        let count = try libcResult("recvmsg") {
            buffer.withUnsafeMutableBytes { bytes in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        let count = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                        if count >= 0 {
                            flags = message.msg_flags
                            Self.closeDescriptors(in: controlBytes, length: message.msg_controllen)
                        }
                        return count
                    }
                }
            }
        }.get()
        if flags & Int32(MSG_TRUNC) != 0 || count > maximum { return .tooLong }
        return count == 0 ? .end : .packet(Array(buffer[..<count]))
    }

    /// Sends `bytes` as one packet.
    public func send(_ bytes: [UInt8]) throws(LinuxError) {
        let sent = try libcResult("send") {
            bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }.get()
        guard sent == bytes.count else { throw LinuxError(.messageTooLong, "send of \(bytes.count) bytes") }
    }

    /// Closes every descriptor of the SCM_RIGHTS messages in `control`.
    private static func closeDescriptors(in control: UnsafeMutableRawBufferPointer, length: Int) {
        var offset = 0
        let header = MemoryLayout<cmsghdr>.size
        while offset + header <= min(length, control.count) {
            let messageLength = control.load(fromByteOffset: offset, as: Int.self)
            let level = control.load(fromByteOffset: offset + 8, as: Int32.self)
            let type = control.load(fromByteOffset: offset + 12, as: Int32.self)
            guard messageLength >= header, offset + messageLength <= control.count else { return }
            if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                for index in 0..<(messageLength - header) / 4 {
                    close(control.load(fromByteOffset: offset + header + 4 * index, as: Int32.self))
                }
            }
            offset += (messageLength + 7) & ~7
        }
    }
}
