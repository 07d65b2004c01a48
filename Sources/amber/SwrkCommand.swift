import Amber
import AmberImage
import ArgumentParser
import Glibc
import LinuxKit
import Logging

/// `amber swrk FD`: CRIU's RPC on a SOCK_SEQPACKET socket, as container runtimes start
/// `criu swrk 3` (runc --criu PATH, crun and podman through the `criu` of PATH). See
/// docs/containers.md for what is served and refused.
struct SwrkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swrk",
        abstract: "Serve CRIU's RPC on descriptor FD, for container runtimes (runc --criu PATH).",
        discussion:
            "Reads requests (VERSION, CHECK, FEATURE_CHECK, DUMP, PRE_DUMP, RESTORE) one packet each from the SOCK_SEQPACKET socket FD and answers each, with notifications (pre-dump, post-dump, network-lock, network-unlock, setup-namespaces, post-restore) when the request asks for them. An option amber does not honour is refused by name in the response and the log. Exits when the peer closes the socket, 0 if every request succeeded, 1 otherwise. See docs/containers.md."
    )

    @Argument(help: "The socket's descriptor number (inherited from the runtime).")
    var fd: Int32

    // A request's own log_file and log_level take over from these for its work.
    @OptionGroup var global: GlobalOptions

    func run() throws {
        guard let socket = Self.inheritedSocket(fd) else {
            throw ValidationError("descriptor \(fd) is not a SOCK_SEQPACKET socket amber inherited")
        }
        Self.serve(socket, verbosity: global.verbose)
    }

    /// `amber swrk FD` and nothing else, as runc and go-criu start it (twice for each checkpoint
    /// or restore: the version check, then the request), is served before ArgumentParser parses
    /// the command line: its reflection over every command's options costs more than the
    /// VERSION request itself. Any other command line, or a descriptor that is not such a
    /// socket, goes through ArgumentParser as usual.
    static func serveIfPlain(_ arguments: [String]) {
        guard arguments.count == 3, arguments[1] == configuration.commandName, let fd = Int32(arguments[2]),
            let socket = inheritedSocket(fd)
        else { return }
        serve(socket, verbosity: 0)
    }

    private static func inheritedSocket(_ fd: Int32) -> PacketSocket? {
        let socket = PacketSocket(fd: fd)
        return fd > 2 && socket.isPacketSocket() ? socket : nil
    }

    private static func serve(_ socket: PacketSocket, verbosity: Int) -> Never {
        _ = fcntl(socket.fd, F_SETFD, FD_CLOEXEC)
        Glibc.exit(SwrkServer(socket: socket, verbosity: verbosity).serve())
    }
}

/// The CRIU version `amber swrk` reports: 3.16.0. runc 1.1 needs 3.0 for this RPC and asks
/// for freeze_cgroup from 3.14; podman 4 needs 3.11, and 3.16 in a pod. Amber decodes every
/// option of that protocol level (and later ones) and honours or refuses each by name, so
/// the number says which requests a runtime may send, not that amber does all CRIU does.
enum SwrkVersion {
    static let major: Int32 = 3
    static let minor: Int32 = 16
    static let sublevel: Int32 = 0
}

/// Serves one runtime's requests until it closes the socket or a request fails.
struct SwrkServer {
    let socket: PacketSocket
    /// -v's count: what standard error shows until a request names a log of its own.
    let verbosity: Int

    /// A failed request, answered with its message (cr_errmsg) and logged.
    struct Failure: Error {
        let message: String
    }

    func serve() -> Int32 {
        var logger = GlobalOptions.makeLogger(verbosity: verbosity)
        var failed = false
        let preread = (try? socket.peerPID()).flatMap { SwrkImagePreread.start(peer: $0, unlessRequestOn: socket.fd) }
        while true {
            let packet: [UInt8]
            do {
                switch try socket.receive(maximum: SwrkRequest.maximumSize) {
                case .end: return failed ? 1 : 0
                case .tooLong:
                    respondFailure(.empty, "a request longer than \(SwrkRequest.maximumSize) bytes", logger: logger)
                    return 1
                case .packet(let bytes): packet = bytes
                }
            } catch {
                logger.error("swrk: \(error)")
                return 1
            }
            let request: SwrkRequest
            do {
                request = try SwrkRequest.decode(packet)
            } catch {
                if let options = error.log { SwrkSession.redirectLog(of: options, socket: socket) }
                respondFailure(error.type, error.message, logger: logger)
                return 1
            }
            switch request.kind {
            case .version:
                var version = Swrk_Version()
                version.majorNumber = SwrkVersion.major
                version.minorNumber = SwrkVersion.minor
                version.sublevel = SwrkVersion.sublevel
                version.name = "amber \(AmberVersion.current)"
                var response = Self.response(request.type, success: true)
                response.version = version
                guard send(response, logger: logger) else { return 1 }
            case .check:
                let missing = KernelFeatures.probe().filter { $0.required && !$0.present }.map(\.name)
                if missing.isEmpty {
                    guard send(Self.response(request.type, success: true), logger: logger) else { return 1 }
                } else {
                    respondFailure(request.type, "missing: \(missing.joined(separator: ", "))", logger: logger)
                    failed = true
                }
            case .featureCheck:
                var response = Self.response(request.type, success: true)
                response.features = Self.features(asked: request.features)
                guard send(response, logger: logger) else { return 1 }
            case .notify:
                respondFailure(request.type, "a NOTIFY answer when no notification was sent", logger: logger)
                return 1
            case .dump, .preDump, .restore:
                let options = request.options
                do {
                    let session = try SwrkSession(
                        socket: socket, options: options, preread: request.kind == .restore ? preread : nil)
                    logger = session.logger
                    var response = try session.run(request.kind, type: request.type)
                    response.type = request.type
                    response.success = true
                    guard send(response, logger: logger) else { return 1 }
                } catch {
                    respondFailure(request.type, error.message, logger: logger)
                    return 1
                }
                // CRIU serves a further request after a pre-dump (another pre-dump, or the dump).
                if request.kind != .preDump { return 0 }
            }
            if request.kind != .preDump && !request.keepOpen { return failed ? 1 : 0 }
        }
    }

    /// What FEATURE_CHECK asks, answered: memory tracking is amber's pre-dump (which refuses by
    /// itself a kernel without userfaultfd write protection); lazy pages through CRIU's page
    /// server and the pidfd store are not served.
    static func features(asked: Swrk_Features) -> Swrk_Features {
        var answer = Swrk_Features()
        if asked.hasMemTrack { answer.memTrack = true }
        if asked.hasLazyPages { answer.lazyPages = false }
        if asked.hasPidfdStore { answer.pidfdStore = false }
        return answer
    }

    static func response(_ type: Swrk_RequestType, success: Bool) -> Swrk_Response {
        var response = Swrk_Response()
        response.type = type
        response.success = success
        return response
    }

    /// Logs `message` as an error and answers with it, as CRIU does (runc points at the log).
    func respondFailure(_ type: Swrk_RequestType, _ message: String, logger: Logger) {
        logger.error("Error: \(message)")
        var response = Self.response(type, success: false)
        response.crErrmsg = message
        _ = send(response, logger: logger)
    }

    func send(_ response: Swrk_Response, logger: Logger) -> Bool {
        do {
            try socket.send(try response.serializedBytes())
            return true
        } catch {
            logger.error("swrk: cannot send the response: \(error)")
            return false
        }
    }
}
