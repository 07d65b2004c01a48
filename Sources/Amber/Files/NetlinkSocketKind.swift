import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import SystemPackage

/// An AF_NETLINK socket of NETLINK_ROUTE (routes, links, addresses: iproute2, NetworkManager,
/// glibc's getifaddrs) or NETLINK_SOCK_DIAG (ss) that holds no message and is not connected: its
/// port id, multicast groups, owner and the options of `ImageFormat.netlinkSocketOptions` that
/// differ from a fresh socket's are read through a copy of it, and it is made again in the
/// restorer: socket(2), its owner, its options (each read back), bind(2) to the same port id,
/// NETLINK_ADD_MEMBERSHIP of each group. Other protocols, queued messages, a dump still being
/// answered, a connected socket and options amber does not set again are refused by name.
struct NetlinkSocketKind: OpenFileKind {
    let identity: OpenFileIdentity
    let record: Amber_NetlinkSocket

    static func classify(_ descriptor: DescriptorProbe) throws -> NetlinkSocketKind? {
        guard descriptor.link.hasPrefix("socket:"), try descriptor.socketFamily() == AF_NETLINK else { return nil }
        let socket = try descriptor.duplicate()
        defer { try? socket.close() }
        let fd = socket.rawValue
        let proto = try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_PROTOCOL)
        let type = try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_TYPE)
        let what = "a netlink socket (\(descriptor.link)) of \(NetlinkSocket.protocolName(proto))"
        guard ImageFormat.netlinkProtocols.contains(proto) else {
            throw descriptor.refusal("\(what) (only NETLINK_ROUTE and NETLINK_SOCK_DIAG sockets are restored)")
        }
        try descriptor.checkEventFileFlags(what)
        try InetSocketKind.checkNamespace(fd, descriptor: descriptor, what: what)
        let local = try NetlinkSocket.localAddress(fd)
        let bound = "\(what), port id \(local.portID)"
        let peer = try NetlinkSocket.peerAddress(fd)
        guard peer.portID == 0, peer.groups == 0 else {
            throw descriptor.refusal("\(bound), connected to port id \(peer.portID), group \(peer.groups)")
        }
        let held = try InetSocket.heldBytes(fd)
        guard held.received == 0, try InetSocket.readiness(fd) & Int16(POLLIN | POLLERR) == 0 else {
            throw descriptor.refusal(
                "\(bound), with messages queued (\(held.received) bytes of its receive buffer in use) or an error pending: the kernel's answers or notifications would be lost"
            )
        }
        let status = try descriptor.status()
        // A socket not bound yet has asked the kernel nothing (its first send binds it), and
        // sock_diag shows only bound ones.
        if local.portID != 0 {
            let flags: UInt32?
            do {
                // sock_diag shows the sockets of the namespace it is asked in: the process's.
                flags = try NetworkNamespace.of(pid: descriptor.pid).inside {
                    try NetlinkSocket.diagnosisFlags(protocol: proto)
                }[status.inode]
            } catch {
                throw descriptor.refusal("\(bound), whose state sock_diag does not show (\(error))")
            }
            guard let flags else {
                throw descriptor.refusal("\(bound), which sock_diag does not show")
            }
            guard flags & NetlinkSocket.dumpRunning == 0 else {
                throw descriptor.refusal("\(bound), with a dump it asked for still being answered")
            }
        }

        var record = Amber_NetlinkSocket()
        record.type = type
        record.protocol = proto
        record.portID = local.portID
        record.groups = try NetlinkSocket.memberships(fd)
        record.options = try options(fd, of: record, descriptor: descriptor, what: bound)
        record.ownerUid = status.uid
        record.ownerGid = status.gid
        return NetlinkSocketKind(identity: OpenFileIdentity(device: status.device, inode: status.inode), record: record)
    }

    /// What a netlink socket may have set that amber does not set again: refused when it
    /// differs from a fresh socket's.
    private static let refusedOptions: [InetSocketOptionKind] = [
        .init(ImageFormat.socketLevel, 1, "SO_DEBUG"), .init(ImageFormat.socketLevel, 36, "SO_MARK"),
        .init(ImageFormat.socketLevel, 37, "SO_TIMESTAMPING", size: 8),
        .init(ImageFormat.socketLevel, 44, "SO_LOCK_FILTER"), .init(ImageFormat.socketLevel, 46, "SO_BUSY_POLL"),
        .init(ImageFormat.socketLevel, 61, "SO_TXTIME", size: 8),
        .init(ImageFormat.socketLevel, 62, "SO_BINDTOIFINDEX (SO_BINDTODEVICE)"),
        .init(ImageFormat.socketLevel, 63, "SO_TIMESTAMP_NEW"),
        .init(ImageFormat.socketLevel, 64, "SO_TIMESTAMPNS_NEW"),
        .init(ImageFormat.socketLevel, 65, "SO_TIMESTAMPING_NEW", size: 8),
        .init(ImageFormat.socketLevel, 69, "SO_PREFER_BUSY_POLL"),
        .init(ImageFormat.socketLevel, 70, "SO_BUSY_POLL_BUDGET"), .init(ImageFormat.socketLevel, 74, "SO_TXREHASH"),
        .init(ImageFormat.netlinkLevel, NetlinkSocket.listenAllNamespaces, "NETLINK_LISTEN_ALL_NSID"),
    ]

    /// The options of `fd` that differ from a fresh socket's, in the order
    /// `ImageFormat.netlinkSocketOptions` sets them; refuses one amber does not set again.
    private static func options(
        _ fd: Int32, of record: Amber_NetlinkSocket, descriptor: DescriptorProbe, what: String
    ) throws -> [Amber_InetSocketOption] {
        let fresh = try NetlinkSocket.make(type: record.type, protocol: record.protocol, nonBlocking: false)
        defer { try? fresh.close() }
        func value(_ socket: Int32, _ kind: InetSocketOptionKind) -> [UInt8]? {
            try? InetSocket.option(socket, level: kind.level, name: kind.name, size: kind.size)
        }
        for kind in refusedOptions where value(fd, kind) != value(fresh.rawValue, kind) {
            throw descriptor.refusal("\(what), with \(kind.label) set")
        }
        guard try InetSocket.filterLength(fd) == 0 else {
            throw descriptor.refusal("\(what), with a socket filter (SO_ATTACH_FILTER or SO_ATTACH_BPF)")
        }
        var options: [Amber_InetSocketOption] = []
        var buffersSet = false
        for kind in ImageFormat.netlinkSocketOptions {
            let current = value(fd, kind)
            let isBufferLock = kind.level == ImageFormat.socketLevel && kind.name == ImageFormat.bufferLockOption
            guard current != value(fresh.rawValue, kind) || (isBufferLock && buffersSet) else { continue }
            guard let current, current.count == kind.size else {
                throw descriptor.refusal("\(what), whose \(kind.label) getsockopt does not read as a fresh socket's")
            }
            if isBuffer(kind.level, kind.name) { buffersSet = true }
            var option = Amber_InetSocketOption()
            option.level = kind.level
            option.name = kind.name
            option.value = Data(current)
            options.append(option)
        }
        return options
    }

    private static func isBuffer(_ level: Int32, _ name: Int32) -> Bool {
        level == ImageFormat.socketLevel
            && (name == ImageFormat.sendBufferOption || name == ImageFormat.receiveBufferOption)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        .netlinkSocket(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_NetlinkSocket? {
        guard case .netlinkSocket(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_NetlinkSocket) -> String? { nil }

    static func make(
        _ record: Amber_NetlinkSocket, description: Amber_OpenFileDescription, as task: Amber_Task,
        imageTrusted: Bool, objects: OpenFileObjects
    ) throws -> Int32 {
        let what =
            "the netlink socket of \(NetlinkSocket.protocolName(record.protocol)) of open file \(description.id) for process \(task.pid)"
        let socket: FileDescriptor
        do {
            socket = try NetlinkSocket.make(
                type: record.type, protocol: record.protocol, nonBlocking: description.isNonBlocking)
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
        do {
            try configure(socket.rawValue, record, what: what)
        } catch {
            try? socket.close()
            throw error
        }
        return socket.rawValue
    }

    /// Gives the new socket `fd` its owner, its options, each read back, its port id and groups.
    private static func configure(_ fd: Int32, _ record: Amber_NetlinkSocket, what: String) throws {
        try SocketOwnership.give(fd, uid: record.ownerUid, gid: record.ownerGid, what: what)
        for option in record.options {
            let label =
                ImageFormat.netlinkSocketOptions.first { $0.level == option.level && $0.name == option.name }?.label
                ?? "option \(option.level).\(option.name)"
            let value = [UInt8](option.value)
            do {
                if isBuffer(option.level, option.name) {
                    try setBuffer(fd, name: option.name, kept: value)
                } else {
                    try InetSocket.setOption(fd, level: option.level, name: option.name, value: value)
                }
                let readBack = try InetSocket.option(fd, level: option.level, name: option.name, size: value.count)
                guard readBack == value else {
                    throw AmberError(
                        .restoreFailed, "cannot give \(what) its \(label) \(value): it reads back as \(readBack) here")
                }
            } catch let error as LinuxError {
                throw AmberError(.restoreFailed, "cannot set the \(label) of \(what): \(error)")
            }
        }
        if record.portID != 0 {
            do {
                try NetlinkSocket.bind(fd, portID: record.portID)
            } catch  where error.errno == .addressInUse {
                throw AmberError(
                    .restoreFailed,
                    "cannot bind \(what) to its port id \(record.portID): a netlink socket of this protocol has it (the dumped process itself if it was dumped with --leave-running and still runs)"
                )
            } catch {
                throw AmberError(.restoreFailed, "cannot bind \(what) to its port id \(record.portID): \(error)")
            }
        }
        for group in record.groups {
            do {
                try NetlinkSocket.join(fd, group: group)
            } catch {
                throw AmberError(.restoreFailed, "cannot join \(what) to its multicast group \(group): \(error)")
            }
        }
    }

    /// Sets SO_SNDBUF or SO_RCVBUF to half the `kept` value (the kernel doubles it), past
    /// net.core.wmem_max or rmem_max with SO_SNDBUFFORCE or SO_RCVBUFFORCE, which
    /// `privilegedAsks` asked CAP_NET_ADMIN for.
    private static func setBuffer(_ fd: Int32, name: Int32, kept: [UInt8]) throws(LinuxError) {
        let half = kept.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) } / 2
        let isSend = name == ImageFormat.sendBufferOption
        let maximum = try UnixSockets.bufferMaximum(isSend ? "wmem_max" : "rmem_max")
        let forced = UInt64(max(half, 0)) > maximum
        let option = forced ? (isSend ? UnixSockets.sendBufferForce : UnixSockets.receiveBufferForce) : name
        try InetSocket.setOption(fd, level: SOL_SOCKET, name: option, value: withUnsafeBytes(of: half) { Array($0) })
    }
}

extension NetlinkSocketKind {
    /// Refuses a netlink socket of the tree that a process outside the tree holds too: the
    /// tree's copy would be a socket of its own, with another port id or none.
    static func check(tree processes: [CheckedProcess]) throws {
        var held: [String: [(process: CheckedProcess, fd: Int32)]] = [:]
        for process in processes {
            for probe in try process.probes() where probe.link.hasPrefix("socket:") {
                guard (try? probe.socketFamily()) == AF_NETLINK else { continue }
                held[probe.link, default: []].append((process, probe.fd))
            }
        }
        try OutsideDescriptors.refuseShared(held: held, processes: processes) { treeFD, link, pid, fd in
            "has fd \(treeFD) on the netlink socket \(link), which process \(ProcessName(pid: pid)) outside the tree holds too (its fd \(fd)): it is restored only when no process outside the tree shares it"
        }
    }

    /// A buffer above net.core.wmem_max or rmem_max needs CAP_NET_ADMIN, SO_PRIORITY above 6
    /// CAP_NET_ADMIN or CAP_NET_RAW, multicast groups of NETLINK_SOCK_DIAG CAP_NET_ADMIN, as do
    /// NETLINK_ROUTE's multicast-routing ones (every other is open to every task), an owner
    /// other than the task's own CAP_CHOWN: the restorer sets them with its own privilege.
    static func privilegedAsks(
        _ record: Amber_NetlinkSocket, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline
    ) -> [PrivilegedAsk] {
        var asks: [PrivilegedAsk] = []
        for option in record.options where option.level == ImageFormat.socketLevel && option.value.count == 4 {
            let value = option.value.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
            if isBuffer(option.level, option.name) {
                let isSend = option.name == ImageFormat.sendBufferOption
                let maximum = (try? UnixSockets.bufferMaximum(isSend ? "wmem_max" : "rmem_max")) ?? 0
                if UInt64(max(value / 2, 0)) > maximum {
                    asks.append(
                        PrivilegedAsk(
                            what:
                                "a netlink socket of \(isSend ? "SO_SNDBUF" : "SO_RCVBUF") \(value), above net.core.\(isSend ? "wmem_max" : "rmem_max")",
                            capabilities: [Capability.netAdmin]))
                }
            } else if option.name == ImageFormat.socketPriorityOption
                && (value > ImageFormat.unprivilegedSocketPriority || value < 0)
            {
                asks.append(
                    PrivilegedAsk(
                        what: "a netlink socket of SO_PRIORITY \(value)",
                        capabilities: [Capability.netAdmin, Capability.netRaw]))
            }
        }
        let privilegedGroups =
            record.protocol == NetlinkSocket.route
            ? record.groups.filter { NetlinkSocket.privilegedRouteGroups.contains($0) } : record.groups
        if !privilegedGroups.isEmpty {
            asks.append(
                PrivilegedAsk(
                    what:
                        "a netlink socket of \(NetlinkSocket.protocolName(record.protocol)) in the multicast groups \(privilegedGroups)",
                    capabilities: [Capability.netAdmin]))
        }
        if record.ownerUid != owner.fsuid || record.ownerGid != owner.fsgid {
            asks.append(
                PrivilegedAsk(
                    what:
                        "a netlink socket owned by uid \(record.ownerUid), gid \(record.ownerGid), other than its own \(owner.fsuid), \(owner.fsgid)",
                    capabilities: [Capability.chown]))
        }
        return asks
    }
}
