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

/// TCP connections in TIME_WAIT on one local address, as inet_diag names them.
public struct TimeWaitConnections: Sendable {
    /// Each one's family and inet_diag_sockid.
    var ids: [(family: Int32, id: [UInt8])] = []
    public var listenerHolds = false
    public var count: Int { ids.count }
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

    /// TCP_TIME_WAIT and TCP_LISTEN.
    private static let timeWaitState: UInt8 = 6, listeningState: UInt8 = 10

    /// The TCP connections in TIME_WAIT whose local end is on `address`'s port and address (any
    /// address when it is unspecified), in either family; and whether a listener holds that
    /// port and address.
    public static func timeWait(on address: InetAddress) throws(LinuxError) -> TimeWaitConnections {
        let wanted = mapped(address.family, address.address[...])
        let anyAddress = unspecified(wanted)
        var found = TimeWaitConnections()
        for family in [AF_INET, AF_INET6] {
            var request: [UInt8] = [UInt8(family), UInt8(InetSocket.tcp), 0, 0]
            request.append(le: UInt32(1) << timeWaitState | UInt32(1) << listeningState)
            request += [UInt8](repeating: 0, count: 48)
            try SockDiag.ask(request, dump: true, what: "TCP sockets") { message in
                // inet_diag_msg: family, state, timer, retransmits, then inet_diag_sockid:
                // sport and dport (big-endian), src and dst (16 bytes each), interface, cookie.
                guard message.count >= 52 else { return true }
                let start = message.startIndex
                let port = UInt16(message[start + 4]) << 8 | UInt16(message[start + 5])
                let local = mapped(family, message[(start + 8)..<(start + (family == AF_INET ? 12 : 24))])
                guard port == address.port, anyAddress || local == wanted || unspecified(local) else { return true }
                if message[start + 1] == listeningState { found.listenerHolds = true }
                if message[start + 1] == timeWaitState {
                    found.ids.append((Int32(family), Array(message[(start + 4)..<(start + 52)])))
                }
                return true
            }
        }
        return found
    }

    /// Ends (SOCK_DESTROY) each of `connections`. Needs CAP_NET_ADMIN over our network namespace.
    public static func end(_ connections: TimeWaitConnections, what: String) throws(LinuxError) {
        for (family, id) in connections.ids {
            var request: [UInt8] = [UInt8(family), UInt8(InetSocket.tcp), 0, 0]
            request.append(le: UInt32(1) << timeWaitState)
            request += id
            try SockDiag.destroy(request, what: what)
        }
    }

    /// `::` or `0.0.0.0` (as `mapped` gives it).
    private static func unspecified(_ address: [UInt8]) -> Bool {
        address.allSatisfy { $0 == 0 } || address == mapped(AF_INET, [0, 0, 0, 0])
    }

    /// An address as 16 bytes: IPv4 ones as IPv4-mapped IPv6.
    private static func mapped(_ family: Int32, _ bytes: ArraySlice<UInt8>) -> [UInt8] {
        family == AF_INET6 ? Array(bytes) : [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + bytes
    }
}
