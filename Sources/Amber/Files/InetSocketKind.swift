import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import SystemPackage

/// An AF_INET or AF_INET6 socket, TCP or UDP, that holds no connection and no data: fresh,
/// bound, a UDP socket connected to a peer, or a TCP listener (the connections it has not
/// accepted yet are left out, `PendingConnections`). Its address, peer, backlog, owner and every option of
/// `ImageFormat.inetSocketOptions` that differs from a fresh socket's are read through a copy
/// of it, and it is made again in the restorer: socket(2), its owner, its options (each read
/// back), bind(2), connect(2) (UDP), listen(2). A TCP connection (any other state), queued
/// data, a pending error and options amber does not set again are refused, naming the
/// process, the fd, the address and why.
struct InetSocketKind: OpenFileKind {
    let identity: OpenFileIdentity
    let record: Amber_InetSocket
    /// A listener's connections not accepted yet, left out of the image (`PendingConnections`).
    let pending: PendingConnections.Listener?

    static func classify(_ descriptor: DescriptorProbe) throws -> InetSocketKind? {
        guard descriptor.link.hasPrefix("socket:") else { return nil }
        let family = try descriptor.socketFamily()
        guard family == AF_INET || family == AF_INET6 else { return nil }
        let socket = try descriptor.duplicate()
        defer { try? socket.close() }
        let fd = socket.rawValue
        let what = "\(family == AF_INET ? "an inet" : "an inet6") socket (\(descriptor.link))"
        let type = try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_TYPE)
        let proto = try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_PROTOCOL)
        let isTCP = type == InetSocket.stream && proto == InetSocket.tcp
        guard isTCP || (type == InetSocket.datagram && proto == InetSocket.udp) else {
            throw descriptor.refusal(
                "\(what), \(InetSocket.typeName(type)) of protocol \(InetSocket.protocolName(proto)) (only TCP and UDP sockets are restored)"
            )
        }
        try descriptor.checkEventFileFlags(what)
        try checkNamespace(fd, descriptor: descriptor, what: what)

        var record = Amber_InetSocket()
        var pending: PendingConnections.Listener?
        record.family = family
        record.type = type
        record.protocol = proto
        guard let local = try InetSocket.localAddress(fd) else {
            throw descriptor.refusal("\(what) whose address getsockname does not show")
        }
        let protocolName = isTCP ? "TCP" : "UDP"
        let readiness = try InetSocket.readiness(fd)
        if isTCP {
            let tcp = try InetSocket.tcpState(fd)
            switch tcp.state {
            case InetSocket.listening:
                let halfOpen = InetSocket.halfOpenConnections(pid: descriptor.pid, port: local.port)
                if tcp.acceptQueue > 0 || halfOpen > 0 {
                    pending = PendingConnections.Listener(
                        process: descriptor.process, fd: descriptor.fd, address: local, queued: tcp.acceptQueue,
                        halfOpen: halfOpen)
                }
                record.state = .listening
                record.backlog = tcp.backlog
                try checkTimeWait(fd, at: local, descriptor: descriptor, what: what)
            case InetSocket.closed:
                guard readiness & (Int16(POLLERR | POLLIN | POLLPRI) | InetSocket.peerHangUp) == 0 else {
                    throw descriptor.refusal(
                        "\(what), TCP \(local), whose connection has ended or failed (poll shows 0x\(String(UInt16(bitPattern: readiness), radix: 16)))"
                    )
                }
                record.state = local.isUnbound ? .fresh : .bound
            default:
                let peer = (try? InetSocket.peerAddress(fd)).flatMap { $0.map { " to \($0)" } } ?? ""
                throw descriptor.refusal(
                    "\(what), a TCP connection from \(local)\(peer) in state \(tcp.name)"
                )
            }
        } else {
            let peer = try InetSocket.peerAddress(fd)
            if let peer {
                record.peerAddress = Data(peer.address)
                record.peerPort = UInt32(peer.port)
                record.peerScopeID = peer.scopeID
            }
            let udp = "\(what), UDP \(local)\(peer.map { " connected to \($0)" } ?? "")"
            let held = try InetSocket.heldBytes(fd)
            guard held.received == 0, readiness & Int16(POLLIN | POLLPRI) == 0 else {
                throw descriptor.refusal(
                    "\(udp), with datagrams queued (\(held.received) bytes of its receive buffer in use): each would have to come again from its sender's address"
                )
            }
            guard readiness & Int16(POLLERR) == 0 else {
                throw descriptor.refusal("\(udp), with an error pending (an ICMP error its next call would report)")
            }
            guard held.toSend == 0 else {
                throw descriptor.refusal("\(udp), with \(held.toSend) bytes not sent yet (UDP_CORK)")
            }
            record.state = local.isUnbound ? .fresh : .bound
        }
        if record.state != .fresh {
            record.address = Data(local.address)
            record.port = UInt32(local.port)
            record.scopeID = local.scopeID
        }
        record.options = try options(fd, of: record, descriptor: descriptor, what: "\(what), \(protocolName) \(local),")
        let status = try descriptor.status()
        record.ownerUid = status.uid
        record.ownerGid = status.gid
        return InetSocketKind(
            identity: OpenFileIdentity(device: status.device, inode: status.inode), record: record, pending: pending)
    }

    /// Refuses a socket of another network namespace than its tree's root: the restore makes
    /// every socket of the tree in one namespace. Asking the socket's namespace needs
    /// CAP_NET_ADMIN over it; without that, the process's namespace must be the root's (a socket
    /// of another namespace in it came from a process with that privilege, through SCM_RIGHTS or
    /// setns).
    static func checkNamespace(_ fd: Int32, descriptor: DescriptorProbe, what: String) throws {
        let own = try FileStatus.stat(path: "/proc/\(descriptor.tree?.pid ?? descriptor.pid)/ns/net").inode
        let socketNamespace = try InetSocket.networkNamespace(fd)
        let namespace = try socketNamespace ?? FileStatus.stat(path: "/proc/\(descriptor.pid)/ns/net").inode
        guard namespace == own else {
            throw descriptor.refusal(
                "\(what) of the network namespace net:[\(namespace)], not its tree's net:[\(own)], where a restore would make it"
            )
        }
    }

    /// What a socket of `record`'s family, type and protocol may have set that amber does not
    /// set again: refused when it differs from a fresh socket's.
    private static let refusedOptions: [InetSocketOptionKind] = [
        .init(ImageFormat.socketLevel, 1, "SO_DEBUG"), .init(ImageFormat.socketLevel, 36, "SO_MARK"),
        .init(ImageFormat.socketLevel, 44, "SO_LOCK_FILTER"), .init(ImageFormat.socketLevel, 46, "SO_BUSY_POLL"),
        .init(ImageFormat.socketLevel, 47, "SO_MAX_PACING_RATE", size: 8),
        .init(ImageFormat.socketLevel, 61, "SO_TXTIME", size: 8),
        .init(ImageFormat.socketLevel, 62, "SO_BINDTOIFINDEX (SO_BINDTODEVICE)"),
        .init(ImageFormat.socketLevel, 63, "SO_TIMESTAMP_NEW"),
        .init(ImageFormat.socketLevel, 64, "SO_TIMESTAMPNS_NEW"),
        .init(ImageFormat.socketLevel, 69, "SO_PREFER_BUSY_POLL"),
        .init(ImageFormat.socketLevel, 70, "SO_BUSY_POLL_BUDGET"), .init(ImageFormat.socketLevel, 74, "SO_TXREHASH"),
        .init(ImageFormat.ipLevel, 4, "IP_OPTIONS", size: 40), .init(ImageFormat.ipLevel, 19, "IP_TRANSPARENT"),
        .init(ImageFormat.ipLevel, 32, "IP_MULTICAST_IF"), .init(ImageFormat.ipLevel, 50, "IP_UNICAST_IF"),
        .init(ImageFormat.ipv6Level, 17, "IPV6_MULTICAST_IF"), .init(ImageFormat.ipv6Level, 75, "IPV6_TRANSPARENT"),
        .init(ImageFormat.ipv6Level, 76, "IPV6_UNICAST_IF"),
        // Sticky extension headers: getsockopt gives as much of one as fits, nothing when unset.
        .init(ImageFormat.ipv6Level, 54, "IPV6_HOPOPTS", size: 8),
        .init(ImageFormat.ipv6Level, 55, "IPV6_RTHDRDSTOPTS", size: 8),
        .init(ImageFormat.ipv6Level, 57, "IPV6_RTHDR", size: 8),
        .init(ImageFormat.ipv6Level, 59, "IPV6_DSTOPTS", size: 8),
        .init(ImageFormat.tcpLevel, 13, "TCP_CONGESTION", size: 16), .init(ImageFormat.tcpLevel, 19, "TCP_REPAIR"),
        .init(ImageFormat.tcpLevel, 31, "TCP_ULP", size: 16), .init(ImageFormat.udpLevel, 100, "UDP_ENCAP"),
        // Set by setsockopt, not set again (found by a scan of every settable option).
        .init(ImageFormat.socketLevel, 11, "SO_NO_CHECK"), .init(ImageFormat.socketLevel, 82, "SO_RCVPRIORITY"),
        .init(ImageFormat.ipv6Level, 2, "IPV6_2292PKTINFO"), .init(ImageFormat.ipv6Level, 3, "IPV6_2292HOPOPTS"),
        .init(ImageFormat.ipv6Level, 4, "IPV6_2292DSTOPTS"), .init(ImageFormat.ipv6Level, 5, "IPV6_2292RTHDR"),
        .init(ImageFormat.ipv6Level, 8, "IPV6_2292HOPLIMIT"),
        .init(ImageFormat.ipv6Level, 30, "IPV6_ROUTER_ALERT_ISOLATE"),
        .init(ImageFormat.tcpLevel, 33, "TCP_FASTOPEN_KEY", size: 32),
    ]

    /// The options of `fd` that differ from those of a fresh socket like it, in the order
    /// `ImageFormat.inetSocketOptions` sets them; refuses one amber does not set again.
    static func options(
        _ fd: Int32, of record: Amber_InetSocket, descriptor: DescriptorProbe, what: String,
        kernelSet: Set<[Int32]> = []
    ) throws -> [Amber_InetSocketOption] {
        let fresh = try InetSocket.make(
            family: record.family, type: record.type, protocol: record.protocol, nonBlocking: false)
        defer { try? fresh.close() }
        func value(_ socket: Int32, _ kind: InetSocketOptionKind) -> [UInt8]? {
            try? InetSocket.option(socket, level: kind.level, name: kind.name, size: kind.size)
        }
        for kind in refusedOptions
        where !kernelSet.contains([kind.level, kind.name]) && value(fd, kind) != value(fresh.rawValue, kind) {
            throw descriptor.refusal("\(what) with \(kind.label) set")
        }
        guard try InetSocket.filterLength(fd) == 0 else {
            throw descriptor.refusal("\(what) with a socket filter (SO_ATTACH_FILTER or SO_ATTACH_BPF)")
        }
        var options: [Amber_InetSocketOption] = []
        var buffersSet = false
        for kind in ImageFormat.inetSocketOptions {
            let current = value(fd, kind)
            let isBufferLock = kind.level == ImageFormat.socketLevel && kind.name == ImageFormat.bufferLockOption
            guard current != value(fresh.rawValue, kind) || (isBufferLock && buffersSet) else { continue }
            guard let current, current.count == kind.size else {
                throw descriptor.refusal("\(what) whose \(kind.label) getsockopt does not read as a fresh socket's")
            }
            if kind.level == ImageFormat.socketLevel
                && (kind.name == ImageFormat.sendBufferOption || kind.name == ImageFormat.receiveBufferOption)
            {
                buffersSet = true
            }
            var option = Amber_InetSocketOption()
            option.level = kind.level
            option.name = kind.name
            option.value = Data(current)
            options.append(option)
        }
        if record.type == InetSocket.datagram, let counter = sendCounter(in: options) {
            throw descriptor.refusal("\(what) with \(counter)")
        }
        return options
    }

    /// An option of `options` that numbers what the socket sends, in a counter no getsockopt
    /// reads and a new socket starts at 0: SO_TIMESTAMPING's SOF_TIMESTAMPING_OPT_ID (its
    /// timestamps' keys) and SO_ZEROCOPY (its completions' ids). Refused on a socket that may
    /// have sent: a UDP socket, a TCP connection.
    static func sendCounter(in options: [Amber_InetSocketOption]) -> String? {
        for option in options where option.level == ImageFormat.socketLevel && option.value.count >= 4 {
            let value = option.value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            if option.name == timestampingOption, value & timestampingOptionID != 0 {
                return "SO_TIMESTAMPING's SOF_TIMESTAMPING_OPT_ID, whose count of what it sent no getsockopt reads"
            }
            if option.name == zeroCopyOption, value != 0 {
                return "SO_ZEROCOPY, whose count of what it sent no getsockopt reads"
            }
        }
        return nil
    }

    /// SO_TIMESTAMPING, its SOF_TIMESTAMPING_OPT_ID and its receive flags
    /// (SOF_TIMESTAMPING_RX_HARDWARE, RX_SOFTWARE), SO_TIMESTAMP, SO_TIMESTAMPNS, SO_ZEROCOPY.
    static let timestampingOption: Int32 = 37, timestampingOptionID: UInt32 = 1 << 7
    static let timestampingReceived: UInt32 = 1 << 2 | 1 << 3
    static let timestampOption: Int32 = 29, timestampNanosecondsOption: Int32 = 35, zeroCopyOption: Int32 = 60

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        if let pending { PendingConnections.note(pending) }
        return .inetSocket(record)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_InetSocket? {
        guard case .inetSocket(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_InetSocket) -> String? { nil }

    /// A listener binds its port before the connections accepted from it are made again: each
    /// of theirs holds the port, and would keep one without SO_REUSEADDR from binding it.
    static func isMadeFirst(_ record: Amber_InetSocket) -> Bool { record.state == .listening }

    static func make(
        _ record: Amber_InetSocket, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let what =
            "the \(record.family == AF_INET6 ? "inet6" : "inet") \(record.type == InetSocket.stream ? "TCP" : "UDP") socket of open file \(description.id) for process \(task.pid)"
        let socket: FileDescriptor
        do {
            socket = try InetSocket.make(
                family: record.family, type: record.type, protocol: record.protocol,
                nonBlocking: description.isNonBlocking)
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
        do {
            // Ending connections in TIME_WAIT takes CAP_NET_ADMIN: amber uses its own only for a
            // trusted image or a process that held it (docs/security.md).
            let permitted = task.threads.first.map { $0.hasCredentials ? $0.credentials.capPermitted : .max } ?? 0
            try configure(
                socket.rawValue, record, what: what,
                endingTimeWait: imageTrusted || permitted & (1 << UInt64(Capability.netAdmin)) != 0)
        } catch {
            try? socket.close()
            throw error
        }
        return socket.rawValue
    }

    /// Gives the new socket `fd` its owner (before binding: SO_REUSEPORT groups sockets of one
    /// owner), its options, each read back, its address and its backlog. `endingTimeWait`: see
    /// `bind(_:to:endingTimeWait:)`.
    static func configure(_ fd: Int32, _ record: Amber_InetSocket, what: String, endingTimeWait: Bool = false) throws {
        try SocketOwnership.give(fd, uid: record.ownerUid, gid: record.ownerGid, what: what)
        for option in record.options {
            let label =
                ImageFormat.inetSocketOptions.first { $0.level == option.level && $0.name == option.name }?.label
                ?? "option \(option.level).\(option.name)"
            let value = [UInt8](option.value)
            do {
                try InetSocket.setOption(fd, level: option.level, name: option.name, value: setValue(option, value))
                let readBack = try InetSocket.option(fd, level: option.level, name: option.name, size: value.count)
                guard readBack == value else {
                    throw AmberError(
                        .restoreFailed, "cannot give \(what) its \(label) \(value): it reads back as \(readBack) here")
                }
            } catch let error as LinuxError {
                throw AmberError(.restoreFailed, "cannot set the \(label) of \(what): \(error)")
            }
        }
        guard record.state != .fresh else { return }
        let address = InetAddress(
            family: record.family, address: [UInt8](record.address), port: UInt16(record.port), scopeID: record.scopeID)
        do {
            try bind(fd, to: address, endingTimeWait: endingTimeWait && record.state == .listening)
        } catch  where error.errno == .addressInUse {
            throw AmberError(
                .restoreFailed,
                "cannot bind \(what) to \(address): the address is in use (by the dumped process itself if it was dumped with --leave-running and still runs)"
            )
        } catch {
            throw AmberError(.restoreFailed, "cannot bind \(what) to \(address): \(error)")
        }
        if !record.peerAddress.isEmpty {
            let peer = InetAddress(
                family: record.family, address: [UInt8](record.peerAddress), port: UInt16(record.peerPort),
                scopeID: record.peerScopeID)
            do {
                try InetSocket.connect(fd, to: peer)
            } catch {
                throw AmberError(.restoreFailed, "cannot connect \(what) on \(address) to its peer \(peer): \(error)")
            }
        }
        guard record.state == .listening else { return }
        do {
            try InetSocket.listen(fd, backlog: Int32(record.backlog))
            let backlog = try InetSocket.tcpState(fd).backlog
            guard backlog == record.backlog else {
                throw AmberError(
                    .restoreFailed,
                    "cannot give \(what) on \(address) its listen backlog \(record.backlog): it is \(backlog) here (net.core.somaxconn)"
                )
            }
        } catch let error as LinuxError {
            throw AmberError(.restoreFailed, "cannot make \(what) listen on \(address): \(error)")
        }
    }

    /// bind(2). The connections a listener without SO_REUSEADDR closed first wait in TIME_WAIT on
    /// its port, and the kernel lets no new socket bind there (not even with SO_REUSEADDR, unless
    /// those connections had it), where the listener before the dump held the port through them:
    /// with `endingTimeWait`, they are ended and the bind tried again, unless a listener holds the
    /// port.
    private static func bind(_ fd: Int32, to address: InetAddress, endingTimeWait: Bool) throws(LinuxError) {
        do throws(LinuxError) {
            try InetSocket.bind(fd, to: address)
        } catch {
            guard error.errno == .addressInUse, endingTimeWait else { throw error }
            let waiting = try InetDiagnosis.timeWait(on: address)
            guard waiting.count > 0, !waiting.listenerHolds else { throw error }
            try InetDiagnosis.end(waiting, what: "a connection in TIME_WAIT on \(address)")
            try InetSocket.bind(fd, to: address)
        }
    }

    /// Refuses a listener without SO_REUSEADDR that has connections in TIME_WAIT on its port when
    /// amber lacks CAP_NET_ADMIN: only that ends them, and until they end (60 s after they closed)
    /// a restore here cannot bind the port again.
    private static func checkTimeWait(
        _ fd: Int32, at local: InetAddress, descriptor: DescriptorProbe, what: String
    ) throws {
        guard try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR) == 0 else { return }
        let capabilities = (try? ProcFS.status(pid: getpid()))?.capabilities?.effective ?? 0
        guard capabilities & (1 << Capability.netAdmin) == 0 else { return }
        let waiting = try InetDiagnosis.timeWait(on: local).count
        guard waiting == 0 else {
            throw descriptor.refusal(
                "\(what), a TCP listener on \(local) without SO_REUSEADDR, with \(waiting) of its closed connections in TIME_WAIT on its port: a restore binds the port again only once they end (up to 60 s after they closed), or by ending them, which needs CAP_NET_ADMIN"
            )
        }
    }

    /// What setsockopt takes for `value`: half the buffer size the kernel keeps (it doubles it).
    private static func setValue(_ option: Amber_InetSocketOption, _ value: [UInt8]) -> [UInt8] {
        guard option.level == ImageFormat.socketLevel,
            option.name == ImageFormat.sendBufferOption || option.name == ImageFormat.receiveBufferOption
        else { return value }
        let kept = value.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
        return withUnsafeBytes(of: kept / 2) { Array($0) }
    }
}

