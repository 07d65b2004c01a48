// Real programs dumped and restored mid-work, checked from outside with their own tools.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A python3 sqlite3 program dumped in the middle of a write transaction (`BEGIN IMMEDIATE`
/// and an insert, not committed), restored, and checked with the `sqlite3` command-line tool:
/// its locks came back (a write from outside gets "database is locked"), and once told to, the
/// program commits and the database is whole with the row in it.
final class SqliteTests: ScenarioTestCase {
    private static let python = "/usr/bin/python3"
    private static let sqlite = "/usr/bin/sqlite3"

    /// Waits for the file `commit`, then commits; writes `committed` once it has.
    private static let program = """
        import os, sqlite3, sys, time
        directory, mode = sys.argv[1], sys.argv[2]
        def path(name): return os.path.join(directory, name)
        con = sqlite3.connect(path("test.db"), isolation_level=None)
        assert con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0] == mode
        con.execute("CREATE TABLE t(x TEXT)")
        con.execute("INSERT INTO t VALUES ('before')")
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t VALUES ('mid-transaction')")
        with open(path("pid.tmp"), "w") as f: f.write(str(os.getpid()))
        os.rename(path("pid.tmp"), path("pid"))
        while not os.path.exists(path("commit")): time.sleep(0.02)
        con.execute("COMMIT")
        con.close()
        with open(path("committed.tmp"), "w") as f: f.write("committed")
        os.rename(path("committed.tmp"), path("committed"))
        """

    /// Rollback journal: the transaction holds the database's RESERVED lock (a POSIX write lock
    /// on one byte) and a read lock on its shared range, with test.db-journal open.
    func testTransactionInRollbackJournalMode() throws { try runTransaction(mode: "delete") }

    /// WAL: POSIX locks on bytes of test.db-shm, which the program maps MAP_SHARED, and on test.db.
    func testTransactionInWALMode() throws { try runTransaction(mode: "wal") }

    private func runTransaction(mode: String, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        for tool in [Self.python, Self.sqlite] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let directory = try newDirectory("sqlite-\(mode)")
        let script = directory + "/program.py"
        try Self.program.write(toFile: script, atomically: true, encoding: .utf8)
        let pid = try Spawn.start([Self.python, script, directory, mode], stdout: directory + "/log")
        track(pid)
        let deadline = Sys.now() + Self.pidfileTimeout
        while !Sys.fileExists(directory + "/pid") {
            guard Sys.now() < deadline, case .running = Spawn.poll(pid) else {
                XCTFail(
                    "the program did not start its transaction; log:\n\(Sys.readText(directory + "/log") ?? "")",
                    file: file, line: line)
                return
            }
            Sys.sleep(milliseconds: 10)
        }
        let database = directory + "/test.db"
        let (heldBefore, heldOutput) = try Spawn.run(
            [Self.sqlite, database, "INSERT INTO t VALUES ('intruder');"], in: directory)
        XCTAssertNotEqual(
            heldBefore, .exited(0), "a write from outside succeeded during the transaction: \(heldOutput)", file: file,
            line: line)

        let image = try newDirectory("image")
        // The dump waits for the program's parent, this test, to reap it.
        let program = ScenarioProcess(
            scenario: Scenario(name: "sqlite"), binary: Self.python, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [program])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)", file: file, line: line)
        guard dump.status == .exited(0) else { return }
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)", file: file, line: line)
        guard restore.status == .exited(0) else { return }

        let (held, output) = try Spawn.run(
            [Self.sqlite, database, "INSERT INTO t VALUES ('intruder');"], in: directory)
        XCTAssertNotEqual(
            held, .exited(0), "a write from outside succeeded: the restored transaction lost its locks", file: file,
            line: line)
        XCTAssertTrue(output.contains("database is locked"), "sqlite3: \(output)", file: file, line: line)

        XCTAssertTrue(
            FileManager.default.createFile(atPath: directory + "/commit", contents: nil), file: file, line: line)
        let exited = Spawn.wait(pid, timeout: Self.verdictTimeout)
        XCTAssertTrue(
            exited == .exited(0) || exited == nil, "the restored program ended with \(String(describing: exited))",
            file: file, line: line)
        let committedBy = Sys.now() + Self.verdictTimeout
        while !Sys.fileExists(directory + "/committed") && Sys.now() < committedBy { Sys.sleep(milliseconds: 10) }
        XCTAssertEqual(
            Sys.readText(directory + "/committed"), "committed",
            "the restored program did not commit; log:\n\(Sys.readText(directory + "/log") ?? "")", file: file,
            line: line)

        let (checked, rows) = try Spawn.run(
            [Self.sqlite, database, "PRAGMA integrity_check; SELECT x FROM t ORDER BY rowid;"], in: directory)
        XCTAssertEqual(checked, .exited(0), rows, file: file, line: line)
        XCTAssertEqual(rows.split(separator: "\n"), ["ok", "before", "mid-transaction"], file: file, line: line)
    }
}

