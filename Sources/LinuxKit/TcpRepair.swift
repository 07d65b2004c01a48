import Glibc
import SystemPackage

/// TCP_REPAIR (include/uapi/linux/tcp.h, net/ipv4/tcp.c): a connection in repair mode sends
/// nothing; its queues can be read without consuming them and written as if sent or received,
/// its sequence numbers, options and window set, and a connect(2) makes it established at once.
/// Every call needs CAP_NET_ADMIN over the socket's network namespace.
public enum TcpRepair {
    /// TCP_MAXSEG, TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_REPAIR_OPTIONS,
    /// TCP_TIMESTAMP, TCP_REPAIR_WINDOW.
    private static let maxSegment: Int32 = 2, repair: Int32 = 19, repairQueue: Int32 = 20, queueSequence: Int32 = 21
    private static let repairOptions: Int32 = 22, timestampOption: Int32 = 24, repairWindow: Int32 = 29
    /// TCP_REPAIR_ON, TCP_REPAIR_OFF (which sends a window probe), TCP_REPAIR_OFF_NO_WP.
    private static let on: Int32 = 1, off: Int32 = 0, offWithoutProbe: Int32 = -1
    /// TCPOPT_MAXSEG, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP.
    private static let optionMSS: UInt32 = 2, optionWindow: UInt32 = 3, optionSACK: UInt32 = 4
    private static let optionTimestamp: UInt32 = 8
    /// SIOCINQ (FIONREAD), SIOCOUTQ (TIOCOUTQ), SIOCOUTQNSD.
    private static let inputQueued: UInt = 0x541B, outputQueued: UInt = 0x5411, outputNotSent: UInt = 0x894B
    /// SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_BUF_LOCK.
    public static let sendBufferForce: Int32 = 32, receiveBufferForce: Int32 = 33, bufferLock: Int32 = 72
    /// The largest MSS setsockopt(TCP_MAXSEG) takes (MAX_TCP_WINDOW).
    public static let largestUserMSS: UInt32 = 32767
    /// TCP_ESTABLISHED.
    public static let established: UInt8 = 1

    /// The queues of TCP_REPAIR_QUEUE.
    public enum Queue: Int32, Sendable {
        case receive = 1
        case send = 2
    }

    /// struct tcp_repair_window.
    public struct Window: Sendable, Equatable {
        public var sendWL1: UInt32, sendWindow: UInt32, maxWindow: UInt32, receiveWindow: UInt32, receiveWUP: UInt32
        public init(sendWL1: UInt32, sendWindow: UInt32, maxWindow: UInt32, receiveWindow: UInt32, receiveWUP: UInt32) {
            self.sendWL1 = sendWL1
            self.sendWindow = sendWindow
            self.maxWindow = maxWindow
            self.receiveWindow = receiveWindow
            self.receiveWUP = receiveWUP
        }
    }

    /// What TCP_INFO says of the options the handshake agreed on (tcpi_options, tcpi_snd_wscale,
    /// tcpi_rcv_wscale).
    public struct Negotiated: Sendable, Equatable {
        public var timestamps: Bool, sack: Bool, windowScaling: Bool
        public var sendWindowScale: UInt32, receiveWindowScale: UInt32
        public init(
            timestamps: Bool, sack: Bool, windowScaling: Bool, sendWindowScale: UInt32, receiveWindowScale: UInt32
        ) {
            self.timestamps = timestamps
            self.sack = sack
            self.windowScaling = windowScaling
            self.sendWindowScale = sendWindowScale
            self.receiveWindowScale = receiveWindowScale
        }
    }

    /// Puts the connection in repair mode.
    public static func enter(_ fd: Int32) throws(LinuxError) {
        try setInt(fd, repair, on, "TCP_REPAIR on")
    }

    /// Takes the connection out of repair mode; with `probe`, the kernel sends a window probe,
    /// which makes the peer answer at once (and retransmit what it sent while it was blocked).
    /// Leaving repair mode also clears SO_REUSEADDR, which the caller sets again.
    public static func leave(_ fd: Int32, probe: Bool) throws(LinuxError) {
        try setInt(fd, repair, probe ? off : offWithoutProbe, "TCP_REPAIR off")
    }

    public static func select(_ fd: Int32, _ queue: Queue) throws(LinuxError) {
        try setInt(fd, repairQueue, queue.rawValue, "TCP_REPAIR_QUEUE")
    }

    /// TCP_QUEUE_SEQ of the selected queue: write_seq for the send queue, rcv_nxt for the receive queue.
    public static func sequence(_ fd: Int32) throws(LinuxError) -> UInt32 {
        UInt32(bitPattern: try InetSocket.intOption(fd, level: InetSocket.tcp, name: queueSequence))
    }

    /// Sets the first sequence number of the selected queue, before connect(2).
    public static func setSequence(_ fd: Int32, _ sequence: UInt32) throws(LinuxError) {
        try setInt(fd, queueSequence, Int32(bitPattern: sequence), "TCP_QUEUE_SEQ")
    }

