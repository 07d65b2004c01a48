internal import CLinux
import Glibc
import SystemPackage

/// The TCP connection an image travels on (`amber dump --page-server`, `amber page-server`):
/// addresses written "HOST:PORT" or "[IPV6]:PORT", one connection made or accepted.
public enum TcpEndpoint {
    /// "10.0.0.2:2000" or "[fd00::2]:2000" (a name for HOST too) as its host and port; nil
    /// when it is not of that form or the port is not 1-65535.
    public static func split(_ text: String) -> (host: String, port: UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            return nil
        }
        return host.isEmpty ? nil : (host, port)
    }

    /// The addresses of `host` (numeric, or a name getaddrinfo knows), each with `port`.
    public static func resolve(_ host: String, port: UInt16) throws(LinuxError) -> [InetAddress] {
        var hints = addrinfo()
        hints.ai_socktype = InetSocket.stream
        var list: UnsafeMutablePointer<addrinfo>?
        let result = getaddrinfo(host, nil, &hints, &list)
        guard result == 0 else {
            throw LinuxError(.invalidArgument, "resolve \(host): \(String(cString: gai_strerror(result)))")
        }
        defer { freeaddrinfo(list) }
        var addresses: [InetAddress] = []
        var entry = list
        while let current = entry {
            if let socketAddress = current.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) {
                    $0.copyMemory(
                        from: UnsafeRawBufferPointer(
                            start: socketAddress, count: min(Int(current.pointee.ai_addrlen), $0.count)))
                }
                if var address = InetAddress(storage), !addresses.contains(where: { $0 == address }) {
                    address.port = port
                    addresses.append(address)
                }
            }
            entry = current.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw LinuxError(.invalidArgument, "resolve \(host): no address") }
        return addresses
    }

    /// A connected TCP socket to the first of `host`'s addresses that answers, close-on-exec,
    /// with `timeout` seconds on every send and receive.
    public static func connect(host: String, port: UInt16, timeout: Int) throws(LinuxError) -> CInt {
        var failure = LinuxError(.invalidArgument, "connect to \(host):\(port)")
        for address in try resolve(host, port: port) {
            let fd = try InetSocket.make(
                family: address.family, type: InetSocket.stream, protocol: 0, nonBlocking: false
            )
            .rawValue
            do throws(LinuxError) {
                try InetSocket.connect(fd, to: address)
                try setTimeouts(fd, seconds: timeout)
                return fd
            } catch {
                close(fd)
                failure = error
            }
        }
        throw failure
    }

    /// A TCP socket listening on `host` (nil: every address, IPv6 and IPv4) and `port` (0: one
    /// the kernel picks), backlog 1; and the address it is bound to.
    public static func listen(host: String?, port: UInt16) throws(LinuxError) -> (fd: CInt, address: InetAddress) {
        let address =
            try host.map { host throws(LinuxError) in try resolve(host, port: port)[0] }
            ?? InetAddress(family: AF_INET6, address: [UInt8](repeating: 0, count: 16), port: port)
        let fd = try InetSocket.make(family: address.family, type: InetSocket.stream, protocol: 0, nonBlocking: false)
            .rawValue
        do throws(LinuxError) {
            var on: Int32 = 1
            _ = try libcResult("setsockopt SO_REUSEADDR") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            }.get()
            try InetSocket.bind(fd, to: address)
            try InetSocket.listen(fd, backlog: 1)
            return (fd, try InetSocket.localAddress(fd) ?? address)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Waits for one connection on `listener`: the connected socket, close-on-exec, with
    /// `timeout` seconds on every send and receive, and its peer.
    public static func accept(_ listener: CInt, timeout: Int) throws(LinuxError) -> (fd: CInt, peer: InetAddress?) {
        var result: Int
        repeat {
            result = amber_accept4(listener, Int32(SOCK_CLOEXEC.rawValue))
        } while result == -Int(EINTR)
        guard result >= 0 else { throw LinuxError(negated: result, "accept") }
        let fd = CInt(result)
        do throws(LinuxError) {
            try setTimeouts(fd, seconds: timeout)
            return (fd, try InetSocket.peerAddress(fd))
        } catch {
            close(fd)
            throw error
        }
    }

    /// SO_SNDTIMEO and SO_RCVTIMEO: a peer that stops reading or sending for `seconds` makes
    /// the call fail with EAGAIN rather than wait for ever.
    private static func setTimeouts(_ fd: CInt, seconds: Int) throws(LinuxError) {
        var value = timeval(tv_sec: seconds, tv_usec: 0)
        for option in [SO_SNDTIMEO, SO_RCVTIMEO] {
            _ = try libcResult("setsockopt") {
                setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
            }.get()
        }
    }
}
