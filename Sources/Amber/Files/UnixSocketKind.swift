import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Synchronization
import SystemPackage

/// A unix socket ("socket:[INODE]" of family AF_UNIX), as CRIU's sk-unix.c: unconnected and
/// unbound, or one of a connected pair whose other socket the tree holds too (a socketpair) or
/// that is gone. What sock_diag shows of every socket (type, state, peer, queue lengths,
/// shutdown) is read once per pass of the dump (`UnixSocketTable`); each socket's receive queue
/// is copied without being consumed (`UnixSockets.peekQueue`) and sent again through its peer
/// at restore, datagrams one by one. Its options that change behaviour come back or are refused.
struct UnixSocketKind: OpenFileKind {
    let identity: OpenFileIdentity
    let socket: UnixSocketDiagnosis

    /// CRIU's name of the socket the tree holds, as its /proc link shows it: `--external` leaves
    /// it outside, and `--inherit-fd fd[N]:unix:[INODE]` puts the caller's socket in its place.
    var externalName: String? { Self.externalName(inode: socket.inode) }

    private static func externalName(inode: UInt64) -> String { "unix:[\(inode)]" }

    static func classify(_ descriptor: DescriptorProbe) throws -> UnixSocketKind? {
        guard let inode = socketInode(descriptor.link) else { return nil }
        guard let socket = try UnixSocketTable.shared.socket(inode, pid: descriptor.pid, fd: descriptor.fd) else {
            return nil
        }
        if let refusal = refusal(of: socket, in: UnixSocketTable.shared.snapshot()) {
            throw descriptor.refusal("a unix socket (\(descriptor.link)) \(refusal)")
        }
        return UnixSocketKind(identity: try descriptor.identity(), socket: socket)
    }

    /// The inode of "socket:[INODE]".
    static func socketInode(_ link: String) -> UInt64? {
        guard link.hasPrefix("socket:["), link.hasSuffix("]") else { return nil }
        return UInt64(link.dropFirst("socket:[".count).dropLast())
    }

    /// Why `socket` is not restored, from what sock_diag shows of it and of every other socket;
    /// nil when it is.
    static func refusal(of socket: UnixSocketDiagnosis, in table: UnixSocketTable.Snapshot) -> String? {
        let stream = socket.type == Int32(SOCK_STREAM.rawValue)
        let datagram = socket.type == Int32(SOCK_DGRAM.rawValue)
        guard stream || datagram || socket.type == Int32(SOCK_SEQPACKET.rawValue) else {
            return "of socket type \(socket.type)"
        }
        if datagram, socket.shutdown & UnixSocketDiagnosis.receiveShutdown != 0 {
            return "shut down for reading, a datagram socket whose queue cannot be told from its end: not restored"
        }
        if socket.pendingConnections.contains(0) {
            return
                "listening with a connection waiting whose client has closed (what the client sent is only in that connection, which accept(2) alone reads): not restored"
        }
        if let listener = table.listeners[socket.inode] {
            if socket.shutdown != 0 || socket.sendQueue != 0 {
                return
                    "connected to the listener unix:[\(listener)] and not accepted yet, \(socket.sendQueue != 0 ? "with data sent that only the connection's other side holds" : "shut down"): not restored"
            }
            return nil
        }
        if let name = socket.name {
            if socket.peer != nil && table.listener(accepting: socket) == nil {
                if table.listener(named: socket) != nil {
                    let peerGone = socket.peer.flatMap { table.sockets[$0] } == nil
                    return
                        "accepted from the listener at \(describe(name)), its client \(peerGone ? "closed since" : "bound to an address of its own"): not restored"
                }
                return
                    "bound to \(describe(name)) and connected (accepted from a listener closed since, or connected once bound): not restored"
            }
            if name.first != 0 && name.first != UInt8(ascii: "/") {
                return "bound to the relative path \(describe(name)): not restored"
            }
        }
        return nil
    }

    /// Why `socket` is not restored with the socket it is connected to, which the tree holds.
    static func peerRefusal(of socket: UnixSocketDiagnosis, in table: UnixSocketTable.Snapshot) -> String? {
        guard table.listeners[socket.inode] == nil, let peerInode = socket.peer, peerInode != 0,
            let peer = table.sockets[peerInode]
        else { return nil }
        if peer.peer != socket.inode {
            return
                "connected to unix:[\(peerInode)]\(peer.name.map { " (\(describe($0)))" } ?? ""), which is not connected back to it: not restored yet"
        }
        if let name = peer.name, table.listener(accepting: peer) == nil {
            return
                "connected to unix:[\(peerInode)], bound to \(describe(name)) (accepted from a listener closed since, or connected once bound): not restored"
        }
        return nil
    }

