// sqlite3's temp store in files: a real program whose temp table lives in a file sqlite
// opened and unlinked at once, dumped and restored with that deleted file.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class SqliteTempStoreTests: ScenarioTestCase {
    private static let python = "/usr/bin/python3"

    /// Fills a temp table far larger than its cache (PRAGMA temp_store=FILE, a 64 KiB cache),
    /// so it lives in a temp file of its own, unlinked, in the test's directory
    /// (SQLITE_TMPDIR); waits for the file `go`, then reads the table back, adds a row and
    /// writes what it found to `result`.
    private static let program = """
        import os, sqlite3, sys, time
        directory = sys.argv[1]
        def path(name): return os.path.join(directory, name)
        con = sqlite3.connect(path("test.db"), isolation_level=None)
        con.execute("PRAGMA temp_store=FILE")
        con.execute("PRAGMA temp.cache_size=-64")
        con.execute("CREATE TEMP TABLE big(i INTEGER PRIMARY KEY, s TEXT)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO big(s) VALUES (?)", ((f"row {i} " + "x" * 200,) for i in range(20000)))
        con.execute("COMMIT")
        def link(fd):
            try: return os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError: return ""  # the descriptor listdir read /proc/self/fd with
        links = [link(fd) for fd in os.listdir("/proc/self/fd")]
        deleted = [link for link in links if link.startswith(directory) and link.endswith(" (deleted)")]
        assert deleted, f"sqlite has no deleted temp file in {directory}: {links}"
        with open(path("pid.tmp"), "w") as f: f.write(str(os.getpid()))
        os.rename(path("pid.tmp"), path("pid"))
        while not os.path.exists(path("go")): time.sleep(0.02)
        count, total = con.execute("SELECT count(*), sum(length(s)) FROM big").fetchone()
        con.execute("INSERT INTO big(s) VALUES ('after')")
        after = con.execute("SELECT s FROM big WHERE i = 20001").fetchone()[0]
        check = con.execute("PRAGMA temp.integrity_check").fetchone()[0]
        with open(path("result.tmp"), "w") as f: f.write(f"{count} {total} {after} {check}")
        os.rename(path("result.tmp"), path("result"))
        """

    func testTempTableInADeletedFile() throws {
        _ = try requireAmber()
        guard Sys.fileExists(Self.python) else {
            throw XCTSkip("\(Self.python) is not installed (.ci/run installs it)")
        }
        let directory = try newDirectory("sqlite-temp")
        let script = directory + "/program.py"
        try Self.program.write(toFile: script, atomically: true, encoding: .utf8)
        let pid = try Spawn.start(
            [Self.python, script, directory], stdout: directory + "/log", env: ["SQLITE_TMPDIR": directory])
        track(pid)
        let deadline = Sys.now() + Self.pidfileTimeout
        while !Sys.fileExists(directory + "/pid") {
            guard Sys.now() < deadline, case .running = Spawn.poll(pid) else {
                XCTFail("the program did not fill its temp table; log:\n\(Sys.readText(directory + "/log") ?? "")")
                return
            }
            Sys.sleep(milliseconds: 10)
        }
        let image = try newDirectory("image")
        let program = ScenarioProcess(
            scenario: Scenario(name: "sqlite-temp"), binary: Self.python, directory: directory, pid: pid)
        let dump = try amber(["dump", "-t", "\(pid)", "-D", image], reaping: [program])
        XCTAssertEqual(dump.status, .exited(0), "dump: \(dump.summary)")
        guard dump.status == .exited(0) else { return }
        XCTAssertTrue(
            listing(image).contains { $0.hasPrefix("contents-") }, "the image keeps no temp file: \(listing(image))")
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), "restore: \(restore.summary)")
        guard restore.status == .exited(0) else { return }

        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/go", contents: nil))
        let exited = Spawn.wait(pid, timeout: Self.verdictTimeout)
        XCTAssertTrue(
            exited == .exited(0) || exited == nil, "the restored program ended with \(String(describing: exited))")
        let doneBy = Sys.now() + Self.verdictTimeout
        while !Sys.fileExists(directory + "/result") && Sys.now() < doneBy { Sys.sleep(milliseconds: 10) }
        let rowLength = (0..<20000).reduce(0) { $0 + "row \($1) ".count + 200 }
        XCTAssertEqual(
            Sys.readText(directory + "/result"), "20000 \(rowLength) after ok",
            "the restored program's temp table; log:\n\(Sys.readText(directory + "/log") ?? "")")
    }
}
