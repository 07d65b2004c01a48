import Glibc
import SystemPackage

/// rtnetlink (a NETLINK_ROUTE socket, linux/rtnetlink.h and linux/if_link.h): the links,
/// addresses and routes of the network namespace the socket was made in, read and made. A
/// socket stays in the namespace it was made in, whichever namespace its thread goes to after.
public final class RouteNetlink {
    private let fd: Int32
    private var sequence: UInt32 = 0

    /// ARPHRD_LOOPBACK, the type (ifi_type) of the loopback device.
    public static let loopbackType: UInt16 = 772
    /// IFF_UP.
    public static let up: UInt32 = 0x1
    /// RT_TABLE_MAIN, RTPROT_KERNEL, RTN_UNICAST.
    public static let mainTable: UInt32 = 254, kernelProtocol: UInt8 = 2, unicast: UInt8 = 1
    /// IFA_F_PERMANENT: an address not given by autoconfiguration with a lifetime.
    public static let permanentAddress: UInt32 = 0x80

    // nlmsghdr types and flags (linux/netlink.h, linux/rtnetlink.h).
    private static let newLink: UInt16 = 16, deleteLink: UInt16 = 17, getLink: UInt16 = 18
    private static let newAddress: UInt16 = 20, deleteAddress: UInt16 = 21, getAddress: UInt16 = 22
    private static let newRoute: UInt16 = 24, getRoute: UInt16 = 26
    private static let acknowledge: UInt16 = 0x4, dump: UInt16 = 0x300
    private static let replace: UInt16 = 0x100, exclusive: UInt16 = 0x200, create: UInt16 = 0x400

    // Attributes: IFLA_*, IFLA_INFO_*, VETH_INFO_PEER, IFA_*, RTA_*.
    private static let linkAddress: UInt16 = 1, linkName: UInt16 = 3, linkMTU: UInt16 = 4
    private static let linkMaster: UInt16 = 10, linkInfo: UInt16 = 18, linkNamespaceFD: UInt16 = 28
    private static let linkPaired: UInt16 = 5, linkPairedNamespace: UInt16 = 37
    private static let infoKind: UInt16 = 1, infoData: UInt16 = 2, vethPeer: UInt16 = 1
    private static let addressAddress: UInt16 = 1, addressLocal: UInt16 = 2, addressLabel: UInt16 = 3
    private static let addressBroadcast: UInt16 = 4, addressFlags: UInt16 = 8, addressRouteMetric: UInt16 = 9
    /// IFA_F_NODAD: an IPv6 address usable at once, not tentative while duplicate address
    /// detection runs (a restored socket binds to it right away).
    private static let noDuplicateDetection: UInt32 = 0x02
    private static let routeDestination: UInt16 = 1
    private static let routeOutput: UInt16 = 4, routeGateway: UInt16 = 5, routePriority: UInt16 = 6
    private static let routePreferredSource: UInt16 = 7, routeCacheInfo: UInt16 = 12, routeTable: UInt16 = 15
    private static let routePreference: UInt16 = 20