    /// A unix address as messages show it: the path, or "@name" for an abstract one.
    static func describe(_ name: [UInt8]) -> String {
        if name.first == 0 { return "the abstract address @" + String(decoding: name.dropFirst(), as: UTF8.self) }
        return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        let copy = try descriptor.duplicate()
        defer { try? copy.close() }
        let table = UnixSocketTable.shared.snapshot()
        var record = Amber_UnixSocket()
        record.inode = socket.inode
        record.type = socket.type
        record.shutdown = UInt32(socket.shutdown)
        if let listener = table.listeners[socket.inode] {
            record.listenerInode = listener
        } else if let peer = socket.peer {
            let alive = peer != 0 && table.sockets[peer] != nil
            record.peerInode = alive ? peer : 0
            record.pairID = alive ? min(peer, socket.inode) : socket.inode
            let accepting = table.listener(accepting: socket) ?? table.sockets[peer].flatMap(table.listener(accepting:))
            if let listener = accepting { record.acceptedFrom = listener }
        }
        if let name = socket.name, record.acceptedFrom == 0 {
            // A path without the NUL bind(2) keeps after it; an abstract name with every byte.
            record.address = Data(name.first == 0 ? name : Array(name.prefix { $0 != 0 }))
            if name.first != 0 { try recordSocketFile(&record, path: Self.describe(name), descriptor) }
        }
        if socket.state == UnixSocketDiagnosis.listening {
            record.listening = true
            record.backlog = socket.sendQueue
            record.pendingConnections = socket.pendingConnections
            record.acceptedConnections = UnixSocketTable.shared.acceptedInTree(from: socket.inode)
        }
        record.passCredentials = try UnixSockets.option(copy, UnixSockets.passCredentials) != 0
        UnixSocketTable.shared.remember(socket.inode, passesCredentials: record.passCredentials)
        record.passSecurity = try UnixSockets.option(copy, UnixSockets.passSecurity) != 0
        // sock_diag read the buffer sizes of the frozen tree's sockets with the rest.
        record.sendBuffer =
            try socket.sendBuffer ?? UInt32(bitPattern: UnixSockets.option(copy, UnixSockets.sendBuffer))
        record.receiveBuffer =
            try socket.receiveBuffer ?? UInt32(bitPattern: UnixSockets.option(copy, UnixSockets.receiveBuffer))
        record.peekOffset = try UnixSockets.option(copy, UnixSockets.peekOffset)
        if try UnixSockets.option(copy, UnixSockets.passPidfd) != 0 {
            throw descriptor.refusal("a unix socket (\(descriptor.link)) with SO_PASSPIDFD set")
        }
        record.options = try changedOptions(copy, descriptor)
        let (peerPID, peer) = try UnixSockets.peerCredentials(copy)
        if peerPID != 0 {
            record.peerCredentials.uid = peer.uid
            record.peerCredentials.gid = peer.gid
            record.peerCredentials.groups = peer.groups
        }
        // Before any peek: a receive, even MSG_PEEK, takes the error, which the process would
        // then never see (and a restore cannot give back).
        if try UnixSockets.hasPendingError(copy) {
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) with an error pending (its peer reset the connection)")
        }
        // A seqpacket socket never connected has no queue to peek (ENOTCONN).
        let neverConnected = socket.type == Int32(SOCK_SEQPACKET.rawValue) && socket.peer == nil
        if !record.listening && !neverConnected
            && (socket.type != Int32(SOCK_STREAM.rawValue) || socket.receiveQueue > 0)
        {
            let queue = try UnixSockets.peekQueue(
                copy, type: socket.type, queued: socket.receiveQueue,
                shutDown: socket.shutdown & UnixSocketDiagnosis.receiveShutdown != 0, previous: record.peekOffset)
            if queue.holdsOutOfBand {
                throw descriptor.refusal(
                    "a unix socket (\(descriptor.link)) whose queue holds an out-of-band byte (MSG_OOB): not restored")
            }
            if queue.carriesDescriptors {
                throw descriptor.refusal(
                    "a unix socket (\(descriptor.link)) whose queue holds descriptors in flight (SCM_RIGHTS)")
            }
            if !queue.messages.isEmpty {
                if record.pairID == 0 {
                    throw descriptor.refusal(
                        "a unix socket (\(descriptor.link)) holding \(queue.messages.count) messages but connected to no socket that could send them again"
                    )
                }
                if try record.passCredentials || (record.peerInode != 0 && peerPassesCredentials(descriptor)) {
                    throw descriptor.refusal(
                        "a unix socket (\(descriptor.link)) holding messages with their sender's credentials (SO_PASSCRED): they would come back with amber's"
                    )
                }
            }
            record.messages = queue.messages.map { Data($0) }
        }
        return .unixSocket(record)
    }

    /// What a new unix socket of each type reads for the options `ImageFormat.unixSocketOptions`
    /// and `unixSocketPrivilegedOptions` name.
    private static let newSocketOptions: [Int32: [Int32: [UInt8]]] = {
        var byType: [Int32: [Int32: [UInt8]]] = [:]
        for type in [SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET].map({ Int32($0.rawValue) }) {
            let fd = Glibc.socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            defer { Glibc.close(fd) }
            for (option, _) in ImageFormat.unixSocketOptions + ImageFormat.unixSocketPrivilegedOptions {
                if let bytes = try? UnixSockets.optionBytes(FileDescriptor(rawValue: fd), option) {
                    byType[type, default: [:]][option] = bytes
                }
            }
        }
        return byType
    }()

    /// The options that read otherwise than on a new socket of its type, to be set again;
    /// refused: one only CAP_NET_ADMIN sets, a priority above what any process may give and a
    /// filter (SO_ATTACH_FILTER, SO_ATTACH_BPF). An owner is refused for every kind
    /// (`FileState.dump`).
    private func changedOptions(_ copy: FileDescriptor, _ descriptor: DescriptorProbe) throws -> [Amber_SocketOption] {
        let defaults = Self.newSocketOptions[socket.type] ?? [:]
        for (option, name) in ImageFormat.unixSocketPrivilegedOptions {
            guard let bytes = try UnixSockets.optionBytes(copy, option), bytes != defaults[option] else { continue }
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) with \(name) set, which only a privileged process sets")
        }
        if try UnixSockets.filterLength(copy) != 0 {
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) with a socket filter attached (SO_ATTACH_FILTER or SO_ATTACH_BPF): not restored"
            )
        }
        var changed: [Amber_SocketOption] = []
        for (option, name) in ImageFormat.unixSocketOptions {
            guard let bytes = try UnixSockets.optionBytes(copy, option), bytes != defaults[option] else { continue }
            if option == ImageFormat.unixSocketPriority,
                bytes.withUnsafeBytes({ $0.loadUnaligned(as: Int32.self) }) > ImageFormat.unixSocketPriorityLimit
            {
                throw descriptor.refusal(
                    "a unix socket (\(descriptor.link)) with \(name) above \(ImageFormat.unixSocketPriorityLimit), which needs CAP_NET_ADMIN"
                )
            }
            var changedOption = Amber_SocketOption()
            changedOption.name = option
            changedOption.value = Data(bytes)
            changed.append(changedOption)
        }
        return changed
    }

    /// Whether the peer has SO_PASSCRED set: what it sent then carries its credentials. As its
    /// own dump read it if it came first, else read through the descriptor the table found it by
    /// (through the pidfd of `descriptor`'s process when that holds it, not a pidfd of its own).
    private func peerPassesCredentials(_ descriptor: DescriptorProbe) throws -> Bool {
        guard let peer = socket.peer else { return false }
        if let passes = UnixSocketTable.shared.passesCredentials(peer) { return passes }
        guard let holder = UnixSocketTable.shared.holder(of: peer) else { return false }
        let copy =
            try holder.pid == descriptor.pid
            ? descriptor.duplicate(holder.fd) : Pidfd(pid: holder.pid).duplicate(holder.fd)
        defer { try? copy.close() }
        return try UnixSockets.option(copy, UnixSockets.passCredentials) != 0
    }

    /// The socket file of a socket bound to `path`: it must still be the one it was bound to
    /// (sock_diag's UNIX_DIAG_VFS), reached with no symbolic link, for a restore to make it again.
    private func recordSocketFile(_ record: inout Amber_UnixSocket, path: String, _ descriptor: DescriptorProbe)
        throws
    {
        // The restore binds the image's path from amber's own root: in a container's mount
        // namespace it would be another file.
        guard MountNamespaceState.hostPath(path, of: descriptor.pid) == path else {
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) bound to \(path) in a mount namespace of its own, where amber does not make socket files"
            )
        }
        guard let file = try? FileStatus.lstat(path: path), file.isSocket, file.inode == UInt64(socket.fileInode ?? 0),
            file.device == socket.fileDevice
        else {
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) bound to \(path), whose socket file was since unlinked or replaced")
        }
        guard (try? FileStatus.stat(path: path).inode) == file.inode else {
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) bound to \(path), a path through a symbolic link")
        }
        // The restore binds a new socket file at the path alone: another name of the old one (a
        // hard link) would lead nowhere live.
        guard file.linkCount == 1 else {
            throw descriptor.refusal(
                "a unix socket (\(descriptor.link)) bound to \(path), whose socket file has \(file.linkCount) names (hard links)"
            )
        }
        // A directory reached through a link (/var/run, a link to /run) is recorded as it is
        // reached without one, which the restore opens; the address stays the path bound.
        let directory = BoundAddress.directory(of: path)
        if let opened = try? PathOpening.open(
            directory, flags: Int32(bitPattern: OpenFileFlags.pathOnly.rawValue) | O_DIRECTORY, as: nil)
        {
            Glibc.close(opened)
        } else {
            guard let real = realpath(directory, nil) else {
                throw descriptor.refusal("a unix socket (\(descriptor.link)) bound to \(path), whose directory is gone")
            }
            let linkless = String(cString: real)
            free(real)
            guard
                let there = try? FileStatus.lstat(
                    path: linkless == "/"
                        ? "/\(BoundAddress.name(of: path))" : "\(linkless)/\(BoundAddress.name(of: path))"),
                there.inode == file.inode, there.device == file.device
            else {
                throw descriptor.refusal(
                    "a unix socket (\(descriptor.link)) bound to \(path), whose directory's symbolic links changed since"
                )
            }
            record.fileDirectory = linkless
        }
        record.fileDevice = file.device
        record.fileInode = file.inode
        record.fileMode = file.mode & 0o7777
        record.fileUid = file.uid
        record.fileGid = file.gid
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_UnixSocket? {
        guard case .unixSocket(let record) = description.file else { return nil }
        return record
    }

    static func reopenedPath(of record: Amber_UnixSocket) -> String? { nil }

    static func make(
        _ record: Amber_UnixSocket, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let what = "unix socket \(record.inode) of process \(task.pid)"
        let fd: FileDescriptor
        do {
            if record.listenerInode != 0 {
                let connection = try objects.object(record.inode) { try PendingConnection(type: record.type) }
                fd = try connection.take(record)
            } else if record.listening {
                let listener = try objects.object(record.inode) {
                    try RestoredListener(record, task: task, imageTrusted: imageTrusted, objects: objects)
                }
                fd = try listener.take(record)
            } else if record.acceptedFrom != 0 {
                fd = try AcceptedConnection.take(record, imageTrusted: imageTrusted, objects: objects, what: what)
            } else if record.pairID == 0 {
                fd = try UnixSockets.make(type: record.type)
                do {
                    try RestoredSocketPair.setOptions(fd, record)
                    try RestoredSocketPair.setSendBuffer(fd, record)
                    if !record.address.isEmpty {
                        try BoundAddress(record, task: task, imageTrusted: imageTrusted).bind(
                            fd, record, objects: objects)
                    }
                } catch {
                    try? fd.close()
                    throw error
                }
            } else {
                let pair = try objects.object(record.pairID) { try RestoredSocketPair(record) }
                fd = try pair.take(record, what: what)
            }
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
        if description.isNonBlocking {
            guard fcntl(fd.rawValue, F_SETFL, O_NONBLOCK) == 0 else {
                let error = LinuxError.current("fcntl(F_SETFL)")
                try? fd.close()
                throw AmberError(.restoreFailed, "cannot make \(what) non-blocking: \(error)")
            }
        }
        return fd.rawValue
    }
}

