// The scenario runner's test base class: start a scenario, dump it, restore it, terminate
// it and read its verdict, keeping track of every process so none outlives its test.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A scenario program (Tests/Scenarios/<name>.c) and how to run it.
struct Scenario: Sendable {
    let name: String
    var args: [String] = []
    var env: [String: String] = [:]
    /// Dump only once /proc/PID/syscall shows the process blocked in this system call.
    var dumpInSyscall: Int? = nil

    static let counter = Scenario(name: "counter")
    static let memory = Scenario(name: "memory")
    static let fpu = Scenario(name: "fpu")
    static let signals = Scenario(name: "signals")
    /// Dumped inside the nanosleep system call (35); the absolute clock_nanosleep follows.
    static let restartSleep = Scenario(name: "restart_sleep", dumpInSyscall: 35)
    /// Dumped inside clock_nanosleep(TIMER_ABSTIME) (230); the relative nanosleep follows.
    static let restartSleepAbsoluteFirst = Scenario(name: "restart_sleep", args: ["--abs-first"], dumpInSyscall: 230)
    /// Dumped inside read (0) on the empty FIFO.
    static let restartRead = Scenario(name: "restart_read", dumpInSyscall: 0)
    static let files = Scenario(name: "files")
    static let environment = Scenario(
        name: "environment", args: ["--extra", "two words", "--utf8", "ü€"],
        env: ["AMBER_SCENARIO_VAR": "hello world"])
    static let unsupportedSocket = Scenario(name: "unsupported_socket")
    static let unsupportedSharedMemory = Scenario(name: "unsupported_shared_memory")
    static let secondThread = Scenario(name: "second_thread")
    static let childPause = Scenario(name: "child_pause")

    static let all: [Scenario] = [
        counter, memory, fpu, signals, restartSleep, restartSleepAbsoluteFirst, restartRead, files, environment,
        unsupportedSocket, unsupportedSharedMemory, secondThread, childPause,
    ]
}

/// One started scenario. After a dump and restore the same object stands for the restored
/// process: same PID, same pidfile, outfile and log paths.
final class ScenarioProcess {
    let scenario: Scenario
    let binary: String
    let directory: String
    let pidfile: String
    let outfile: String
    let log: String
    let pid: pid_t
    /// Set once this process (original or restored) has been reaped by the runner.
    var exitStatus: ExitStatus?
    /// Set once it is known to be gone without the runner reaping it.
    var gone = false

    init(scenario: Scenario, binary: String, directory: String, pid: pid_t) {
        self.scenario = scenario
        self.binary = binary
        self.directory = directory
        self.pidfile = directory + "/pid"
        self.outfile = directory + "/verdict"
        self.log = directory + "/log"
        self.pid = pid
    }

    var logText: String { Sys.readText(log) ?? "(no log)" }
    var verdict: String? { Sys.readText(outfile)?.trimmingCharacters(in: .whitespacesAndNewlines) }

    var diagnostics: String {
        "\(scenario.name) \(Proc.describe(pid)); verdict: \(verdict ?? "none"); log:\n\(logText)"
    }
}

/// One run of amber.
struct AmberResult {
    let arguments: [String]
    let status: ExitStatus
    let stdout: String
    let stderr: String

    var summary: String {
        "`amber \(arguments.joined(separator: " "))` → \(status); stderr: \(stderr.isEmpty ? "(empty)" : stderr)"
    }
}

struct RunningAmber {
    let pid: pid_t
    let arguments: [String]
    let stdoutPath: String
    let stderrPath: String
}

class ScenarioTestCase: XCTestCase {
    /// Processes started by this test that may still need killing and reaping.
    private var tracked: Set<pid_t> = []
    private var testDirectory: String?
    private var amberRuns = 0

    static let pidfileTimeout = 20.0
    static let verdictTimeout = 30.0
    /// Only a guard against hangs; never a performance threshold.
    static let amberTimeout = 120.0

    override func setUpWithError() throws {
        try super.setUpWithError()
        try Sys.becomeSubreaper()
    }

    override func tearDown() {
        cleanUpProcesses()
        if let testDirectory, (testRun?.totalFailureCount ?? 1) == 0 {
            Scratch.remove(testDirectory)
        }
        super.tearDown()
    }

