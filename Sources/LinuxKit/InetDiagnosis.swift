import Glibc

/// What inet_diag (linux/inet_diag.h) alone shows of one TCP or UDP socket.
public struct InetSocketDiagnosis: Sendable, Equatable {
    /// Whether the socket has TCP MD5 signature keys (TCP_MD5SIG; INET_DIAG_MD5SIG), which no
    /// getsockopt reads. Shown only to CAP_NET_ADMIN over the socket's network namespace:
    /// always false without it.
    public var hasMD5Keys: Bool
    /// Its TCP state (TCP_ESTABLISHED 1, TCP_CLOSE 7, TCP_LISTEN 10; a UDP socket's is one of
    /// the first two).
    public var state: UInt8
    /// Its shut down directions (INET_DIAG_SHUTDOWN: RCV_SHUTDOWN 1, SEND_SHUTDOWN 2), which
    /// neither getsockopt nor poll shows of a socket that is not connected.
    public var shutdown: UInt8
}

/// inet_diag of TCP and UDP sockets.
public enum InetDiagnosis {
    /// INET_DIAG_SHUTDOWN.
    private static let shutdownAttribute: UInt16 = 8
    /// INET_DIAG_MD5SIG.
    private static let md5KeysAttribute: UInt16 = 18
    /// 1 << (INET_DIAG_INFO - 1), in inet_diag_req_v2's extensions.
    private static let infoExtension: UInt8 = 0x2
    /// TCP_ESTABLISHED.
    public static let established: UInt8 = 1

    /// Every full socket of `family` (AF_INET, AF_INET6) and `protocol` (IPPROTO_TCP,
    /// IPPROTO_UDP) in our network namespace, by inode.
    public static func all(family: Int32, protocol: Int32 = InetSocket.tcp) throws(LinuxError)
        -> [UInt64: InetSocketDiagnosis]
    {
        // inet_diag_req_v2: family, protocol, extensions, pad, every state, a zero inet_diag_sockid.
        // The MD5 keys come with INET_DIAG_INFO only (tcp_info, asked and passed over).
        var request: [UInt8] = [
            UInt8(truncatingIfNeeded: family), UInt8(truncatingIfNeeded: `protocol`), infoExtension, 0,
        ]
        request.append(le: UInt32.max)
        request += [UInt8](repeating: 0, count: 48)
        var sockets: [UInt64: InetSocketDiagnosis] = [:]
        try SockDiag.ask(request, dump: true, what: `protocol` == InetSocket.tcp ? "TCP sockets" : "UDP sockets") {
            message in
            // inet_diag_msg: family, state, timer, retransmits, sockid (48 bytes), expires,
            // receive and send queues, uid, inode; then attributes. Time-wait and request
            // sockets have inode 0.
            guard message.count >= 72 else { return true }
            let inode = UInt64(message.le(UInt32.self, at: message.startIndex + 68))
            guard inode != 0 else { return true }
            let attributes = SockDiag.attributes(of: message, from: message.startIndex + 72)
            sockets[inode] = InetSocketDiagnosis(
                hasMD5Keys: attributes.contains { $0.type == md5KeysAttribute },
                state: message[message.startIndex + 1],
                shutdown: attributes.first { $0.type == shutdownAttribute }?.payload.first ?? 0)
            return true
        }
        return sockets
    }
}
