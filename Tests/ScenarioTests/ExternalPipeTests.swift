// Pipes whose other end is outside the tree: refused by default, left outside by
// `dump --external pipe:[INODE]` and plugged with the caller's own pipe by
// `restore --inherit-fd fd[N]:pipe:[INODE]`.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Spawning with some of our descriptors at chosen numbers.
enum DescriptorSpawn {
    /// posix_spawn `argv` with `descriptors` (its fd → ours) in place; of 0, 1 and 2 those not
    /// given are /dev/null (stdin) and `log` (stdout and stderr); every other fd is closed.
    /// The numbers given must leave no gap above 2.
    static func start(_ argv: [String], descriptors: [Int32: Int32], log: String, env: [String: String] = [:]) throws
        -> pid_t
    {
        let highest = max(2, descriptors.keys.max() ?? 2)
        guard (3...max(3, highest)).allSatisfy({ $0 > highest || descriptors[$0] != nil }) else {
            throw RunnerError("descriptors \(descriptors.keys.sorted()) leave a gap above 2")
        }
        // Out of the way of every number the child gets, so no dup2 overwrites another's source.
        var moved: [Int32: Int32] = [:]
        defer { for fd in moved.values { close(fd) } }
        for (target, source) in descriptors {
            let copy = fcntl(source, F_DUPFD_CLOEXEC, 100)
            guard copy >= 0 else { throw RunnerError("F_DUPFD of fd \(source): \(Sys.errnoString())") }
            moved[target] = copy
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if moved[0] == nil { posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) }
        if moved[1] == nil {
            posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        if moved[2] == nil {
            posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        }
        for (target, source) in moved { posix_spawn_file_actions_adddup2(&actions, source, target) }
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let handle = dlopen(nil, RTLD_NOW),
            let symbol = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np"),
            unsafeBitCast(symbol, to: CloseFrom.self)(&actions, highest + 1) == 0
        else { throw RunnerError("posix_spawn_file_actions_addclosefrom_np is missing") }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in env { environment[key] = value }
        let arguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let variables: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for argument in arguments { free(argument) }
            for variable in variables { free(variable) }
        }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, argv[0], &actions, &attributes, arguments, variables)
        guard result == 0 else { throw RunnerError("posix_spawnp \(argv[0]): \(Sys.errnoString(result))") }
        return pid
    }
}

/// A pipe of the test's: its two ends, each closed once.
final class TestPipe {
    private(set) var read: Int32
    private(set) var write: Int32
    /// "pipe:[INODE]", as /proc shows it and --external names it.
    let name: String

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0, fcntl(ends[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0
        else { throw RunnerError("pipe: \(Sys.errnoString())") }
        read = ends[0]
        write = ends[1]
        var status = stat()
        fstat(read, &status)
        name = "pipe:[\(status.st_ino)]"
    }

    deinit {
        closeRead()
        closeWrite()
    }

    func closeRead() {
        if read >= 0 { close(read) }
        read = -1
    }

    func closeWrite() {
        if write >= 0 { close(write) }
        write = -1
    }

    func send(_ text: String) throws { try TestStream.send(text, to: write, what: "the pipe") }

    /// Reads until `count` bytes came, or the end of the pipe; gives up after `timeout` seconds.
    func receive(_ count: Int, timeout: Double = 30) -> String {
        TestStream.receive(count, from: read, timeout: timeout)
    }

    /// Everything until the end of the pipe (every write end closed).
    func receiveAll(timeout: Double = 60) -> String { receive(Int.max, timeout: timeout) }
}

/// external_pipe: stdin and stdout are pipes of the test's, outside the tree.
final class ExternalPipeTests: ScenarioTestCase {
    private func reply(_ line: String) -> String { "echo: \(line)\nchild: \(line)\nagain: \(line)\n" }

    /// Starts external_pipe reading `lines` lines from `input` and writing to `output`; waits
    /// for its pidfile.
    private func startTarget(lines: Int, input: TestPipe, output: TestPipe) throws -> ScenarioProcess {
        let scenario = Scenario.externalPipe
        let binary = try ScenarioBuilder.shared.binary(scenario.name)
        let directory = try newDirectory(scenario.name)
        let p = ScenarioProcess(scenario: scenario, binary: binary, directory: directory, pid: 0)
        p.pid = try DescriptorSpawn.start(
            [binary, "--pidfile", p.pidfile, "--outfile", p.outfile, "--lines", "\(lines)"],
            descriptors: [0: input.read, 1: output.write], log: p.log)
        track(p.pid)
        input.closeRead()
        output.closeWrite()
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.readText(p.pidfile) == nil {
            guard Sys.now() < deadline, case .running = Spawn.poll(p.pid) else {
                throw RunnerError("external_pipe did not start; log:\n\(p.logText)")
            }
            Sys.sleep(milliseconds: 5)
        }
        return p
    }

