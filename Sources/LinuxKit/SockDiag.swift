import Glibc
import SystemPackage

/// NETLINK_SOCK_DIAG (linux/sock_diag.h): the kernel's description of the sockets of the
/// caller's network namespace, asked by family (unix_diag, inet_diag, netlink_diag).
enum SockDiag {
    private static let netlinkSockDiag: Int32 = 4
    /// SOCK_DIAG_BY_FAMILY: the request, and each answer's message type.
    private static let byFamily: UInt16 = 20
    /// NLM_F_DUMP.
    private static let dump: UInt16 = 0x300
    /// SOCK_DESTROY, and NLM_F_ACK (it answers nothing else on success).
    private static let destroyType: UInt16 = 21, acknowledge: UInt16 = 0x4

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
        try NetlinkExchange.run(
            fd: fd, type: byFamily, flags: asksAll ? dump : 0, sequence: 1, payload: body,
            what: "sock_diag of \(what)"
        ) { type, payload in type != byFamily || each(payload) }
    }

    /// Sends SOCK_DESTROY with `body` (the family's request naming one socket) and waits for the
    /// kernel's acknowledgement. Needs CAP_NET_ADMIN over the socket's network namespace.
    static func destroy(_ body: [UInt8], what: String) throws(LinuxError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkSockDiag)
        guard fd >= 0 else { throw LinuxError.current("socket(AF_NETLINK, NETLINK_SOCK_DIAG)") }
        defer { close(fd) }
        try NetlinkExchange.run(
            fd: fd, type: destroyType, flags: acknowledge, sequence: 1, payload: body, what: "SOCK_DESTROY of \(what)"
        ) { _, _ in true }
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
