import AmberImage
import Dispatch
import FoundationEssentials
import Glibc
import LinuxKit
import Synchronization
import SystemPackage

/// An established TCP connection (AF_INET, AF_INET6), restored only when the dump is asked to
/// (`--tcp-established`, CRIU's flag), with TCP_REPAIR as CRIU's libsoccr does. The dump adds
/// the connection to the network lock (`NetworkLock`: its packets are dropped both ways), puts
/// it in repair mode, and reads, without consuming anything: its sequence numbers, both
/// queues (the send queue with what was sent and not acknowledged, and what was never sent),
/// MSS, window scales, SACK, timestamps and window, its options and buffer sizes. The
/// connection stays in repair mode (so closing it with the killed tree sends nothing) and
/// blocked until the restore; with `--leave-running`, or when the dump fails, it leaves repair
/// mode and the lock goes. The restore makes it in repair mode: sequence numbers, bind,
/// connect (no packet), options, queues, window; it leaves repair mode with a window probe,
/// sends what had never been sent, and the lock goes once the tree is restored
/// (`Restore.run`). A connection in another state (SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT,
/// LAST_ACK, CLOSING) is refused by `InetSocketKind`, naming it; one with urgent data or an
/// error pending is refused here.
struct TcpConnectionKind: OpenFileKind {
    let identity: OpenFileIdentity
    let local: InetAddress
    let peer: InetAddress
    let record: Amber_TcpConnection

    /// Options whose value on a connection is the kernel's, not the program's choice: the
    /// buffers and the MSS (TCP_MAXSEG) are recorded apart; SO_INCOMING_CPU follows from the
    /// traffic (TCP_WINDOW_CLAMP and TCP_QUICKACK do too, or the program set them: either way
    /// they are recorded and set again as they were); an accepted connection's IP_MULTICAST_TTL,
    /// IPV6_MULTICAST_HOPS and IPV6_MULTICAST_IF are the hop limit and interface of its SYN,
    /// which setsockopt refuses on a stream socket; IPV6_V6ONLY is set by binding to an IPv6
    /// address that is not v4-mapped, as the restore does.
    private static let connectionOptions: Set<[Int32]> = [
        [ImageFormat.socketLevel, ImageFormat.sendBufferOption],
        [ImageFormat.socketLevel, ImageFormat.receiveBufferOption],
        [ImageFormat.socketLevel, ImageFormat.bufferLockOption], [ImageFormat.tcpLevel, 2],
        [ImageFormat.socketLevel, 49],
        [ImageFormat.ipLevel, 33], [ImageFormat.ipv6Level, 18], [ImageFormat.ipv6Level, 17],
        [ImageFormat.ipv6Level, 26],
    ]

