// Inet sockets a server holds between connections: listening, bound and fresh TCP and UDP
// sockets, dumped and restored, and a restore that finds the port taken.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

extension Scenario {
    /// Listening, bound and fresh TCP and UDP sockets on 127.0.0.1 and ::1, one listener shared with a child.
    static let inetSockets = Scenario(name: "inet_sockets")
    /// The same, its IPv4 listener on `port`.
    static func inetSockets(port: UInt16) -> Scenario { Scenario(name: "inet_sockets", args: ["--port", "\(port)"]) }
    /// An inet socket amber does not restore: a connection, queued or
    /// connected UDP, SO_MARK, one a process outside the tree holds too.
    static func unsupportedInet(_ flag: String) -> Scenario { Scenario(name: "unsupported_inet", args: [flag]) }
    /// Listeners and UDP sockets on 0.0.0.0 and [::] (dual-stack), with behaviour-changing
    /// options, and connected UDP sockets (IPv4, IPv6, v4-mapped) with their peers.
    static let inetDualStack = Scenario(name: "inet_dual_stack")
}

/// A TCP socket listening on 127.0.0.1, for the caller to close.
func loopbackListener(port: UInt16 = 0) -> (fd: Int32, port: UInt16)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var size = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, size) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &size) == 0
        }
    }
    guard bound else {
        close(fd)
        return nil
    }
    return (fd, UInt16(bigEndian: address.sin_port))
}

/// A port on 127.0.0.1 that nothing listens on now.
func freeLoopbackPort() throws -> UInt16 {
    guard let listener = loopbackListener() else { throw RunnerError("no free port on 127.0.0.1") }
    close(listener.fd)
    return listener.port
}

final class InetSocketTests: ScenarioTestCase {
    /// The restore binds the listener's port again: while another socket listens on it, the
    /// restore fails naming the address, leaves no process and no change to the image; once the
    /// port is free it succeeds.
    func testRestoreFailsWhileThePortIsTaken() throws {
        _ = try requireAmber()
        let port = try freeLoopbackPort()
        let p = try start(.inetSockets(port: port))
        let image = try dumpExpectingSuccess(p)
        do {
            guard let taker = loopbackListener(port: port) else { throw RunnerError("cannot listen on port \(port)") }
            defer { close(taker.fd) }
            try expectRestoreRefused(
                image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: ["127.0.0.1:\(port)", "in use"])
        }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after the restore on the freed port")
    }

    /// A user dumps and restores their own server sockets: the dump may not ask a socket's
    /// namespace (SIOCGSKNS needs CAP_NET_ADMIN) and goes by the process's; the sockets come
    /// back owned by the user, made with the user's own rights. A listener without SO_REUSEADDR
    /// with connections in TIME_WAIT on its port is refused: ending them, for the restore to bind
    /// the port, needs CAP_NET_ADMIN (root's restore ends them: `testInetSockets`).
    func testUserDumpsAndRestoresOwnSockets() throws {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let waiting = try start(
            Scenario(name: "inet_sockets", setpriv: PrivilegeTests.asUser, owner: PrivilegeTests.user))
        let refused = try amber(
            ["dump", "-t", "\(waiting.pid)", "-D", try newDirectory("refused")], setpriv: PrivilegeTests.asUser)
        XCTAssertEqual(refused.status, .exited(AmberExit.unsupportedState), refused.summary)
        XCTAssertTrue(refused.stderr.contains("TIME_WAIT") && refused.stderr.contains("CAP_NET_ADMIN"), refused.summary)
        try terminateAndExpectPass(waiting, "after the refused dump")
        let p = try start(
            Scenario(
                name: "inet_sockets", args: ["--no-time-wait"], setpriv: PrivilegeTests.asUser,
                owner: PrivilegeTests.user))
        let image = try newDirectory("image")
        XCTAssertEqual(chown(image, PrivilegeTests.user, PrivilegeTests.user), 0)
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], setpriv: PrivilegeTests.asUser)
        XCTAssertEqual(dump.status, .exited(0), "the user's dump of its own sockets: \(dump.summary)")
        guard dump.status == .exited(0) else { return }
        try restoreDetachedExpectingSuccess(
            p, from: image,
            setpriv: PrivilegeTests.asUser + ["--inh-caps=+checkpoint_restore", "--ambient-caps=+checkpoint_restore"])
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.pid)/fd")) ?? [] {
            let path = "/proc/\(p.pid)/fd/\(fd)"
            guard (try? FileManager.default.destinationOfSymbolicLink(atPath: path))?.hasPrefix("socket:") == true
            else { continue }
            var status = stat()
            XCTAssertEqual(stat(path, &status), 0)
            XCTAssertEqual(status.st_uid, PrivilegeTests.user, "socket fd \(fd) is not the user's")
        }
        try terminateAndExpectPass(p, "restored by its user")
    }
}
