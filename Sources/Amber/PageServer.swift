import AmberImage
import Glibc
import LinuxKit
import Logging

/// An image that travels between hosts over TCP: `amber dump --page-server HOST:PORT` on
/// host A sends it as it is made (`StreamSink`), `amber page-server` on host B receives it
/// into an image directory (`ImageStreamReceiver`). docs/architecture.md, "Streaming an image".
public enum PageServer {
    /// What one page server received.
    public struct Received: Sendable {
        public let peer: String
        public let files: Int
        public let bytes: UInt64
    }

    /// Listens on `host` (nil: every address) and `port` (0: one the kernel picks), tells
    /// `listening` the address, and takes the first connection; then stops listening.
    static func acceptOne(
        host: String?, port: UInt16, listening: (String) -> Void
    ) throws(AmberError) -> (fd: CInt, peer: InetAddress?) {
        do {
            let listener = try TcpEndpoint.listen(host: host, port: port)
            listening(listener.address.description)
            defer { close(listener.fd) }
            return try TcpEndpoint.accept(listener.fd, timeout: StreamProtocol.timeoutSeconds)
        } catch {
            throw AmberError(.failure, "page server: \(error)")
        }
    }

    /// A sink sending the image to the page server at `address` ("HOST:PORT"), connected and
    /// greeted: called before the tree is touched, so that a page server out of reach fails the
    /// dump at once.
    public static func sink(to address: String) throws(AmberError) -> StreamSink {
        guard let (host, port) = TcpEndpoint.split(address) else {
            throw AmberError(.failure, "--page-server \(address): expected HOST:PORT or [IPV6]:PORT")
        }
        let socket: CInt
        do {
            socket = try TcpEndpoint.connect(host: host, port: port, timeout: StreamProtocol.timeoutSeconds)
        } catch {
            throw AmberError(.failure, "cannot reach the page server at \(address): \(error)")
        }
        do {
            return try StreamSink(socket: socket, destination: address)
        } catch {
            throw AmberError(.failure, error.description)
        }
    }

    /// Receives one image into `directory` (created if missing, must be empty) from the first
    /// connection to `host` (nil: every address) and `port` (0: one the kernel picks), then
    /// stops listening. `listening` is told the address once connections are taken. On any
    /// failure the directory is left as it was found.
    public static func receive(
        directory: String, host: String?, port: UInt16, listening: (String) -> Void, logger: Logger
    ) throws(AmberError) -> Received {
        func makeSink() throws(AmberError) -> DirectorySink {
            do {
                return try DirectorySink(directory: directory, durable: false)
            } catch {
                throw AmberError(error.kind == .directoryNotEmpty ? .directoryNotEmpty : .failure, error.description)
            }
        }
        // The directory's rules are checked before anyone is waited for, and it is made only
        // once a peer is there: a page server stopped while it waits leaves nothing behind.
        try makeSink().discard()
        let connection = try PageServer.acceptOne(host: host, port: port, listening: listening)
        let sink: DirectorySink
        do {
            sink = try makeSink()
        } catch {
            close(connection.fd)
            throw error
        }
        let peer = connection.peer?.description ?? "the peer"
        logger.info("receiving an image from \(peer) into \(directory)")
        do {
            let received = try ImageStreamReceiver(socket: connection.fd, peer: peer, sink: sink).receive()
            return Received(peer: peer, files: received.files, bytes: received.bytes)
        } catch {
            // A connection that ends or fails is no fault of the image; anything else the peer sent is.
            let code: AmberError.Code = error.kind == .io || error.kind == .truncated ? .failure : .badImage
            throw AmberError(code, "page server: nothing kept in \(directory): \(error)")
        }
    }
}