/// A connected pair of unix sockets made again for the tree (socketpair): both are the
/// restorer's until every task has its copies; one no description of the image is on (a peer
/// that was gone) is closed with them.
final class RestoredSocketPair: SharedOpenFileObject {
    private let ends: [FileDescriptor]
    private let type: Int32
    /// The socket of the dump `ends[0]` is for, when the ends are not alike (an accepted socket
    /// and its client); nil when each end goes to whichever socket comes first.
    private let firstEndInode: UInt64?
    /// The index in `ends` each socket of the dump was given, its inode and its record.
    private var taken: [(index: Int, inode: UInt64, record: Amber_UnixSocket)] = []

    init(_ record: Amber_UnixSocket) throws {
        type = record.type
        let pair = try record.asPeer(what: "make unix socket pair \(record.pairID)") { () throws(LinuxError) in
            try UnixSockets.makePair(type: record.type)
        }
        ends = [pair.0, pair.1]
        firstEndInode = nil
    }

    /// The pair of a connection accepted from a listener: `accepted`, which accept(2) gave, for
    /// the socket of `acceptedInode`, and `client`, which connected, for its peer.
    init(accepted: FileDescriptor, client: FileDescriptor, acceptedInode: UInt64, type: Int32) {
        self.type = type
        ends = [accepted, client]
        firstEndInode = acceptedInode
    }