    /// Kill whatever this test started and reap it, and any orphan reparented to us.
    private func cleanUpProcesses() {
        let ours = ((try? Scratch.root()) ?? "/nonexistent") + "/"
        for pid in tracked {
            switch Spawn.poll(pid) {
            case .running:
                kill(pid, SIGKILL)
            case .notMyChild:
                // a restored scenario that is not (yet) our child: kill it only if it still
                // runs one of our scenario binaries or amber
                if let exe = Proc.exe(pid), exe.hasPrefix(ours) || exe == Locations.amberBinary() {
                    kill(pid, SIGKILL)
                }
            case .exited:
                break
            }
        }
        let deadline = Sys.now() + 10
        while Sys.now() < deadline {
            var status: Int32 = 0
            while waitpid(-1, &status, WNOHANG) > 0 {}
            let children = Proc.childrenOfSelf()
            if children.isEmpty { break }
            for c in children { kill(c, SIGKILL) }
            Sys.sleep(milliseconds: 5)
        }
        tracked.removeAll()
    }

    // MARK: helpers for tests

    func requireAmber() throws -> String {
        guard let amber = Locations.amberBinary() else { throw XCTSkip(Locations.amberSkipMessage) }
        return amber
    }

    func directory() throws -> String {
        if let testDirectory { return testDirectory }
        let d = try Scratch.makeDirectory(name)
        testDirectory = d
        return d
    }

    func newDirectory(_ label: String) throws -> String {
        let base = try directory()
        var n = 1
        while Sys.fileExists("\(base)/\(label)\(n == 1 ? "" : "-\(n)")") { n += 1 }
        let path = "\(base)/\(label)\(n == 1 ? "" : "-\(n)")"
        guard mkdir(path, 0o755) == 0 else { throw RunnerError("mkdir \(path): \(Sys.errnoString())") }
        return path
    }

    func track(_ pid: pid_t) { tracked.insert(pid) }

    /// Start a scenario and wait (up to 20 s) for its pidfile.
    func start(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws -> ScenarioProcess {
        let binary = try ScenarioBuilder.shared.binary(scenario.name)
        let dir = try newDirectory(scenario.name)
        let pidfile = dir + "/pid", outfile = dir + "/verdict", log = dir + "/log"
        let pid = try Spawn.start(
            [binary, "--pidfile", pidfile, "--outfile", outfile] + scenario.args, stdout: log, env: scenario.env)
        tracked.insert(pid)
        let p = ScenarioProcess(scenario: scenario, binary: binary, directory: dir, pid: pid)
        let deadline = Sys.now() + Self.pidfileTimeout
        while true {
            if let text = Sys.readText(pidfile), let written = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                guard written == pid else {
                    XCTFail("\(scenario.name) wrote PID \(written) to its pidfile, but it is \(pid)", file: file, line: line)
                    throw RunnerError("bad pidfile")
                }
                return p
            }
            if case .exited(let s) = Spawn.poll(pid) {
                p.exitStatus = s
                tracked.remove(pid)
                XCTFail("\(scenario.name) exited (\(s)) before writing its pidfile; log:\n\(p.logText)", file: file, line: line)
                throw RunnerError("scenario died during setup")
            }
            if Sys.now() > deadline {
                XCTFail("\(scenario.name) wrote no pidfile within \(Int(Self.pidfileTimeout)) s; \(p.diagnostics)",
                    file: file, line: line)
                throw RunnerError("no pidfile")
            }
            Sys.sleep(milliseconds: 5)
        }
    }

    /// Wait until the process is blocked in system call `number` (per /proc/PID/syscall).
    func waitForSyscall(_ p: ScenarioProcess, _ number: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.now() < deadline {
            if Proc.syscall(p.pid) == String(number) { return }
            Sys.sleep(milliseconds: 2)
        }
        XCTFail("\(p.scenario.name) never blocked in system call \(number); \(p.diagnostics)", file: file, line: line)
        throw RunnerError("not in the expected system call")
    }

    /// Wait until `p` has ended: reaped if it is our child, else gone or a zombie.
    /// Returns false on timeout.
    func waitForEnd(_ p: ScenarioProcess, timeout: Double) -> Bool {
        let deadline = Sys.now() + timeout
        while true {
            switch Spawn.poll(p.pid) {
            case .exited(let s):
                p.exitStatus = s
                tracked.remove(p.pid)
                return true
            case .notMyChild:
                if let s = Proc.status(p.pid), !s.isGone {
                    break
                }
                p.gone = true
                return true
            case .running:
                break
            }
            if Sys.now() > deadline { return false }
            Sys.sleep(milliseconds: 2)
        }
    }

