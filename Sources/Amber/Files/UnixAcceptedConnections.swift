import AmberImage
import Glibc
import LinuxKit
import SystemPackage

// A connection accepted from a unix listener of the tree: the accepted socket (its name is the
// listener's address, as accept gives it) and its client (whose peer name is that address). At
// restore the client connects again to the listener, made again at the same address, and is
// accepted at once, before the connections that waited on the listener connect again, so that
// its queue of pending connections comes back in order. Their queues, shutdown and options
// then come back as a socketpair's (`RestoredSocketPair`).

extension UnixSocketTable.Snapshot {
    /// The listener `socket` was accepted from: a stream or seqpacket socket connected to an
    /// unbound socket connected back to it, whose name (and socket file) is a listener's. The
    /// accepted socket shares its listener's address, which no other listening socket has.
    func listener(accepting socket: UnixSocketDiagnosis) -> UInt64? {
        guard let peerInode = socket.peer, let peer = sockets[peerInode], peer.peer == socket.inode, peer.name == nil
        else { return nil }
        return listener(named: socket)
    }

    /// The listener whose address (and socket file) `socket`, a connected stream or seqpacket
    /// socket, has: the one it was accepted from.
    func listener(named socket: UnixSocketDiagnosis) -> UInt64? {
        guard socket.type == Int32(SOCK_STREAM.rawValue) || socket.type == Int32(SOCK_SEQPACKET.rawValue),
            socket.state == UnixSocketDiagnosis.established, let name = socket.name
        else { return nil }
        return listening[name]?.first { candidate in
            guard let listener = sockets[candidate] else { return false }
            return listener.type == socket.type && listener.fileInode == socket.fileInode
                && listener.fileDevice == socket.fileDevice
        }
    }
}

/// A listener made again (`BoundAddress`): by its own description, or first by a connection
/// accepted from it whose description comes first, as the task the image shows holding it.
final class RestoredListener: SharedOpenFileObject {
    let socket: FileDescriptor
    /// The accepted sockets of the image it made again.
    let acceptedConnections: [UInt64]
    private var taken = false

    init(_ record: Amber_UnixSocket, task: Amber_Task, imageTrusted: Bool, objects: OpenFileObjects) throws {
        socket = try UnixSockets.make(type: record.type)
        acceptedConnections = record.acceptedConnections
        do {
            try RestoredSocketPair.setOptions(socket, record)
            try RestoredSocketPair.setSendBuffer(socket, record)
            try BoundAddress(record, task: task, imageTrusted: imageTrusted).bind(socket, record, objects: objects)
        } catch {
            try? socket.close()
            throw error
        }
    }

    /// The listener `inode` of the image, made now as a task that holds it if it is not yet.
    static func made(_ inode: UInt64, imageTrusted: Bool, objects: OpenFileObjects) throws -> RestoredListener {
        try objects.object(inode) {
            for task in try objects.image?.tasks() ?? [] {
                for description in task.files.descriptions {
                    if case .unixSocket(let record) = description.file, record.inode == inode, record.listening {
                        return try RestoredListener(record, task: task, imageTrusted: imageTrusted, objects: objects)
                    }
                }
            }
            throw AmberError(.badImage, "unix listener \(inode) is not a listener of the image")
        }
    }

    /// Our descriptor of it, for the caller to close.
    func take(_ record: Amber_UnixSocket) throws -> FileDescriptor {
        guard !taken else { throw AmberError(.badImage, "the image describes unix socket \(record.inode) twice") }
        taken = true
        let copy = fcntl(socket.rawValue, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw LinuxError.current("fcntl(F_DUPFD_CLOEXEC)") }
        return FileDescriptor(rawValue: copy)
    }

    func close() { try? socket.close() }
}

/// A connection accepted from a listener, made again through it: a client that connects, and
/// the socket accept gives for it.
final class AcceptedConnection: SharedOpenFileObject {
    let pair: RestoredSocketPair

    /// Connects a new client to `listener`, which listens at the address of `record` with no
    /// connection waiting, and accepts it, for the accepted socket `acceptedInode`.
    /// The client connects with the credentials the accepted socket (`accepted`, its record)
    /// showed for its peer.
    init(
        listener: FileDescriptor, record: Amber_UnixSocket, acceptedInode: UInt64,
        accepted acceptedRecord: Amber_UnixSocket?
    )
        throws
    {
        let client = try UnixSockets.make(type: record.type)
        do {
            // Into an empty queue: connect(2) does not wait, and would fail rather than wait.
            let flags = fcntl(client.rawValue, F_GETFL)
            guard flags >= 0, fcntl(client.rawValue, F_SETFL, flags | O_NONBLOCK) == 0 else {
                throw LinuxError.current("fcntl(F_SETFL)")
            }
            try UnixSockets.asIdentity(acceptedRecord?.peerIdentity, what: "connect to listener \(record.inode)") {
                () throws(LinuxError) in
                try UnixSockets.attach(client, to: [UInt8](record.address), connecting: true)
            }
            guard fcntl(client.rawValue, F_SETFL, flags) == 0 else { throw LinuxError.current("fcntl(F_SETFL)") }
            let accepted = try UnixSockets.accept(listener)
            do {
                // accept(2) gives it the listener's SO_PASSCRED and SO_PASSSEC: its own are its
                // record's, set when it is taken.
                try UnixSockets.setOption(accepted, UnixSockets.passCredentials, 0)
                try UnixSockets.setOption(accepted, UnixSockets.passSecurity, 0)
            } catch {
                try? accepted.close()
                throw error
            }
            pair = RestoredSocketPair(
                accepted: accepted, client: client, acceptedInode: acceptedInode, type: record.type)
        } catch {
            try? client.close()
            throw AmberError(
                .restoreFailed,
                "cannot connect again unix socket \(acceptedInode), accepted from listener \(record.inode): \(error)")
        }
    }

    /// Our descriptor of the accepted socket or client of `record`, for the caller to close,
    /// its listener made first if it is not yet.
    static func take(_ record: Amber_UnixSocket, imageTrusted: Bool, objects: OpenFileObjects, what: String) throws
        -> FileDescriptor
    {
        let listener = try RestoredListener.made(record.acceptedFrom, imageTrusted: imageTrusted, objects: objects)
        let acceptedInode = listener.acceptedConnections.contains(record.inode) ? record.inode : record.peerInode
        let connection = try objects.object(acceptedInode) { () throws -> AcceptedConnection in
            throw AmberError(
                .badImage, "\(what): accepted from listener \(record.acceptedFrom), which does not list its connection")
        }
        return try connection.pair.take(record, what: what)
    }

    func close() { pair.close() }
}