    /// Our descriptor of the socket of `record`, for the caller to close: its queue sent again
    /// through the other end, its options set; once both sockets of the pair are made (or the
    /// one whose peer was gone), their shutdowns and send buffers.
    func take(_ record: Amber_UnixSocket, what: String) throws -> FileDescriptor {
        let index = firstEndInode.map { record.inode == $0 ? 0 : 1 } ?? taken.count
        guard record.type == type, taken.count < 2,
            !taken.contains(where: { $0.inode == record.inode || $0.index == index })
        else {
            throw AmberError(
                .badImage, "\(what): the image describes unix socket pair \(record.pairID) in ways that disagree")
        }
        let end = ends[index]
        let other = ends[1 - index]
        taken.append((index, record.inode, record))
        do {
            if !record.messages.isEmpty {
                // The other end's send buffer bounds what it may queue: at its largest while
                // filling (forced above net.core.wmem_max where the restorer may: a queue
                // filled under SO_SNDBUFFORCE is longer than any other), its own once the pair
                // is complete.
                if (try? UnixSockets.setOption(other, UnixSockets.sendBufferForce, Int32.max / 2)) == nil {
                    try UnixSockets.setOption(other, UnixSockets.sendBuffer, Int32.max / 2)
                }
                for message in record.messages { try UnixSockets.send(other, [UInt8](message)) }
            }
            try Self.setOptions(end, record)
            if record.peerInode == 0 || taken.count == 2 {
                for (index, _, taken) in taken {
                    try Self.setSendBuffer(ends[index], taken)
                    try UnixSockets.shutdown(ends[index], mask: UInt8(taken.shutdown))
                }
            }
            return FileDescriptor(
                rawValue: try libcCall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(end.rawValue, F_DUPFD_CLOEXEC, 0) })
        } catch {
            throw AmberError(.restoreFailed, "cannot make \(what): \(error)")
        }
    }

    /// The options of `record` that are the socket's own: credentials and security passing,
    /// the receive buffer, the peek offset, and the others it changed.
    static func setOptions(_ fd: FileDescriptor, _ record: Amber_UnixSocket) throws {
        if record.passCredentials { try UnixSockets.setOption(fd, UnixSockets.passCredentials, 1) }
        if record.passSecurity { try UnixSockets.setOption(fd, UnixSockets.passSecurity, 1) }
        try setBuffer(fd, record.receiveBuffer, UnixSockets.receiveBuffer)
        if record.peekOffset != -1 { try UnixSockets.setOption(fd, UnixSockets.peekOffset, record.peekOffset) }
        for option in record.options { try UnixSockets.setOption(fd, option.name, bytes: [UInt8](option.value)) }
    }

    /// Gives `fd` the send buffer of `record`, then its SO_BUF_LOCK (an option it may have
    /// changed, or 0): setting a buffer, here or to fill its peer's queue, locks it.
    static func setSendBuffer(_ fd: FileDescriptor, _ record: Amber_UnixSocket) throws {
        try setBuffer(fd, record.sendBuffer, UnixSockets.sendBuffer)
        let lock =
            record.options.first { $0.name == ImageFormat.bufferLockOption }.map { [UInt8]($0.value) } ?? [0, 0, 0, 0]
        if let now = try UnixSockets.optionBytes(fd, ImageFormat.bufferLockOption), now != lock {
            try UnixSockets.setOption(fd, ImageFormat.bufferLockOption, bytes: lock)
        }
    }

    /// Gives the buffer `option` (SO_SNDBUF, SO_RCVBUF) of `fd` the size getsockopt read at the
    /// dump: half of it set, as setsockopt doubles it; forced (CAP_NET_ADMIN, which
    /// `ImagePrivileges` asked for) above net.core's maximum.
    static func setBuffer(_ fd: FileDescriptor, _ size: UInt32, _ option: Int32) throws {
        guard try UnixSockets.option(fd, option) != Int32(bitPattern: size) else { return }
        try UnixSockets.setOption(fd, option, Int32(bitPattern: size / 2))
        if try UnixSockets.option(fd, option) != Int32(bitPattern: size) {
            let force = option == UnixSockets.sendBuffer ? UnixSockets.sendBufferForce : UnixSockets.receiveBufferForce
            try UnixSockets.setOption(fd, force, Int32(bitPattern: size / 2))
        }
        let set = try UnixSockets.option(fd, option)
        guard set == Int32(bitPattern: size) else {
            throw LinuxError(.invalidArgument, "buffer option \(option) came out \(set) bytes instead of \(size)")
        }
    }

    func close() {
        for end in ends { try? end.close() }
    }
}

