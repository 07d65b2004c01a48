// A unix socket whose peer is outside the tree: refused by default, left outside by
// `dump --external unix:[INODE]` and replaced by the caller's own socket by
// `restore --inherit-fd fd[N]:unix:[INODE]`.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A unix stream socket pair of the test's: `mine` it keeps, `theirs` goes to a target; each
/// closed once.
final class TestSocketPair {
    private(set) var mine: Int32
    private(set) var theirs: Int32
    /// "unix:[INODE]" of `theirs`, the socket the tree holds, as --external names it.
    let theirName: String

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw RunnerError("socketpair: \(Sys.errnoString())")
        }
        mine = ends[0]
        theirs = ends[1]
        var status = stat()
        fstat(theirs, &status)
        theirName = "unix:[\(status.st_ino)]"
    }

    deinit {
        closeMine()
        closeTheirs()
    }

    func closeMine() {
        if mine >= 0 { close(mine) }
        mine = -1
    }

    func closeTheirs() {
        if theirs >= 0 { close(theirs) }
        theirs = -1
    }

    /// The end of what the test sends: the target reads the end of its input.
    func shutdownWrite() { shutdown(mine, Int32(SHUT_WR)) }

    func send(_ text: String) throws { try TestStream.send(text, to: mine, what: "the socket") }

    /// Reads until `count` bytes came, or the end of the stream; gives up after `timeout` seconds.
    func receive(_ count: Int, timeout: Double = 30) -> String {
        TestStream.receive(count, from: mine, timeout: timeout)
    }

    /// Everything until the end of the stream (every holder of the other socket closed it).
    func receiveAll(timeout: Double = 60) -> String { receive(Int.max, timeout: timeout) }
}

/// external_pipe --socket: stdin and stdout are one socket whose peer the test holds.
final class ExternalUnixSocketTests: ScenarioTestCase {
    private func reply(_ line: String) -> String { "echo: \(line)\nchild: \(line)\nagain: \(line)\n" }

    /// Starts external_pipe --socket reading `lines` lines from `pair`'s socket; waits for its pidfile.
    private func startTarget(lines: Int, pair: TestSocketPair) throws -> ScenarioProcess {
        let scenario = Scenario.externalSocket
        let binary = try ScenarioBuilder.shared.binary(scenario.name)
        let directory = try newDirectory(scenario.name + "-socket")
        let p = ScenarioProcess(scenario: scenario, binary: binary, directory: directory, pid: 0)
        p.pid = try DescriptorSpawn.start(
            [binary, "--pidfile", p.pidfile, "--outfile", p.outfile] + scenario.args + ["--lines", "\(lines)"],
            descriptors: [0: pair.theirs, 1: pair.theirs], log: p.log)
        track(p.pid)
        pair.closeTheirs()
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.readText(p.pidfile) == nil {
            guard Sys.now() < deadline, case .running = Spawn.poll(p.pid) else {
                throw RunnerError("external_pipe --socket did not start; log:\n\(p.logText)")
            }
            Sys.sleep(milliseconds: 5)
        }
        return p
    }

    /// Its last line given, the target ends with "done" and its verdict.
    private func expectEnd(_ p: ScenarioProcess, pair: TestSocketPair) {
        pair.shutdownWrite()
        XCTAssertEqual(pair.receiveAll(), "done\n", "after the end of its input; log:\n\(p.logText)")
        XCTAssertTrue(waitForEnd(p, timeout: Self.verdictTimeout), "external_pipe --socket did not end")
        XCTAssertEqual(p.verdict, "PASS", "log:\n\(p.logText)")
    }

    func testPlain() throws {
        let pair = try TestSocketPair()
        let p = try startTarget(lines: 2, pair: pair)
        for line in ["one", "two"] {
            try pair.send(line + "\n")
            XCTAssertEqual(pair.receive(reply(line).utf8.count), reply(line))
        }
        expectEnd(p, pair: pair)
    }

