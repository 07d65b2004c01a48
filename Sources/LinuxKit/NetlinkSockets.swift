import Glibc
import SystemPackage

/// What the kernel says of an AF_NETLINK socket through a descriptor of it, and how one is made
/// again.
public enum NetlinkSocket {
    /// NETLINK_ROUTE, NETLINK_SOCK_DIAG.
    public static let route: Int32 = 0, sockDiag: Int32 = 4
    /// SOL_NETLINK.
    public static let level: Int32 = 270
    /// NETLINK_ADD_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS.
    private static let addMembership: Int32 = 1, listMemberships: Int32 = 9
    /// The options of SOL_NETLINK: NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS,
    /// NETLINK_LISTEN_ALL_NSID, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK.
    public static let packetInfo: Int32 = 3, broadcastError: Int32 = 4, noBufferErrors: Int32 = 5
    public static let listenAllNamespaces: Int32 = 8, capAck: Int32 = 10, extendedAck: Int32 = 11
    public static let strictCheck: Int32 = 12

    /// RTNLGRP_IPV4_MROUTE_R and RTNLGRP_IPV6_MROUTE_R: the NETLINK_ROUTE groups a task joins
    /// only with CAP_NET_ADMIN (rtnetlink_bind).
    public static let privilegedRouteGroups: Set<UInt32> = [30, 31]

    /// "NETLINK_AUDIT (9)": a netlink protocol as linux/netlink.h names it, with its number.
    public static func protocolName(_ number: Int32) -> String {
        let names: [Int32: String] = [
            0: "NETLINK_ROUTE", 2: "NETLINK_USERSOCK", 4: "NETLINK_SOCK_DIAG", 5: "NETLINK_NFLOG", 6: "NETLINK_XFRM",
            7: "NETLINK_SELINUX", 8: "NETLINK_ISCSI", 9: "NETLINK_AUDIT", 10: "NETLINK_FIB_LOOKUP",
            11: "NETLINK_CONNECTOR", 12: "NETLINK_NETFILTER", 13: "NETLINK_IP6_FW", 14: "NETLINK_DNRTMSG",
            15: "NETLINK_KOBJECT_UEVENT", 16: "NETLINK_GENERIC", 18: "NETLINK_SCSITRANSPORT", 19: "NETLINK_ECRYPTFS",
            20: "NETLINK_RDMA", 21: "NETLINK_CRYPTO", 22: "NETLINK_SMC",
        ]
        return "\(names[number] ?? "netlink protocol") (\(number))"
    }

    /// struct sockaddr_nl (linux/netlink.h), which Glibc's module lacks.
    private struct SocketAddress {
        var family = UInt16(AF_NETLINK)
        var pad: UInt16 = 0
        var portID: UInt32 = 0
        var groups: UInt32 = 0
    }

    /// A netlink address: the port id and the first 32 multicast groups as a bit mask.
    public struct Address: Sendable, Equatable {
        public var portID: UInt32
        public var groups: UInt32

        public init(portID: UInt32, groups: UInt32) {
            self.portID = portID
            self.groups = groups
        }
    }

    /// getsockname: the socket's port id (0 until it is bound) and groups.
    public static func localAddress(_ fd: Int32) throws(LinuxError) -> Address {
        try address(fd, peer: false)
    }

    /// getpeername: where connect(2) sent it (port id and group 0 when not connected).
    public static func peerAddress(_ fd: Int32) throws(LinuxError) -> Address {
        try address(fd, peer: true)
    }

    private static func address(_ fd: Int32, peer: Bool) throws(LinuxError) -> Address {
        var address = SocketAddress()
        var length = socklen_t(MemoryLayout<SocketAddress>.size)
        _ = try libcResult(peer ? "getpeername" : "getsockname") {
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
                }
            }
        }.get()
        return Address(portID: address.portID, groups: address.groups)
    }

    /// The multicast groups the socket is in (NETLINK_LIST_MEMBERSHIPS), numbered from 1.
    public static func memberships(_ fd: Int32) throws(LinuxError) -> [UInt32] {
        var length = socklen_t(0)
        _ = try libcResult("getsockopt NETLINK_LIST_MEMBERSHIPS") {
            getsockopt(fd, level, listMemberships, nil, &length)
        }.get()
        var words = [UInt32](repeating: 0, count: (Int(length) + 3) / 4)
        length = socklen_t(words.count * 4)
        _ = try libcResult("getsockopt NETLINK_LIST_MEMBERSHIPS") {
            getsockopt(fd, level, listMemberships, &words, &length)
        }.get()
        var groups: [UInt32] = []
        for (index, word) in words.prefix(Int(length) / 4).enumerated() {
            for bit in 0..<32 where word & (1 << bit) != 0 { groups.append(UInt32(index * 32 + bit + 1)) }
        }
        return groups
    }

    /// NETLINK_ADD_MEMBERSHIP of `group`.
    public static func join(_ fd: Int32, group: UInt32) throws(LinuxError) {
        var group = group
        _ = try libcResult("setsockopt NETLINK_ADD_MEMBERSHIP \(group)") {
            setsockopt(fd, level, addMembership, &group, socklen_t(MemoryLayout<UInt32>.size))
        }.get()
    }

    /// A new netlink socket, close-on-exec, for the caller to close.
    public static func make(type: Int32, protocol: Int32, nonBlocking: Bool) throws(LinuxError) -> FileDescriptor {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return FileDescriptor(
            rawValue: try libcResult("socket(AF_NETLINK, \(type), \(`protocol`))") {
                socket(AF_NETLINK, type | flags, `protocol`)
            }.get())
    }

    /// bind(2) to `portID` with no groups: the port id the kernel would otherwise choose itself.
    public static func bind(_ fd: Int32, portID: UInt32) throws(LinuxError) {
        var address = SocketAddress()
        address.portID = portID
        _ = try libcResult("bind to netlink port id \(portID)") {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<SocketAddress>.size))
                }
            }
        }.get()
    }

    /// NDIAG_FLAG_CB_RUNNING: a dump the socket asked for is still being answered.
    public static let dumpRunning: UInt32 = 0x1

    /// The NETLINK_DIAG_FLAGS of every netlink socket of `protocol` in our network namespace, by
    /// inode (one NETLINK_SOCK_DIAG dump; the netlink_diag module loads on first use).
    public static func diagnosisFlags(protocol netlinkProtocol: Int32) throws(LinuxError) -> [UInt64: UInt32] {
        // netlink_diag_req: family, protocol, pad, inode, what to show (NDIAG_SHOW_FLAGS), cookie.
        var request: [UInt8] = [UInt8(AF_NETLINK), UInt8(truncatingIfNeeded: netlinkProtocol), 0, 0]
        request.append(le: UInt32(0))
        request.append(le: UInt32(0x8))
        request.append(le: UInt32.max)
        request.append(le: UInt32.max)
        var flags: [UInt64: UInt32] = [:]
        try SockDiag.ask(request, dump: true, what: "netlink sockets") { message in
            // netlink_diag_msg: family, type, protocol, state, portid, dst_portid, dst_group,
            // inode, cookie; then attributes.
            guard message.count >= 28 else { return true }
            let inode = UInt64(message.le(UInt32.self, at: message.startIndex + 16))
            // NETLINK_DIAG_FLAGS
            let shown = SockDiag.attributes(of: message, from: message.startIndex + 28).first { $0.type == 4 }
            if let payload = shown?.payload, payload.count >= 4 {
                flags[inode] = payload.le(UInt32.self, at: payload.startIndex)
            } else {
                flags[inode] = 0
            }
            return true
        }
        return flags
    }
}