/// A socket that connected to a listener of the tree and was not accepted yet: made by whichever
/// comes first of its own description and its listener's, which connects it (`BoundAddress`).
final class PendingConnection: SharedOpenFileObject {
    let socket: FileDescriptor
    private var taken = false

    init(type: Int32) throws {
        socket = try UnixSockets.make(type: type)
    }

    /// Our descriptor of it with the options of `record`, for the caller to close.
    func take(_ record: Amber_UnixSocket) throws -> FileDescriptor {
        guard !taken else {
            throw AmberError(.badImage, "the image describes unix socket \(record.inode) twice")
        }
        taken = true
        try RestoredSocketPair.setOptions(socket, record)
        try RestoredSocketPair.setSendBuffer(socket, record)
        return FileDescriptor(
            rawValue: try libcCall("fcntl(F_DUPFD_CLOEXEC)") { fcntl(socket.rawValue, F_DUPFD_CLOEXEC, 0) })
    }

    /// Connects it to the listener at `address` without waiting, leaving its status flags as
    /// they were (its description's own may be set already).
    func connect(to address: [UInt8]) throws(LinuxError) {
        let flags = fcntl(socket.rawValue, F_GETFL)
        guard flags >= 0, fcntl(socket.rawValue, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw LinuxError.current("fcntl(F_SETFL)")
        }
        defer { _ = fcntl(socket.rawValue, F_SETFL, flags) }
        try UnixSockets.attach(socket, to: address, connecting: true)
    }

    func close() { try? socket.close() }
}

/// The address a socket of the image was bound to, bound again: an abstract name as it is; a
/// path as the task could have bound it, with its filesystem IDs, once its directory opens as
/// the task with no symbolic link on the way (`RestoreSession.openAsTask`). The socket's address
/// is the very string bind(2) is given, so it binds the image's path; the socket file must then
/// be in that directory (a link swapped in meanwhile fails the restore). A socket file left there
/// by the socket of the dump (the same device and inode) is replaced; any other file is left
/// alone (bind never follows a link at the last component: it fails with EADDRINUSE).
struct BoundAddress {
    let task: Amber_Task
    let imageTrusted: Bool
    let path: String?

    /// The directory the socket file is made in: the image's link-free one, or the path's own.
    let directory: String?

    init(_ record: Amber_UnixSocket, task: Amber_Task, imageTrusted: Bool) {
        self.task = task
        self.imageTrusted = imageTrusted
        path = record.address.first == 0 ? nil : String(decoding: record.address, as: UTF8.self)
        directory = path.map { record.fileDirectory.isEmpty ? Self.directory(of: $0) : record.fileDirectory }
    }

    /// The directory of the absolute `path`: "/" for a file at the root.
    static func directory(of path: String) -> String {
        "/" + path.split(separator: "/").dropLast().joined(separator: "/")
    }

    /// The last component of `path`.
    static func name(of path: String) -> String { String(path.split(separator: "/").last ?? "") }