extension InetSocketKind {
    /// Refuses an inet socket of the tree that a process outside the tree holds too: the
    /// tree's copy would be a socket of its own, and the two would no longer share connections
    /// or datagrams. Looks outside the tree only when the tree holds one; kcmp tells the
    /// descriptions apart.
    static func check(tree processes: [CheckedProcess]) throws {
        var inOrder: [(process: CheckedProcess, fd: Int32, link: String)] = []
        for process in processes {
            for probe in try process.probes() where probe.link.hasPrefix("socket:") {
                guard let family = try? probe.socketFamily(), family == AF_INET || family == AF_INET6 else { continue }
                inOrder.append((process, probe.fd, probe.link))
            }
        }
        guard let root = processes.first, !inOrder.isEmpty else { return }
        try checkDiagnoses(inOrder, root: root)
        let held = Dictionary(grouping: inOrder, by: \.link).mapValues { $0.map { ($0.process, $0.fd) } }
        try OutsideDescriptors.refuseShared(held: held, processes: processes) { treeFD, link, pid, fd in
            "has fd \(treeFD) on the inet socket \(link), which process \(ProcessName(pid: pid)) outside the tree holds too (its fd \(fd)): it is restored only when no process outside the tree shares it"
        }
    }

    /// Refuses what only inet_diag shows of the tree's sockets: a TCP socket with MD5 signature
    /// keys (TCP_MD5SIG), which the restore would not set (the restored socket would sign nothing
    /// and drop its peer's signed segments), shown only to CAP_NET_ADMIN over the tree's
    /// network namespace (a dump without it, a user's of its own tree, cannot see them); and a
    /// socket shut down (shutdown(2)) while not an established TCP connection (a UDP socket, or
    /// a TCP socket before it connected), which the restore would not shut down again.
    private static func checkDiagnoses(
        _ held: [(process: CheckedProcess, fd: Int32, link: String)], root: CheckedProcess
    ) throws {
        let (tcp, udp) = try NetworkNamespace.of(pid: root.pid).inside {
            var tcp: [UInt64: InetSocketDiagnosis] = [:]
            var udp: [UInt64: InetSocketDiagnosis] = [:]
            for family in [AF_INET, AF_INET6] {
                tcp.merge(try InetDiagnosis.all(family: family)) { first, _ in first }
                udp.merge(try InetDiagnosis.all(family: family, protocol: Int32(IPPROTO_UDP))) { first, _ in first }
            }
            return (tcp, udp)
        }
        for (process, fd, link) in held {
            guard let inode = UnixSocketKind.socketInode(link) else { continue }
            if tcp[inode]?.hasMD5Keys == true {
                throw AmberError.unsupported(
                    process.name,
                    "has fd \(fd) on the TCP socket \(link), which has TCP MD5 signature keys (TCP_MD5SIG): they are not restored, and a restored socket would sign nothing",
                    tree: process.tree)
            }
            let shutdown =
                udp[inode]?.shutdown ?? tcp[inode].map { $0.state == InetDiagnosis.established ? 0 : $0.shutdown } ?? 0
            if shutdown != 0 {
                throw AmberError.unsupported(
                    process.name,
                    "has fd \(fd) open on an inet socket (\(link)), shut down (shutdown(2), how \(shutdown - 1)) while not an established TCP connection: not restored",
                    tree: process.tree)
            }
        }
    }