    /// A NETLINK_ROUTE socket in the calling thread's network namespace.
    public init() throws(LinuxError) {
        fd = try libcResult("socket(AF_NETLINK, NETLINK_ROUTE)") {
            socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NetlinkSocket.route)
        }.get()
    }

    deinit { Glibc.close(fd) }

    /// A link: its index, name, kind (IFLA_INFO_KIND: "veth", "bridge"...; nil for a device
    /// with none, such as the loopback), device type, flags, MTU, hardware address and the
    /// index of its master (a bridge), 0 for none.
    public struct Link: Sendable {
        public let index: Int32
        public let name: String
        public let kind: String?
        public let type: UInt16
        public let flags: UInt32
        public let mtu: UInt32
        public let hardwareAddress: [UInt8]
        public let master: Int32
        /// Whether the link it is paired with (IFLA_LINK: a veth's other end) is in this same
        /// namespace: it has one and no IFLA_LINK_NETNSID names another.
        public var pairedHere = false
    }

    /// An address of a link: IFA_LOCAL (IFA_ADDRESS where there is none), its prefix, its
    /// scope, its IPv4 broadcast address (empty when none was given), its flags and its label
    /// (IPv4).
    public struct Address: Sendable, Equatable {
        public let family: UInt8
        public let link: Int32
        public let address: [UInt8]
        public let prefixLength: UInt8
        public let scope: UInt8
        public let broadcast: [UInt8]
        public let flags: UInt32
        public let label: String?
        /// A point-to-point address's other end (IFA_ADDRESS beside an IFA_LOCAL of its own);
        /// empty for any other.
        public var peer: [UInt8] = []
        /// The metric of the address's prefix route (IFA_RT_PRIORITY); 0 for the kernel's.
        public var routeMetric: UInt32 = 0

        public init(
            family: UInt8, link: Int32, address: [UInt8], prefixLength: UInt8, scope: UInt8, broadcast: [UInt8],
            flags: UInt32 = 0, label: String? = nil
        ) {
            self.family = family
            self.link = link
            self.address = address
            self.prefixLength = prefixLength
            self.scope = scope
            self.broadcast = broadcast
            self.flags = flags
            self.label = label
        }
    }

    /// A route: the fields of struct rtmsg, the table (RTA_TABLE), and the attributes read;
    /// `otherAttributes` lists the types of those not read (a route with any is not one
    /// `addRoute` makes again).
    public struct Route: Sendable {
        public var family: UInt8
        public var destinationLength: UInt8
        public var sourceLength: UInt8 = 0
        public var tos: UInt8 = 0
        public var table: UInt32
        public var `protocol`: UInt8
        public var scope: UInt8
        public var type: UInt8
        public var flags: UInt32 = 0
        public var destination: [UInt8] = []
        public var gateway: [UInt8] = []
        public var outputLink: Int32 = 0
        public var priority: UInt32?
        public var preferredSource: [UInt8] = []
        public var otherAttributes: [UInt16] = []

        public init(
            family: UInt8, destinationLength: UInt8, table: UInt32, protocol: UInt8, scope: UInt8, type: UInt8
        ) {
            self.family = family
            self.destinationLength = destinationLength
            self.table = table
            self.protocol = `protocol`
            self.scope = scope
            self.type = type
        }
    }

    /// Every link of the namespace.
    public func links() throws(LinuxError) -> [Link] {
        try request(Self.getLink, flags: Self.dump, [UInt8](repeating: 0, count: 16), "RTM_GETLINK").map { message in
            let header = message.payload
            let attributes = Self.attributes(header.dropFirst(16))
            let info = attributes[Self.linkInfo].map { Self.attributes($0[...]) } ?? [:]
            var link = Link(
                index: Self.load(header, 4, as: Int32.self), name: Self.string(attributes[Self.linkName]),
                kind: info[Self.infoKind].map { Self.string($0) }, type: Self.load(header, 2, as: UInt16.self),
                flags: Self.load(header, 8, as: UInt32.self),
                mtu: attributes[Self.linkMTU].map { Self.load($0[...], 0, as: UInt32.self) } ?? 0,
                hardwareAddress: attributes[Self.linkAddress] ?? [],
                master: attributes[Self.linkMaster].map { Self.load($0[...], 0, as: Int32.self) } ?? 0)
            let paired = attributes[Self.linkPaired].map { Self.load($0[...], 0, as: Int32.self) } ?? 0
            link.pairedHere = paired != 0 && paired != link.index && attributes[Self.linkPairedNamespace] == nil
            return link
        }
    }

    /// Every IPv4 and IPv6 address of the namespace's links.
    public func addresses() throws(LinuxError) -> [Address] {
        try request(Self.getAddress, flags: Self.dump, [UInt8](repeating: 0, count: 8), "RTM_GETADDR").compactMap {
            message in
            let header = message.payload
            let family = header[header.startIndex]
            guard family == UInt8(AF_INET) || family == UInt8(AF_INET6) else { return nil }
            let attributes = Self.attributes(header.dropFirst(8))
            var address = Address(
                family: family, link: Int32(bitPattern: Self.load(header, 4, as: UInt32.self)),
                address: attributes[Self.addressLocal] ?? attributes[Self.addressAddress] ?? [],
                prefixLength: header[header.startIndex + 1], scope: header[header.startIndex + 3],
                broadcast: attributes[Self.addressBroadcast] ?? [],
                flags: attributes[Self.addressFlags].map { Self.load($0[...], 0, as: UInt32.self) }
                    ?? UInt32(header[header.startIndex + 2]),
                label: attributes[Self.addressLabel].map { Self.string($0) })
            if let local = attributes[Self.addressLocal], let other = attributes[Self.addressAddress], other != local {
                address.peer = other
            }
            address.routeMetric =
                attributes[Self.addressRouteMetric].map { Self.load($0[...], 0, as: UInt32.self) } ?? 0
            return address
        }
    }

    /// Every IPv4 and IPv6 route of every table.
    public func routes() throws(LinuxError) -> [Route] {
        var result: [Route] = []
        for family in [UInt8(AF_INET), UInt8(AF_INET6)] {
            var header = [UInt8](repeating: 0, count: 12)
            header[0] = family
            for message in try request(Self.getRoute, flags: Self.dump, header, "RTM_GETROUTE") {
                let fields = message.payload
                let start = fields.startIndex
                var route = Route(
                    family: fields[start], destinationLength: fields[start + 1], table: UInt32(fields[start + 4]),
                    protocol: fields[start + 5], scope: fields[start + 6], type: fields[start + 7])
                route.sourceLength = fields[start + 2]
                route.tos = fields[start + 3]
                route.flags = Self.load(fields, 8, as: UInt32.self)
                for (type, value) in Self.attributes(fields.dropFirst(12)).sorted(by: { $0.key < $1.key }) {
                    switch type {
                    case Self.routeDestination: route.destination = value
                    case Self.routeGateway: route.gateway = value
                    case Self.routeOutput: route.outputLink = Self.load(value[...], 0, as: Int32.self)
                    case Self.routePriority: route.priority = Self.load(value[...], 0, as: UInt32.self)
                    case Self.routePreferredSource: route.preferredSource = value
                    case Self.routeTable: route.table = Self.load(value[...], 0, as: UInt32.self)
                    // What the kernel adds to every route it shows: its cache's counters, and an
                    // IPv6 route's preference (RTA_PREF: medium, unless a router said otherwise).
                    case Self.routeCacheInfo: break
                    case Self.routePreference where value.first == 0: break
                    default: route.otherAttributes.append(type)
                    }
                }
                result.append(route)
            }
        }
        return result
    }

    /// Makes a veth pair: `name` in this socket's namespace, its peer `peer` in the namespace
    /// of `peerNamespace` (a descriptor of a network namespace file), both down.
    public func makeVeth(_ name: String, peer: String, peerNamespace: Int32) throws(LinuxError) {
        var peerInfo = [UInt8](repeating: 0, count: 16)
        Self.append(&peerInfo, Self.linkName, Self.bytes(peer))
        Self.append(&peerInfo, Self.linkNamespaceFD, Self.bytes(of: peerNamespace))
        var data: [UInt8] = []
        Self.append(&data, Self.vethPeer, peerInfo)
        var info: [UInt8] = []
        Self.append(&info, Self.infoKind, Self.bytes("veth"))
        Self.append(&info, Self.infoData, data)
        var message = [UInt8](repeating: 0, count: 16)
        Self.append(&message, Self.linkName, Self.bytes(name))
        Self.append(&message, Self.linkInfo, info)
        _ = try request(
            Self.newLink, flags: Self.acknowledge | Self.create | Self.exclusive, message,
            "RTM_NEWLINK veth \(name) peer \(peer)")
    }

    /// Deletes the link `index`.
    public func deleteLink(_ index: Int32) throws(LinuxError) {
        _ = try request(Self.deleteLink, flags: Self.acknowledge, Self.linkHeader(index), "RTM_DELLINK \(index)")
    }

    /// Sets what is given of link `index`: its MTU, hardware address, master (a bridge's
    /// index) and whether it is up.
    public func setLink(
        _ index: Int32, mtu: UInt32? = nil, hardwareAddress: [UInt8]? = nil, master: Int32? = nil, up: Bool? = nil
    ) throws(LinuxError) {
        var message = Self.linkHeader(index, up: up)
        if let mtu { Self.append(&message, Self.linkMTU, Self.bytes(of: mtu)) }
        if let hardwareAddress { Self.append(&message, Self.linkAddress, hardwareAddress) }
        if let master { Self.append(&message, Self.linkMaster, Self.bytes(of: master)) }
        _ = try request(Self.newLink, flags: Self.acknowledge, message, "RTM_NEWLINK \(index)")
    }

    /// Adds `address` with its scope, or replaces it where the link has it already (as the
    /// kernel's IPv6 autoconfiguration may have made it meanwhile); an IPv6 one is usable at
    /// once (IFA_F_NODAD).
    public func addAddress(_ address: Address) throws(LinuxError) {
        var message = Self.addressHeader(address)
        Self.append(&message, Self.addressLocal, address.address)
        Self.append(&message, Self.addressAddress, address.address)
        if !address.broadcast.isEmpty { Self.append(&message, Self.addressBroadcast, address.broadcast) }
        if address.family == UInt8(AF_INET6) {
            Self.append(&message, Self.addressFlags, Self.bytes(of: Self.noDuplicateDetection))
        }
        _ = try request(
            Self.newAddress, flags: Self.acknowledge | Self.create | Self.replace, message,
            "RTM_NEWADDR \(InetAddress.text(address.address))/\(address.prefixLength)")
    }

    /// Deletes `address` from its link.
    public func deleteAddress(_ address: Address) throws(LinuxError) {
        var message = Self.addressHeader(address)
        Self.append(&message, Self.addressLocal, address.address)
        _ = try request(
            Self.deleteAddress, flags: Self.acknowledge, message,
            "RTM_DELADDR \(InetAddress.text(address.address))/\(address.prefixLength)")
    }

    /// Adds `route` (its rtmsg fields, table, destination, gateway, output link, priority and
    /// preferred source).
    public func addRoute(_ route: Route) throws(LinuxError) {
        var message: [UInt8] = [
            route.family, route.destinationLength, route.sourceLength, route.tos,
            UInt8(truncatingIfNeeded: route.table), route.protocol, route.scope, route.type,
        ]
        message += Self.bytes(of: route.flags)
        Self.append(&message, Self.routeTable, Self.bytes(of: route.table))
        if !route.destination.isEmpty { Self.append(&message, Self.routeDestination, route.destination) }
        if !route.gateway.isEmpty { Self.append(&message, Self.routeGateway, route.gateway) }
        if route.outputLink != 0 { Self.append(&message, Self.routeOutput, Self.bytes(of: route.outputLink)) }
        if let priority = route.priority { Self.append(&message, Self.routePriority, Self.bytes(of: priority)) }
        if !route.preferredSource.isEmpty {
            Self.append(&message, Self.routePreferredSource, route.preferredSource)
        }
        _ = try request(
            Self.newRoute, flags: Self.acknowledge | Self.create | Self.exclusive, message,
            "RTM_NEWROUTE \(route.destination.isEmpty ? "default" : InetAddress.text(route.destination))/\(route.destinationLength)"
        )
    }

    // MARK: messages

    /// struct ifinfomsg for link `index`; with `up`, IFF_UP set or cleared (ifi_change).
    private static func linkHeader(_ index: Int32, up: Bool? = nil) -> [UInt8] {
        var header: [UInt8] = [UInt8(AF_UNSPEC), 0, 0, 0] + bytes(of: index)
        header += bytes(of: up == true ? Self.up : 0)
        header += bytes(of: up == nil ? UInt32(0) : Self.up)
        return header
    }

    /// struct ifaddrmsg of `address`.
    private static func addressHeader(_ address: Address) -> [UInt8] {
        [address.family, address.prefixLength, 0, address.scope] + bytes(of: address.link)
    }

    private struct Message {
        let type: UInt16
        let payload: ArraySlice<UInt8>
    }

    /// Sends one request and reads its answer: the messages of a dump, or the acknowledgement
    /// of a change (an error in it thrown, named by `operation`).
    private func request(_ type: UInt16, flags: UInt16, _ payload: [UInt8], _ operation: String) throws(LinuxError)
        -> [Message]
    {
        sequence &+= 1
        var messages: [Message] = []
        try NetlinkExchange.run(
            fd: fd, type: type, flags: flags, sequence: sequence, payload: payload, what: operation
        ) { kind, payload in
            messages.append(Message(type: kind, payload: payload))
            return true
        }
        return messages
    }

    /// The attributes (struct rtattr) in `bytes`, by type (the nested and byte-order flags
    /// cleared); the last of a type counts.
    private static func attributes(_ bytes: ArraySlice<UInt8>) -> [UInt16: [UInt8]] {
        var result: [UInt16: [UInt8]] = [:]
        var offset = bytes.startIndex
        while offset + 4 <= bytes.endIndex {
            let length = Int(load(bytes, offset - bytes.startIndex, as: UInt16.self))
            let type = load(bytes, offset - bytes.startIndex + 2, as: UInt16.self) & 0x3fff
            guard length >= 4, offset + length <= bytes.endIndex else { break }
            result[type] = Array(bytes[(offset + 4)..<(offset + length)])
            offset += (length + 3) & ~3
        }
        return result
    }

    private static func append(_ message: inout [UInt8], _ type: UInt16, _ value: [UInt8]) {
        message += bytes(of: UInt16(4 + value.count)) + bytes(of: type) + value
        message += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
    }

    private static func load<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>, _ offset: Int, as: T.Type) -> T {
        var value = T.zero
        let start = bytes.startIndex + offset
        guard start + MemoryLayout<T>.size <= bytes.endIndex else { return value }
        withUnsafeMutableBytes(of: &value) { target in
            for index in 0..<MemoryLayout<T>.size { target[index] = bytes[start + index] }
        }
        return value
    }

    private static func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    /// A NUL-terminated string.
    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

    private static func string(_ bytes: [UInt8]?) -> String {
        String(decoding: (bytes ?? []).prefix { $0 != 0 }, as: UTF8.self)
    }
}
