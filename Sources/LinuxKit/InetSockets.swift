import Glibc
import SystemPackage

/// An AF_INET or AF_INET6 socket address: the address, in network order, and the port.
public struct InetAddress: Sendable, Equatable, CustomStringConvertible {
    public var family: Int32
    /// 4 bytes (AF_INET) or 16 (AF_INET6).
    public var address: [UInt8]
    public var port: UInt16
    /// AF_INET6: the interface of a link-local address.
    public var scopeID: UInt32

    public init(family: Int32, address: [UInt8], port: UInt16, scopeID: UInt32 = 0) {
        self.family = family
        self.address = address
        self.port = port
        self.scopeID = scopeID
    }

    /// The IPv4 address an IPv4-mapped IPv6 one (::ffff:a.b.c.d, a dual-stack socket's IPv4
    /// peer) stands for, with its port: the packets are IPv4 ones. Nil for any other address.
    public var unmappedIPv4: InetAddress? {
        guard family == AF_INET6, address.count == 16, address.prefix(10).allSatisfy({ $0 == 0 }),
            address[10] == 0xff, address[11] == 0xff
        else { return nil }
        return InetAddress(family: AF_INET, address: Array(address[12...]), port: port)
    }

    /// No address and no port: a socket never bound.
    public var isUnbound: Bool { port == 0 && address.allSatisfy { $0 == 0 } }

    /// "127.0.0.1:8000", "[::1]:8000".
    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let shown = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        let host =
            shown == nil ? "?" : String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let scope = scopeID == 0 ? "" : "%\(scopeID)"
        return family == AF_INET6 ? "[\(host)\(scope)]:\(port)" : "\(host):\(port)"
    }

    init?(_ storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self.init(
                family: AF_INET, address: withUnsafeBytes(of: address.sin_addr) { Array($0) },
                port: UInt16(bigEndian: address.sin_port))
        case AF_INET6:
            let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            self.init(
                family: AF_INET6, address: withUnsafeBytes(of: address.sin6_addr) { Array($0) },
                port: UInt16(bigEndian: address.sin6_port), scopeID: address.sin6_scope_id)
        default:
            return nil
        }
    }

    /// The address as a sockaddr for bind(2).
    func withSocketAddress<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        let size: Int
        if family == AF_INET6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_scope_id = scopeID
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: self.address.prefix(16)) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
            size = MemoryLayout<sockaddr_in6>.size
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: self.address.prefix(4)) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
            size = MemoryLayout<sockaddr_in>.size
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(size)) }
        }
    }
}

/// What the kernel says of an AF_INET or AF_INET6 socket through a descriptor of it, and how
/// one is made again.
public enum InetSocket {
    public static let tcp: Int32 = 6, udp: Int32 = 17
    public static let stream = Int32(SOCK_STREAM.rawValue), datagram = Int32(SOCK_DGRAM.rawValue)
    /// TCP states (include/net/tcp_states.h).
    public static let closed: UInt8 = 7, listening: UInt8 = 10
    public static let stateNames: [UInt8: String] = [
        1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE",
        8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
    ]
    /// "a raw socket (SOCK_RAW)", "a datagram socket"...: what a socket of `type` is.
    public static func typeName(_ type: Int32) -> String {
        switch type {
        case Int32(SOCK_RAW.rawValue): return "a raw socket (SOCK_RAW)"
        case stream: return "a stream socket"
        case datagram: return "a datagram socket"
        case Int32(SOCK_SEQPACKET.rawValue): return "a seqpacket socket"
        default: return "a socket of type \(type)"
        }
    }

    /// "ICMP (1)", "SCTP (132)"...: an IP protocol as /etc/protocols names it, with its number.
    public static func protocolName(_ number: Int32) -> String {
        let names: [Int32: String] = [
            0: "IP", 1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 58: "ICMPv6", 132: "SCTP",
            136: "UDP-Lite", 255: "raw IP", 262: "MPTCP",
        ]
        return names[number].map { "\($0) (\(number))" } ?? "\(number)"
    }

    /// SO_GET_FILTER (SO_ATTACH_FILTER), SO_MEMINFO.
    private static let getFilter: Int32 = 26, memoryInfo: Int32 = 55
    /// SIOCGSKNS: a descriptor of the socket's network namespace.
    private static let socketNamespace: UInt = 0x894C
    /// TCP_INFO.
    private static let tcpInfo: Int32 = 11

