// A whole tmux session dumped and restored, driven and read with tmux's own client.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A tmux server (its own socket) whose one pane runs a python3 REPL holding a variable and a
/// half-typed line: the server's whole tree (its listening socket, the pane's pty master, the
/// REPL on the slave as the pane session's controlling terminal) is dumped and restored. Then
/// the screen is the same, a new client attaches to the restored server and sees it, and typing
/// the rest of the line gives the REPL's answer from the variable it kept.
final class TmuxTests: ScenarioTestCase {
    private static let tmux = "/usr/bin/tmux"
    private static let python = "/usr/bin/python3"

    func testWholeSessionWithPythonREPL() throws {
        _ = try requireAmber()
        for tool in [Self.tmux, Self.python] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let directory = try newDirectory("tmux")
        let inner = directory + "/inner.sock"
        let outer = directory + "/outer.sock"
        defer {
            _ = try? tmux(outer, ["kill-server"], in: directory)
            _ = try? tmux(inner, ["kill-server"], in: directory)
        }
        try tmux(inner, ["new-session", "-d", "-x", "80", "-y", "24", Self.python, "-q"], in: directory)
        let server = try serverPID(inner, in: directory)
        track(server)
        try waitForScreen(inner, in: directory) { $0.contains(">>>") }
        try tmux(inner, ["send-keys", "x = 6 * 7", "Enter"], in: directory)
        try waitForScreen(inner, in: directory) { $0.components(separatedBy: ">>>").count == 3 }
        try tmux(inner, ["send-keys", "print(x + "], in: directory)
        let before = try waitForScreen(inner, in: directory) { $0.contains(">>> print(x +") }

        let image = try newDirectory("image")
        let process = ScenarioProcess(
            scenario: Scenario(name: "tmux"), binary: Self.tmux, directory: directory, pid: server)
        let dump = try amber(["dump", "-t", "\(server)", "-D", image], reaping: [process])
        XCTAssertEqual(dump.status, .exited(0), dump.summary)
        guard dump.status == .exited(0) else { return }
        let restore = try amber(["restore", "-D", image, "--detach"])
        XCTAssertEqual(restore.status, .exited(0), restore.summary)
        guard restore.status == .exited(0) else { return }
        track(server)

        XCTAssertEqual(try capture(inner, in: directory), before, "the restored pane's screen")
        // A new client: a second tmux server whose pane attaches to the restored one.
        try tmux(
            outer, ["new-session", "-d", "-x", "80", "-y", "25", "env -u TMUX \(Self.tmux) -S \(inner) attach"],
            in: directory)
        if let outerServer = try? serverPID(outer, in: directory) { track(outerServer) }
        try waitForScreen(outer, in: directory) { $0.contains(">>> x = 6 * 7") && $0.contains(">>> print(x +") }
        try tmux(inner, ["send-keys", "1)", "Enter"], in: directory)
        let after = try waitForScreen(inner, in: directory) { $0.contains("\n43\n") }
        XCTAssertTrue(after.contains(">>> print(x + 1)\n43\n>>>"), "the REPL's answer:\n\(after)")
        try waitForScreen(outer, in: directory) { $0.contains(">>> print(x + 1)") && $0.contains("\n43\n") }
    }

    /// Runs the tmux client on the server at `socket`; its output.
    @discardableResult
    private func tmux(_ socket: String, _ arguments: [String], in directory: String) throws -> String {
        let (status, output) = try Spawn.run(
            ["/usr/bin/env", "-u", "TMUX", Self.tmux, "-S", socket] + arguments, in: directory)
        guard status == .exited(0) else {
            throw RunnerError("tmux \(arguments.joined(separator: " ")) ended with \(status): \(output)")
        }
        return output
    }

    private func serverPID(_ socket: String, in directory: String) throws -> pid_t {
        let output = try tmux(socket, ["display-message", "-p", "#{pid}"], in: directory)
        guard let pid = pid_t(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw RunnerError("tmux gave no server PID: \(output)")
        }
        return pid
    }

    private func capture(_ socket: String, in directory: String) throws -> String {
        try tmux(socket, ["capture-pane", "-p"], in: directory)
    }

    /// The pane's screen once `done` holds of it, within the verdict timeout.
    @discardableResult
    private func waitForScreen(_ socket: String, in directory: String, _ done: (String) -> Bool) throws -> String {
        let deadline = Sys.now() + Self.verdictTimeout
        var screen = ""
        while Sys.now() < deadline {
            screen = try capture(socket, in: directory)
            if done(screen) { return screen }
            Sys.sleep(milliseconds: 20)
        }
        throw RunnerError("the pane of \(socket) never showed what was expected; it shows:\n\(screen)")
    }
}
