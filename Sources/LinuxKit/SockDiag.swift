import Glibc
import SystemPackage

/// NETLINK_SOCK_DIAG (linux/sock_diag.h): the kernel's description of the sockets of the
/// caller's network namespace, asked by family (unix_diag, inet_diag, netlink_diag).
enum SockDiag {
    private static let netlinkSockDiag: Int32 = 4
    /// SOCK_DIAG_BY_FAMILY: the request, and each answer's message type.
    private static let byFamily: UInt16 = 20
    private static let request: UInt16 = 0x1, dump: UInt16 = 0x300
    private static let done: UInt16 = 3, error: UInt16 = 2

    /// Sends SOCK_DIAG_BY_FAMILY with `body` (the family's request) and hands `each` the
    /// payload of every answer, until NLMSG_DONE, or until `each` returns false (a request for
    /// one socket has one answer and no NLMSG_DONE). `what` names the request in errors.
    static func ask(
        _ body: [UInt8], dump asksAll: Bool, what: String, _ each: (ArraySlice<UInt8>) -> Bool
    ) throws(LinuxError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkSockDiag)
        guard fd >= 0 else { throw LinuxError.current("socket(AF_NETLINK, NETLINK_SOCK_DIAG)") }
        defer { close(fd) }
        // A request the kernel drops unanswered must not hold the frozen tree: give up after 5 s.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        _ = try libcResult("setsockopt SO_RCVTIMEO") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }.get()
        var message = [UInt8]()
        message.append(le: UInt32(16 + body.count))
        message.append(le: byFamily)
        message.append(le: asksAll ? request | dump : request)
        message.append(le: UInt32(1))
        message.append(le: UInt32(0))
        message += body
        _ = try libcResult("send of the sock_diag request for \(what)") {
            message.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        }.get()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try libcResult("recv of the sock_diag answer for \(what)") {
                buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            }.get()
            var offset = 0
            while offset + 16 <= count {
                let length = Int(buffer.le(UInt32.self, at: offset))
                guard length >= 16, offset + length <= count else {
                    throw LinuxError(.ioError, "sock_diag answer for \(what) with a message of \(length) bytes")
                }
                switch buffer.le(UInt16.self, at: offset + 4) {
                case done: return
                case error:
                    let code = Int32(bitPattern: buffer.le(UInt32.self, at: offset + 16))
                    throw LinuxError(Errno(rawValue: -code), "sock_diag of \(what)")
                case byFamily:
                    guard each(buffer[(offset + 16)..<(offset + length)]) else { return }
                default: break
                }
                offset += (length + 3) & ~3
            }
        }
    }

    /// The attributes (struct nlattr) from `offset` to the end of `message`: type and payload.
    static func attributes(of message: ArraySlice<UInt8>, from offset: Int) -> [(
        type: UInt16, payload: ArraySlice<UInt8>
    )] {
        var found: [(type: UInt16, payload: ArraySlice<UInt8>)] = []
        var offset = offset
        while offset + 4 <= message.endIndex {
            let length = Int(message.le(UInt16.self, at: offset))
            guard length >= 4, offset + length <= message.endIndex else { break }
            found.append((message.le(UInt16.self, at: offset + 2), message[(offset + 4)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        return found
    }
}

extension [UInt8] {
    mutating func append<T: FixedWidthInteger>(le value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension Collection where Element == UInt8, Index == Int {
    /// The little-endian integer at `offset`.
    func le<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for byte in (0..<MemoryLayout<T>.size).reversed() { value = value << 8 | T(self[offset + byte]) }
        return value
    }
}
