// Shell jobs (`dump -j`, `restore -j`) driven through a real terminal: bash in tmux windows of
// a tmux server of the test's own, typed into with send-keys and read with capture-pane.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A tmux server on a socket of its own, with two windows running bash: one to start a
/// program in and one to restore it in.
final class TmuxTerminals {
    static let tmux = "/usr/bin/tmux"
    static let bash = "/bin/bash"
    let socket: String
    let directory: String
    /// The window the program runs in before the dump, and the one it is restored in.
    let original = "amber:0"
    let restoring = "amber:1"

    init(directory: String) throws {
        self.directory = directory
        // Short: a unix socket's path has at most 107 bytes, and a test's directory can be longer.
        socket = "/tmp/amber-tmux-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let shell = ["env", "PS1=$ ", Self.bash, "--norc", "--noprofile"]
        // Spawn closes every inherited fd and gives stdin /dev/null: the server (it daemonizes)
        // and its shells get none of the test's.
        try run(["-f", "/dev/null", "new-session", "-d", "-s", "amber", "-x", "100", "-y", "30"] + shell)
        try run(["new-window", "-t", "amber"] + shell)
    }

    @discardableResult
    func run(_ arguments: [String]) throws -> String {
        let (status, output) = try Spawn.run([Self.tmux, "-S", socket] + arguments, in: directory)
        guard status == .exited(0) else { throw RunnerError("tmux \(arguments.joined(separator: " ")): \(output)") }
        return output
    }

    /// Types `text` and Enter into `window`.
    func type(_ text: String, into window: String) throws {
        try run(["send-keys", "-t", window, "-l", text])
        try run(["send-keys", "-t", window, "Enter"])
    }

    /// Presses keys by tmux's names (C-z, Escape).
    func press(_ keys: String..., in window: String) throws {
        try run(["send-keys", "-t", window] + keys)
    }

    func screen(_ window: String) -> String {
        (try? run(["capture-pane", "-p", "-t", window])) ?? ""
    }

    /// The bash of `window`.
    func shell(_ window: String) throws -> pid_t {
        let text = try run(["display-message", "-p", "-t", window, "#{pane_pid}"])
        guard let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw RunnerError("tmux gave no pane PID: \(text)")
        }
        return pid
    }

    /// Waits up to 20 s for `window` to show `text`.
    func waitForScreen(_ window: String, toShow text: String) throws {
        let deadline = Sys.now() + 20
        while !screen(window).contains(text) {
            guard Sys.now() < deadline else {
                throw RunnerError("the window \(window) does not show \"\(text)\":\n\(screen(window))")
            }
            Sys.sleep(milliseconds: 20)
        }
    }

    func kill() {
        _ = try? run(["kill-server"])
        unlink(socket)
    }
}

final class ShellJobTests: ScenarioTestCase {
    private func terminals() throws -> TmuxTerminals {
        _ = try requireAmber()
        for tool in [TmuxTerminals.tmux, TmuxTerminals.bash] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        return try TmuxTerminals(directory: try newDirectory("tmux"))
    }

    /// Waits up to 20 s for a process named `comm` under `shell`.
    private func waitForProgram(_ comm: String, under shell: pid_t) throws -> pid_t {
        let deadline = Sys.now() + 20
        while Sys.now() < deadline {
            if let pid = Proc.descendants(of: shell).first(where: { Proc.comm($0) == comm }) { return pid }
            Sys.sleep(milliseconds: 20)
        }
        throw RunnerError("no \(comm) started under the shell \(shell)")
    }

    /// Waits up to 20 s for `pid` to be in `state` (S, T...).
    private func waitForState(_ pid: pid_t, _ state: Character) throws {
        let deadline = Sys.now() + 20
        while Proc.status(pid)?.state != state {
            guard Sys.now() < deadline else { throw RunnerError("not in state \(state): \(Proc.describe(pid))") }
            Sys.sleep(milliseconds: 20)
        }
    }

    /// The command that restores `image` as a shell job, typed into a window.
    private func restoreCommand(_ image: String, options: String = "") throws -> String {
        "AMBER_IMAGE_KEY=\(try Self.imageKeyPath()) \(try requireAmber()) restore -j -D \(image)\(options)"
    }