/// bash pipelines dumped while a pipe between their programs is full and its writer blocked:
/// once restored, the pipeline carries on with no line lost or repeated.
final class BashPipelineTests: ScenarioTestCase {
    private static let bash = "/bin/bash"
    /// 588,895 bytes of lines: several times a pipe's 64 KiB.
    private static let lines = 100_000
    private static var expected: String { (1...lines).map { "\($0)\n" }.joined() }

    /// Waits until a process of `root`'s tree named `comm` is blocked in write(2) (syscall 1).
    private func waitForBlockedWriter(_ comm: String, in root: pid_t) throws {
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.now() < deadline {
            for pid in Proc.descendants(of: root) where Proc.comm(pid) == comm {
                if Proc.syscall(pid) == "1" { return }
            }
            Sys.sleep(milliseconds: 10)
        }
        throw RunnerError("no \(comm) of the tree of \(root) blocked in write; tree: \(Proc.descendants(of: root))")
    }

    /// `seq | { sleep; cat; } > OUT`: dumped with seq blocked on the full pipe and nothing read
    /// yet; restored, its sleep ended, and OUT has every line once, in order. (The reader waits
    /// in one sleep rather than polling for a file: a process forked while the dump looks at the
    /// running tree would be outside it, holding the pipe.)
    func testFullPipeBetweenPrograms() throws {
        _ = try requireAmber()
        guard Sys.fileExists(Self.bash) else { throw XCTSkip("\(Self.bash) is not installed") }
        let directory = try newDirectory("bash-pipeline")
        let out = directory + "/out"
        let script = "seq 1 \(Self.lines) | { sleep 1000; cat; } > \(out)"
        let pid = try Spawn.start([Self.bash, "-c", script], stdout: directory + "/log")
        track(pid)
        try waitForBlockedWriter("seq", in: pid)
        let sleeping = Sys.now() + Self.pidfileTimeout
        while Proc.descendants(of: pid).allSatisfy({ Proc.comm($0) != "sleep" }) && Sys.now() < sleeping {
            Sys.sleep(milliseconds: 10)
        }
        XCTAssertEqual(Sys.readText(out), "", "the reader read before it was told to")

        let image = try newDirectory("image")
        let shell = ScenarioProcess(scenario: Scenario(name: "bash"), binary: Self.bash, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [shell])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), restore.summary)
        guard restore.status == .exited(0) else { return }
        track(pid)

        let sleeps = Proc.descendants(of: pid).filter { Proc.comm($0) == "sleep" }
        XCTAssertEqual(sleeps.count, 1, "the restored tree's sleep")
        for sleep in sleeps { kill(sleep, SIGTERM) }
        XCTAssertEqual(Spawn.wait(pid, timeout: Self.verdictTimeout), .exited(0), "the restored bash")
        let written = Sys.readText(out) ?? ""
        XCTAssertTrue(
            written == Self.expected,
            "OUT has \(written.split(separator: "\n").count) lines, not 1...\(Self.lines) once each")
    }

    /// `seq | cat` writing into a pipe of the test's: dumped with both pipes full, the test's
    /// left outside (--external) and a new pipe of the test's plugged in at restore
    /// (--inherit-fd). What the old pipe held and what comes through the new one are every
    /// line once, in order.
    func testOutputToPipeOutsideTree() throws {
        let amberPath = try requireAmber()
        guard Sys.fileExists(Self.bash) else { throw XCTSkip("\(Self.bash) is not installed") }
        let directory = try newDirectory("bash-external")
        let output = try TestPipe()
        let name = output.name
        let pid = try DescriptorSpawn.start(
            [Self.bash, "-c", "seq 1 \(Self.lines) | cat"], descriptors: [1: output.write], log: directory + "/log")
        track(pid)
        output.closeWrite()
        try waitForBlockedWriter("cat", in: pid)
        try waitForBlockedWriter("seq", in: pid)

        let image = try newDirectory("image")
        let shell = ScenarioProcess(scenario: Scenario(name: "bash"), binary: Self.bash, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image, "--external", name], reaping: [shell])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        let before = output.receiveAll()
        XCTAssertFalse(before.isEmpty, "the old pipe held nothing")

        let newOutput = try TestPipe()
        let restore = try DescriptorSpawn.start(
            [amberPath, "restore", "-D", image, "--detach", "--inherit-fd", "fd[3]:\(name)"],
            descriptors: [3: newOutput.write], log: directory + "/restore.log",
            env: ["AMBER_IMAGE_KEY": try Self.imageKeyPath()])
        track(restore)
        newOutput.closeWrite()
        XCTAssertEqual(
            Spawn.wait(restore, timeout: Self.amberTimeout), .exited(0),
            "restore: \(Sys.readText(directory + "/restore.log") ?? "")")
        track(pid)
        let after = newOutput.receiveAll()
        XCTAssertEqual(Spawn.wait(pid, timeout: Self.verdictTimeout), .exited(0), "the restored bash")
        let whole = before + after
        XCTAssertTrue(
            whole == Self.expected,
            "\(before.utf8.count) bytes before the dump and \(after.utf8.count) after it are not 1...\(Self.lines) once each"
        )
    }
}

