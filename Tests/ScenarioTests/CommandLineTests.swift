// The flags every verb takes (--version, -o/--log-file, --json), progress on a terminal, and
// `amber dump` interrupted by a signal.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class CommandLineTests: ScenarioTestCase {
    /// A pseudo-terminal for amber's standard error only: amber stays in our session (a
    /// process it restores too, as the scenario's checks want), and the terminal is not its
    /// controlling one, so nothing gets its hangup.
    private final class Terminal {
        let master: Int32
        let wrapper: [String]

        init() throws {
            master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
            var unlock: Int32 = 0
            var number: UInt32 = 0
            // TIOCSPTLCK and TIOCGPTN, which Glibc's Swift overlay lacks.
            guard master >= 0, ioctl(master, 0x4004_5431, &unlock) == 0, ioctl(master, 0x8004_5430, &number) == 0
            else {
                throw RunnerError("no pseudo-terminal: \(Sys.errnoString())")
            }
            wrapper = ["/bin/sh", "-c", "exec \"$@\" 2>/dev/pts/\(number)", "sh"]
            _ = fcntl(master, F_SETFL, O_NONBLOCK)
        }

        deinit { close(master) }

        /// What was written to it since the last call.
        func output() -> String {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(master, &chunk, chunk.count)
                guard count > 0 else { break }
                bytes += chunk[..<count]
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The one JSON object a --json run prints on standard output.
    private func object(_ r: AmberResult, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(
            lines.count, 1, "not one line on stdout: \(r.summary); stdout: \(r.stdout)", file: file, line: line)
        guard let first = lines.first,
            let object = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any]
        else {
            XCTFail("no JSON object on stdout: \(r.summary); stdout: \(r.stdout)", file: file, line: line)
            throw RunnerError("no JSON")
        }
        return object
    }

    func testVersionAfterEveryVerb() throws {
        let version = try amber(["--version"])
        XCTAssertEqual(version.status, .exited(0), version.summary)
        XCTAssertFalse(version.stdout.isEmpty)
        for verb in ["dump", "pre-dump", "restore", "show", "verify", "check"] {
            let r = try amber([verb, "--version"])
            XCTAssertEqual(r.status, .exited(0), r.summary)
            XCTAssertEqual(r.stdout, version.stdout, "amber \(verb) --version")
        }
        let check = try amber(["check", "--json"])
        let result = try object(check)
        XCTAssertEqual(check.status, .exited(result["ok"] as? Bool == true ? 0 : 1), check.summary)
        XCTAssertEqual(result["version"] as? String, version.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        let features = result["features"] as? [[String: Any]] ?? []
        XCTAssertFalse(features.isEmpty, check.stdout)
        for feature in features {
            XCTAssertNotNil(feature["name"] as? String, "\(feature)")
            XCTAssertNotNil(feature["ok"] as? Bool, "\(feature)")
        }
    }

    /// dump, verify and restore with --json and one log file: each prints one object on
    /// standard output, and nothing on standard error; the log has every run's trace messages,
    /// the dump worker's too, and the wait for the parent to reap the killed tree, naming it.
    func testJSONResultsAndLogFile() throws {
        _ = try requireAmber()
        let p = try start(.counter)
        let image = try newDirectory("image")
        let log = try newDirectory("log") + "/amber.log"
        let run = try startAmber(["dump", "-t", "\(p.pid)", "-D", image, "--json", "-o", log])
        // We reap the killed target only once the dump says it waits for that.
        let deadline = Sys.now() + Self.amberTimeout
        while !(Sys.readText(log) ?? "").contains("to reap it") && Sys.now() < deadline {
            Sys.sleep(milliseconds: 1)
        }
        p.exitStatus = Spawn.wait(p.pid, timeout: Self.amberTimeout)
        let dump = try finish(run)
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        XCTAssertEqual(dump.stderr, "", dump.summary)
        let dumped = try object(dump)
        XCTAssertEqual(dumped["pids"] as? [Int], [Int(p.pid)], dump.stdout)
        XCTAssertGreaterThan(dumped["memoryBytes"] as? Int ?? 0, 0, dump.stdout)
        XCTAssertGreaterThan(dumped["imageBytes"] as? Int ?? 0, dumped["memoryBytes"] as? Int ?? 0, dump.stdout)
        XCTAssertNotNil(dumped["frozenMilliseconds"] as? Double, dump.stdout)
        let phases = dumped["phaseMilliseconds"] as? [String: Double] ?? [:]
        XCTAssertEqual(Set(phases.keys), ["preflight", "collect", "inventory", "release"], dump.stdout)
        let text = Sys.readText(log) ?? ""
        XCTAssertTrue(text.contains("trace: image written"), text)
        XCTAssertTrue(
            text.contains("waiting for process \(getpid()) (")
                && text.contains("the parent of killed process \(p.pid) (counter), to reap it"),
            text)
        XCTAssertTrue(text.contains("PIDs free after"), text)

        let verify = try amber(["verify", image, "--json"])
        XCTAssertEqual(verify.status, .exited(0), verify.summary)
        XCTAssertEqual(try object(verify)["intact"] as? Bool, true, verify.stdout)

        p.exitStatus = nil
        p.gone = false
        let restore = try amber(["restore", "-D", image, "--detach", "--json", "-o", log])
        track(p.pid)
        XCTAssertEqual(restore.status, .exited(0), restore.summary)
        XCTAssertEqual(restore.stderr, "", restore.summary)
        XCTAssertEqual(try object(restore)["rootPID"] as? Int, Int(p.pid), restore.stdout)
        let logged = Sys.readText(log) ?? ""
        XCTAssertEqual(logged.components(separatedBy: "amber restore -D").count, 2, "one header for the restore")
        XCTAssertTrue(logged.contains("trace: image read and checked"), logged)
        try terminateAndExpectPass(p, "after dump and restore with --json and -o")

        // An error: its message on standard error, its code and message as the result.
        let missing = try amber(["verify", image + "/none", "--json"])
        XCTAssertEqual(missing.status, .exited(7), missing.summary)
        let error = try object(missing)["error"] as? [String: Any] ?? [:]
        XCTAssertEqual(error["code"] as? Int, 7, missing.stdout)
        XCTAssertTrue(missing.stderr.contains(error["message"] as? String ?? "?"), missing.summary)
        let usage = try amber(["dump", "--json"])
        XCTAssertEqual(usage.status, .exited(64), usage.summary)
        XCTAssertEqual((try object(usage)["error"] as? [String: Any])?["code"] as? Int, 64, usage.stdout)

        // As root, a log file that is a symbolic link is refused.
        let link = try newDirectory("link") + "/amber.log"
        XCTAssertEqual(symlink(log, link), 0)
        let linked = try amber(["check", "-o", link])
        XCTAssertEqual(linked.status, .exited(1), linked.summary)
        XCTAssertTrue(linked.stderr.contains("symbolic link"), linked.summary)
    }

    /// A dump and a restore of 1 GiB on a terminal show their progress; without one, none. Each
    /// pauses a second once its memory is copied (a test fault), so that it runs longer than the
    /// half second after which progress is shown, however fast the machine.
    func testProgressOnATerminalOnly() throws {
        _ = try requireAmber()
        let p = try start(.bigMemory(mib: 1024))
        let image = try newDirectory("image")
        let terminal = try Terminal()
        let dump = try amber(
            ["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], env: ["AMBER_TEST_FAULT": "dump.inventory=pause"],
            wrapper: terminal.wrapper)
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        let dumpProgress = terminal.output()
        XCTAssertTrue(dumpProgress.contains("\ramber dump: "), "no progress: \(dumpProgress)")
        XCTAssertTrue(dumpProgress.contains(" of 1024 MiB of memory ("), "no total: \(dumpProgress)")
        p.exitStatus = nil
        p.gone = false
        let restore = try amber(
            ["restore", "-D", image, "--detach"], env: ["AMBER_TEST_FAULT": "restore.detach=pause"],
            wrapper: terminal.wrapper)
        track(p.pid)
        XCTAssertEqual(restore.status, .exited(0), restore.summary)
        let restoreProgress = terminal.output()
        XCTAssertTrue(restoreProgress.contains("\ramber restore: "), "no progress: \(restoreProgress)")
        XCTAssertTrue(restoreProgress.contains(" of 1024 MiB of memory ("), "no total: \(restoreProgress)")
        let image2 = try newDirectory("image")
        let quiet = try amber(["dump", "-t", "\(p.pid)", "-D", image2, "--leave-running"])
        XCTAssertEqual(quiet.status, .exited(0), quiet.summary)
        XCTAssertEqual(quiet.stderr, "", "progress without a terminal")
        try terminateAndExpectPass(p, "after its dump and restore on a terminal")
    }

    /// SIGINT, SIGTERM and SIGHUP part way through a dump of 1 GiB: amber dump exits 11, the
    /// directory is as it was (one it made is gone), and the target runs on as it was; SIGKILL
    /// gives 137, and the worker cleans up all the same.
    func testInterruptedDumpLeavesNothing() throws {
        _ = try requireAmber()
        let p = try start(.bigMemory(mib: 1024))
        let before = ProcView(pid: p.pid)
        for (index, signal) in [SIGINT, SIGTERM, SIGHUP, SIGKILL].enumerated() {
            // An empty directory that exists, or one the dump makes.
            let parent = try newDirectory("images")
            let image = index % 2 == 0 ? parent : parent + "/image"
            let run = try startAmber(["dump", "-t", "\(p.pid)", "-D", image])
            let deadline = Sys.now() + Self.amberTimeout
            while pageBytes(image) == 0 && Sys.now() < deadline { Sys.sleep(milliseconds: 1) }
            kill(run.pid, signal)
            let r = try finish(run, reaping: [p])
            let context = "amber dump, signal \(signal) part way"
            if signal == SIGKILL {
                XCTAssertEqual(r.status, .signaled(SIGKILL), "\(context): \(r.summary)")
                waitForOrphanedWorker(context)
            } else {
                XCTAssertEqual(r.status, .exited(11), "\(context): \(r.summary)")
                XCTAssertTrue(r.stderr.contains("was interrupted by SIG"), "\(context): \(r.summary)")
            }
            XCTAssertEqual(
                try FileManager.default.contentsOfDirectory(atPath: parent), [], "\(context): files left")
            XCTAssertNil(p.exitStatus, "\(context): the target exited: \(p.diagnostics)")
            assertRunningUntraced(p.pid, context)
            var after = ProcView(pid: p.pid)
            let settled = Sys.now() + Self.verdictTimeout
            while after.entries != before.entries && Sys.now() < settled {
                Sys.sleep(milliseconds: 10)
                after = ProcView(pid: p.pid)
            }
            for (key, value) in before.entries where after.entries[key] != value {
                XCTFail("\(context): \(key) changed: \(value) → \(after.entries[key] ?? "(gone)")")
            }
        }
        try terminateAndExpectPass(p, "after four interrupted dumps")
    }

    /// The bytes of page files in `directory` so far.
    private func pageBytes(_ directory: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("pages") }.reduce(0) { total, name in
            total + ((try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)")[.size] as? Int) ?? 0)
        }
    }

    /// The worker of a killed `amber dump` comes to us (a subreaper): wait until it has cleaned up and exited.
    private func waitForOrphanedWorker(_ context: String) {
        let deadline = Sys.now() + Self.amberTimeout
        while Sys.now() < deadline {
            let workers = Proc.childrenOfSelf().filter { Proc.comm($0) == "amber" }
            if workers.isEmpty { return }
            for worker in workers {
                var status: Int32 = 0
                _ = waitpid(worker, &status, WNOHANG)
            }
            Sys.sleep(milliseconds: 1)
        }
        XCTFail("\(context): the dump worker did not exit")
    }
}
