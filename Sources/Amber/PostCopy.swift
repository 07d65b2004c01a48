import AmberImage
import Glibc
import LinuxKit
import Logging

/// Post-copy migration: the image stays on host A, where `amber dump --lazy-pages --port` (or
/// `amber page-server --lazy-pages`) serves it, and `amber restore --lazy-pages --page-server`
/// on host B reads its records over TCP, then lets the tree run while its pages come over on
/// first touch and in the background. docs/architecture.md, "Post-copy migration".
public enum PostCopy {
    /// What one restore read from this host.
    public struct Served: Sendable {
        public let peer: String
        public let reads: Int
        public let bytes: UInt64
    }

    /// A connection to the server at `address` ("HOST:PORT"), for `ImageReader(pageServer:)`.
    static func connect(to address: String) throws(AmberError) -> CInt {
        guard let (host, port) = TcpEndpoint.split(address) else {
            throw AmberError(.failure, "--page-server \(address): expected HOST:PORT or [IPV6]:PORT")
        }
        do {
            return try TcpEndpoint.connect(host: host, port: port, timeout: StreamProtocol.timeoutSeconds)
        } catch {
            throw AmberError(.failure, "cannot reach the page server at \(address): \(error)")
        }
    }

    /// Serves the image in `directory` to the first restore that connects to `host` (nil:
    /// every address) and `port` (0: one the kernel picks) until it has every page; `listening`
    /// is told the address once connections are taken. The image is checked first, and only
    /// its own files are served. A restore that goes away before it has every page is an error:
    /// the image stays as it is, and can be served again.
    public static func serve(
        directory: String, host: String?, port: UInt16, listening: (String) -> Void, logger: Logger
    ) throws(AmberError) -> Served {
        let server: PostCopyImageServer
        do {
            server = try PostCopyImageServer(directory: directory)
        } catch {
            throw AmberError(.badImage, error.description)
        }
        let connection = try PageServer.acceptOne(host: host, port: port, listening: listening)
        let peer = connection.peer?.description ?? "the peer"
        logger.info("serving the image in \(directory) to a post-copy restore at \(peer)")
        do {
            let served = try server.serve(socket: connection.fd, peer: peer) { name in
                #if DEBUG
                if name.hasPrefix("pages-") { _ = TestFault.reached("serve.pages") }
                #endif
            }
            return Served(peer: peer, reads: served.reads, bytes: served.bytes)
        } catch {
            let code: AmberError.Code = error.kind == .io || error.kind == .truncated ? .failure : .badImage
            throw AmberError(code, "page server: \(error)")
        }
    }
}