    /// Binding below net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE, SO_PRIORITY
    /// above 6 CAP_NET_ADMIN, and an owner other than the task's own CAP_CHOWN: the restorer
    /// binds and sets them with its own privilege.
    static func privilegedAsks(_ record: Amber_InetSocket, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    {
        var asks: [PrivilegedAsk] = []
        if record.state != .fresh, record.port != 0, record.port < InetSocket.unprivilegedPortStart() {
            asks.append(
                PrivilegedAsk(
                    what: "a socket bound to the privileged port \(record.port)",
                    capabilities: [Capability.netBindService]))
        }
        for option in record.options
        where option.level == ImageFormat.socketLevel && option.name == ImageFormat.socketPriorityOption
            && option.value.count == 4
        {
            let priority = option.value.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
            if priority > ImageFormat.unprivilegedSocketPriority || priority < 0 {
                asks.append(
                    PrivilegedAsk(
                        what: "a socket of SO_PRIORITY \(priority)",
                        capabilities: [Capability.netAdmin, Capability.netRaw]
                    ))
            }
        }
        if record.ownerUid != owner.fsuid || record.ownerGid != owner.fsgid {
            asks.append(
                PrivilegedAsk(
                    what:
                        "a socket owned by uid \(record.ownerUid), gid \(record.ownerGid), other than its own \(owner.fsuid), \(owner.fsgid)",
                    capabilities: [Capability.chown]))
        }
        return asks
    }
}