    /// Its last line given, the target ends with "done" and its verdict.
    private func expectEnd(_ p: ScenarioProcess, input: TestPipe, output: TestPipe) {
        input.closeWrite()
        XCTAssertEqual(output.receiveAll(), "done\n", "after the end of its input; log:\n\(p.logText)")
        XCTAssertTrue(waitForEnd(p, timeout: Self.verdictTimeout), "external_pipe did not end")
        XCTAssertEqual(p.verdict, "PASS", "log:\n\(p.logText)")
    }

    func testPlain() throws {
        let input = try TestPipe()
        let output = try TestPipe()
        let p = try startTarget(lines: 2, input: input, output: output)
        for line in ["one", "two"] {
            try input.send(line + "\n")
            XCTAssertEqual(output.receive(reply(line).utf8.count), reply(line))
        }
        expectEnd(p, input: input, output: output)
    }

    /// Refused without --external, naming this test as the outside holder; dumped with it;
    /// restored only with a descriptor for each pipe, of the right access mode; then the
    /// restored tree reads the test's new pipe and writes into the other, exactly as it would
    /// have into the old ones, and the old ones have nothing more.
    func testDumpRestoreWithInheritedPipes() throws {
        let amberPath = try requireAmber()
        let input = try TestPipe()
        let output = try TestPipe()
        let p = try startTarget(lines: 2, input: input, output: output)
        let inputName = input.name
        let outputName = output.name
        try input.send("one\n")
        XCTAssertEqual(output.receive(reply("one").utf8.count), reply("one"))
        try waitForSyscall(p, 0)

        let refused = try amber(["dump", "-R", "-t", "\(p.pid)", "-D", try newDirectory("refused")])
        XCTAssertEqual(refused.status, .exited(AmberExit.unsupportedState), refused.summary)
        XCTAssertTrue(refused.stderr.contains("outside the tree"), refused.stderr)
        XCTAssertTrue(
            refused.stderr.contains("process \(getpid()) "), "names the test as the holder: \(refused.stderr)")
        assertRunningUntraced(p.pid, "after the refused dump")

        let unheld = try amber([
            "dump", "-R", "-t", "\(p.pid)", "-D", try newDirectory("unheld"), "--external", inputName,
            "--external", outputName, "--external", "pipe:[1]",
        ])
        XCTAssertEqual(unheld.status, .exited(AmberExit.otherFailure), unheld.summary)
        XCTAssertTrue(unheld.stderr.contains("--external pipe:[1]: no process of the tree"), unheld.stderr)

        let image = try newDirectory("image")
        let dump = try amber(
            ["dump", "-t", "\(p.pid)", "-D", image, "--external", inputName, "--external", outputName], reaping: [p])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        XCTAssertEqual(output.receiveAll(), "", "the dumped tree wrote into the old pipe")

        let needs = try amber(["verify", "--needs", image])
        XCTAssertEqual(needs.status, .exited(0), needs.summary)
        for name in [inputName, outputName] {
            XCTAssertTrue(needs.stdout.contains("\(name): fd "), "verify --needs lists \(name): \(needs.stdout)")
        }
        let missing = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(missing.status, .exited(AmberExit.restoreFailed), missing.summary)
        XCTAssertTrue(missing.stderr.contains("--inherit-fd fd[N]:pipe:["), missing.stderr)
        XCTAssertFalse(Proc.pidInUse(p.pid), "a failed restore left process \(p.pid)")

        let newInput = try TestPipe()
        let newOutput = try TestPipe()
        let key = ["AMBER_IMAGE_KEY": try Self.imageKeyPath()]
        let wrongMode = try DescriptorSpawn.start(
            [
                amberPath, "restore", "-D", image, "--detach", "--inherit-fd", "fd[3]:\(inputName)", "--inherit-fd",
                "fd[4]:\(outputName)",
            ], descriptors: [3: newInput.read, 4: newOutput.read], log: p.directory + "/wrong-mode.log", env: key)
        track(wrongMode)
        XCTAssertEqual(Spawn.wait(wrongMode, timeout: Self.amberTimeout), .exited(AmberExit.restoreFailed))
        let wrongModeLog = Sys.readText(p.directory + "/wrong-mode.log") ?? ""
        XCTAssertTrue(wrongModeLog.contains("fd 4 is open for reading only"), wrongModeLog)
        XCTAssertFalse(Proc.pidInUse(p.pid), "a failed restore left process \(p.pid)")

        let restore = try DescriptorSpawn.start(
            [
                amberPath, "restore", "-D", image, "--detach", "--inherit-fd", "fd[3]:\(inputName)", "--inherit-fd",
                "fd[4]:\(outputName)",
            ], descriptors: [3: newInput.read, 4: newOutput.write], log: p.directory + "/restore.log", env: key)
        track(restore)
        newInput.closeRead()
        newOutput.closeWrite()
        p.exitStatus = nil
        p.gone = false
        track(p.pid)
        XCTAssertEqual(
            Spawn.wait(restore, timeout: Self.amberTimeout), .exited(0),
            "restore: \(Sys.readText(p.directory + "/restore.log") ?? "")")
        guard Proc.pidInUse(p.pid) else { return XCTFail("process \(p.pid) was not restored") }
        assertRunningUntraced(p.pid, "after the restore")

        try newInput.send("two\n")
        XCTAssertEqual(newOutput.receive(reply("two").utf8.count), reply("two"))
        expectEnd(p, input: newInput, output: newOutput)
        XCTAssertEqual(output.receiveAll(timeout: 1), "", "the restored tree wrote into the old pipe")
    }