    /// Binds `fd` to the address of `record`, then listens if it listened.
    func bind(_ fd: FileDescriptor, _ record: Amber_UnixSocket, objects: OpenFileObjects) throws {
        guard let path, let directoryPath = self.directory else {
            try UnixSockets.attach(fd, to: [UInt8](record.address), connecting: false)
            try listen(fd, record, objects: objects)
            return
        }
        let name = Self.name(of: path)
        let directory = try RestoreSession.openAsTask(
            directoryPath, flags: Int32(bitPattern: OpenFileFlags.pathOnly.rawValue) | O_DIRECTORY,
            what: "the directory of unix socket", task: task, dumped: nil, trusted: imageTrusted)
        defer { Glibc.close(directory) }
        let address = [UInt8](record.address)
        let identity = task.processCredentials.map {
            FileAccessIdentity(uid: $0.fsuid, gid: $0.fsgid, groups: $0.groups)
        }
        func bindAsTask() throws(LinuxError) {
            if let existing = try SocketFiles.status(in: directory, name) {
                guard existing.isSocket, existing.device == record.fileDevice, existing.inode == record.fileInode else {
                    throw LinuxError(.fileExists, "another file is at \(path)")
                }
                try SocketFiles.unlink(in: directory, name)
            }
            try UnixSockets.attach(fd, to: address, connecting: false)
            let bound = try UnixSockets.diagnose(try FileStatus.fstat(fd: fd.rawValue).inode)
            guard let file = try SocketFiles.status(in: directory, name), file.isSocket,
                file.inode == UInt64(bound.fileInode ?? 0), file.device == bound.fileDevice
            else {
                throw LinuxError(.tooManySymbolicLinkLevels, "the socket file is not in the directory opened for it")
            }
            try SocketFiles.setMode(in: directory, name, record.fileMode)
            objects.made(
                directoryPath == "/" ? "/\(name)" : "\(directoryPath)/\(name)", device: file.device, inode: file.inode)
        }
        do {
            if let identity {
                do {
                    try PathOpening.perform(as: identity, what: "bind unix socket \(path)") { () throws(LinuxError) in
                        try bindAsTask()
                    }
                } catch  where imageTrusted && (error.errno == .permissionDenied || error.errno == .notPermitted) {
                    // The process bound it before it dropped privilege (a daemon's socket in a
                    // directory only root writes): an authenticated image binds it as we may.
                    try bindAsTask()
                }
            } else {
                try bindAsTask()
            }
            if let file = try SocketFiles.status(in: directory, name),
                file.uid != record.fileUid || file.gid != record.fileGid
            {
                try SocketFiles.setOwner(in: directory, name, uid: record.fileUid, gid: record.fileGid)
            }
        } catch {
            throw AmberError(
                .restoreFailed, "cannot bind unix socket \(record.inode) of process \(task.pid) to \(path): \(error)")
        }
        try listen(fd, record, objects: objects)
    }

    /// A listener listens again; its accepted connections connect again and are accepted at
    /// once, so that the sockets that waited on it then connect again, oldest first, into an
    /// empty queue.
    private func listen(_ fd: FileDescriptor, _ record: Amber_UnixSocket, objects: OpenFileObjects) throws {
        guard record.listening else { return }
        try record.asPeer(what: "make unix socket \(record.inode) listen") { () throws(LinuxError) in
            try UnixSockets.listen(fd, backlog: Int32(bitPattern: record.backlog))
        }
        for inode in record.acceptedConnections {
            _ = try objects.object(inode) {
                try AcceptedConnection(
                    listener: fd, record: record, acceptedInode: inode, accepted: try objects.unixSocket(inode)?.record)
            }
        }
        for inode in record.pendingConnections {
            let connection = try objects.object(inode) { try PendingConnection(type: record.type) }
            // The connection's other side, which accept(2) will give, has the credentials of the
            // process that connected: those of the task the image shows holding it.
            let client = try objects.unixSocket(inode)?.task.processCredentials.map {
                EffectiveIdentity(uid: $0.euid, gid: $0.egid, groups: $0.groups)
            }
            try UnixSockets.asIdentity(client, what: "connect unix socket \(inode) again") { () throws(LinuxError) in
                try connection.connect(to: [UInt8](record.address))
            }
        }
    }
}

/// Runs a libc call that returns -1 and sets errno on failure.
private func libcCall(_ operation: String, _ body: () -> Int32) throws(LinuxError) -> Int32 {
    let result = body()
    guard result >= 0 else { throw LinuxError.current(operation) }
    return result
}

/// What sock_diag showed of every unix socket, read once per pass of the dump (the preflight,
/// the frozen tree's check) rather than once per socket, and which descriptor of the tree each
/// socket was found by.
final class UnixSocketTable: Sendable {
    static let shared = UnixSocketTable()

    /// What one read of sock_diag showed.
    struct Snapshot {
        var sockets: [UInt64: UnixSocketDiagnosis] = [:]
        /// The listener each socket that connected and was not accepted yet waits on.
        var listeners: [UInt64: UInt64] = [:]
        /// The listening sockets bound to each address.
        var listening: [[UInt8]: [UInt64]] = [:]

        init(_ sockets: [UInt64: UnixSocketDiagnosis] = [:]) {
            self.sockets = sockets
            for socket in sockets.values {
                for pending in socket.pendingConnections { listeners[pending] = socket.inode }
                if socket.state == UnixSocketDiagnosis.listening, let name = socket.name {
                    listening[name, default: []].append(socket.inode)
                }
            }
        }
    }

    private struct State {
        var table = Snapshot()
        var holders: [UInt64: (pid: Int32, fd: Int32)] = [:]
        /// The sockets the tree held at its last check.
        var heldInTree: Set<UInt64> = []
        /// SO_PASSCRED of each socket the frozen tree's dump read it of.
        var passCredentials: [UInt64: Bool] = [:]
    }

    private let state = Mutex(State())

    /// Reads every unix socket of the network namespace of process `pid` again (sock_diag shows
    /// those of the namespace it is asked in: a container's are in its own).
    func refresh(networkOf pid: Int32) throws {
        let table = Snapshot(try NetworkNamespace.of(pid: pid).inside { try UnixSockets.diagnoseAll() })
        state.withLock {
            $0.table = table
            $0.passCredentials = [:]
        }
    }

