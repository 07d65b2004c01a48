extension ImageFormat {
    /// The SOL_SOCKET options of a unix socket, beside those its record has fields for, that a
    /// record carries when they read otherwise than on a new socket of its type, by number and
    /// name (asm-generic/socket.h): each changes what the socket does or what getsockopt reads
    /// back. Any process may set these on its socket (SO_PRIORITY up to
    /// `unixSocketPriorityLimit`), so the restore sets them again with the bytes getsockopt
    /// read: an int, SO_LINGER's or SO_TIMESTAMPING's struct, or a timeout's struct timeval
    /// (`unixSocketOptionSize`). The
    /// one list the dump, the validator and the restore go by.
    public static let unixSocketOptions: [(name: Int32, label: String)] = [
        (2, "SO_REUSEADDR"), (5, "SO_DONTROUTE"), (6, "SO_BROADCAST"), (9, "SO_KEEPALIVE"), (10, "SO_OOBINLINE"),
        (11, "SO_NO_CHECK"), (unixSocketPriority, "SO_PRIORITY"), (13, "SO_LINGER"), (15, "SO_REUSEPORT"),
        (18, "SO_RCVLOWAT"), (20, "SO_RCVTIMEO"), (21, "SO_SNDTIMEO"),
        (29, "SO_TIMESTAMP"), (35, "SO_TIMESTAMPNS"), (37, "SO_TIMESTAMPING"), (40, "SO_RXQ_OVFL"),
        (41, "SO_WIFI_STATUS"), (43, "SO_NOFCS"), (44, "SO_LOCK_FILTER"), (45, "SO_SELECT_ERR_QUEUE"),
        (47, "SO_MAX_PACING_RATE"), (49, "SO_INCOMING_CPU"), (63, "SO_TIMESTAMP_NEW"), (64, "SO_TIMESTAMPNS_NEW"),
        (65, "SO_TIMESTAMPING_NEW"), (75, "SO_RCVMARK"), (82, "SO_RCVPRIORITY"), (83, "SO_PASSRIGHTS"),
        (61, "SO_TXTIME"), (bufferLockOption, "SO_BUF_LOCK"),
    ]
    /// SO_PRIORITY, and the highest a process without CAP_NET_ADMIN may give.
    public static let unixSocketPriority: Int32 = 12
    public static let unixSocketPriorityLimit: Int32 = 6
    /// Options only CAP_NET_ADMIN or CAP_NET_RAW sets (SO_DEBUG, SO_MARK, SO_BUSY_POLL,
    /// SO_PREFER_BUSY_POLL, SO_BINDTODEVICE): a unix socket given one is refused at dump.
    public static let unixSocketPrivilegedOptions: [(name: Int32, label: String)] = [
        (1, "SO_DEBUG"), (36, "SO_MARK"), (46, "SO_BUSY_POLL"), (69, "SO_PREFER_BUSY_POLL"),
        (62, "SO_BINDTOIFINDEX (SO_BINDTODEVICE)"),
    ]

    /// The bytes getsockopt reads for unix socket option `name`: SO_LINGER's, SO_TIMESTAMPING's
    /// and SO_TXTIME's structs and SO_MAX_PACING_RATE's u64 are 8, the timeouts' struct timeval 16.
    public static func unixSocketOptionSize(_ name: Int32) -> Int {
        [20, 21].contains(name) ? 16 : [13, 37, 47, 61, 65].contains(name) ? 8 : 4
    }
}