    /// The bytes of the selected queue, peeked: nothing is consumed. `length` is what the
    /// queue holds (SIOCINQ, SIOCOUTQ); fewer bytes than that is an error.
    public static func peek(_ fd: Int32, length: Int) throws(LinuxError) -> [UInt8] {
        guard length > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: length + 1)
        let count = try libcResult("recv MSG_PEEK of a repair queue") {
            bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_PEEK | MSG_DONTWAIT)) }
        }.get()
        guard count == length else {
            throw LinuxError(.ioError, "peeking a repair queue gave \(count) bytes where it holds \(length)")
        }
        return Array(bytes.prefix(length))
    }

    /// Writes `bytes` into the selected queue in repair mode (the send queue's as sent and
    /// not acknowledged, the receive queue's as received), or out of repair mode sends them.
    /// The kernel may refuse a large write whole: it is written again in smaller pieces.
    public static func write(_ fd: Int32, _ bytes: [UInt8]) throws(LinuxError) {
        var offset = 0
        var piece = bytes.count
        while offset < bytes.count {
            let length = min(piece, bytes.count - offset)
            let sent = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, length, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            }
            if sent > 0 {
                offset += sent
                continue
            }
            let error = LinuxError.current("send into a repair queue")
            guard error.errno != .interrupted else { continue }
            guard piece > 1024 else { throw error }
            piece /= 2
        }
    }

    /// TCP_REPAIR_OPTIONS: the MSS clamp and the options agreed on, on an established connection in repair mode.
    public static func setOptions(_ fd: Int32, mss: UInt32, negotiated: Negotiated) throws(LinuxError) {
        var pairs: [UInt32] = [optionMSS, mss]
        if negotiated.windowScaling {
            pairs += [optionWindow, negotiated.sendWindowScale | negotiated.receiveWindowScale << 16]
        }
        if negotiated.sack { pairs += [optionSACK, 0] }
        if negotiated.timestamps { pairs += [optionTimestamp, 0] }
        _ = try libcResult("setsockopt TCP_REPAIR_OPTIONS") {
            pairs.withUnsafeBytes { setsockopt(fd, InetSocket.tcp, repairOptions, $0.baseAddress, socklen_t($0.count)) }
        }.get()
    }

    /// TCP_MAXSEG: the MSS clamp.
    public static func mss(_ fd: Int32) throws(LinuxError) -> UInt32 {
        UInt32(bitPattern: try InetSocket.intOption(fd, level: InetSocket.tcp, name: maxSegment))
    }

    /// TCP_TIMESTAMP: the connection's timestamp clock (the host's plus its offset).
    public static func timestamp(_ fd: Int32) throws(LinuxError) -> UInt32 {
        UInt32(bitPattern: try InetSocket.intOption(fd, level: InetSocket.tcp, name: timestampOption))
    }

    /// Sets the connection's timestamp clock to `value` now (its offset from the host's), in repair mode.
    public static func setTimestamp(_ fd: Int32, _ value: UInt32) throws(LinuxError) {
        try setInt(fd, timestampOption, Int32(bitPattern: value), "TCP_TIMESTAMP")
    }

    public static func window(_ fd: Int32) throws(LinuxError) -> Window {
        let bytes = try InetSocket.option(fd, level: InetSocket.tcp, name: repairWindow, size: 20)
        guard bytes.count == 20 else {
            throw LinuxError(.invalidArgument, "TCP_REPAIR_WINDOW gave \(bytes.count) bytes")
        }
        return bytes.withUnsafeBytes {
            Window(
                sendWL1: $0.loadUnaligned(as: UInt32.self),
                sendWindow: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
                maxWindow: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self),
                receiveWindow: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self),
                receiveWUP: $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        }
    }

    /// Sets the window, in repair mode, once the receive queue is written (the kernel checks it against rcv_nxt).
    public static func setWindow(_ fd: Int32, _ window: Window) throws(LinuxError) {
        let words = [window.sendWL1, window.sendWindow, window.maxWindow, window.receiveWindow, window.receiveWUP]
        _ = try libcResult("setsockopt TCP_REPAIR_WINDOW") {
            words.withUnsafeBytes { setsockopt(fd, InetSocket.tcp, repairWindow, $0.baseAddress, socklen_t($0.count)) }
        }.get()
    }

    /// TCP_INFO's negotiated options.
    public static func negotiated(_ fd: Int32) throws(LinuxError) -> Negotiated {
        let info = try InetSocket.option(fd, level: InetSocket.tcp, name: 11, size: 8)
        guard info.count == 8 else { throw LinuxError(.invalidArgument, "TCP_INFO gave \(info.count) bytes") }
        // tcpi_options: TCPI_OPT_TIMESTAMPS 1, TCPI_OPT_SACK 2, TCPI_OPT_WSCALE 4; then the
        // scales, tcpi_snd_wscale in the low nibble.
        return Negotiated(
            timestamps: info[5] & 1 != 0, sack: info[5] & 2 != 0, windowScaling: info[5] & 4 != 0,
            sendWindowScale: UInt32(info[6] & 0xf), receiveWindowScale: UInt32(info[6] >> 4))
    }

    /// The bytes the connection holds: received and not read (SIOCINQ), in its send queue
    /// (SIOCOUTQ), and of those never sent (SIOCOUTQNSD).
    public static func queued(_ fd: Int32) throws(LinuxError) -> (received: Int, toSend: Int, unsent: Int) {
        func count(_ request: UInt, _ name: String) throws(LinuxError) -> Int {
            var value: Int32 = 0
            _ = try libcResult("ioctl \(name)") { ioctl(fd, request, &value) }.get()
            return Int(value)
        }
        return (
            try count(inputQueued, "SIOCINQ"), try count(outputQueued, "SIOCOUTQ"),
            try count(outputNotSent, "SIOCOUTQNSD")
        )
    }

    /// connect(2), which in repair mode makes the connection established without a packet.
    public static func connect(_ fd: Int32, to address: InetAddress) throws(LinuxError) {
        _ = try libcResult("connect \(address) in repair mode") {
            address.withSocketAddress { Glibc.connect(fd, $0, $1) }
        }.get()
    }

    private static func setInt(_ fd: Int32, _ name: Int32, _ value: Int32, _ label: String) throws(LinuxError) {
        try InetSocket.setOption(fd, level: InetSocket.tcp, name: name, value: withUnsafeBytes(of: value) { Array($0) })
    }
}