    /// `sleep 1000` run from the shell of the original window, dumped as a shell job.
    private func dumpedSleep(_ tmux: TmuxTerminals) throws -> (image: String, pid: pid_t) {
        try tmux.type("sleep 1000", into: tmux.original)
        let sleep = try waitForProgram("sleep", under: try tmux.shell(tmux.original))
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-j", "-t", "\(sleep)", "-D", image])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { throw RunnerError("dump failed") }
        return (image, sleep)
    }

    /// vim edits a file, its change not written, and is dumped as a shell job; restored with -j
    /// in another window, it draws itself there, `:wq` writes the change and the shell sees
    /// vim end with 0.
    func testVimRestoredInAnotherTerminal() throws {
        guard Sys.fileExists("/usr/bin/vim") else { throw XCTSkip("vim is not installed (.ci/run installs it)") }
        let tmux = try terminals()
        defer { tmux.kill() }
        let directory = try newDirectory("vim")
        let file = directory + "/notes.txt"
        try "first line\n".write(toFile: file, atomically: true, encoding: .utf8)
        try tmux.type("vim -u NONE -i NONE -N \(file)", into: tmux.original)
        let vim = try waitForProgram("vim", under: try tmux.shell(tmux.original))
        try tmux.waitForScreen(tmux.original, toShow: "first line")
        try tmux.press("G", "o", in: tmux.original)
        try tmux.run(["send-keys", "-t", tmux.original, "-l", "added by the test"])
        try tmux.press("Escape", in: tmux.original)
        try tmux.waitForScreen(tmux.original, toShow: "added by the test")
        Sys.sleep(milliseconds: 1500)  // vim takes Escape as a key once no more follows (timeoutlen)

        let image = try newDirectory("image")
        let dump = try amber(["dump", "-j", "-t", "\(vim)", "-D", image])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        XCTAssertEqual(Sys.readText(file), "first line\n", "the dumped vim wrote the file")

        try tmux.type("clear; \(try restoreCommand(image)); echo \"exit=$?\"", into: tmux.restoring)
        try tmux.waitForScreen(tmux.restoring, toShow: "added by the test")
        XCTAssertEqual(Proc.comm(vim), "vim", "the restored vim: \(Proc.describe(vim))")
        try tmux.type(":wq", into: tmux.restoring)
        // The typed command shows "exit=$?"; what the shell printed, "exit=0".
        try tmux.waitForScreen(tmux.restoring, toShow: "exit=0")
        XCTAssertEqual(Sys.readText(file), "first line\nadded by the test\n")
    }

    /// The foreground process group of `pid`'s terminal (/proc/PID/stat field 8, tpgid).
    private func terminalForegroundGroup(_ pid: pid_t) -> pid_t? {
        guard let stat = Sys.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 5 ? pid_t(fields[5]) : nil
    }

    /// Waits up to 20 s for the foreground group of `pid`'s terminal to be `group`.
    private func waitForForeground(_ group: pid_t, of pid: pid_t) throws {
        let deadline = Sys.now() + 20
        while terminalForegroundGroup(pid) != group {
            guard Sys.now() < deadline else {
                throw RunnerError(
                    "the terminal's foreground group is \(terminalForegroundGroup(pid) ?? -1), not \(group)")
            }
            Sys.sleep(milliseconds: 20)
        }
    }