    /// Refused without --external, naming this test as the outside holder; dumped with it;
    /// restored only with a descriptor for the socket; then the restored tree reads and writes
    /// the test's new socket exactly as it would have the old one, and the old one has nothing more.
    func testDumpRestoreWithInheritedSocket() throws {
        let amberPath = try requireAmber()
        let pair = try TestSocketPair()
        let name = pair.theirName
        let p = try startTarget(lines: 2, pair: pair)
        try pair.send("one\n")
        XCTAssertEqual(pair.receive(reply("one").utf8.count), reply("one"))
        try waitForSyscall(p, 0)

        let refused = try amber(["dump", "-R", "-t", "\(p.pid)", "-D", try newDirectory("refused")])
        XCTAssertEqual(refused.status, .exited(AmberExit.unsupportedState), refused.summary)
        XCTAssertTrue(refused.stderr.contains("outside the tree"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--external \(name)"), "names the socket to leave out: \(refused.stderr)")
        XCTAssertTrue(
            refused.stderr.contains("process \(getpid()) "), "names the test as the holder: \(refused.stderr)")
        assertRunningUntraced(p.pid, "after the refused dump")

        let image = try newDirectory("image")
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--external", name], reaping: [p])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        XCTAssertEqual(pair.receiveAll(), "", "the dumped tree wrote into the old socket")

        let needs = try amber(["verify", "--needs", image])
        XCTAssertEqual(needs.status, .exited(0), needs.summary)
        XCTAssertTrue(needs.stdout.contains("\(name): fd "), "verify --needs lists \(name): \(needs.stdout)")
        let missing = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(missing.status, .exited(AmberExit.restoreFailed), missing.summary)
        XCTAssertTrue(missing.stderr.contains("--inherit-fd fd[N]:unix:["), missing.stderr)
        XCTAssertFalse(Proc.pidInUse(p.pid), "a failed restore left process \(p.pid)")

        let newPair = try TestSocketPair()
        let restore = try DescriptorSpawn.start(
            [amberPath, "restore", "-D", image, "--detach", "--inherit-fd", "fd[3]:\(name)"],
            descriptors: [3: newPair.theirs], log: p.directory + "/restore.log",
            env: ["AMBER_IMAGE_KEY": try Self.imageKeyPath()])
        track(restore)
        newPair.closeTheirs()
        p.exitStatus = nil
        p.gone = false
        track(p.pid)
        XCTAssertEqual(
            Spawn.wait(restore, timeout: Self.amberTimeout), .exited(0),
            "restore: \(Sys.readText(p.directory + "/restore.log") ?? "")")
        guard Proc.pidInUse(p.pid) else { return XCTFail("process \(p.pid) was not restored") }
        assertRunningUntraced(p.pid, "after the restore")

        try newPair.send("two\n")
        XCTAssertEqual(newPair.receive(reply("two").utf8.count), reply("two"))
        expectEnd(p, pair: newPair)
    }

    /// A socket named by --external is refused, target left running and the bytes left in it,
    /// when the tree has not read what it holds (it would stay in the old socket), or when the
    /// tree holds its peer too (which would lose its other end).
    func testDumpRefusesExternalSocketNotExact() throws {
        _ = try requireAmber()
        let pair = try TestSocketPair()
        try pair.send("unread\n")
        let reader = try DescriptorSpawn.start(
            ["/bin/sleep", "1000"], descriptors: [0: pair.theirs], log: try newDirectory("unread") + "/log")
        track(reader)
        let name = pair.theirName
        let held = try amber(["dump", "-R", "-t", "\(reader)", "-D", try newDirectory("image"), "--external", name])
        XCTAssertEqual(held.status, .exited(AmberExit.unsupportedState), held.summary)
        XCTAssertTrue(held.stderr.contains("holding 7 bytes the tree has not read"), held.stderr)
        assertRunningUntraced(reader, "after the refused dump")
        var left = [UInt8](repeating: 0, count: 64)
        let count = left.withUnsafeMutableBytes { recv(pair.theirs, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        XCTAssertEqual(
            String(decoding: left[..<max(count, 0)], as: UTF8.self), "unread\n",
            "the refused dump consumed what the socket held")

        let both = try TestSocketPair()
        let holder = try DescriptorSpawn.start(
            ["/bin/sleep", "1000"], descriptors: [0: both.theirs, 1: both.mine], log: try newDirectory("both") + "/log")
        track(holder)
        let inTree = try amber([
            "dump", "-R", "-t", "\(holder)", "-D", try newDirectory("image"), "--external", both.theirName,
        ])
        XCTAssertEqual(inTree.status, .exited(AmberExit.unsupportedState), inTree.summary)
        XCTAssertTrue(inTree.stderr.contains("holds in the tree"), inTree.stderr)
        assertRunningUntraced(holder, "after the refused dump")
    }
}
