// Trees in network namespaces of their own: a redis-server moved from one "host" to another
// (two network namespaces, each with a veth to a bridge) with a client's connection open, and
// python3's http.server restored into a new namespace made as its own was. Every namespace,
// link and process the tests make goes when they end, failed or not; nothing talks to any
// address outside them.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class MigrationTests: ScenarioTestCase {
    private static let ip = "/bin/ip"
    private static let nsenter = "/usr/bin/nsenter"
    private static let python = "/usr/bin/python3"
    private static let redis = "/usr/bin/redis-server"
    private static let curl = "/usr/bin/curl"
    /// The subnet of the test's hosts, behind its own bridge.
    private static let server = "10.77.0.10"
    private static let client = "10.77.0.20"
    private static let hostBAddress = "10.77.0.12"

    /// Short names of the test's own, unique to this process (link names have 15 bytes at most).
    private let tag = "\(getpid() % 100_000)"

    private func requireTools(_ tools: [String]) throws {
        _ = try requireAmber()
        for tool in [Self.ip, Self.nsenter] + tools where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
    }

    /// Runs `ip` (or another tool) and fails the test when it fails.
    @discardableResult
    private func run(_ argv: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let (status, output) = try Spawn.run(argv, in: try directory())
        guard status == .exited(0) else {
            XCTFail("\(argv.joined(separator: " ")): \(status) \(output)", file: file, line: line)
            throw RunnerError("\(argv.joined(separator: " ")) failed")
        }
        return output
    }

    /// A network namespace of the test's (`ip netns add`), with its loopback up; deleted after the test.
    private func namespace(_ role: String) throws -> String {
        let name = "amber-\(role)-\(tag)"
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "netns", "delete", name], in: "/") }
        try run([Self.ip, "netns", "add", name])
        try run([Self.ip, "-n", name, "link", "set", "lo", "up"])
        return name
    }

    /// The bridge in amber's namespace the hosts' veths are on; deleted after the test.
    private func bridge() throws -> String {
        let name = "amb\(tag)"
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "link", "delete", name], in: "/") }
        try run([Self.ip, "link", "add", name, "type", "bridge"])
        try run([Self.ip, "link", "set", name, "up"])
        return name
    }

    /// A veth from `namespace` (named `name` there, up, with `address`) to `bridge`. It is
    /// deleted after the test by its end in amber's namespace, at once: a namespace's own
    /// links go later, in the kernel's cleanup, whose notifications would reach the netlink
    /// sockets of the tests that come next.
    private func veth(_ name: String, in namespace: String, bridge: String, address: String?) throws {
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "link", "delete", "\(name)p"], in: "/") }
        try run([Self.ip, "link", "add", name, "type", "veth", "peer", "name", "\(name)p"])
        try run([Self.ip, "link", "set", "\(name)p", "master", bridge, "up"])
        try run([Self.ip, "link", "set", name, "netns", namespace])
        try run([Self.ip, "-n", namespace, "link", "set", name, "up"])
        if let address { try run([Self.ip, "-n", namespace, "address", "add", "\(address)/24", "dev", name]) }
    }

    /// `argv` run in the network namespace `namespace` alone (nsenter, not `ip netns exec`,
    /// which makes a mount namespace too).
    private func inNamespace(_ namespace: String, _ argv: [String]) -> [String] {
        [Self.nsenter, "--net=/run/netns/\(namespace)"] + argv
    }

    /// The client: one TCP connection to redis, RESP by hand. It writes CLIENT ID and the
    /// result of a SET to `before`, waits for the file `go`, then on the same socket writes to
    /// `after`: CLIENT ID, the GET of what it set, a new SET, DBSIZE, and its local address
    /// (the same socket, never reconnected). Any error ends it with the error in `after`.
    private static let clientScript = """
        import os, socket, sys, time
        host, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        connection = socket.create_connection((host, port), timeout=30)
        replies = connection.makefile("rb")
        def command(*words):
            request = b"*%d\\r\\n" % len(words)
            for word in words:
                word = word.encode()
                request += b"$%d\\r\\n%s\\r\\n" % (len(word), word)
            connection.sendall(request)
            line = replies.readline().rstrip(b"\\r\\n").decode()
            if line.startswith("$") and int(line[1:]) >= 0:
                line = replies.readline().rstrip(b"\\r\\n").decode()
            return line
        def report(name, lines):
            with open(os.path.join(directory, name + ".tmp"), "w") as out:
                out.write("\\n".join(lines) + "\\n")
            os.rename(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))
        report("before", [command("CLIENT", "ID"), command("SET", "greeting", "hello " + directory),
                          command("DBSIZE"), "%s:%d" % connection.getsockname()])
        while not os.path.exists(os.path.join(directory, "go")):
            time.sleep(0.01)
        try:
            report("after", [command("CLIENT", "ID"), command("GET", "greeting"), command("SET", "after", "moved"),
                             command("DBSIZE"), "%s:%d" % connection.getsockname()])
        except Exception as error:
            report("after", ["error: %r" % error])
        """

    /// Waits (up to the pidfile timeout) for `path` and returns its lines.
    private func lines(of path: String) -> [String]? {
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.now() < deadline {
            if let text = Sys.readText(path) { return text.split(separator: "\n").map(String.init) }
            Sys.sleep(milliseconds: 10)
        }
        return nil
    }

    /// redis-server with 200,000 keys runs in host A's namespace on 10.77.0.10; a python3
    /// client in a third namespace holds one connection to it. The server is dumped with
    /// --tcp-established, its address moves to host B's veth, and it is restored into host B's
    /// namespace with --join-ns: the client goes on on the same socket, with the same CLIENT
    /// ID, its key there and new writes working. Restored without --join-ns, the image is
    /// refused, naming host A's veth.
    func testRedisMovesToAnotherHostWithItsClient() throws {
        try requireTools([Self.python, Self.redis, "/usr/sbin/nft"])
        let hostA = try namespace("a")
        let hostB = try namespace("b")
        let clientHost = try namespace("c")
        let bridge = try bridge()
        let (linkA, linkB, linkC) = ("ama\(tag)", "amb\(tag)x", "amc\(tag)")
        try veth(linkA, in: hostA, bridge: bridge, address: Self.server)
        try veth(linkB, in: hostB, bridge: bridge, address: Self.hostBAddress)
        try veth(linkC, in: clientHost, bridge: bridge, address: Self.client)

        let directory = try newDirectory("redis")
        let pid = try Spawn.start(
            inNamespace(
                hostA,
                [
                    Self.redis, "--port", "6379", "--bind", Self.server, "--dir", directory, "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--supervised", "no", "--protected-mode", "no",
                    "--enable-debug-command", "yes", "--logfile", directory + "/redis.log",
                ]), stdout: directory + "/log")
        track(pid)
        addTeardownBlock {
            // The restored server is not our child until amber restore --detach has returned.
            if Proc.comm(pid) == "redis-server" { kill(pid, SIGKILL) }
        }
        func log() -> String { Sys.readText(directory + "/redis.log") ?? "" }
        let deadline = Sys.now() + Self.pidfileTimeout
        while !log().lowercased().contains("ready to accept connections") {
            guard Sys.now() < deadline, case .running = Spawn.poll(pid) else {
                return XCTFail("redis-server did not start; log:\n\(log())")
            }
            Sys.sleep(milliseconds: 10)
        }
        let populate = try Spawn.run(
            inNamespace(
                clientHost,
                [
                    Self.python, "-c",
                    "import socket; s = socket.create_connection(('\(Self.server)', 6379)); s.sendall(b'DEBUG POPULATE 200000\\r\\n'); print(s.recv(100).decode().strip())",
                ]), in: directory)
        XCTAssertEqual(populate.1.trimmingCharacters(in: .whitespacesAndNewlines), "+OK", "DEBUG POPULATE: \(populate)")

        let script = directory + "/client.py"
        try Self.clientScript.write(toFile: script, atomically: true, encoding: .utf8)
        let clientPID = try Spawn.start(
            inNamespace(clientHost, [Self.python, script, Self.server, "6379", directory]),
            stdout: directory + "/client.log")
        track(clientPID)
        guard let before = lines(of: directory + "/before"), before.count == 4 else {
            return XCTFail("the client did not connect: \(Sys.readText(directory + "/client.log") ?? "")")
        }
        XCTAssertTrue(before[0].hasPrefix(":"), "CLIENT ID: \(before)")
        XCTAssertEqual(before[1], "+OK")
        XCTAssertEqual(before[2], ":200001")

        let image = try newDirectory("image")
        let process = ScenarioProcess(
            scenario: Scenario(name: "redis-server"), binary: Self.redis, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image, "--tcp-established"], reaping: [process])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary); log:\n\(log())")
        guard dump.status == .exited(0) else { return }
        XCTAssertFalse(Proc.pidInUse(pid), "the dumped server's PID \(pid) is still in use")

        let refused = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(refused.status, .exited(5), "restore without --join-ns: \(refused.summary)")
        XCTAssertTrue(refused.stderr.contains("the veth link \(linkA)"), refused.stderr)
        XCTAssertFalse(Proc.pidInUse(pid), "the refused restore left PID \(pid) taken")

        // The server's address moves from host A to host B; the client forgets where it was,
        // as a gratuitous ARP from host B would have it.
        try run([Self.ip, "-n", hostA, "address", "delete", "\(Self.server)/24", "dev", linkA])
        try run([Self.ip, "-n", hostB, "address", "add", "\(Self.server)/24", "dev", linkB])
        try run([Self.ip, "-n", clientHost, "neighbour", "flush", "dev", linkC])
        let restore = try amber(["restore", "-D", image, "--detach", "--join-ns", "net:/run/netns/\(hostB)"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)")
        guard restore.status == .exited(0) else { return }
        XCTAssertEqual(
            try run([Self.ip, "netns", "identify", "\(pid)"]).trimmingCharacters(in: .whitespacesAndNewlines), hostB,
            "the restored server's namespace")

        let go = open(directory + "/go", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        XCTAssertGreaterThanOrEqual(go, 0)
        close(go)
        guard let after = lines(of: directory + "/after") else {
            return XCTFail("the client did not go on: \(Sys.readText(directory + "/client.log") ?? "")")
        }
        XCTAssertEqual(
            after, [before[0], "hello \(directory)", "+OK", ":200002", before[3]], "the client after the move")
        XCTAssertEqual(Spawn.wait(clientPID, timeout: Self.verdictTimeout), .exited(0))
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored server is gone")
        _ = Spawn.wait(pid, timeout: Self.verdictTimeout)
    }

    /// python3's http.server in a namespace of its own with a loopback link alone (an address
    /// of its own on it, a sysctl changed): dumped, and restored without --join-ns into a new
    /// namespace made the same, where curl gets its file again.
    func testHTTPServerComesBackInANewNamespace() throws {
        try requireTools([Self.python, Self.curl])
        let host = try namespace("h")
        try run([Self.ip, "-n", host, "address", "add", "10.78.0.1/32", "dev", "lo"])
        try run(inNamespace(host, ["/usr/sbin/sysctl", "-q", "-w", "net.ipv4.tcp_keepalive_time=4321"]))
        let directory = try newDirectory("http-server")
        let site = directory + "/site"
        try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: false)
        let contents = "served in a namespace of its own to test \(getpid())\n"
        try contents.write(toFile: site + "/hello.txt", atomically: true, encoding: .utf8)
        let pid = try Spawn.start(
            inNamespace(
                host, [Self.python, "-u", "-m", "http.server", "--bind", "10.78.0.1", "8000", "--directory", site]),
            stdout: directory + "/log")
        track(pid)
        addTeardownBlock { if Proc.exe(pid) == Self.python { kill(pid, SIGKILL) } }
        func fetch(in namespace: String) throws -> (ExitStatus, String) {
            try Spawn.run(
                [
                    Self.nsenter, "--net=\(namespace)", Self.curl, "-sS", "--max-time", "10",
                    "http://10.78.0.1:8000/hello.txt",
                ],
                in: directory)
        }
        let deadline = Sys.now() + Self.pidfileTimeout
        var served = try fetch(in: "/run/netns/\(host)")
        while served.0 != .exited(0), Sys.now() < deadline, case .running = Spawn.poll(pid) {
            Sys.sleep(milliseconds: 50)
            served = try fetch(in: "/run/netns/\(host)")
        }
        XCTAssertEqual(served.1, contents, "before the dump: \(served)")
        guard served.0 == .exited(0) else { return }
        while (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.count != 1,
            Sys.now() < deadline
        {
            Sys.sleep(milliseconds: 10)
        }
        let original = Sys.readlink("/proc/\(pid)/ns/net")

        let image = try newDirectory("image")
        let server = ScenarioProcess(
            scenario: Scenario(name: "http.server"), binary: Self.python, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [server])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)")
        guard dump.status == .exited(0) else { return }
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)")
        guard restore.status == .exited(0) else { return }
        let restored = Sys.readlink("/proc/\(pid)/ns/net")
        XCTAssertNotEqual(restored, original, "restored into a new namespace")
        XCTAssertNotEqual(restored, Sys.readlink("/proc/self/ns/net"), "restored into a new namespace")
        let namespace = "/proc/\(pid)/ns/net"
        for round in 1...2 {
            let again = try fetch(in: namespace)
            XCTAssertEqual(again.1, contents, "fetch \(round) from the restored server: \(again)")
        }
        let keepalive = try Spawn.run(
            [Self.nsenter, "--net=\(namespace)", "/usr/sbin/sysctl", "-n", "net.ipv4.tcp_keepalive_time"], in: directory
        )
        XCTAssertEqual(keepalive.1.trimmingCharacters(in: .whitespacesAndNewlines), "4321")
        let addresses = try Spawn.run(
            [Self.nsenter, "--net=\(namespace)", Self.ip, "-o", "address", "show"], in: directory)
        XCTAssertTrue(addresses.1.contains("10.78.0.1/32"), addresses.1)
        XCTAssertTrue(addresses.1.contains("127.0.0.1/8"), addresses.1)
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored server is gone")
        _ = Spawn.wait(pid, timeout: Self.verdictTimeout)
    }
}