    /// SIGTERM the scenario, wait for it to end (up to 30 s), and expect PASS and exit 0.
    func terminateAndExpectPass(_ p: ScenarioProcess, _ context: String, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        guard kill(p.pid, SIGTERM) == 0 else {
            XCTFail("\(context): cannot signal \(p.scenario.name) \(p.pid): \(Sys.errnoString()); \(p.diagnostics)",
                file: file, line: line)
            throw RunnerError("kill failed")
        }
        guard waitForEnd(p, timeout: Self.verdictTimeout) else {
            let diag = p.diagnostics
            kill(p.pid, SIGKILL)
            _ = waitForEnd(p, timeout: 10)
            XCTFail("\(context): \(p.scenario.name) did not finish within \(Int(Self.verdictTimeout)) s of SIGTERM; \(diag)",
                file: file, line: line)
            throw RunnerError("no verdict")
        }
        XCTAssertEqual(p.verdict, "PASS", "\(context): \(p.scenario.name) verdict; log:\n\(p.logText)", file: file, line: line)
        if let s = p.exitStatus {
            XCTAssertEqual(s, .exited(0), "\(context): \(p.scenario.name) exit status", file: file, line: line)
        }
    }

    /// The process runs, neither stopped nor traced.
    func assertRunningUntraced(_ pid: pid_t, _ context: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let s = Proc.status(pid) else {
            XCTFail("\(context): PID \(pid) does not exist", file: file, line: line)
            return
        }
        XCTAssertFalse(s.isGone, "\(context): PID \(pid) is a zombie", file: file, line: line)
        XCTAssertFalse(s.isStoppedOrTraced, "\(context): PID \(pid) is stopped or traced: \(Proc.describe(pid))",
            file: file, line: line)
        XCTAssertEqual(s.tracerPid, 0, "\(context): PID \(pid) is traced: \(Proc.describe(pid))", file: file, line: line)
    }

    // MARK: running amber

    func startAmber(_ arguments: [String], asNobody: Bool = false) throws -> RunningAmber {
        let amber = try requireAmber()
        amberRuns += 1
        let base = try directory()
        let out = "\(base)/amber-\(amberRuns).stdout", err = "\(base)/amber-\(amberRuns).stderr"
        var argv = [amber] + arguments
        if asNobody {
            argv = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        }
        let pid = try Spawn.start(argv, stdout: out, stderr: err)
        tracked.insert(pid)
        return RunningAmber(pid: pid, arguments: arguments, stdoutPath: out, stderrPath: err)
    }

    /// Wait for amber to finish, reaping the given scenarios whenever they exit meanwhile
    /// (amber dump waits until the dumped PID is free, and the runner is the parent).
    func finish(_ run: RunningAmber, reaping: [ScenarioProcess] = [], timeout: Double = ScenarioTestCase.amberTimeout)
        throws -> AmberResult
    {
        let deadline = Sys.now() + timeout
        var status: ExitStatus?
        while status == nil {
            for p in reaping where p.exitStatus == nil {
                if case .exited(let s) = Spawn.poll(p.pid) {
                    p.exitStatus = s
                    tracked.remove(p.pid)
                }
            }
            switch Spawn.poll(run.pid) {
            case .exited(let s):
                status = s
                tracked.remove(run.pid)
            case .notMyChild:
                throw RunnerError("amber \(run.pid) is not our child")
            case .running:
                if Sys.now() > deadline {
                    kill(run.pid, SIGKILL)
                    _ = Spawn.wait(run.pid, timeout: 10)
                    tracked.remove(run.pid)
                    let err = Sys.readText(run.stderrPath) ?? ""
                    XCTFail("`amber \(run.arguments.joined(separator: " "))` did not finish in \(Int(timeout)) s; stderr: \(err)")
                    throw RunnerError("amber hung")
                }
                Sys.sleep(milliseconds: 1)
            }
        }
        for p in reaping where p.exitStatus == nil {
            if case .exited(let s) = Spawn.poll(p.pid) {
                p.exitStatus = s
                tracked.remove(p.pid)
            }
        }
        return AmberResult(
            arguments: run.arguments, status: status!, stdout: Sys.readText(run.stdoutPath) ?? "",
            stderr: Sys.readText(run.stderrPath) ?? "")
    }

    func amber(_ arguments: [String], reaping: [ScenarioProcess] = [], asNobody: Bool = false) throws -> AmberResult {
        try finish(try startAmber(arguments, asNobody: asNobody), reaping: reaping)
    }

    /// `amber dump -t PID -D DIR`: exit 0, the process gone and its PID free when amber
    /// returns, an inventory in the image. Returns the image directory.
    @discardableResult
    func dumpExpectingSuccess(_ p: ScenarioProcess, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        guard r.status == .exited(0) else {
            XCTFail("dump failed: \(r.summary); \(p.diagnostics)", file: file, line: line)
            throw RunnerError("dump failed")
        }
        XCTAssertNotNil(p.exitStatus, "amber dump returned but the dumped process \(p.pid) had not exited",
            file: file, line: line)
        XCTAssertFalse(Proc.pidInUse(p.pid),
            "amber dump returned but PID \(p.pid) is still in use: \(Proc.describe(p.pid))", file: file, line: line)
        XCTAssertNil(p.verdict, "the dumped process wrote a verdict: it saw SIGTERM or ran its checks", file: file, line: line)
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"), "no inventory.pb in the image", file: file, line: line)
        if Proc.pidInUse(p.pid) { throw RunnerError("PID not free after dump") }
        return image
    }