    func snapshot() -> Snapshot { state.withLock { $0.table } }

    /// Keeps the sockets the tree holds at this check (`UnixSocketKind.check`).
    func setHeldInTree(_ inodes: Set<UInt64>) {
        state.withLock { $0.heldInTree = inodes }
    }

    /// The sockets accepted from `listener` that the tree holds, by inode.
    func acceptedInTree(from listener: UInt64) -> [UInt64] {
        let (table, held) = state.withLock { ($0.table, $0.heldInTree) }
        return held.filter { inode in table.sockets[inode].flatMap(table.listener(accepting:)) == listener }.sorted()
    }

    func holder(of inode: UInt64) -> (pid: Int32, fd: Int32)? { state.withLock { $0.holders[inode] } }

    /// Keeps what the dump read of SO_PASSCRED of socket `inode`, for its peer's dump.
    func remember(_ inode: UInt64, passesCredentials: Bool) {
        state.withLock { $0.passCredentials[inode] = passesCredentials }
    }

    /// SO_PASSCRED of socket `inode` if the dump read it since the table was last read.
    func passesCredentials(_ inode: UInt64) -> Bool? { state.withLock { $0.passCredentials[inode] } }

    /// The unix socket `inode`, which `fd` of `pid` is on; nil when that is a socket of another
    /// family. A socket not read yet (made since) has the table read again.
    func socket(_ inode: UInt64, pid: Int32, fd: Int32) throws -> UnixSocketDiagnosis? {
        var socket = state.withLock { $0.table.sockets[inode] }
        if socket == nil {
            guard try Pidfd(pid: pid).socketFamily(fd) == AF_UNIX else { return nil }
            try refresh(networkOf: pid)
            socket = state.withLock { $0.table.sockets[inode] }
        }
        guard let socket else { throw LinuxError(.noSuchFileOrDirectory, "sock_diag of unix socket \(inode)") }
        remember(inode, pid: pid, fd: fd)
        return socket
    }

    /// Keeps `fd` of `pid` as the descriptor the dump reads socket `inode` through when it is
    /// another socket's peer.
    func remember(_ inode: UInt64, pid: Int32, fd: Int32) {
        state.withLock { $0.holders[inode] = (pid, fd) }
    }
}

extension UnixSocketKind {
    /// Reads every unix socket again (once per pass: the refusals before the freeze, then those
    /// of the frozen tree, whose reading the dump uses), and refuses a socket of the tree whose
    /// peer a process outside the tree holds, naming it, or no process holds (in flight in an
    /// SCM_RIGHTS message).
    static func check(tree processes: [CheckedProcess]) throws {
        // Each socket's first descriptor, by the index of its process (not a copy of it).
        var held: [UInt64: (process: Int, fd: Int32)] = [:]
        for (index, process) in processes.enumerated() {
            for probe in try process.probes() {
                guard let inode = socketInode(probe.link), held[inode] == nil else { continue }
                held[inode] = (index, probe.fd)
            }
        }
        guard !held.isEmpty else { return }
        try UnixSocketTable.shared.refresh(networkOf: processes[0].pid)
        UnixSocketTable.shared.setHeldInTree(Set(held.keys))
        let table = UnixSocketTable.shared.snapshot()
        let externals = processes[0].externalFiles
        var missing: [UInt64: (socket: UInt64, process: CheckedProcess, fd: Int32)] = [:]
        for inode in held.keys.sorted() {
            let (index, fd) = held[inode]!
            let holder = (process: processes[index], fd: fd)
            guard let socket = table.sockets[inode] else { continue }
            UnixSocketTable.shared.remember(inode, pid: holder.process.pid, fd: holder.fd)
            if externals.contains(externalName(inode: inode)) {
                try checkExternal(socket, held: held, holder: holder, processes: processes)
                continue
            }
            // The other side it is restored with: its peer, or the listener it waits on.
            let other = table.listeners[inode] ?? socket.peer.flatMap { table.sockets[$0] != nil ? $0 : nil }
            let otherOutside = other.map { $0 != 0 && held[$0] == nil } ?? false
            if let refusal = refusal(of: socket, in: table) ?? (otherOutside ? nil : peerRefusal(of: socket, in: table))
            {
                throw AmberError.unsupported(
                    holder.process.name, "has fd \(holder.fd) open on a unix socket (socket:[\(inode)]) \(refusal)",
                    tree: holder.process.tree)
            }
            if let listener = table.listener(accepting: socket), held[listener] == nil {
                throw AmberError.unsupported(
                    holder.process.name,
                    "has fd \(holder.fd) open on a unix socket (socket:[\(inode)]) accepted from the listener unix:[\(listener)] at \(describe(socket.name ?? [])), which no process of the tree holds: its connection is made again only through that listener",
                    tree: holder.process.tree)
            }
            if let other, otherOutside, missing[other] == nil { missing[other] = (inode, holder.process, holder.fd) }
        }
        guard let (firstPeer, first) = missing.min(by: { $0.key < $1.key }) else { return }
        try OutsideDescriptors.forEach(outside: processes) { pid, fd, link in
            guard let inode = socketInode(link), let socket = missing[inode] else { return }
            throw AmberError.unsupported(
                socket.process.name,
                "has fd \(socket.fd) on unix socket socket:[\(socket.socket)], whose peer unix:[\(inode)] is held by process \(ProcessName(pid: pid)) outside the tree (its fd \(fd)): a unix socket is restored only with its peer, or left outside with --external unix:[\(socket.socket)] and given back with --inherit-fd",
                tree: socket.process.tree)
        }
        throw AmberError.unsupported(
            first.process.name,
            "has fd \(first.fd) on unix socket socket:[\(first.socket)], whose peer unix:[\(firstPeer)] no process holds (it is in flight in an SCM_RIGHTS message): not restored",
            tree: first.process.tree)
    }