    /// A job that put its terminal in raw mode without echo (as less, top or a line editor
    /// does) finds the terminal it is restored on so: it would otherwise read cooked, echoed lines.
    func testJobTerminalModesComeBack() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        try tmux.type("stty -icanon -echo; sleep 1000", into: tmux.original)
        let sleep = try waitForProgram("sleep", under: try tmux.shell(tmux.original))
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-j", "-t", "\(sleep)", "-D", image])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        try tmux.type("clear; \(try restoreCommand(image))", into: tmux.restoring)
        try waitForState(sleep, "S")
        let tty =
            try tmux.run(["display-message", "-p", "-t", tmux.restoring, "#{pane_tty}"])
            .split(separator: "\n").first.map(String.init) ?? ""
        let (_, modes) = try Spawn.run(["/bin/stty", "-F", tty, "-a"], in: try directory())
        XCTAssertTrue(modes.contains("-icanon") && modes.contains("-echo "), "the restoring terminal's modes: \(modes)")
        kill(sleep, SIGKILL)
    }

    /// A shell job's `sleep 1000` restored with -j is its new shell's foreground job: ^Z stops
    /// it (the shell reports amber's job stopped), `bg` continues it in the background, `fg`
    /// brings it back to the foreground, ^C ends it and amber reports its status.
    func testJobControlOfRestoredSleep() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        let (image, sleep) = try dumpedSleep(tmux)

        try tmux.type("clear; \(try restoreCommand(image, options: " -v"))", into: tmux.restoring)
        // -v shows the terminal the job had and its settings (the window it ran in had 30 rows).
        try tmux.waitForScreen(tmux.restoring, toShow: "shell job: on /dev/pts/")
        try tmux.waitForScreen(tmux.restoring, toShow: "at the dump, 30 rows and 100 columns")
        try waitForState(sleep, "S")
        let amberPID = Proc.status(sleep)?.ppid ?? -1
        XCTAssertEqual(Proc.comm(amberPID), "amber", "the restored sleep's parent: \(Proc.describe(amberPID))")
        let shell = try tmux.shell(tmux.restoring)
        try waitForForeground(sleep, of: sleep)

        try tmux.press("C-z", in: tmux.restoring)
        try tmux.waitForScreen(tmux.restoring, toShow: "Stopped")
        try waitForState(sleep, "T")
        try waitForState(amberPID, "T")
        try waitForForeground(shell, of: sleep)

        try tmux.type("bg", into: tmux.restoring)
        try waitForState(sleep, "S")
        try waitForState(amberPID, "S")
        XCTAssertEqual(terminalForegroundGroup(sleep), shell, "bg gave the terminal away")

        try tmux.type("fg", into: tmux.restoring)
        try waitForForeground(sleep, of: sleep)
        XCTAssertEqual(Proc.status(sleep)?.state, "S", "after fg: \(Proc.describe(sleep))")

        try tmux.press("C-c", in: tmux.restoring)
        let deadline = Sys.now() + 20
        while Proc.pidInUse(sleep) && Sys.now() < deadline { Sys.sleep(milliseconds: 20) }
        XCTAssertFalse(Proc.pidInUse(sleep), "^C did not end the restored sleep: \(Proc.describe(sleep))")
        try tmux.type("echo \"exit=$?\"", into: tmux.restoring)
        try tmux.waitForScreen(tmux.restoring, toShow: "exit=130")
    }

    /// Without -j, a program whose terminal is outside the tree is refused, naming -j, and runs on.
    func testDumpWithoutShellJobIsRefused() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        try tmux.type("sleep 1000", into: tmux.original)
        let sleep = try waitForProgram("sleep", under: try tmux.shell(tmux.original))
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-t", "\(sleep)", "-D", image])
        assertRefusal(dump, exitCode: AmberExit.unsupportedState, mentions: ["\(sleep) (sleep)", "-j", "/dev/pts/"])
        XCTAssertEqual(Proc.status(sleep)?.state, "S", "the refused dump left sleep: \(Proc.describe(sleep))")
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"))
    }

    /// An image of a shell job is restored only with -j, and -j only on a terminal amber runs on.
    func testShellJobRestoredOnlyWithShellJobOnATerminal() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        let (image, sleep) = try dumpedSleep(tmux)
        let before = contents(of: image)
        let needs = try amber(["verify", "--needs", image])
        XCTAssertTrue(
            needs.stdout.contains("of the shell job of process \(sleep) (sleep): restore with -j"), needs.stdout)
        let plain = try amber(["restore", "-D", image])
        assertRefusal(plain, exitCode: AmberExit.restoreFailed, mentions: ["shell job", "-j"])
        let noTerminal = try amber(["restore", "-j", "-D", image])
        assertRefusal(noTerminal, exitCode: AmberExit.restoreFailed, mentions: ["-j", "no controlling terminal"])
        XCTAssertFalse(Proc.pidInUse(sleep), "a refused restore made \(Proc.describe(sleep))")
        XCTAssertTrue(contents(of: image) == before, "a refused restore changed the image")
    }

    /// A scenario, shell_job unless told, typed into the shell of the original window; its pidfile read.
    private func startShellJobScenario(
        _ tmux: TmuxTerminals, _ scenario: Scenario = .shellJob, options: String = ""
    ) throws -> ScenarioProcess {
        let binary = try ScenarioBuilder.shared.binary(scenario.name)
        let process = ScenarioProcess(
            scenario: scenario, binary: binary, directory: try newDirectory(scenario.name), pid: 0)
        try tmux.type(
            "\(binary) --pidfile \(process.pidfile) --outfile \(process.outfile)\(options)", into: tmux.original)
        let deadline = Sys.now() + Self.pidfileTimeout
        while Sys.now() < deadline {
            if let text = Sys.readText(process.pidfile),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                process.pid = pid
                return process
            }
            Sys.sleep(milliseconds: 20)
        }
        throw RunnerError("\(scenario.name) wrote no pidfile:\n\(tmux.screen(tmux.original))")
    }

    /// SIGTERM, then its verdict.
    private func assertPasses(
        _ process: ScenarioProcess, _ tmux: TmuxTerminals, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        kill(process.pid, SIGTERM)
        let deadline = Sys.now() + Self.verdictTimeout
        while process.verdict == nil && Sys.now() < deadline { Sys.sleep(milliseconds: 20) }
        XCTAssertEqual(
            process.verdict, "PASS",
            "screens:\n\(tmux.screen(tmux.original))\n\(tmux.screen(tmux.restoring))", file: file, line: line)
    }

    /// Run from a shell and not dumped, the scenario passes its checks of its terminal.
    func testShellJobScenarioPlain() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        assertPasses(try startShellJobScenario(tmux), tmux)
    }

    /// Dumped with -j and restored with -j in another window: every fd on the new terminal
    /// with its flags and sharing, /dev/tty still /dev/tty, the job the foreground group of
    /// its new session, its child with it; amber exits with its status, 0.
    func testShellJobScenarioDumpedAndRestored() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        let process = try startShellJobScenario(tmux)
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-j", "-t", "\(process.pid)", "-D", image])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        XCTAssertNil(process.verdict, "the dumped scenario wrote a verdict")
        try tmux.type("clear; \(try restoreCommand(image)); echo \"exit=$?\"", into: tmux.restoring)
        try waitForState(process.pid, "S")
        assertPasses(process, tmux)
        try tmux.waitForScreen(tmux.restoring, toShow: "exit=0")
    }

    /// `dump -j --leave-running` leaves the job as it was: it passes its checks on its terminal.
    func testShellJobScenarioLeftRunning() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        let process = try startShellJobScenario(tmux)
        let dump = try amber(["dump", "-j", "-R", "-t", "\(process.pid)", "-D", try newDirectory("image")])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        assertRunningUntraced(process.pid, "after dump -j --leave-running")
        assertPasses(process, tmux)
    }

    /// With -j, a descriptor on another terminal than the job's is refused, naming both: the
    /// restore has one terminal to give, amber's.
    func testShellJobOnTwoTerminalsIsRefused() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        let other = try tmux.run(["display-message", "-p", "-t", tmux.restoring, "#{pane_tty}"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let process = try startShellJobScenario(tmux, options: " --open \(other)")
        let dump = try amber(["dump", "-j", "-t", "\(process.pid)", "-D", try newDirectory("image")])
        assertRefusal(
            dump, exitCode: AmberExit.unsupportedState,
            mentions: ["\(process.pid) (shell_job)", "fd 5 open on the terminal \(other)", "-j"])
        assertRunningUntraced(process.pid, "after the refused dump")
    }

    /// A shell job whose tree holds ptys of its own, both ends (the ptys scenario run from the
    /// shell): the shell's terminal is the job's, the ptys the tree's, one a child's session's
    /// controlling terminal. Dumped with -j and restored with -j in another window, the root,
    /// its child and grandchild answer through their pty as before.
    func testShellJobHoldingPtysOfItsOwn() throws {
        let tmux = try terminals()
        defer { tmux.kill() }
        let process = try startShellJobScenario(tmux, .ptys, options: " --shell-job")
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-j", "-t", "\(process.pid)", "-D", image])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        try tmux.type("clear; \(try restoreCommand(image)); echo \"exit=$?\"", into: tmux.restoring)
        try waitForState(process.pid, "S")
        assertPasses(process, tmux)
        try tmux.waitForScreen(tmux.restoring, toShow: "exit=0")
    }
}
