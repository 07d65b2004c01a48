// A TCP listener with connections it has not accepted yet: a dump that kills the tree drops
// them as closing the listener does (each client gets a reset) and says so; the restored
// listener takes new connections. `dump --leave-running` leaves them queued for the program.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

extension Scenario {
    /// A listener on 127.0.0.1:`port` with `clients` connections of the test waiting; with
    /// `dropped`, it expects them gone after the restore.
    static func tcpAcceptQueue(port: UInt16, clients: Int, dropped: Bool) -> Scenario {
        Scenario(
            name: "tcp_accept_queue",
            args: ["--port", "\(port)", "--clients", "\(clients)"] + (dropped ? ["--dropped"] : []))
    }
}

final class AcceptQueueTests: ScenarioTestCase {
    private let clientCount = 3

    /// `clientCount` clients connected to 127.0.0.1:`port`, each having sent "client N", once
    /// the kernel holds all of them in the listener's accept queue (ESTABLISHED on its side).
    private func queuedClients(port: UInt16) throws -> [Int32] {
        var clients: [Int32] = []
        for index in 0..<clientCount {
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard client >= 0 else { throw RunnerError("socket: errno \(errno)") }
            clients.append(client)
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            let bytes = Array("client \(index)".utf8)
            guard connected == 0, send(client, bytes, bytes.count, 0) == bytes.count else {
                throw RunnerError("client \(index) cannot connect to port \(port) and send: errno \(errno)")
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while serverSideConnections(port: port) < clientCount {
            guard Date() < deadline else { throw RunnerError("the listener's queue never held \(clientCount)") }
            usleep(10_000)
        }
        return clients
    }

    /// The connections in state ESTABLISHED whose local port is `port`, from /proc/net/tcp.
    private func serverSideConnections(port: UInt16) -> Int {
        let portText = ":" + String(format: "%04X", port)
        return (Sys.readText("/proc/net/tcp") ?? "").split(separator: "\n").dropFirst().filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[1].hasSuffix(portText) && fields[3] == "01"
        }.count
    }

    /// What `client`'s next read gives: its bytes, or the errno it fails with.
    private func read(_ client: Int32) -> Result<String, POSIXError> {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = recv(client, &buffer, buffer.count, 0)
        guard count >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
        return .success(String(decoding: buffer[..<count], as: UTF8.self))
    }

    /// Without a dump, the program accepts each waiting client and answers it.
    func testProgramAcceptsItsQueue() throws {
        let port = try freeLoopbackPort()
        let p = try start(.tcpAcceptQueue(port: port, clients: clientCount, dropped: false))
        let clients = try queuedClients(port: port)
        defer { for client in clients { close(client) } }
        try terminateAndExpectPass(p, "accepting its queue")
        for (index, client) in clients.enumerated() {
            XCTAssertEqual(try read(client).get(), "server", "client \(index)")
        }
    }

    /// A dump that kills the tree: it says which listener had how many connections waiting;
    /// each client is reset, as when the listener closes; the restored listener's queue is
    /// empty and it takes a new connection.
    func testDumpDropsTheQueueAsClosingTheListenerDoes() throws {
        _ = try requireAmber()
        let port = try freeLoopbackPort()
        let p = try start(.tcpAcceptQueue(port: port, clients: clientCount, dropped: true))
        let clients = try queuedClients(port: port)
        defer { for client in clients { close(client) } }
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        for expected in [
            "process \(p.pid)",
            "the TCP listener on 127.0.0.1:\(port) had \(clientCount) connections in its accept queue",
            "dropped with the dumped tree", "reset",
        ] {
            XCTAssertTrue(dump.stderr.contains(expected), "the dump's notice lacks \"\(expected)\": \(dump.stderr)")
        }
        XCTAssertTrue(dump.stderr.contains(" fd "), "the dump's notice names no fd: \(dump.stderr)")
        for (index, client) in clients.enumerated() {
            switch read(client) {
            case .failure(let error): XCTAssertEqual(error.code, .ECONNRESET, "client \(index)")
            case .success(let bytes): XCTFail("client \(index) read \"\(bytes)\", not a reset")
            }
        }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "restored, its queue dropped")
    }

    /// `dump --leave-running` takes nothing from the queue: it says the connections stay
    /// queued, and the program accepts and answers each.
    func testLeaveRunningKeepsTheQueue() throws {
        _ = try requireAmber()
        let port = try freeLoopbackPort()
        let p = try start(.tcpAcceptQueue(port: port, clients: clientCount, dropped: false))
        let clients = try queuedClients(port: port)
        defer { for client in clients { close(client) } }
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        XCTAssertTrue(
            dump.stderr.contains("had \(clientCount) connections in its accept queue")
                && dump.stderr.contains("stay queued in the running listener"),
            "the dump's notice: \(dump.stderr)")
        assertRunningUntraced(p.pid, "after dump --leave-running")
        try terminateAndExpectPass(p, "accepting its queue after dump --leave-running")
        for (index, client) in clients.enumerated() {
            XCTAssertEqual(try read(client).get(), "server", "client \(index)")
        }
    }
}
