// A tree in a network namespace of its own with a veth to a bridge: restored without --join-ns
// into a new namespace made as its own was (the veth end's MAC, MTU, addresses, a route, and
// sysctls), its other end where `--external veth[...]` puts it. Every namespace, link and
// process the test makes goes when it ends, failed or not; nothing talks to any address outside
// them.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class NetworkNamespaceTests: ScenarioTestCase {
    private static let ip = "/bin/ip"
    private static let nsenter = "/usr/bin/nsenter"
    private static let python = "/usr/bin/python3"
    private static let curl = "/usr/bin/curl"
    private static let sysctl = "/usr/sbin/sysctl"

    /// Short names of the test's own, unique to this process (link names have 15 bytes at most).
    private let tag = "\(getpid() % 100_000)"

    @discardableResult
    private func run(_ argv: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let (status, output) = try Spawn.run(argv, in: try directory())
        guard status == .exited(0) else {
            XCTFail("\(argv.joined(separator: " ")): \(status) \(output)", file: file, line: line)
            throw RunnerError("\(argv.joined(separator: " ")) failed")
        }
        return output
    }

    /// `argv` run in the network namespace file `namespace`.
    private func inNamespace(_ namespace: String, _ argv: [String]) -> [String] {
        [Self.nsenter, "--net=\(namespace)"] + argv
    }

    /// A network namespace of the test's, its loopback up; deleted after the test.
    private func namespace(_ role: String) throws -> String {
        let name = "amber-\(role)-\(tag)"
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "netns", "delete", name], in: "/") }
        try run([Self.ip, "netns", "add", name])
        try run([Self.ip, "-n", name, "link", "set", "lo", "up"])
        return name
    }

    /// A veth `name` in `namespace`, up, whose other end (`name`p) is on `bridge`; the other end
    /// is deleted after the test, which takes the pair at once.
    private func veth(_ name: String, in namespace: String, bridge: String) throws {
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "link", "delete", "\(name)p"], in: "/") }
        try run([Self.ip, "link", "add", name, "type", "veth", "peer", "name", "\(name)p"])
        try run([Self.ip, "link", "set", "\(name)p", "master", bridge, "up"])
        try run([Self.ip, "link", "set", name, "netns", namespace])
    }

    /// What a new namespace would not have again is named when the restore refuses to make it
    /// (without --join-ns): a point-to-point address (its peer), an address's route metric, a
    /// veth whose two ends are both in the namespace.
    func testRestoreNamesWhatANewNamespaceWouldLack() throws {
        _ = try requireAmber()
        for tool in [Self.ip, Self.nsenter] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let host = try namespace("un")
        try run([Self.ip, "-n", host, "address", "add", "10.83.0.1", "peer", "10.83.0.2", "dev", "lo"])
        try run([Self.ip, "-n", host, "address", "add", "10.84.0.1/24", "dev", "lo", "metric", "55"])
        try run([Self.ip, "-n", host, "link", "add", "aua\(tag)", "type", "veth", "peer", "name", "aub\(tag)"])
        // A sysctl outside net.ipv4 and net.ipv6 that amber does not set, an IPsec policy, a
        // queueing discipline, a link flag and an address with a lifetime.
        try run(inNamespace("/run/netns/\(host)", [Self.sysctl, "-q", "-w", "net.mptcp.enabled=0"]))
        try run([
            Self.ip, "-n", host, "xfrm", "policy", "add", "dir", "out", "src", "10.83.0.1", "dst", "10.83.0.2",
            "action", "block",
        ])
        try run(["/usr/sbin/tc", "-n", host, "qdisc", "add", "dev", "lo", "root", "pfifo"])
        try run([Self.ip, "-n", host, "link", "set", "lo", "promisc", "on"])
        try run([
            Self.ip, "-n", host, "address", "add", "10.85.0.1/24", "dev", "lo", "valid_lft", "900", "preferred_lft",
            "900",
        ])
        let directory = try newDirectory("unrestorable")
        let pid = try Spawn.start(
            inNamespace("/run/netns/\(host)", ["/bin/sleep", "1000"]), stdout: directory + "/log")
        track(pid)
        addTeardownBlock { kill(pid, SIGKILL) }
        let deadline = Sys.now() + Self.pidfileTimeout
        while Proc.exe(pid) != "/usr/bin/sleep", Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        let image = try newDirectory("image")
        let sleeper = ScenarioProcess(
            scenario: Scenario(name: "sleep"), binary: "/bin/sleep", directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image, "--leave-running"], reaping: [sleeper])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)")
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        let refused = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(refused.status, .exited(5), "restore: \(refused.summary)")
        for named in [
            "10.83.0.1/32 on lo with the peer 10.83.0.2", "with the metric 55", "the veth aua\(tag)",
            "net.mptcp.enabled = 0", "the IPsec policy src 10.83.0.1/32 dst 10.83.0.2/32",
            "the queueing discipline qdisc pfifo", "the link lo with PROMISC", "10.85.0.1/24 on lo with a lifetime",
        ] {
            XCTAssertTrue(refused.stderr.contains(named), "restore does not name \(named): \(refused.stderr)")
        }
        XCTAssertFalse(Proc.pidInUse(pid), "the refused restore left PID \(pid) taken")
    }

    /// python3's http.server in a namespace with a veth to a bridge (its own MAC, MTU 1400,
    /// an IPv4 and an IPv6 address, a route through a gateway, two sysctls changed), fetched by
    /// curl in another namespace on the bridge. Without --external it is refused naming the
    /// flag; with it, it comes back in a new namespace made the same, the other end on the
    /// bridge, and curl fetches its file again.
    func testVethNamespaceComesBackWithItsConfiguration() throws {
        _ = try requireAmber()
        for tool in [Self.ip, Self.nsenter, Self.python, Self.curl, Self.sysctl] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let host = try namespace("vh")
        let clientHost = try namespace("vc")
        let bridge = "avb\(tag)"
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "link", "delete", bridge], in: "/") }
        try run([Self.ip, "link", "add", bridge, "type", "bridge"])
        try run([Self.ip, "link", "set", bridge, "up"])
        let (inside, client, restoredOutside) = ("avi\(tag)", "avc\(tag)", "avr\(tag)")
        addTeardownBlock { _ = try? Spawn.run([Self.ip, "link", "delete", restoredOutside], in: "/") }
        try veth(inside, in: host, bridge: bridge)
        try veth(client, in: clientHost, bridge: bridge)
        let mac = "02:7a:00:00:\(String(format: "%02x:%02x", (getpid() >> 8) & 0xff, getpid() & 0xff))"
        try run([Self.ip, "-n", host, "link", "set", inside, "address", mac, "mtu", "1400", "up"])
        try run([Self.ip, "-n", host, "address", "add", "10.81.0.2/24", "dev", inside])
        try run([Self.ip, "-n", host, "address", "add", "fd81::2/64", "dev", inside, "nodad"])
        try run([Self.ip, "-n", host, "route", "add", "10.82.0.0/16", "via", "10.81.0.1"])
        try run(
            inNamespace(
                "/run/netns/\(host)",
                [
                    Self.sysctl, "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.tcp_keepalive_time=2345",
                    "net.ipv4.conf.lo.forwarding=0", "net.core.somaxconn=77", "net.unix.max_dgram_qlen=33",
                ]))
        try run([Self.ip, "-n", clientHost, "link", "set", client, "up"])
        try run([Self.ip, "-n", clientHost, "address", "add", "10.81.0.3/24", "dev", client])

        let directory = try newDirectory("veth-server")
        let site = directory + "/site"
        try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: false)
        let contents = "served over a veth to test \(getpid())\n"
        try contents.write(toFile: site + "/hello.txt", atomically: true, encoding: .utf8)
        let pid = try Spawn.start(
            inNamespace(
                "/run/netns/\(host)",
                [Self.python, "-u", "-m", "http.server", "--bind", "10.81.0.2", "8000", "--directory", site]),
            stdout: directory + "/log")
        track(pid)
        addTeardownBlock { if Proc.exe(pid) == Self.python { kill(pid, SIGKILL) } }
        func fetch() throws -> (ExitStatus, String) {
            try Spawn.run(
                inNamespace(
                    "/run/netns/\(clientHost)",
                    [Self.curl, "-sS", "--max-time", "10", "http://10.81.0.2:8000/hello.txt"]), in: directory)
        }
        let deadline = Sys.now() + Self.pidfileTimeout
        var served = try fetch()
        while served.0 != .exited(0), Sys.now() < deadline, case .running = Spawn.poll(pid) {
            Sys.sleep(milliseconds: 50)
            served = try fetch()
        }
        XCTAssertEqual(served.1, contents, "before the dump: \(served)")
        guard served.0 == .exited(0) else { return }
        while (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.count != 1,
            Sys.now() < deadline
        {
            Sys.sleep(milliseconds: 10)
        }

        let image = try newDirectory("image")
        let server = ScenarioProcess(
            scenario: Scenario(name: "http.server"), binary: Self.python, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [server])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)")
        guard dump.status == .exited(0) else { return }
        // The original veth goes, so that the new one's address is the only one on the bridge.
        try run([Self.ip, "link", "delete", "\(inside)p"])

        let refused = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(refused.status, .exited(5), "restore without --external: \(refused.summary)")
        XCTAssertTrue(
            refused.stderr.contains("the veth link \(inside)") && refused.stderr.contains("--external veth["),
            refused.stderr)
        XCTAssertFalse(Proc.pidInUse(pid), "the refused restore left PID \(pid) taken")
        let strange = try amber([
            "restore", "-D", image, "--detach", "--external", "veth[\(inside)]:\(restoredOutside)@\(bridge)",
            "--external", "veth[eth9]:x\(tag)",
        ])
        XCTAssertNotEqual(strange.status, .exited(0), "restore naming a veth the image lacks: \(strange.summary)")
        XCTAssertTrue(strange.stderr.contains("no veth link eth9"), strange.stderr)
        XCTAssertNotEqual(
            try Spawn.run([Self.ip, "link", "show", restoredOutside], in: directory).0, .exited(0),
            "the refused restore made \(restoredOutside)")
        let noBridge = try amber([
            "restore", "-D", image, "--detach", "--external", "veth[\(inside)]:\(restoredOutside)@nobr\(tag)",
        ])
        XCTAssertTrue(noBridge.stderr.contains("no bridge nobr\(tag)"), noBridge.summary)
        XCTAssertFalse(Proc.pidInUse(pid), "the refused restore left PID \(pid) taken")

        let restore = try amber([
            "restore", "-D", image, "--detach", "--external", "veth[\(inside)]:\(restoredOutside)@\(bridge)",
        ])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)")
        guard restore.status == .exited(0) else { return }
        for round in 1...2 {
            let again = try fetch()
            XCTAssertEqual(again.1, contents, "fetch \(round) from the restored server: \(again)")
        }
        let namespace = "/proc/\(pid)/ns/net"
        XCTAssertNotEqual(Sys.readlink(namespace), Sys.readlink("/proc/self/ns/net"), "restored into a new namespace")
        let link = try run(inNamespace(namespace, [Self.ip, "-o", "link", "show", inside]))
        XCTAssertTrue(link.contains("mtu 1400") && link.contains(mac) && link.contains(",UP"), link)
        let addresses = try run(inNamespace(namespace, [Self.ip, "-o", "address", "show", "dev", inside]))
        XCTAssertTrue(addresses.contains("10.81.0.2/24") && addresses.contains("fd81::2/64"), addresses)
        let routes = try run(inNamespace(namespace, [Self.ip, "route", "show"]))
        XCTAssertTrue(routes.contains("10.82.0.0/16 via 10.81.0.1 dev \(inside)"), routes)
        let sysctls = try run(
            inNamespace(
                namespace,
                [
                    Self.sysctl, "-n", "net.ipv4.ip_forward", "net.ipv4.tcp_keepalive_time",
                    "net.ipv4.conf.lo.forwarding", "net.ipv4.conf.\(inside).forwarding", "net.core.somaxconn",
                    "net.unix.max_dgram_qlen",
                ]))
        XCTAssertEqual(sysctls.split(separator: "\n"), ["1", "2345", "0", "1", "77", "33"])
        let outside = try run([Self.ip, "-o", "link", "show", restoredOutside])
        XCTAssertTrue(outside.contains("master \(bridge)") && outside.contains(",UP"), outside)
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored server is gone")
        _ = Spawn.wait(pid, timeout: Self.verdictTimeout)
    }
}