    /// A pipe named by --external is refused, target left running, when the tree has bytes in
    /// it not yet read (they would stay in the old pipe) or holds both of its ends (one
    /// descriptor of the caller cannot take the place of both).
    func testDumpRefusesExternalPipeNotExact() throws {
        _ = try requireAmber()
        let unread = try TestPipe()
        try unread.send("unread\n")
        let reader = try DescriptorSpawn.start(
            ["/bin/sleep", "1000"], descriptors: [0: unread.read], log: try newDirectory("unread") + "/log")
        track(reader)
        let held = try amber([
            "dump", "-R", "-t", "\(reader)", "-D", try newDirectory("image"), "--external", unread.name,
        ])
        XCTAssertEqual(held.status, .exited(AmberExit.unsupportedState), held.summary)
        XCTAssertTrue(held.stderr.contains("holding 7 bytes the tree has not read"), held.stderr)
        assertRunningUntraced(reader, "after the refused dump")
        XCTAssertEqual(unread.receive(7, timeout: 1), "unread\n", "the refused dump consumed what the pipe held")

        let both = try TestPipe()
        let holder = try DescriptorSpawn.start(
            ["/bin/sleep", "1000"], descriptors: [0: both.read, 1: both.write], log: try newDirectory("both") + "/log")
        track(holder)
        let twice = try amber([
            "dump", "-R", "-t", "\(holder)", "-D", try newDirectory("image"), "--external", both.name,
        ])
        XCTAssertEqual(twice.status, .exited(AmberExit.unsupportedState), twice.summary)
        XCTAssertTrue(twice.stderr.contains("another open file description of it"), twice.stderr)
        assertRunningUntraced(holder, "after the refused dump")
    }
}

/// Writing to and reading from a descriptor of the test's (a pipe's end, a socket).
enum TestStream {
    static func send(_ text: String, to fd: Int32, what: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard count > 0 || errno == EINTR else { throw RunnerError("write to \(what): \(Sys.errnoString())") }
            sent += max(count, 0)
        }
    }

    /// Reads until `count` bytes came, or the end of the stream; gives up after `timeout` seconds.
    static func receive(_ count: Int, from fd: Int32, timeout: Double) -> String {
        var bytes: [UInt8] = []
        let deadline = Sys.now() + timeout
        while bytes.count < count {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, (deadline - Sys.now()) * 1000))
            guard left > 0, poll(&ready, 1, left) > 0 else { break }
            var chunk = [UInt8](repeating: 0, count: min(65536, count - bytes.count))
            let got = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { break }
            bytes += chunk[..<got]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
