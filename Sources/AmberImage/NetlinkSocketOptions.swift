extension ImageFormat {
    /// NETLINK_ROUTE and NETLINK_SOCK_DIAG, the netlink protocols amber restores.
    public static let netlinkProtocols: Set<Int32> = [0, 4]
    /// SOL_NETLINK.
    public static let netlinkLevel: Int32 = 270

    /// The options of a netlink socket that the dump reads and the restore sets again, in the
    /// order they are set: SO_BUF_LOCK after the buffer sizes, which set it; SO_PRIORITY last.
    public static let netlinkSocketOptions: [InetSocketOptionKind] = [
        .init(socketLevel, sendBufferOption, "SO_SNDBUF"), .init(socketLevel, receiveBufferOption, "SO_RCVBUF"),
        .init(socketLevel, 16, "SO_PASSCRED"), .init(socketLevel, 20, "SO_RCVTIMEO", size: 16),
        .init(socketLevel, 21, "SO_SNDTIMEO", size: 16), .init(socketLevel, 29, "SO_TIMESTAMP"),
        .init(socketLevel, 35, "SO_TIMESTAMPNS"), .init(socketLevel, 40, "SO_RXQ_OVFL"),
        .init(netlinkLevel, 3, "NETLINK_PKTINFO"), .init(netlinkLevel, 4, "NETLINK_BROADCAST_ERROR"),
        .init(netlinkLevel, 5, "NETLINK_NO_ENOBUFS"), .init(netlinkLevel, 10, "NETLINK_CAP_ACK"),
        .init(netlinkLevel, 11, "NETLINK_EXT_ACK"), .init(netlinkLevel, 12, "NETLINK_GET_STRICT_CHK"),
        .init(socketLevel, 2, "SO_REUSEADDR"), .init(socketLevel, 5, "SO_DONTROUTE"),
        .init(socketLevel, 6, "SO_BROADCAST"), .init(socketLevel, 9, "SO_KEEPALIVE"),
        .init(socketLevel, 10, "SO_OOBINLINE"), .init(socketLevel, 11, "SO_NO_CHECK"),
        .init(socketLevel, 13, "SO_LINGER", size: 8), .init(socketLevel, 18, "SO_RCVLOWAT"),
        .init(socketLevel, 34, "SO_PASSSEC"), .init(socketLevel, 41, "SO_WIFI_STATUS"),
        .init(socketLevel, 43, "SO_NOFCS"), .init(socketLevel, 45, "SO_SELECT_ERR_QUEUE"),
        .init(socketLevel, 47, "SO_MAX_PACING_RATE", size: 8), .init(socketLevel, 49, "SO_INCOMING_CPU"),
        .init(socketLevel, 75, "SO_RCVMARK"), .init(socketLevel, 82, "SO_RCVPRIORITY"),
        .init(socketLevel, bufferLockOption, "SO_BUF_LOCK"), .init(socketLevel, socketPriorityOption, "SO_PRIORITY"),
    ]
}
