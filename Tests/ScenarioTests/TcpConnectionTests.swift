// Established TCP connections under `amber dump --tcp-established`: both ends in the tree, a
// server whose client is the test itself, --leave-running, the network lock's lifetime, and the
// refusals (without the flag, and of the states amber does not restore).

import AmberImage
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

extension Scenario {
    /// A server and its client (a child) over 127.0.0.1, every queue holding data.
    static let tcpConnections = Scenario(name: "tcp_connections")
    /// A server on 127.0.0.1:`port` whose one connection the test makes.
    static func tcpServer(port: UInt16) -> Scenario {
        Scenario(name: "tcp_connections", args: ["--server", "\(port)"])
    }
    /// The same over ::1.
    static let tcpConnectionsInet6 = Scenario(name: "tcp_connections", args: ["--inet6"])
    /// The same over IPv6 sockets with IPv4 peers (::ffff:127.0.0.1).
    static let tcpConnectionsV4Mapped = Scenario(name: "tcp_connections", args: ["--v4-mapped"])
    /// The same in a network namespace of its own.
    static let tcpConnectionsOwnNamespace = Scenario(name: "tcp_connections", args: ["--own-namespace"])
    /// A connection whose client shut its reading down (SHUT_RD), still ESTABLISHED.
    static let tcpReadShutDown = Scenario(name: "tcp_connections", args: ["--read-shut-down"])
    /// A connection shut down one way: FIN_WAIT2 and CLOSE_WAIT.
    static let tcpHalfClosed = Scenario(name: "tcp_connections", args: ["--half-closed"])
    static let tcpPeekOffset = Scenario(name: "tcp_connections", args: ["--peek-offset"])
    static let tcpZeroCopy = Scenario(name: "tcp_connections", args: ["--zero-copy"])
    static let tcpStampedQueue = Scenario(name: "tcp_connections", args: ["--stamped-queue"])
    static let tcpShared = Scenario(name: "tcp_connections", args: ["--shared"])
    static let tcpAcceptedBelow = Scenario(name: "tcp_connections", args: ["--accepted-below"])
}

final class TcpConnectionTests: ScenarioTestCase {
    /// The tables of amber's network lock there were before the test.
    private var earlierLocks: Set<String> = []

    /// The tables of amber's network lock the test made that are there now.
    private func lockTables() -> [String] {
        let run = try? Spawn.run(["/usr/sbin/nft", "list", "tables"], in: NSTemporaryDirectory())
        return (run?.1 ?? "").split(separator: "\n").compactMap { line in
            line.hasPrefix("table inet amber-lock-") ? String(line.dropFirst("table inet ".count)) : nil
        }.filter { !earlierLocks.contains($0) }
    }

    /// nft is there; a lock the test leaves (a failed restore keeps it, as it should) goes after it.
    private func requireNft() throws {
        guard Sys.fileExists("/usr/sbin/nft") else { throw XCTSkip("needs nft (Debian's nftables)") }
        earlierLocks = Set(lockTables())
        addTeardownBlock { [self] in
            for table in lockTables() {
                _ = try? Spawn.run(["/usr/sbin/nft", "delete", "table", "inet", table], in: NSTemporaryDirectory())
            }
        }
    }