    static func classify(_ descriptor: DescriptorProbe) throws -> TcpConnectionKind? {
        guard descriptor.link.hasPrefix("socket:") else { return nil }
        let family = try descriptor.socketFamily()
        guard family == AF_INET || family == AF_INET6 else { return nil }
        let socket = try descriptor.duplicate()
        defer { try? socket.close() }
        let fd = socket.rawValue
        guard try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_TYPE) == InetSocket.stream,
            try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_PROTOCOL) == InetSocket.tcp,
            try InetSocket.tcpState(fd).state == TcpRepair.established,
            let local = try InetSocket.localAddress(fd), let peer = try InetSocket.peerAddress(fd)
        else { return nil }
        let what =
            "\(family == AF_INET ? "an inet" : "an inet6") socket (\(descriptor.link)), a TCP connection from \(local) to \(peer) in state ESTABLISHED"
        guard TcpConnectionDump.isAsked else {
            throw AmberError.unsupported(
                descriptor.process,
                "has fd \(descriptor.fd) open on \(what): established connections are restored only by a dump with --tcp-established (TCP_REPAIR, with their packets blocked until the restore)",
                tree: descriptor.tree)
        }
        // Another process's descriptor of a connection this dump holds in repair mode already (a
        // description shared across fork): classified before, and dumped once, with the first.
        let held = try descriptor.status()
        if TcpConnectionDump.holds(inode: held.inode) {
            return TcpConnectionKind(
                identity: OpenFileIdentity(device: held.device, inode: held.inode), local: local, peer: peer,
                record: Amber_TcpConnection())
        }
        try TcpConnectionDump.prepareLock(tree: descriptor.tree?.pid ?? descriptor.pid)
        try descriptor.checkEventFileFlags(what)
        try InetSocketKind.checkNamespace(fd, descriptor: descriptor, what: what)
        guard try InetSocket.readiness(fd) & Int16(POLLPRI | POLLERR) == 0 else {
            throw descriptor.refusal("\(what), with urgent data (MSG_OOB) or an error pending")
        }
        // The dump's MSG_PEEK of the queues would go from, and move, a peek offset (a kernel
        // before 6.8 has none for TCP: EOPNOTSUPP).
        guard (try? InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_PEEK_OFF)) ?? -1 < 0 else {
            throw descriptor.refusal("\(what), with a peek offset (SO_PEEK_OFF)")
        }
        var socketRecord = Amber_InetSocket()
        socketRecord.family = family
        socketRecord.type = InetSocket.stream
        socketRecord.protocol = InetSocket.tcp
        var record = Amber_TcpConnection()
        record.family = family
        record.localAddress = Data(local.address)
        record.localPort = UInt32(local.port)
        record.peerAddress = Data(peer.address)
        record.peerPort = UInt32(peer.port)
        record.scopeID = local.scopeID
        record.options = try InetSocketKind.options(
            fd, of: socketRecord, descriptor: descriptor, what: "\(what),", kernelSet: connectionOptions
        ).filter { !connectionOptions.contains([$0.level, $0.name]) }
        if let counter = InetSocketKind.sendCounter(in: record.options) {
            throw descriptor.refusal("\(what), with \(counter)")
        }
        if Self.stampsReceived(record.options), try InetSocket.heldBytes(fd).received > 0 {
            throw descriptor.refusal("\(what), \(Self.stampedQueue)")
        }
        let status = try descriptor.status()
        record.ownerUid = status.uid
        record.ownerGid = status.gid
        return TcpConnectionKind(
            identity: OpenFileIdentity(device: status.device, inode: status.inode), local: local, peer: peer,
            record: record)
    }

    /// Blocks the connection, puts it in repair mode and reads what it holds.
    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let socket = try descriptor.duplicate()
        let fd = socket.rawValue
        let what = "the TCP connection from \(local) to \(peer) (fd \(descriptor.fd) of process \(descriptor.process))"
        var record = record
        // Leaving repair mode clears SO_REUSEADDR: `TcpConnectionDump` sets it back.
        let reuse = try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR)
        record.lockTable = try TcpConnectionDump.hold(
            socket, reuseAddress: reuse, local: local, peer: peer, tree: descriptor.tree?.pid ?? descriptor.pid,
            what: what)
        do {
            record.sendBuffer = UInt32(bitPattern: try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_SNDBUF))
            record.receiveBuffer = UInt32(bitPattern: try InetSocket.intOption(fd, level: SOL_SOCKET, name: SO_RCVBUF))
            record.bufferLock = UInt32(
                bitPattern: try InetSocket.intOption(fd, level: SOL_SOCKET, name: TcpRepair.bufferLock))
            record.readShutDown = try InetSocket.readiness(fd) & InetSocket.peerHangUp != 0
            let negotiated = try TcpRepair.negotiated(fd)
            record.timestamps = negotiated.timestamps
            record.sack = negotiated.sack
            record.windowScaling = negotiated.windowScaling
            record.sendWindowScale = negotiated.sendWindowScale
            record.receiveWindowScale = negotiated.receiveWindowScale
            record.mss = try TcpRepair.mss(fd)
            if negotiated.timestamps { record.timestamp = try TcpRepair.timestamp(fd) }
            let window = try TcpRepair.window(fd)
            record.sendWl1 = window.sendWL1
            record.sendWindow = window.sendWindow
            record.maxWindow = window.maxWindow
            record.receiveWindow = window.receiveWindow
            record.receiveWup = window.receiveWUP
            let queued = try TcpRepair.queued(fd)
            try TcpRepair.select(fd, .receive)
            record.receiveSequence = try TcpRepair.sequence(fd)
            record.receiveQueue = Data(try TcpRepair.peek(fd, length: queued.received))
            if Self.stampsReceived(record.options), !record.receiveQueue.isEmpty {
                throw AmberError.unsupported(
                    descriptor.process, "has fd \(descriptor.fd) open on \(what), \(Self.stampedQueue)",
                    tree: descriptor.tree)
            }
            try TcpRepair.select(fd, .send)
            record.sendSequence = try TcpRepair.sequence(fd)
            record.sendQueue = Data(try TcpRepair.peek(fd, length: queued.toSend))
            record.unsentLength = UInt32(queued.unsent)
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(.failure, "cannot read \(what) in repair mode: \(error)")
        }
        return .tcpConnection(record)
    }

    /// Whether the program asked for the arrival time of what it reads (SO_TIMESTAMP,
    /// SO_TIMESTAMPNS, SO_TIMESTAMPING's receive flags): bytes queued again in repair mode have none.
    private static func stampsReceived(_ options: [Amber_InetSocketOption]) -> Bool {
        options.contains { option in
            guard option.level == ImageFormat.socketLevel, option.value.count >= 4 else { return false }
            let value = option.value.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            switch option.name {
            case InetSocketKind.timestampOption, InetSocketKind.timestampNanosecondsOption: return value != 0
            case InetSocketKind.timestampingOption: return value & InetSocketKind.timestampingReceived != 0
            default: return false
            }
        }
    }

    private static let stampedQueue =
        "with bytes queued to read and their arrival times asked for (SO_TIMESTAMP, SO_TIMESTAMPNS or SO_TIMESTAMPING): bytes queued again at restore have none"

    static func record(of description: Amber_OpenFileDescription) -> Amber_TcpConnection? {
        guard case .tcpConnection(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_TcpConnection) -> String? { nil }

    static func make(
        _ record: Amber_TcpConnection, description: Amber_OpenFileDescription, as task: Amber_Task,
        imageTrusted: Bool, objects: OpenFileObjects
    ) throws -> Int32 {
        let local = InetAddress(
            family: record.family, address: [UInt8](record.localAddress), port: UInt16(record.localPort),
            scopeID: record.scopeID)
        let peer = InetAddress(
            family: record.family, address: [UInt8](record.peerAddress), port: UInt16(record.peerPort),
            scopeID: record.scopeID)
        let what = "the TCP connection from \(local) to \(peer) of open file \(description.id) for process \(task.pid)"
        try lockHere(record, local, peer)
        let socket: FileDescriptor
        do {
            socket = try InetSocket.make(
                family: record.family, type: InetSocket.stream, protocol: InetSocket.tcp,
                nonBlocking: description.isNonBlocking)
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
        do {
            try connect(socket.rawValue, record, local: local, peer: peer, what: what)
        } catch {
            try? socket.close()
            throw error
        }
        return socket.rawValue
    }

    /// Makes `fd` the connection again: in repair mode, its sequence numbers, address, peer,
    /// negotiated options, queues and window; out of it, what was never sent, its options.
    private static func connect(
        _ fd: Int32, _ record: Amber_TcpConnection, local: InetAddress, peer: InetAddress, what: String
    ) throws {
        var owner = Amber_InetSocket()
        owner.state = .fresh
        owner.ownerUid = record.ownerUid
        owner.ownerGid = record.ownerGid
        try InetSocketKind.configure(fd, owner, what: what)
        let sendQueue = [UInt8](record.sendQueue)
        let sent = sendQueue.count - Int(record.unsentLength)
        var step = "TCP_REPAIR"
        do {
            try TcpRepair.enter(fd)
            // The queues written again take more memory than they did (other skb sizes): the
            // buffers are made room enough for them, and get their own size once they are in.
            step = "room for its queues"
            try InetSocket.setOption(
                fd, level: SOL_SOCKET, name: TcpRepair.sendBufferForce,
                value: half(room(record.sendBuffer, sendQueue.count)))
            try InetSocket.setOption(
                fd, level: SOL_SOCKET, name: TcpRepair.receiveBufferForce,
                value: half(room(record.receiveBuffer, record.receiveQueue.count)))
            // The MSS the connection sends with (mss_cache) is computed when it connects, from
            // the MSS clamp: TCP_MAXSEG gives it the clamp then (TCP_REPAIR_OPTIONS sets the
            // clamp only after), up to the 32767 TCP_MAXSEG takes; an established connection
            // shows its mss_cache, not this.
            step = "its MSS"
            try InetSocket.setOption(
                fd, level: InetSocket.tcp, name: 2,
                value: withUnsafeBytes(of: Int32(min(record.mss, TcpRepair.largestUserMSS))) { Array($0) })
            step = "its sequence numbers"
            try TcpRepair.select(fd, .receive)
            try TcpRepair.setSequence(fd, record.receiveSequence &- UInt32(record.receiveQueue.count))
            try TcpRepair.select(fd, .send)
            try TcpRepair.setSequence(fd, record.sendSequence &- UInt32(sendQueue.count))
            step = "its address \(local)"
            try InetSocket.bind(fd, to: local)
            step = "its peer \(peer)"
            try TcpRepair.connect(fd, to: peer)
            step = "its MSS and negotiated options"
            try TcpRepair.setOptions(
                fd, mss: record.mss,
                negotiated: TcpRepair.Negotiated(
                    timestamps: record.timestamps, sack: record.sack, windowScaling: record.windowScaling,
                    sendWindowScale: record.sendWindowScale, receiveWindowScale: record.receiveWindowScale))
            if record.timestamps { try TcpRepair.setTimestamp(fd, record.timestamp) }
            step = "its receive queue"
            try TcpRepair.select(fd, .receive)
            try TcpRepair.write(fd, [UInt8](record.receiveQueue))
            step = "its send queue"
            try TcpRepair.select(fd, .send)
            try TcpRepair.write(fd, Array(sendQueue.prefix(sent)))
            step = "its window"
            try TcpRepair.setWindow(
                fd,
                TcpRepair.Window(
                    sendWL1: record.sendWl1, sendWindow: record.sendWindow, maxWindow: record.maxWindow,
                    receiveWindow: record.receiveWindow, receiveWUP: record.receiveWup))
            step = "leaving repair mode"
            try TcpRepair.leave(fd, probe: true)
            step = "what it had not sent"
            try TcpRepair.write(fd, Array(sendQueue.dropFirst(sent)))
            step = "its buffer sizes"
            try InetSocket.setOption(
                fd, level: SOL_SOCKET, name: TcpRepair.sendBufferForce, value: half(record.sendBuffer))
            try InetSocket.setOption(
                fd, level: SOL_SOCKET, name: TcpRepair.receiveBufferForce, value: half(record.receiveBuffer))
            step = "SO_BUF_LOCK"
            try InetSocket.setOption(
                fd, level: SOL_SOCKET, name: TcpRepair.bufferLock,
                value: withUnsafeBytes(of: record.bufferLock) { Array($0) })
            if record.readShutDown {
                step = "shutdown(SHUT_RD)"
                guard shutdown(fd, Int32(SHUT_RD)) == 0 else { throw LinuxError.current("shutdown") }
            }
        } catch let error as LinuxError {
            if error.errno == .notPermitted {
                throw AmberError(
                    .permissionDenied, "cannot make \(what) in repair mode (\(step)): TCP_REPAIR needs CAP_NET_ADMIN")
            }
            if error.errno == .addressNotAvailable {
                throw AmberError(
                    .restoreFailed,
                    "cannot make \(what) (\(step)): the connection exists here already (the dumped process itself if it was dumped with --leave-running and still runs)"
                )
            }
            throw AmberError(.restoreFailed, "cannot make \(what) (\(step)): \(error)")
        }
        var options = Amber_InetSocket()
        options.state = .fresh
        options.options = record.options
        options.ownerUid = record.ownerUid
        options.ownerGid = record.ownerGid
        try InetSocketKind.configure(fd, options, what: what)
    }

    /// A buffer size that holds `queued` bytes written again, whatever their skbs' overhead.
    private static func room(_ size: UInt32, _ queued: Int) -> UInt32 {
        UInt32(min(Int(Int32.max), max(Int(size), 4 * queued + (1 << 20))))
    }

    /// What SO_SNDBUFFORCE and SO_RCVBUFFORCE take for the size the kernel keeps: half of it.
    private static func half(_ kept: UInt32) -> [UInt8] {
        withUnsafeBytes(of: Int32(bitPattern: kept / 2)) { Array($0) }
    }

    /// Making a connection in repair mode is CAP_NET_ADMIN's: the packets it then sends come
    /// from whatever address and sequence numbers the image says. An image not authenticated
    /// gets it only when the task's own credentials hold it; binding a privileged port and an
    /// owner other than the task's ask for theirs.
    static func privilegedAsks(
        _ record: Amber_TcpConnection, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline
    ) -> [PrivilegedAsk] {
        var asks = [
            PrivilegedAsk(
                what:
                    "a TCP connection made again with TCP_REPAIR from port \(record.localPort) to port \(record.peerPort)",
                capabilities: [Capability.netAdmin])
        ]
        if record.localPort < InetSocket.unprivilegedPortStart() {
            asks.append(
                PrivilegedAsk(
                    what: "a socket bound to the privileged port \(record.localPort)",
                    capabilities: [Capability.netBindService]))
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

    /// The restores' TCP locks, by the dump's table: each image names its own, so restores of
    /// different images in one process keep apart.
    private struct RestoreLock {
        /// The connections locked where they are made (`prepareLocks`), by their ends.
        var connections: Set<[UInt8]> = []
        /// Whether this restore made the table in the namespace its sockets are made in.
        var madeHere = false
        /// The table and its chains being made beside the restore.
        var preparation: DispatchGroup?
    }
    private static let restoreLocks = Mutex<[String: RestoreLock]>([:])

    /// A connection's ends as one key: its local address and port, then its peer's.
    private static func ends(_ record: Amber_TcpConnection, reversed: Bool = false) -> [UInt8] {
        let local = [UInt8](record.localAddress) + withUnsafeBytes(of: record.localPort) { Array($0) }
        let peer = [UInt8](record.peerAddress) + withUnsafeBytes(of: record.peerPort) { Array($0) }
        return reversed ? peer + local : local + peer
    }

    /// The connections of `tasks`' records.
    private static func connections(of tasks: [Amber_Task]) -> [Amber_TcpConnection] {
        tasks.flatMap { $0.files.descriptions.compactMap { record(of: $0) } }
    }

    /// Chooses the connections of `tasks` to lock where the restore makes them, and starts
    /// making those locks' tables and chains in the calling thread's network namespace beside
    /// the restore (hooking a chain waits for an RCU grace period). The dump's lock is in the
    /// namespace the dump ran in: in one the restore makes for the tree (`namespaceMade`) every
    /// connection is locked again, or its peer's stack, once reachable, resets it before it is
    /// made; elsewhere a connection whose two ends are both in the tree is, which the first of
    /// them made would otherwise reset by its window probe to the other, not made yet.
    static func prepareLocks(_ tasks: [Amber_Task], namespaceMade: Bool) {
        let connections = connections(of: tasks)
        let all = Set(connections.map { ends($0) })
        let locked = connections.filter { namespaceMade || all.contains(ends($0, reversed: true)) }
        let tables = Set(locked.map(\.lockTable))
        let namespace = tables.isEmpty ? nil : try? NetworkNamespace.ofThisThread()
        let preparing = namespace.map { _ in DispatchGroup() }
        restoreLocks.withLock { locks in
            // What an earlier, failed restore of this image chose is replaced.
            for table in Set(connections.map(\.lockTable)) { locks[table] = nil }
            for connection in locked {
                locks[connection.lockTable, default: RestoreLock(preparation: preparing)].connections.insert(
                    ends(connection))
            }
        }
        guard let namespace, let preparing else { return }
        preparing.enter()
        DispatchQueue.global().async {
            defer { preparing.leave() }
            _ = try? namespace.inside {
                for table in tables.sorted() {
                    let lock = NetworkLock(table: table)
                    guard !lock.exists() else { continue }
                    try lock.prepare()
                    restoreLocks.withLock { $0[table]?.madeHere = true }
                }
            }
        }
    }

    /// Blocks the connection where its socket is about to be made, if `prepareLocks` chose it;
    /// nothing is added where the dump's own lock is.
    private static func lockHere(_ record: Amber_TcpConnection, _ local: InetAddress, _ peer: InetAddress)
        throws(AmberError)
    {
        guard let chosen = restoreLocks.withLock({ $0[record.lockTable] }), chosen.connections.contains(ends(record))
        else { return }
        chosen.preparation?.wait()
        let lock = NetworkLock(table: record.lockTable)
        let madeHere = restoreLocks.withLock { $0[record.lockTable]?.madeHere ?? false }
        if !madeHere {
            guard !lock.exists() else { return }
            restoreLocks.withLock { $0[record.lockTable]?.madeHere = true }
        }
        try lock.block(local, peer)
    }

    /// Once the tree is restored: the locks of its connections go, and their packets flow, in
    /// the namespace the tree is in and in ours.
    static func unlock(_ tasks: [Amber_Task]) throws(AmberError) {
        let tables = Set(connections(of: tasks).map(\.lockTable))
        let treeNamespace = tasks.first.map { "/proc/\($0.pid)/ns/net" }
        for table in tables.sorted() {
            if let treeNamespace { try NetworkLock(table: table, namespace: treeNamespace).remove() }
            try NetworkLock(table: table).remove()
        }
        restoreLocks.withLock { locks in
            for table in tables { locks[table] = nil }
        }
    }
}

/// The dump's side of `--tcp-established`, for the one dump this process runs at a time:
/// whether it was asked, and the connections it holds in repair mode behind its lock.
enum TcpConnectionDump {
    private struct Held {
        let socket: FileDescriptor
        let reuseAddress: Int32
        let inode: UInt64
    }

    private struct State {
        var asked = false
        var lock: NetworkLock?
        var held: [Held] = []
    }

    private static let state = Mutex(State())

    static var isAsked: Bool { state.withLock { $0.asked } }

    /// Whether this dump holds the connection of socket `inode` in repair mode.
    static func holds(inode: UInt64) -> Bool { state.withLock { $0.held.contains { $0.inode == inode } } }

    /// A dump starts: whether established connections are to be restored.
    static func begin(asked: Bool) {
        state.withLock { $0 = State(asked: asked) }
    }

    /// Once the dump has found a connection to hold: the lock's table and chains are made
    /// while the tree still runs (`NetworkLock.prepare`), once per dump.
    static func prepareLock(tree root: Int32) throws(AmberError) {
        let lock = NetworkLock.ofThisProcess(tree: root)
        let first = state.withLock { state in
            defer { state.lock = lock }
            return state.lock == nil
        }
        if first { try lock.prepare() }
    }

    /// Blocks the connection of `socket` (ours, which this keeps) and puts it in repair mode,
    /// in the network namespace of the tree of `root`; returns the lock's table.
    static func hold(
        _ socket: FileDescriptor, reuseAddress: Int32, local: InetAddress, peer: InetAddress, tree root: Int32,
        what: String
    ) throws -> String {
        let lock = NetworkLock.ofThisProcess(tree: root)
        let inode = try FileStatus.fstat(fd: socket.rawValue).inode
        state.withLock {
            $0.lock = lock
            $0.held.append(Held(socket: socket, reuseAddress: reuseAddress, inode: inode))
        }
        try lock.block(local, peer)
        do throws(LinuxError) {
            try TcpRepair.enter(socket.rawValue)
        } catch {
            throw AmberError(
                error.errno == .notPermitted ? .permissionDenied : .failure,
                "cannot put \(what) in repair mode: \(error)\(error.errno == .notPermitted ? " (TCP_REPAIR needs CAP_NET_ADMIN)" : "")"
            )
        }
        return lock.table
    }

    /// The dump is over. With `keepLock` (the tree was killed) the connections stay blocked
    /// for the restore and ours are closed in repair mode, which sends nothing; otherwise (the
    /// tree goes on, or the dump failed) the lock goes and each connection leaves repair mode
    /// with a window probe, which has the peer send again what the lock dropped. Returns the
    /// table of the lock kept, if any.
    @discardableResult
    static func finish(keepLock: Bool) throws(AmberError) -> String? {
        let (lock, held) = state.withLock { state in
            defer { state = State() }
            return (state.lock, state.held)
        }
        var failure: AmberError?
        if !keepLock {
            do { try lock?.remove() } catch { failure = error }
            for connection in held {
                let fd = connection.socket.rawValue
                do {
                    try TcpRepair.leave(fd, probe: true)
                    try InetSocket.setOption(
                        fd, level: SOL_SOCKET, name: SO_REUSEADDR,
                        value: withUnsafeBytes(of: connection.reuseAddress) { Array($0) })
                } catch {
                    failure =
                        failure ?? AmberError(.failure, "cannot take a TCP connection out of repair mode: \(error)")
                }
            }
        }
        for connection in held { try? connection.socket.close() }
        if let failure { throw failure }
        return keepLock ? lock?.table : nil
    }
}