    /// An integer option; throws what getsockopt returns (ENOPROTOOPT for one the socket lacks).
    public static func intOption(_ fd: Int32, level: Int32, name: Int32) throws(LinuxError) -> Int32 {
        let bytes = try option(fd, level: level, name: name, size: 4)
        return bytes.count == 4 ? bytes.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) } : 0
    }

    /// The bytes getsockopt gives for an option, at most `size` of them.
    public static func option(_ fd: Int32, level: Int32, name: Int32, size: Int) throws(LinuxError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size)
        var length = socklen_t(size)
        _ = try libcResult("getsockopt(\(level), \(name))") { getsockopt(fd, level, name, &bytes, &length) }.get()
        return Array(bytes.prefix(Int(length)))
    }

    public static func setOption(_ fd: Int32, level: Int32, name: Int32, value: [UInt8]) throws(LinuxError) {
        _ = try libcResult("setsockopt(\(level), \(name))") {
            setsockopt(fd, level, name, value, socklen_t(value.count))
        }.get()
    }

    /// The number of instructions of the socket's classic BPF filter (SO_ATTACH_FILTER), 0 for
    /// none, or nil for an eBPF program (SO_ATTACH_BPF), which SO_GET_FILTER cannot read (EACCES).
    public static func filterLength(_ fd: Int32) throws(LinuxError) -> Int? {
        var length = socklen_t(0)
        guard getsockopt(fd, SOL_SOCKET, getFilter, nil, &length) == 0 else {
            let error = LinuxError.current("getsockopt SO_GET_FILTER")
            if error.errno == .permissionDenied { return nil }
            throw error
        }
        return Int(length)
    }

    /// getsockname.
    public static func localAddress(_ fd: Int32) throws(LinuxError) -> InetAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try libcResult("getsockname") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }.get()
        return InetAddress(storage)
    }

    /// getpeername: nil when the socket is not connected.
    public static func peerAddress(_ fd: Int32) throws(LinuxError) -> InetAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        if result == 0 { return InetAddress(storage) }
        if errno == ENOTCONN { return nil }
        throw LinuxError.current("getpeername")
    }

    /// A TCP socket's state, and for a listener its accept queue and backlog (TCP_INFO's
    /// tcpi_unacked and tcpi_sacked: sk_ack_backlog and sk_max_ack_backlog).
    public struct TCPState: Sendable {
        public let state: UInt8
        public let acceptQueue: UInt32
        public let backlog: UInt32
        public var name: String { InetSocket.stateNames[state] ?? "state \(state)" }
    }

    public static func tcpState(_ fd: Int32) throws(LinuxError) -> TCPState {
        let info = try option(fd, level: tcp, name: tcpInfo, size: 32)
        guard info.count == 32 else { throw LinuxError(.invalidArgument, "TCP_INFO gave \(info.count) bytes") }
        return info.withUnsafeBytes {
            TCPState(
                state: $0[0], acceptQueue: $0.loadUnaligned(fromByteOffset: 24, as: UInt32.self),
                backlog: $0.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        }
    }

    /// SO_MEMINFO: the bytes the socket holds received (sk_rmem_alloc) and to send (sk_wmem_alloc).
    public static func heldBytes(_ fd: Int32) throws(LinuxError) -> (received: UInt32, toSend: UInt32) {
        let info = try option(fd, level: SOL_SOCKET, name: memoryInfo, size: 9 * 4)
        guard info.count >= 3 * 4 else { throw LinuxError(.invalidArgument, "SO_MEMINFO gave \(info.count) bytes") }
        return info.withUnsafeBytes {
            ($0.loadUnaligned(as: UInt32.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        }
    }

    /// POLLRDHUP, which Glibc's module lacks: the peer shut its side down.
    public static let peerHangUp: Int16 = 0x2000

    /// What poll(2) reports for the socket now, without waiting or consuming anything.
    public static func readiness(_ fd: Int32) throws(LinuxError) -> Int16 {
        var entry = pollfd(fd: fd, events: Int16(POLLIN | POLLPRI) | peerHangUp, revents: 0)
        _ = try libcResult("poll") { poll(&entry, 1, 0) }.get()
        return entry.revents
    }

    /// The inode of the socket's network namespace (SIOCGSKNS), or nil when we may not ask
    /// (it needs CAP_NET_ADMIN over that namespace).
    public static func networkNamespace(_ fd: Int32) throws(LinuxError) -> UInt64? {
        let namespace = ioctl(fd, socketNamespace)
        if namespace < 0 {
            if errno == EPERM { return nil }
            throw LinuxError.current("ioctl SIOCGSKNS")
        }
        defer { close(namespace) }
        return try FileStatus.fstat(fd: namespace).inode
    }

    /// A new socket, close-on-exec, for the caller to close.
    public static func make(family: Int32, type: Int32, protocol: Int32, nonBlocking: Bool) throws(LinuxError)
        -> FileDescriptor
    {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return FileDescriptor(
            rawValue: try libcResult("socket(\(family), \(type), \(`protocol`))") {
                socket(family, type | flags, `protocol`)
            }.get())
    }

    public static func bind(_ fd: Int32, to address: InetAddress) throws(LinuxError) {
        _ = try libcResult("bind \(address)") { address.withSocketAddress { Glibc.bind(fd, $0, $1) } }.get()
    }

    /// connect(2) of a UDP socket: it sends nothing, it only names the peer.
    public static func connect(_ fd: Int32, to address: InetAddress) throws(LinuxError) {
        _ = try libcResult("connect \(address)") { address.withSocketAddress { Glibc.connect(fd, $0, $1) } }.get()
    }

    public static func listen(_ fd: Int32, backlog: Int32) throws(LinuxError) {
        _ = try libcResult("listen") { Glibc.listen(fd, backlog) }.get()
    }

    /// How many half-open TCP connections (SYN_RECV: requests to a listener, not yet in its
    /// accept queue) of the network namespace of process `pid` are to the local port `port`,
    /// from /proc/PID/net/tcp and tcp6.
    public static func halfOpenConnections(pid: Int32, port: UInt16) -> Int {
        var count = 0
        for table in ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"] {
            guard let text = try? ProcFS.readText(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 3, fields[3] == "03", let colon = fields[1].lastIndex(of: ":"),
                    UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) == port
                else { continue }
                count += 1
            }
        }
        return count
    }

    /// The first port binding needs no CAP_NET_BIND_SERVICE for (net.ipv4.ip_unprivileged_port_start).
    public static func unprivilegedPortStart() -> UInt32 {
        (try? ProcFS.readText("/proc/sys/net/ipv4/ip_unprivileged_port_start"))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { UInt32($0) } } ?? 1024
    }
}