    /// `amber dump --tcp-established`: exit 0, the tree gone, the image complete, and the lock
    /// on (`lockHere`: in our namespace; a tree's own namespace goes with the tree, and its lock).
    private func dumpConnections(
        _ p: ScenarioProcess, lockHere: Bool = true, file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--tcp-established"], reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("dump --tcp-established failed: \(r.summary); \(p.diagnostics)", file: file, line: line)
            throw RunnerError("dump failed")
        }
        XCTAssertNotNil(p.exitStatus, "the dumped process still runs", file: file, line: line)
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"), "no inventory.pb", file: file, line: line)
        XCTAssertEqual(
            lockTables().count, lockHere ? 1 : 0, "after the dump, the lock: \(lockTables())", file: file, line: line)
        return image
    }

    /// `scenario` dumped with `--tcp-established` and restored: the lock is gone, and the
    /// scenario passes its checks (`context` says which).
    private func checkDumpedAndRestored(
        _ scenario: Scenario, _ context: String, lockHere: Bool = true, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        _ = try requireAmber()
        try requireNft()
        let p = try start(scenario, file: file, line: line)
        let image = try dumpConnections(p, lockHere: lockHere, file: file, line: line)
        try restoreDetachedExpectingSuccess(p, from: image, file: file, line: line)
        XCTAssertEqual(lockTables(), [], "the restore left the lock on", file: file, line: line)
        try terminateAndExpectPass(p, "\(context) after dump --tcp-established and restore", file: file, line: line)
    }

    /// Both ends in the tree: every queue comes back, both ends read each other's bytes, send
    /// more and see the end; the lock is gone once the restore is done.
    func testConnectionWithBothEndsInTheTree() throws {
        try checkDumpedAndRestored(.tcpConnections, "both ends in the tree")
    }

    /// The same over IPv6 (::1): the lock's rules are ip6 ones.
    func testConnectionOverIPv6() throws {
        try checkDumpedAndRestored(.tcpConnectionsInet6, "over ::1")
    }

    /// The same over dual-stack IPv6 sockets with IPv4 peers (node's and Java's default): the
    /// lock's rules are IPv4 ones, as the packets are.
    func testConnectionOverIPv4MappedIPv6() throws {
        try checkDumpedAndRestored(.tcpConnectionsV4Mapped, "over ::ffff:127.0.0.1")
    }

    /// Both ends in a network namespace of the tree's own, which the restore makes again: the
    /// lock is made there too before the connections, so neither end is reset by the other's
    /// stack before both are back.
    func testConnectionInTheTreesOwnNamespace() throws {
        try checkDumpedAndRestored(.tcpConnectionsOwnNamespace, "in its own network namespace", lockHere: false)
    }

    /// A connection whose socket a child shares (one description across fork): held in repair
    /// mode once, for the parent's descriptor, and restored shared (it was refused, the child's
    /// descriptor found in amber's own repair mode).
    func testConnectionSharedAcrossFork() throws {
        try checkDumpedAndRestored(.tcpShared, "shared across fork")
    }

    /// A connection at a lower descriptor than the listener (without SO_REUSEADDR) it was
    /// accepted from: the listener is made first, so the connection does not hold its port.
    func testConnectionBelowItsListener() throws {
        try checkDumpedAndRestored(.tcpAcceptedBelow, "below its listener")
    }

    /// A connection whose client shut its reading down: restored shut down, its writing still
    /// reaching the server.
    func testReadShutDownConnection() throws {
        try checkDumpedAndRestored(.tcpReadShutDown, "SHUT_RD")
    }

    /// --leave-running: the connections leave repair mode, the lock goes, and they carry on.
    func testLeaveRunning() throws {
        _ = try requireAmber()
        try requireNft()
        let p = try start(.tcpConnections)
        let image = try newDirectory("image")
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", image, "--tcp-established", "--leave-running"], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump --tcp-established --leave-running: \(r.summary)")
        XCTAssertEqual(lockTables(), [], "dump --leave-running left the lock on")
        assertRunningUntraced(p.pid, "after dump --leave-running")
        try terminateAndExpectPass(p, "after dump --tcp-established --leave-running")
    }

    /// A server in the tree, its client the test: the client's bytes the server had not read,
    /// and the server's it had not sent (the client read nothing, its window closed), survive;
    /// on the same connection the client then reads all the server sent and sends more.
    func testServerWithClientOutsideTheTree() throws {
        _ = try requireAmber()
        try requireNft()
        let port = try freeLoopbackPort()
        let p = try start(.tcpServer(port: port))
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        XCTAssertGreaterThanOrEqual(client, 0)
        defer { close(client) }
        var small: Int32 = 131072
        setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(4))
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
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
        XCTAssertEqual(connected, 0, "connect to the server: errno \(errno)")
        func pattern(_ seed: UInt64, _ i: UInt64) -> UInt8 { UInt8((i &* 7 &+ seed &* 31 &+ i / 251) & 0xff) }
        var sent: UInt64 = 0
        func send(_ count: UInt64) {
            let bytes = (sent..<(sent + count)).map { pattern(3, $0) }
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress! + offset, $0.count - offset, 0) }
                guard n > 0 else { return XCTFail("send: errno \(errno)") }
                offset += n
            }
            sent += count
        }
        send(20000)
        var serverSent: UInt64?
        for _ in 0..<200 where serverSent == nil {
            serverSent = Sys.readText(p.outfile + ".sent").flatMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
            if serverSent == nil { Sys.sleep(milliseconds: 25) }
        }
        guard let serverSent else { throw RunnerError("the server never filled its send queue; \(p.diagnostics)") }
        let image = try dumpConnections(p)
        try restoreDetachedExpectingSuccess(p, from: image)
        XCTAssertEqual(lockTables(), [], "the restore left the lock on")
        var received: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while received < serverSent {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard n > 0 else {
                XCTFail("after the restore, read \(received) of the server's \(serverSent) bytes: errno \(errno)")
                break
            }
            for i in 0..<n where buffer[i] != pattern(1, received + UInt64(i)) {
                XCTFail("byte \(received + UInt64(i)) from the server is \(buffer[i])")
                break
            }
            received += UInt64(n)
        }
        send(30000)
        try "\(sent)".write(toFile: p.outfile + ".expect", atomically: true, encoding: .utf8)
        try terminateAndExpectPass(p, "the server after the restore")
        let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, 4, Int32(MSG_WAITALL)) }
        XCTAssertEqual(n == 4 ? String(decoding: buffer.prefix(4), as: UTF8.self) : "\(n)", "done")
    }

    /// A dump whose `amber dump` is killed once the connections are locked and in repair mode:
    /// the worker takes them out of it and the lock off; they carry on.
    func testKilledDumpLeavesNoLock() throws {
        _ = try requireAmber()
        try requireNft()
        let p = try start(.tcpConnections)
        let run = try startAmber(
            ["dump", "-t", "\(p.pid)", "-D", try newDirectory("image"), "--tcp-established"],
            env: ["AMBER_TEST_FAULT": "dump.inventory=kill-supervisor"])
        let r = try finish(run, reaping: [p])
        XCTAssertEqual(r.status, .signaled(SIGKILL), "amber dump killed: \(r.summary)")
        for _ in 0..<200 where !lockTables().isEmpty { Sys.sleep(milliseconds: 25) }
        XCTAssertEqual(lockTables(), [], "the killed dump left the lock on")
        for _ in 0..<200 where Proc.status(p.pid)?.tracerPid != 0 { Sys.sleep(milliseconds: 25) }
        assertRunningUntraced(p.pid, "after the killed dump")
        try terminateAndExpectPass(p, "after a killed dump --tcp-established")
    }

    /// Without --tcp-established an established connection is refused, naming the flag; the
    /// tree is untouched.
    func testRefusedWithoutTheFlag() throws {
        _ = try requireAmber()
        let p = try start(.tcpConnections)
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", try newDirectory("image")], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState,
            mentions: ["\(p.pid)", "in state ESTABLISHED", "--tcp-established", "127.0.0.1:"])
        assertRunningUntraced(p.pid, "after the refused dump")
        try terminateAndExpectPass(p, "after the dump refused without --tcp-established")
    }

    /// A connection shut down one way (FIN_WAIT2 at one end, CLOSE_WAIT at the other) is
    /// refused by its state, even with --tcp-established; it carries data after.
    func testHalfClosedConnectionRefused() throws {
        _ = try requireAmber()
        try requireNft()
        let p = try start(.tcpHalfClosed)
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", try newDirectory("image"), "--tcp-established"], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", "a TCP connection from 127.0.0.1:"])
        XCTAssertTrue(
            r.stderr.contains("in state FIN_WAIT2") || r.stderr.contains("in state CLOSE_WAIT"), "stderr: \(r.stderr)")
        XCTAssertEqual(lockTables(), [], "a refused dump left the lock on")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    /// A connection with a peek offset (SO_PEEK_OFF) is refused before it is put in repair:
    /// the dump's MSG_PEEK of its queue would move the offset.
    func testPeekOffsetRefused() throws {
        _ = try requireAmber()
        try requireNft()
        let p = try start(.tcpPeekOffset)
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", try newDirectory("image"), "--tcp-established"], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", "with a peek offset (SO_PEEK_OFF)"])
        XCTAssertEqual(lockTables(), [], "a refused dump left the lock on")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    /// A connection that counts what it sends where no getsockopt reads (SO_ZEROCOPY's
    /// completions), and one whose unread bytes the program wants the arrival time of
    /// (SO_TIMESTAMP): refused by name, the lock gone, both as they were.
    func testCountedAndStampedConnectionsRefused() throws {
        _ = try requireAmber()
        try requireNft()
        for (scenario, object) in [
            (Scenario.tcpZeroCopy, "SO_ZEROCOPY"), (Scenario.tcpStampedQueue, "their arrival times asked for"),
        ] {
            let p = try start(scenario)
            let r = try amber(
                ["dump", "-t", "\(p.pid)", "-D", try newDirectory("image"), "--tcp-established"], reaping: [p])
            assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", object])
            XCTAssertEqual(lockTables(), [], "a refused dump left the lock on")
            try terminateAndExpectPass(p, "after the refused dump")
        }
    }

    /// redis-server on 127.0.0.1 and a client of the test's own (RESP over a socket): dumped
    /// with the client's connection open, restored in the same network namespace, the same
    /// connection goes on: the same CLIENT ID, the data written before, and new writes.
    func testRedisClientKeepsItsConnection() throws {
        _ = try requireAmber()
        try requireNft()
        let server = "/usr/bin/redis-server"
        guard Sys.fileExists(server) else { throw XCTSkip("\(server) is not installed (.ci/run installs it)") }
        let port = try freeLoopbackPort()
        let directory = try newDirectory("redis")
        let pid = try Spawn.start(
            [
                server, "--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory, "--save", "", "--appendonly",
                "no", "--daemonize", "no", "--supervised", "no", "--logfile", directory + "/redis.log",
            ], stdout: directory + "/log")
        track(pid)
        func log() -> String { Sys.readText(directory + "/redis.log") ?? "" }
        let deadline = Sys.now() + Self.pidfileTimeout
        while !log().lowercased().contains("ready to accept connections") {
            guard Sys.now() < deadline, case .running = Spawn.poll(pid) else {
                return XCTFail("redis-server did not start; log:\n\(log())")
            }
            Sys.sleep(milliseconds: 10)
        }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(client) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
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
        XCTAssertEqual(connected, 0, "connect to redis-server: errno \(errno)")
        /// Sends one command (RESP array of bulk strings) and reads one reply line (with a bulk string's value).
        func command(_ words: String...) -> String {
            var request = "*\(words.count)\r\n"
            for word in words { request += "$\(word.utf8.count)\r\n\(word)\r\n" }
            let bytes = Array(request.utf8)
            guard bytes.withUnsafeBytes({ send(client, $0.baseAddress, $0.count, 0) }) == bytes.count else {
                return "send failed: errno \(errno)"
            }
            func line() -> String? {
                var text = [UInt8]()
                var byte: UInt8 = 0
                while true {
                    guard recv(client, &byte, 1, 0) == 1 else { return nil }
                    if byte == 10, text.last == 13 { return String(decoding: text.dropLast(), as: UTF8.self) }
                    text.append(byte)
                }
            }
            guard let first = line() else { return "no reply: errno \(errno)" }
            if first.hasPrefix("$"), let length = Int(first.dropFirst()), length >= 0 { return line() ?? "no value" }
            return first
        }
        let id = command("CLIENT", "ID")
        XCTAssertTrue(id.hasPrefix(":"), "CLIENT ID: \(id)")
        XCTAssertEqual(command("SET", "greeting", "hello \(getpid())"), "+OK")

        let image = try newDirectory("image")
        let process = ScenarioProcess(
            scenario: Scenario(name: "redis-server"), binary: server, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image, "--tcp-established"], reaping: [process])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary); log:\n\(log())")
        guard dump.status == .exited(0) else { return }
        XCTAssertFalse(Proc.pidInUse(pid), "the dumped server's PID \(pid) is still in use")
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)")
        guard restore.status == .exited(0) else { return }
        XCTAssertEqual(lockTables(), [], "the restore left the lock on")
        XCTAssertEqual(command("CLIENT", "ID"), id, "the same connection, the same client")
        XCTAssertEqual(command("GET", "greeting"), "hello \(getpid())")
        XCTAssertEqual(command("SET", "after", "restore"), "+OK")
        XCTAssertEqual(command("DBSIZE"), ":2")
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored server is gone")
        _ = Spawn.wait(pid, timeout: Self.verdictTimeout)
    }

    /// The lock's table is made while the tree still runs; a dump that fails once the tree is
    /// frozen deletes it, and the connections go on.
    func testFailedDumpLeavesNoLock() throws {
        _ = try requireAmber()
        try requireNft()
        let p = try start(.tcpConnections)
        let r = try amber(
            ["dump", "-t", "\(p.pid)", "-D", try newDirectory("image"), "--tcp-established"],
            env: ["AMBER_TEST_FAULT": "dump.preflight=fail"])
        XCTAssertNotEqual(r.status, .exited(0), "dump with preflight=fail: \(r.summary)")
        XCTAssertEqual(lockTables(), [], "the failed dump left the lock on")
        assertRunningUntraced(p.pid, "after the failed dump")
        try terminateAndExpectPass(p, "after a failed dump --tcp-established")
    }
}

extension AuthenticationTests {
    /// An image not authenticated here (the user's own) whose task lacks CAP_NET_ADMIN asks for
    /// a TCP connection: refused before any task is made, even for root, who would otherwise
    /// send packets from the addresses and sequence numbers it names.
    func testUserImageWithATcpConnectionIsRefused() throws {
        let (p, image) = try userDumpedCounter()
        try edit(image, pid: p.pid) { task in
            var connection = Amber_TcpConnection()
            connection.family = 2
            (connection.localAddress, connection.localPort) = (Data([127, 0, 0, 1]), 40000)
            (connection.peerAddress, connection.peerPort) = (Data([127, 0, 0, 1]), 40001)
            (connection.mss, connection.lockTable) = (65483, "amber-lock-1")
            (connection.ownerUid, connection.ownerGid) = (
                task.threads[0].credentials.fsuid, task.threads[0].credentials.fsgid
            )
            var description = Amber_OpenFileDescription()
            (description.id, description.flags) = (9999, 2)
            description.tcpConnection = connection
            task.files.descriptions.append(description)
        }
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: ["process \(p.pid) (counter)", "TCP_REPAIR", "CAP_NET_ADMIN", "not authenticated"])
    }
}
