// `amber dump --page-server` on host A streams the image to `amber page-server` on host B: two
// network namespaces joined by a veth pair stand for the hosts (amber dumps from A's, the page
// server listens in B's). The image lands whole and restores, a connection dropped half-way
// leaves B without an inventory and A's tree running as it was, and a peer that sends anything
// malformed is refused with B's directory as it was found.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class PageServerTests: ScenarioTestCase {
    /// `amber page-server` into `image`, started with `wrapper`, once it listens: it and the
    /// address it printed.
    private func startPageServer(_ image: String, address: String, wrapper: [String]) throws -> (
        RunningAmber, String
    ) {
        let server = try startAmber(
            ["page-server", "--port", "0", "--address", address, "-D", image], wrapper: wrapper)
        return (server, try listeningAddress(of: server))
    }

    /// The tree dumped from A to B's page server: both exit 0, the tree is gone, `amber
    /// verify` passes on B's image, and the tree restored from it passes its checks.
    func testDumpToAnotherHostVerifiesAndRestores() throws {
        try requireTwoHostTools()
        let hosts = try twoHosts()
        let image = try newDirectory("streamed") + "/image"
        let (server, address) = try startPageServer(image, address: Self.streamHostB, wrapper: hosts.b)
        let p = try start(.memory)
        let dump = try amber(["dump", "-t", "\(p.pid)", "--page-server", address], reaping: [p], wrapper: hosts.a)
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        let received = try finish(server)
        XCTAssertEqual(received.status, .exited(0), received.summary)
        XCTAssertFalse(Proc.pidInUse(p.pid), "the dumped tree still runs: \(Proc.describe(p.pid))")
        let verify = try amber(["verify", image])
        XCTAssertEqual(verify.status, .exited(0), verify.summary)
        XCTAssertTrue(verify.stdout.contains("is intact"), verify.stdout)
        // The tree ran in the test's network namespace, the dump in host A's: the image records
        // the tree's as one of its own, which it goes back into as it is.
        try restoreDetachedExpectingSuccess(p, from: image, options: ["--join-ns", "net:/proc/\(getpid())/ns/net"])
        try terminateAndExpectPass(p, "after a dump to another host")
    }

    /// The page server stopped once the image started to arrive, then killed: the dump, which
    /// cannot finish without its answer, fails; B has no inventory; A's tree runs on with
    /// everything /proc shows of it as it was, and passes its checks.
    func testDroppedConnectionLeavesNoInventoryAndTheTreeRunning() throws {
        try requireTwoHostTools()
        let hosts = try twoHosts()
        let image = try newDirectory("dropped") + "/image"
        let (server, address) = try startPageServer(image, address: Self.streamHostB, wrapper: hosts.b)
        let p = try start(.lazyPages([]))
        let before = ProcView(pid: p.pid)
        let dump = try startAmber(["dump", "-t", "\(p.pid)", "--page-server", address], wrapper: hosts.a)
        let deadline = Sys.now() + Self.amberTimeout
        while listing(image).isEmpty && Sys.now() < deadline { Sys.sleep(milliseconds: 1) }
        XCTAssertFalse(listing(image).isEmpty, "nothing arrived at the page server")
        kill(server.pid, SIGSTOP)
        Sys.sleep(milliseconds: 200)
        kill(server.pid, SIGKILL)
        _ = try finish(server)
        let failed = try finish(dump, reaping: [p])
        XCTAssertNotEqual(failed.status, .exited(0), failed.summary)
        XCTAssertTrue(failed.stderr.contains("page server at \(address)"), failed.stderr)
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "B has an inventory: \(listing(image))")
        var after = ProcView(pid: p.pid)
        let settled = Sys.now() + Self.verdictTimeout
        while after.entries != before.entries && Sys.now() < settled {
            Sys.sleep(milliseconds: 10)
            after = ProcView(pid: p.pid)
        }
        for (key, value) in before.entries where after.entries[key] != value {
            XCTFail("\(key) changed:\n  before: \(value)\n  after:  \(after.entries[key] ?? "(gone)")")
        }
        assertRunningUntraced(p.pid, "after a dump whose page server went away")
        try terminateAndExpectPass(p, "after a dump whose page server went away")
    }

    /// A frame of amber's protocol as bytes: its length, then the StreamFrame (field
    /// `field`, a message of `body`).
    private func frame(_ field: UInt8, _ body: [UInt8]) -> [UInt8] {
        let message = [field << 3 | 2, UInt8(body.count)] + body
        return withUnsafeBytes(of: UInt32(message.count).littleEndian) { Array($0) } + message
    }

    /// Sends `bytes` to the page server at 127.0.0.1:`port` and closes.
    private func send(_ bytes: [UInt8], to address: String) throws {
        let port = UInt16(address.split(separator: ":").last!)!
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var peer = sockaddr_in()
        peer.sin_family = sa_family_t(AF_INET)
        peer.sin_port = port.bigEndian
        peer.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let connected = withUnsafePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw RunnerError("connect \(address): \(Sys.errnoString())") }
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        shutdown(fd, Int32(SHUT_WR))
        var reply = [UInt8](repeating: 0, count: 4096)
        _ = reply.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    }

    /// A file named out of the image (a path up the tree), and a frame longer than any: each
    /// refused with exit 7 naming what was wrong, the directory gone as it was not there.
    func testMalformedFramesAreRefused() throws {
        _ = try requireAmber()
        let name = Array("amber-image-stream".utf8)
        let hello = frame(1, [0x0a, UInt8(name.count)] + name + [0x10, 1])
        let escape = Array("../escape.img".utf8)
        let cases: [([UInt8], String)] = [
            (hello + frame(2, [0x08, 1, 0x12, UInt8(escape.count)] + escape), "no name of an image's file"),
            (hello + [0xff, 0xff, 0xff, 0x7f], "frames are at most"),
        ]
        for (bytes, refusal) in cases {
            let image = try newDirectory("malformed") + "/image"
            let (server, address) = try startPageServer(image, address: "127.0.0.1", wrapper: [])
            try send(bytes, to: address)
            let refused = try finish(server)
            XCTAssertEqual(refused.status, .exited(7), refused.summary)
            XCTAssertTrue(refused.stderr.contains(refusal), refused.stderr)
            XCTAssertFalse(Sys.fileExists(image), "the page server left \(image): \(listing(image))")
            XCTAssertFalse(Sys.fileExists(image + "/../escape.img"))
        }
    }
}