    /// A complete image of a counter scenario (dumped and killed); its PID is free.
    func dumpedImage(file: StaticString = #filePath, line: UInt = #line) throws -> (String, pid_t) {
        _ = try requireAmber()
        let p = try start(.counter, file: file, line: line)
        let image = try dumpExpectingSuccess(p, file: file, line: line)
        return (image, p.pid)
    }

    /// `amber restore -D DIR --detach`: exit 0, and the process runs with the same PID,
    /// neither stopped nor traced, as the scenario binary.
    func restoreDetachedExpectingSuccess(_ p: ScenarioProcess, from image: String, file: StaticString = #filePath,
        line: UInt = #line) throws
    {
        p.exitStatus = nil
        p.gone = false
        let r = try amber(["restore", "-D", image, "--detach"])
        tracked.insert(p.pid)
        guard r.status == .exited(0) else {
            XCTFail("restore failed: \(r.summary); \(p.diagnostics)", file: file, line: line)
            throw RunnerError("restore failed")
        }
        guard let s = Proc.status(p.pid), !s.isGone else {
            XCTFail("amber restore --detach returned 0 but PID \(p.pid) is not running; \(p.diagnostics)", file: file, line: line)
            throw RunnerError("not restored")
        }
        assertRunningUntraced(p.pid, "after amber restore --detach", file: file, line: line)
        XCTAssertEqual(Proc.exe(p.pid), p.binary, "the restored PID \(p.pid) is not the scenario binary", file: file, line: line)
    }

    /// Plain mode: start, SIGTERM, PASS.
    func runPlain(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try start(scenario, file: file, line: line)
        try terminateAndExpectPass(p, "plain run", file: file, line: line)
    }

    /// Dumped mode: start, dump (killing it), restore --detach, SIGTERM, PASS.
    func runDumped(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        if let nr = scenario.dumpInSyscall { try waitForSyscall(p, nr, file: file, line: line) }
        let image = try dumpExpectingSuccess(p, file: file, line: line)
        try restoreDetachedExpectingSuccess(p, from: image, file: file, line: line)
        try terminateAndExpectPass(p, "after dump and restore", file: file, line: line)
    }

    /// --leave-running: the original keeps running untouched and still passes.
    func runLeaveRunning(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        if let nr = scenario.dumpInSyscall { try waitForSyscall(p, nr, file: file, line: line) }
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image, "--leave-running"], reaping: [p])
        XCTAssertEqual(r.status, .exited(0), "dump --leave-running: \(r.summary)", file: file, line: line)
        guard p.exitStatus == nil else {
            XCTFail("the original exited (\(p.exitStatus!)) during dump --leave-running; \(p.diagnostics)", file: file, line: line)
            throw RunnerError("original died")
        }
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"), "no inventory.pb in the image", file: file, line: line)
        assertRunningUntraced(p.pid, "after dump --leave-running", file: file, line: line)
        try terminateAndExpectPass(p, "original after dump --leave-running", file: file, line: line)
    }

    // MARK: refusals

    /// Exit code `code` and exactly one line on stderr, starting "amber: " and containing
    /// every string in `mentions` (and at least one of `mentionsAnyOf`, case-insensitive).
    func assertRefusal(_ r: AmberResult, exitCode code: Int32, mentions: [String], mentionsAnyOf: [String] = [],
        file: StaticString = #filePath, line: UInt = #line)
    {
        XCTAssertEqual(r.status, .exited(code), "exit status: \(r.summary)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        XCTAssertEqual(lines.count, 1, "stderr must be one line: \(r.summary)", file: file, line: line)
        guard let message = lines.first else { return }
        XCTAssertTrue(message.hasPrefix("amber: "), "message must start with \"amber: \": \(message)", file: file, line: line)
        for m in mentions {
            XCTAssertTrue(message.contains(m), "message does not name \"\(m)\": \(message)", file: file, line: line)
        }
        if !mentionsAnyOf.isEmpty {
            let lower = message.lowercased()
            XCTAssertTrue(mentionsAnyOf.contains { lower.contains($0.lowercased()) },
                "message names none of \(mentionsAnyOf): \(message)", file: file, line: line)
        }
    }

    /// The names in a directory, sorted.
    func listing(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }
}