/// python3's http.server (`python3 -u -m http.server --bind 127.0.0.1 PORT --directory DIR`),
/// serving between requests: a listening TCP socket, polled by its main thread (socketserver's
/// PollSelector: no epoll), with a thread per request. A file is fetched with python3's own
/// client, urllib, before the dump and again from the restored server, with its contents checked.
final class HTTPServerTests: ScenarioTestCase {
    private static let python = "/usr/bin/python3"
    /// Prints the body of the URL in argv[1].
    private static let fetch =
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"

    /// Dumped (which kills it) and restored.
    func testServerDumpedAndRestored() throws { try runServer(leaveRunning: false) }

    /// Dumped with --leave-running, which it survives serving; then killed, and restored.
    func testServerDumpedWithLeaveRunning() throws { try runServer(leaveRunning: true) }

    private func runServer(leaveRunning: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        guard Sys.fileExists(Self.python) else {
            throw XCTSkip("\(Self.python) is not installed (.ci/run installs it)")
        }
        let directory = try newDirectory("http-server")
        let site = directory + "/site"
        try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: false)
        let contents = "served by python3's http.server to test \(getpid()), \(UInt64.random(in: 0...UInt64.max))\n"
        try contents.write(toFile: site + "/hello.txt", atomically: true, encoding: .utf8)
        let port = try freeLoopbackPort()
        let url = "http://127.0.0.1:\(port)/hello.txt"
        let pid = try Spawn.start(
            [Self.python, "-u", "-m", "http.server", "--bind", "127.0.0.1", "\(port)", "--directory", site],
            stdout: directory + "/log")
        track(pid)
        func log() -> String { Sys.readText(directory + "/log") ?? "" }

        let deadline = Sys.now() + Self.pidfileTimeout
        var served = try Spawn.run([Self.python, "-c", Self.fetch, url], in: directory)
        while served.0 != .exited(0), Sys.now() < deadline, case .running = Spawn.poll(pid) {
            Sys.sleep(milliseconds: 50)
            served = try Spawn.run([Self.python, "-c", Self.fetch, url], in: directory)
        }
        XCTAssertEqual(served.1, contents, "before the dump: \(served); log:\n\(log())", file: file, line: line)
        guard served.0 == .exited(0) else { return }
        // The request's thread gone: the server holds its listener alone again.
        while (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.count != 1,
            Sys.now() < deadline
        {
            Sys.sleep(milliseconds: 10)
        }

        let image = try newDirectory("image")
        let server = ScenarioProcess(
            scenario: Scenario(name: "http.server"), binary: Self.python, directory: directory, pid: pid)
        let dump = try amber(
            ["dump", "-t", "\(pid)", "-D", image] + (leaveRunning ? ["--leave-running"] : []), reaping: [server])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)", file: file, line: line)
        guard dump.status == .exited(0) else { return }
        if leaveRunning {
            let after = try Spawn.run([Self.python, "-c", Self.fetch, url], in: directory)
            XCTAssertEqual(after.1, contents, "the server left running: \(after)", file: file, line: line)
            kill(pid, SIGKILL)
            XCTAssertEqual(Spawn.wait(pid, timeout: Self.verdictTimeout), .signaled(SIGKILL), file: file, line: line)
        }
        XCTAssertFalse(Proc.pidInUse(pid), "the dumped server's PID \(pid) is still in use", file: file, line: line)

        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)", file: file, line: line)
        guard restore.status == .exited(0) else { return }
        for round in 1...2 {
            let again = try Spawn.run([Self.python, "-c", Self.fetch, url], in: directory)
            XCTAssertEqual(
                again.1, contents, "fetch \(round) from the restored server: \(again); log:\n\(log())", file: file,
                line: line)
        }
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored server is gone", file: file, line: line)
        _ = Spawn.wait(pid, timeout: Self.verdictTimeout)
    }
}

