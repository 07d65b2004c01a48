// Post-copy migration: `amber dump --lazy-pages --port` on host A writes the image and serves
// it; `amber restore --lazy-pages --page-server` on host B reads its records over TCP and lets
// the tree run while its pages come over on first touch and in the background. Two network
// namespaces joined by a veth pair stand for the hosts (Support.swift's `twoHosts`). A server
// that dies half-way makes the restore kill what it made, and leaves the image on A, which
// serves it again.

import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class PostCopyTests: ScenarioTestCase {
    /// `amber dump --lazy-pages --port 0` of `p` in host A, once the dump is over and it
    /// serves (the tree dumped and reaped): it, its image and its address.
    private func dumpAndServe(_ p: ScenarioProcess, hostA: [String], env: [String: String] = [:]) throws -> (
        RunningAmber, String, String
    ) {
        let image = try newDirectory("image")
        let server = try startAmber(
            ["dump", "-t", "\(p.pid)", "-D", image, "--lazy-pages", "--port", "0", "--address", Self.streamHostA],
            env: env, wrapper: hostA)
        // The dump waits for the killed tree's PIDs to be free: its root is reaped here.
        p.exitStatus = Spawn.wait(p.pid, timeout: Self.amberTimeout)
        XCTAssertNotNil(p.exitStatus, "the dumped tree still runs: \(Proc.describe(p.pid))")
        return (server, image, try listeningAddress(of: server))
    }

    /// `amber restore --lazy-pages --page-server ADDRESS --detach` in host B, the tree back in
    /// the test's network namespace, where it ran.
    private func restoreFrom(_ address: String, _ p: ScenarioProcess, hostB: [String]) throws -> AmberResult {
        p.exitStatus = nil
        p.gone = false
        track(p.pid)
        return try amber(
            [
                "restore", "--lazy-pages", "--page-server", address, "--detach", "--join-ns",
                "net:/proc/\(getpid())/ns/net",
            ], wrapper: hostB)
    }

    /// A tree restored on B from A: the restore and the server both exit 0 once every page is
    /// in, and every process acts on its memory as it would have.
    func testTreeRestoredOnAnotherHostPasses() throws {
        try requireTwoHostTools()
        let hosts = try twoHosts()
        let p = try start(.lazyPages(["--tree"]))
        let (server, _, address) = try dumpAndServe(p, hostA: hosts.a)
        let restore = try restoreFrom(address, p, hostB: hosts.b)
        XCTAssertEqual(restore.status, .exited(0), "\(restore.summary); \(p.diagnostics)")
        let served = try finish(server)
        XCTAssertEqual(served.status, .exited(0), served.summary)
        try terminateAndExpectPass(p, "after a post-copy restore")
    }

    /// The server killed at the first page it is asked for: the restore fails naming it, no
    /// process of the tree is left, and the image on A, intact, served again by `amber
    /// page-server --lazy-pages`, restores a tree that passes.
    func testServerKilledMidRestoreKillsTheTreeAndServesAgain() throws {
        try requireTwoHostTools()
        let hosts = try twoHosts()
        let p = try start(.lazyPages([]))
        let (server, image, address) = try dumpAndServe(
            p, hostA: hosts.a, env: ["AMBER_TEST_FAULT": "serve.pages=kill"])
        let failed = try restoreFrom(address, p, hostB: hosts.b)
        XCTAssertNotEqual(failed.status, .exited(0), failed.summary)
        XCTAssertTrue(failed.stderr.contains("page server at \(address)"), failed.stderr)
        XCTAssertFalse(Proc.pidInUse(p.pid), "the restored tree is left: \(Proc.describe(p.pid))")
        XCTAssertEqual(Proc.childrenOfSelf().filter { $0 != server.pid }, [], "the restore left processes behind")
        let killed = try finish(server)
        XCTAssertEqual(killed.status, .exited(128 + SIGKILL), killed.summary)
        let verify = try amber(["verify", image])
        XCTAssertEqual(verify.status, .exited(0), verify.summary)

        let again = try startAmber(
            ["page-server", "--lazy-pages", "-D", image, "--port", "0", "--address", Self.streamHostA],
            wrapper: hosts.a)
        let restored = try restoreFrom(try listeningAddress(of: again), p, hostB: hosts.b)
        XCTAssertEqual(restored.status, .exited(0), "\(restored.summary); \(p.diagnostics)")
        let served = try finish(again)
        XCTAssertEqual(served.status, .exited(0), served.summary)
        try terminateAndExpectPass(p, "after a post-copy restore served again")
    }

    /// A page file changed on A after the dump: B finds the chunk's checksum wrong, kills the
    /// tree and exits 7 naming the file; nothing is left running.
    func testCorruptedPageOnAKillsTheTree() throws {
        try requireTwoHostTools()
        let hosts = try twoHosts()
        let p = try start(.lazyPages([]))
        let (server, image, address) = try dumpAndServe(p, hostA: hosts.a)
        let pages = try XCTUnwrap(listing(image).first { $0.hasPrefix("pages-") })
        var status = stat()
        XCTAssertEqual(stat(image + "/" + pages, &status), 0)
        let fd = open(image + "/" + pages, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var byte: UInt8 = 0x5A
        XCTAssertEqual(pwrite(fd, &byte, 1, off_t(status.st_size / 2)), 1)
        close(fd)
        let failed = try restoreFrom(address, p, hostB: hosts.b)
        XCTAssertEqual(failed.status, .exited(7), failed.summary)
        XCTAssertTrue(failed.stderr.contains(pages) && failed.stderr.contains("killed"), failed.stderr)
        XCTAssertFalse(Proc.pidInUse(p.pid), "the restored tree is left: \(Proc.describe(p.pid))")
        let served = try finish(server)
        XCTAssertNotEqual(served.status, .exited(0), served.summary)
    }

    /// A peer that asks for a file out of the image, or bytes past a file's end: the server
    /// refuses, exit 7 naming what was wrong.
    func testRequestsOutOfTheImageAreRefused() throws {
        _ = try requireAmber()
        let p = try start(.lazyPages([]))
        let image = try dumpExpectingSuccess(p)
        func frame(_ field: UInt8, _ body: [UInt8]) -> [UInt8] {
            let message = [field << 3 | 2, UInt8(body.count)] + body
            return withUnsafeBytes(of: UInt32(message.count).littleEndian) { Array($0) } + message
        }
        let name = Array("amber-post-copy".utf8)
        let hello = frame(1, [0x0a, UInt8(name.count)] + name + [0x10, 1])
        let escape = Array("../escape.img".utf8)
        let inventory = Array("inventory.pb".utf8)
        let cases: [([UInt8], String)] = [
            (hello + frame(2, [0x0a, UInt8(escape.count)] + escape), "../escape.img is no file of the image"),
            (
                hello + frame(2, [0x0a, UInt8(inventory.count)] + inventory)
                    + frame(3, [0x08, 0, 0x10, 0x80, 0x80, 0x80, 0x80, 0x10, 0x18, 1]),
                "not within the file"
            ),
        ]
        for (bytes, refusal) in cases {
            let server = try startAmber(
                ["page-server", "--lazy-pages", "-D", image, "--port", "0", "--address", "127.0.0.1"])
            let port = UInt16(try listeningAddress(of: server).split(separator: ":").last!)!
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var peer = sockaddr_in()
            peer.sin_family = sa_family_t(AF_INET)
            peer.sin_port = port.bigEndian
            peer.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let connected = withUnsafePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            XCTAssertEqual(connected, 0, Sys.errnoString())
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var reply = [UInt8](repeating: 0, count: 4096)
            while reply.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
            close(fd)
            let refused = try finish(server)
            XCTAssertEqual(refused.status, .exited(7), refused.summary)
            XCTAssertTrue(refused.stderr.contains(refusal), refused.stderr)
        }
    }

    /// Flags that do not go together are usage errors, before anything is touched.
    func testFlagsThatDoNotGoTogetherAreRefused() throws {
        _ = try requireAmber()
        let cases: [([String], String)] = [
            (["dump", "-t", "1", "-D", "/nonexistent", "--lazy-pages"], "--port PORT"),
            (
                ["dump", "-t", "1", "-D", "/nonexistent", "--lazy-pages", "--port", "0", "--prev-images-dir", "x"],
                "--prev-images-dir"
            ),
            (["dump", "-t", "1", "-D", "/nonexistent", "--port", "0"], "only with --lazy-pages"),
            (["restore", "--page-server", "127.0.0.1:9"], "with --lazy-pages"),
            (["restore", "--lazy-pages", "--page-server", "127.0.0.1:9", "-D", "/nonexistent"], "not with -D"),
        ]
        for (arguments, refusal) in cases {
            let r = try amber(arguments)
            XCTAssertEqual(r.status, .exited(AmberExit.usage), r.summary)
            XCTAssertTrue(r.stderr.contains(refusal), "\(arguments): \(r.stderr)")
        }
    }
}
