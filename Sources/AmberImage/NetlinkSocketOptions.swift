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
        .init(socketLevel, bufferLockOption, "SO_BUF_LOCK"), .init(socketLevel, socketPriorityOption, "SO_PRIORITY"),
    ]
}