    /// A socket the dump leaves outside (`--external`) is replaced at restore by the caller's:
    /// what it holds would stay in it, and a peer in the tree would lose its other end.
    private static func checkExternal(
        _ socket: UnixSocketDiagnosis, held: [UInt64: (process: Int, fd: Int32)],
        holder: (process: CheckedProcess, fd: Int32), processes: [CheckedProcess]
    ) throws {
        let name = externalName(inode: socket.inode)
        if socket.receiveQueue > 0 {
            throw AmberError.unsupported(
                holder.process.name,
                "has fd \(holder.fd) on \(name), named by --external, holding \(socket.receiveQueue) bytes the tree has not read: they stay in that socket, and the descriptor that takes its place at restore would not have them",
                tree: holder.process.tree)
        }
        if let peer = socket.peer, let other = held[peer] {
            throw AmberError.unsupported(
                holder.process.name,
                "has fd \(holder.fd) on \(name), named by --external, whose peer process \(processes[other.process].name) fd \(other.fd) holds in the tree: a socket is left outside only when its peer is outside too",
                tree: holder.process.tree)
        }
    }

    /// A buffer above net.core's maximum is set with SO_SNDBUFFORCE or SO_RCVBUFFORCE; a socket
    /// file owned by another than the task, with chown.
    static func privilegedAsks(_ record: Amber_UnixSocket, owner: Amber_Credentials, restorer: ImagePrivileges.Baseline)
        -> [PrivilegedAsk]
    {
        var asks: [PrivilegedAsk] = []
        if !record.address.isEmpty, record.address.first != 0,
            record.fileUid != owner.fsuid || record.fileGid != owner.fsgid
        {
            asks.append(
                PrivilegedAsk(
                    what:
                        "the socket file \(String(decoding: record.address, as: UTF8.self)) owned by uid \(record.fileUid), gid \(record.fileGid), other than its process's \(owner.fsuid), \(owner.fsgid)",
                    capabilities: [Capability.chown]))
        }
        if let peer = record.peerIdentity {
            // The restore switches to them to make the socket: IDs of its process's own need no privilege.
            if ![owner.uid, owner.euid, owner.suid].contains(peer.uid) {
                asks.append(
                    PrivilegedAsk(
                        what:
                            "unix socket \(record.inode) whose peer credentials are uid \(peer.uid), not its process's",
                        capabilities: [Capability.setuid]))
            }
            if ![owner.gid, owner.egid, owner.sgid].contains(peer.gid) || peer.groups.sorted() != owner.groups.sorted()
            {
                asks.append(
                    PrivilegedAsk(
                        what:
                            "unix socket \(record.inode) whose peer credentials are gid \(peer.gid), groups \(peer.groups), not its process's",
                        capabilities: [Capability.setgid]))
            }
        }
        for (size, name, maximum) in [
            (record.sendBuffer, "send", "wmem_max"), (record.receiveBuffer, "receive", "rmem_max"),
        ] {
            let limit = (try? UnixSockets.bufferMaximum(maximum)) ?? 0
            if UInt64(size / 2) > limit {
                asks.append(
                    PrivilegedAsk(
                        what: "a unix socket \(name) buffer of \(size) bytes, above net.core.\(maximum) \(limit)",
                        capabilities: [Capability.netAdmin]))
            }
        }
        return asks
    }
}

extension Amber_UnixSocket {
    /// The effective IDs and groups the kernel recorded for its peer side, if any.
    var peerIdentity: EffectiveIdentity? {
        guard hasPeerCredentials else { return nil }
        return EffectiveIdentity(uid: peerCredentials.uid, gid: peerCredentials.gid, groups: peerCredentials.groups)
    }

    /// Runs `body`, which makes, listens or connects the socket, as its peer credentials show.
    func asPeer<T>(what: String, _ body: () throws(LinuxError) -> T) throws(LinuxError) -> T {
        try UnixSockets.asIdentity(peerIdentity, what: what, body)
    }
}

extension UnixSockets {
    /// Runs `body` with the calling thread's effective IDs and groups switched to `identity`
    /// (as the thread is when nil): the kernel records them as a socket's peer credentials.
    static func asIdentity<T>(_ identity: EffectiveIdentity?, what: String, _ body: () throws(LinuxError) -> T)
        throws(LinuxError) -> T
    {
        guard let identity else { return try body() }
        return try identity.perform(what: what, body)
    }
}

extension OpenFileObjects {
    /// The record of unix socket `inode` in the image, and a task the image shows holding it.
    func unixSocket(_ inode: UInt64) throws -> (record: Amber_UnixSocket, task: Amber_Task)? {
        for task in try image?.tasks() ?? [] {
            for description in task.files.descriptions {
                if case .unixSocket(let record) = description.file, record.inode == inode { return (record, task) }
            }
        }
        return nil
    }
}