/// `tail -f` and `tail -F` (coreutils, which wait in poll on an inotify instance) dumped while
/// following a file whose output goes to a file, and restored: the lines appended after the
/// restore show up, none lost and none twice; `tail -F` also follows the file's name to a new
/// file put in its place (its watch of the directory came back too).
final class TailTests: ScenarioTestCase {
    private static let tail = "/usr/bin/tail"

    func testTailFollowingDescriptor() throws { try runTail(follow: "-f") }

    func testTailFollowingName() throws { try runTail(follow: "-F") }

    private func runTail(follow: String, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        guard Sys.fileExists(Self.tail) else { throw XCTSkip("\(Self.tail) is not installed") }
        let directory = try newDirectory("tail\(follow)")
        let input = directory + "/input"
        let output = directory + "/output"
        try "line 1\nline 2\n".write(toFile: input, atomically: false, encoding: .utf8)
        let pid = try Spawn.start(
            [Self.tail, "-n", "+1", follow, input], stdout: output, stderr: directory + "/errors")
        track(pid)
        defer { kill(pid, SIGKILL) }
        func lines(_ count: Int) -> [String] { (1...count).map { "line \($0)" } }
        func waitForOutput(_ expected: [String], _ when: String) -> Bool {
            let deadline = Sys.now() + Self.verdictTimeout
            var seen: [String] = []
            while Sys.now() < deadline {
                seen = (Sys.readText(output) ?? "").split(separator: "\n").map(String.init)
                if seen == expected { return true }
                Sys.sleep(milliseconds: 20)
            }
            XCTFail(
                "tail \(follow) \(when): wrote \(seen), expected \(expected); errors: \(Sys.readText(directory + "/errors") ?? "")",
                file: file, line: line)
            return false
        }
        func append(_ text: String, to path: String) throws {
            let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path), file: file, line: line)
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            handle.closeFile()
        }
        guard waitForOutput(lines(2), "at the start") else { return }
        try append("line 3\n", to: input)
        guard waitForOutput(lines(3), "before the dump") else { return }
        // Let tail settle into its wait: the dump finds it in poll.
        Sys.sleep(milliseconds: 200)

        let image = try newDirectory("image")
        let program = ScenarioProcess(
            scenario: Scenario(name: "tail"), binary: Self.tail, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [program])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)", file: file, line: line)
        guard dump.status == .exited(0) else { return }
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)", file: file, line: line)
        guard restore.status == .exited(0) else { return }

        try append("line 4\n", to: input)
        guard waitForOutput(lines(4), "after the restore") else { return }
        try append("line 5\nline 6\n", to: input)
        guard waitForOutput(lines(6), "after a second append") else { return }
        guard follow == "-F" else { return }
        XCTAssertEqual(rename(input, input + ".1"), 0, file: file, line: line)
        try "line 7\n".write(toFile: input, atomically: false, encoding: .utf8)
        _ = waitForOutput(lines(7), "after the file was replaced")
    }
}

/// redis-server listening on a unix socket only (`--port 0 --unixsocket`), idle between
/// clients: an epoll instance watching its listener and a pipe, its bio threads and jemalloc's
/// background thread waiting on futexes. A string, a list and a hash are written with
/// redis-cli before the dump and read back with it from the restored server, which takes
/// writes again.
final class RedisTests: ScenarioTestCase {
    private static let server = "/usr/bin/redis-server"
    private static let client = "/usr/bin/redis-cli"

    /// Dumped (which kills it) and restored.
    func testDumpRestore() throws { try runServer(leaveRunning: false) }

