/// A socket option an inet socket's record may carry: its level and name for getsockopt and
/// setsockopt, the size of its value, and how it is called.
public struct InetSocketOptionKind: Sendable, Hashable {
    public let level: Int32
    public let name: Int32
    public let size: Int
    public let label: String

    public init(_ level: Int32, _ name: Int32, _ label: String, size: Int = 4) {
        self.level = level
        self.name = name
        self.size = size
        self.label = label
    }
}

extension ImageFormat {
    /// SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP and IPPROTO_UDP.
    public static let socketLevel: Int32 = 1, ipLevel: Int32 = 0, ipv6Level: Int32 = 41
    public static let tcpLevel: Int32 = 6, udpLevel: Int32 = 17

    /// The options of an inet socket that the dump reads and the restore sets again, in the
    /// order they are set: those a task may set itself, so the one list the dump, the image
    /// validator and the restore go by. SO_BUF_LOCK comes after the buffer sizes, which setting
    /// changes (the dump records it with them); SO_PRIORITY last, as IP_TOS sets it too. SO_PRIORITY above 6 needs CAP_NET_ADMIN,
    /// which the restore asks for.
    public static let inetSocketOptions: [InetSocketOptionKind] = [
        .init(socketLevel, 2, "SO_REUSEADDR"), .init(socketLevel, 5, "SO_DONTROUTE"),
        .init(socketLevel, 6, "SO_BROADCAST"), .init(socketLevel, sendBufferOption, "SO_SNDBUF"),
        .init(socketLevel, receiveBufferOption, "SO_RCVBUF"),
        .init(socketLevel, 9, "SO_KEEPALIVE"),
        .init(socketLevel, 10, "SO_OOBINLINE"),
        .init(socketLevel, 13, "SO_LINGER", size: 8), .init(socketLevel, 15, "SO_REUSEPORT"),
        .init(socketLevel, 16, "SO_PASSCRED"), .init(socketLevel, 18, "SO_RCVLOWAT"),
        .init(socketLevel, 20, "SO_RCVTIMEO", size: 16), .init(socketLevel, 21, "SO_SNDTIMEO", size: 16),
        .init(socketLevel, 29, "SO_TIMESTAMP"), .init(socketLevel, 35, "SO_TIMESTAMPNS"),
        .init(socketLevel, 37, "SO_TIMESTAMPING", size: 8), .init(socketLevel, 40, "SO_RXQ_OVFL"),
        .init(socketLevel, 41, "SO_WIFI_STATUS"), .init(socketLevel, 42, "SO_PEEK_OFF"),
        .init(socketLevel, 43, "SO_NOFCS"), .init(socketLevel, 45, "SO_SELECT_ERR_QUEUE"),
        .init(socketLevel, 49, "SO_INCOMING_CPU"), .init(socketLevel, 60, "SO_ZEROCOPY"),
        .init(socketLevel, 75, "SO_RCVMARK"),
        .init(ipLevel, 1, "IP_TOS"), .init(ipLevel, 2, "IP_TTL"), .init(ipLevel, 6, "IP_RECVOPTS"),
        .init(ipLevel, 7, "IP_RETOPTS"), .init(ipLevel, 8, "IP_PKTINFO"), .init(ipLevel, 10, "IP_MTU_DISCOVER"),
        .init(ipLevel, 11, "IP_RECVERR"), .init(ipLevel, 12, "IP_RECVTTL"), .init(ipLevel, 13, "IP_RECVTOS"),
        .init(ipLevel, 15, "IP_FREEBIND"), .init(ipLevel, 18, "IP_PASSSEC"),
        .init(ipLevel, 20, "IP_RECVORIGDSTADDR"), .init(ipLevel, 21, "IP_MINTTL"), .init(ipLevel, 23, "IP_CHECKSUM"),
        .init(ipLevel, 24, "IP_BIND_ADDRESS_NO_PORT"), .init(ipLevel, 25, "IP_RECVFRAGSIZE"),
        .init(ipLevel, 26, "IP_RECVERR_RFC4884"), .init(ipLevel, 33, "IP_MULTICAST_TTL"),
        .init(ipLevel, 34, "IP_MULTICAST_LOOP"), .init(ipLevel, 49, "IP_MULTICAST_ALL"),
        .init(ipLevel, 51, "IP_LOCAL_PORT_RANGE"),
        .init(ipv6Level, 11, "IPV6_FLOWINFO"), .init(ipv6Level, 16, "IPV6_UNICAST_HOPS"),
        .init(ipv6Level, 18, "IPV6_MULTICAST_HOPS"), .init(ipv6Level, 19, "IPV6_MULTICAST_LOOP"),
        .init(ipv6Level, 23, "IPV6_MTU_DISCOVER"), .init(ipv6Level, 25, "IPV6_RECVERR"),
        .init(ipv6Level, 26, "IPV6_V6ONLY"), .init(ipv6Level, 29, "IPV6_MULTICAST_ALL"),
        .init(ipv6Level, 31, "IPV6_RECVERR_RFC4884"), .init(ipv6Level, 33, "IPV6_FLOWINFO_SEND"),
        .init(ipv6Level, 49, "IPV6_RECVPKTINFO"), .init(ipv6Level, 51, "IPV6_RECVHOPLIMIT"),
        .init(ipv6Level, 53, "IPV6_RECVHOPOPTS"), .init(ipv6Level, 56, "IPV6_RECVRTHDR"),
        .init(ipv6Level, 58, "IPV6_RECVDSTOPTS"), .init(ipv6Level, 60, "IPV6_RECVPATHMTU"),
        .init(ipv6Level, 62, "IPV6_DONTFRAG"), .init(ipv6Level, 66, "IPV6_RECVTCLASS"),
        .init(ipv6Level, 67, "IPV6_TCLASS"), .init(ipv6Level, 70, "IPV6_AUTOFLOWLABEL"),
        .init(ipv6Level, 72, "IPV6_ADDR_PREFERENCES"), .init(ipv6Level, 73, "IPV6_MINHOPCOUNT"),
        .init(ipv6Level, 74, "IPV6_RECVORIGDSTADDR"), .init(ipv6Level, 77, "IPV6_RECVFRAGSIZE"),
        .init(ipv6Level, 78, "IPV6_FREEBIND"),
        .init(tcpLevel, 1, "TCP_NODELAY"), .init(tcpLevel, 2, "TCP_MAXSEG"), .init(tcpLevel, 3, "TCP_CORK"),
        .init(tcpLevel, 4, "TCP_KEEPIDLE"), .init(tcpLevel, 5, "TCP_KEEPINTVL"), .init(tcpLevel, 6, "TCP_KEEPCNT"),
        .init(tcpLevel, 7, "TCP_SYNCNT"), .init(tcpLevel, 8, "TCP_LINGER2"), .init(tcpLevel, 9, "TCP_DEFER_ACCEPT"),
        .init(tcpLevel, 10, "TCP_WINDOW_CLAMP"), .init(tcpLevel, 12, "TCP_QUICKACK"),
        .init(tcpLevel, 16, "TCP_THIN_LINEAR_TIMEOUTS"), .init(tcpLevel, 17, "TCP_THIN_DUPACK"),
        .init(tcpLevel, 18, "TCP_USER_TIMEOUT"), .init(tcpLevel, 23, "TCP_FASTOPEN"),
        .init(tcpLevel, 25, "TCP_NOTSENT_LOWAT"), .init(tcpLevel, 27, "TCP_SAVE_SYN"),
        .init(tcpLevel, 30, "TCP_FASTOPEN_CONNECT"), .init(tcpLevel, 34, "TCP_FASTOPEN_NO_COOKIE"),
        .init(tcpLevel, 36, "TCP_INQ"), .init(tcpLevel, 37, "TCP_TX_DELAY"), .init(tcpLevel, 44, "TCP_RTO_MAX_MS"),
        .init(tcpLevel, 45, "TCP_RTO_MIN_US"), .init(tcpLevel, 46, "TCP_DELACK_MAX_US"),
        .init(udpLevel, 1, "UDP_CORK"), .init(udpLevel, 101, "UDP_NO_CHECK6_TX"),
        .init(udpLevel, 102, "UDP_NO_CHECK6_RX"), .init(udpLevel, 103, "UDP_SEGMENT"), .init(udpLevel, 104, "UDP_GRO"),
        .init(socketLevel, bufferLockOption, "SO_BUF_LOCK"), .init(socketLevel, socketPriorityOption, "SO_PRIORITY"),
    ]

    /// SO_PRIORITY, and the highest priority a task sets without CAP_NET_ADMIN.
    public static let socketPriorityOption: Int32 = 12, unprivilegedSocketPriority: Int32 = 6
    /// SO_SNDBUF, SO_RCVBUF (the value the kernel keeps is twice what is set) and SO_BUF_LOCK.
    public static let sendBufferOption: Int32 = 7, receiveBufferOption: Int32 = 8, bufferLockOption: Int32 = 72
}