    /// Dumped with --leave-running, which it survives serving; then killed, and restored.
    func testLeaveRunning() throws { try runServer(leaveRunning: true) }

    private func runServer(leaveRunning: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        for tool in [Self.server, Self.client] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let directory = try newDirectory("redis")
        let socket = directory + "/redis.sock"
        let pid = try Spawn.start(
            [
                Self.server, "--port", "0", "--unixsocket", socket, "--dir", directory, "--save", "", "--appendonly",
                "no", "--daemonize", "no", "--supervised", "no", "--logfile", directory + "/redis.log",
            ], stdout: directory + "/log")
        track(pid)
        func log() -> String {
            (Sys.readText(directory + "/log") ?? "") + (Sys.readText(directory + "/redis.log") ?? "")
        }
        func cli(_ arguments: String...) throws -> (ExitStatus, String) {
            try Spawn.run([Self.client, "-s", socket] + arguments, in: directory)
        }
        /// The fds of the server: one more while a client's connection is open.
        func descriptors() -> Set<String> {
            Set((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [])
        }

        let deadline = Sys.now() + Self.pidfileTimeout
        while !(Sys.readText(directory + "/redis.log") ?? "").contains("ready to accept connections") {
            guard Sys.now() < deadline, case .running = Spawn.poll(pid) else {
                XCTFail("redis-server did not start; log:\n\(log())", file: file, line: line)
                return
            }
            Sys.sleep(milliseconds: 10)
        }
        let idle = descriptors()
        let writes = [
            ["SET", "greeting", "hello from test \(getpid())"], ["RPUSH", "list", "a", "b", "c"],
            ["HSET", "hash", "f1", "v1", "f2", "v2"],
        ]
        for command in writes {
            let (status, output) = try Spawn.run([Self.client, "-s", socket] + command, in: directory)
            XCTAssertEqual(status, .exited(0), "redis-cli \(command): \(output)", file: file, line: line)
        }
        func checkData(_ when: String) throws {
            XCTAssertEqual(
                try cli("GET", "greeting").1, "hello from test \(getpid())\n", when, file: file, line: line)
            XCTAssertEqual(try cli("LRANGE", "list", "0", "-1").1, "a\nb\nc\n", when, file: file, line: line)
            XCTAssertEqual(try cli("HGETALL", "hash").1, "f1\nv1\nf2\nv2\n", when, file: file, line: line)
        }
        try checkData("before the dump")
        // The last client's connection closed by the server: it holds its listener alone again
        // (an accepted connection is refused).
        while descriptors() != idle, Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        XCTAssertEqual(descriptors(), idle, "the server still holds a client's connection", file: file, line: line)

        let image = try newDirectory("image")
        let server = ScenarioProcess(
            scenario: Scenario(name: "redis-server"), binary: Self.server, directory: directory, pid: pid)
        let dump = try amber(
            ["dump", "-t", "\(pid)", "-D", image] + (leaveRunning ? ["--leave-running"] : []), reaping: [server])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary); log:\n\(log())", file: file, line: line)
        guard dump.status == .exited(0) else { return }
        if leaveRunning {
            try checkData("the server left running")
            kill(pid, SIGKILL)
            XCTAssertEqual(Spawn.wait(pid, timeout: Self.verdictTimeout), .signaled(SIGKILL), file: file, line: line)
        }
        XCTAssertFalse(Proc.pidInUse(pid), "the dumped server's PID \(pid) is still in use", file: file, line: line)

        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)", file: file, line: line)
        guard restore.status == .exited(0) else { return }
        try checkData("from the restored server; log:\n\(log())")
        XCTAssertEqual(try cli("SET", "after", "restore").1, "OK\n", file: file, line: line)
        XCTAssertEqual(try cli("GET", "after").1, "restore\n", file: file, line: line)
        XCTAssertEqual(try cli("DBSIZE").1, "4\n", file: file, line: line)
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored server is gone", file: file, line: line)
        let exited = Spawn.wait(pid, timeout: Self.verdictTimeout)
        XCTAssertTrue(
            exited == .exited(0) || exited == nil, "the restored server ended with \(String(describing: exited))",
            file: file, line: line)
        let byeBy = Sys.now() + Self.verdictTimeout
        while !log().contains("ready to exit, bye bye") && Sys.now() < byeBy { Sys.sleep(milliseconds: 10) }
        XCTAssertTrue(log().contains("ready to exit, bye bye"), "log:\n\(log())", file: file, line: line)
    }
}
