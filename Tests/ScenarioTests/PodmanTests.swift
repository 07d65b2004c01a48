// podman with amber as its runtime's CRIU (a `criu` link to amber first in PATH; podman runs
// runc, which runs `criu swrk`): a busybox container imported from a local tarball counts on
// its standard output, a pipe to conmon outside the tree; `podman container checkpoint
// --export` and `podman container restore --import`, under its name and then, that one
// removed, under a new one, bring it back, and `podman logs` shows the count going on through the pipe runc plugs in.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class PodmanTests: ScenarioTestCase {
    private static let podman = "/usr/bin/podman"

    /// Runs podman to its end, with the `criu` of `criuDirectory` first in PATH.
    private func podman(_ arguments: [String], _ label: String, criuDirectory: String) throws -> (
        status: ExitStatus?, output: String
    ) {
        let output = try directory() + "/\(label).out"
        let inherited = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        let path = criuDirectory + ":" + inherited
        let pid = try Spawn.start([Self.podman] + arguments, stdout: output, env: ["PATH": path])
        track(pid)
        return (Spawn.wait(pid, timeout: ScenarioTestCase.amberTimeout), Sys.readText(output) ?? "")
    }

    /// The highest number the container has written to its standard output, 0 while none.
    private func count(_ name: String, criuDirectory: String) throws -> Int {
        let logs = try podman(["logs", name], "logs", criuDirectory: criuDirectory)
        return logs.output.split(separator: "\n").compactMap { Int($0) }.max() ?? 0
    }

    /// Waits until the container's count is above `floor`.
    private func waitForCount(_ name: String, above floor: Int, criuDirectory: String) throws -> Int {
        let deadline = Sys.now() + 10
        var counted = try count(name, criuDirectory: criuDirectory)
        while counted <= floor && Sys.now() < deadline {
            Sys.sleep(milliseconds: 100)
            counted = try count(name, criuDirectory: criuDirectory)
        }
        return counted
    }

    func testCheckpointExportAndRestoreImport() throws {
        let amber = try requireAmber()
        for tool in [Self.podman, BusyboxRootfs.busybox] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
        let work = try newDirectory("podman")
        let criuDirectory = work + "/criu"
        try FileManager.default.createDirectory(atPath: criuDirectory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: criuDirectory + "/criu", withDestinationPath: amber)
        try BusyboxRootfs.make(at: work + "/rootfs", applets: ["sh", "sleep"])
        let packed = try Spawn.run(
            ["/usr/bin/tar", "-C", work + "/rootfs", "-cf", work + "/rootfs.tar", "."], in: work)
        XCTAssertEqual(packed.0, .exited(0), packed.1)

        let image = "localhost/amber-podman-\(getpid()):latest"
        let name = "amber-podman-\(getpid())"
        let newName = name + "-new"
        defer {
            _ = try? podman(["rm", "--force", "--time", "0", name, newName], "rm", criuDirectory: criuDirectory)
            _ = try? podman(["rmi", "--force", image], "rmi", criuDirectory: criuDirectory)
        }
        let imported = try podman(["import", work + "/rootfs.tar", image], "import", criuDirectory: criuDirectory)
        XCTAssertEqual(imported.status, .exited(0), imported.output)
        // root lacks CAP_SYS_RESOURCE here: podman's default limits above the host's cannot be set.
        let started = try podman(
            [
                "run", "--detach", "--name", name, "--network", "none", "--ulimit", "nofile=20000:20000",
                "--ulimit", "nproc=4096:4096", image, "/bin/sh", "-c",
                "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
            ], "run", criuDirectory: criuDirectory)
        XCTAssertEqual(started.status, .exited(0), started.output)
        XCTAssertGreaterThan(
            try waitForCount(name, above: 0, criuDirectory: criuDirectory), 0, "the container does not count")

        let export = work + "/checkpoint.tar.gz"
        let checkpoint = try podman(
            ["container", "checkpoint", "--export", export, name], "checkpoint", criuDirectory: criuDirectory)
        let checkpointLog = Self.runtimeLog(named: "dump.log", in: checkpoint.output)
        XCTAssertEqual(checkpoint.status, .exited(0), checkpoint.output + checkpointLog)
        let counted = try count(name, criuDirectory: criuDirectory)
        XCTAssertGreaterThan(counted, 0)

        let removed = try podman(["rm", name], "rm-checkpointed", criuDirectory: criuDirectory)
        XCTAssertEqual(removed.status, .exited(0), removed.output)
        let restored = try podman(
            ["container", "restore", "--import", export], "restore", criuDirectory: criuDirectory)
        XCTAssertEqual(restored.status, .exited(0), restored.output)
        XCTAssertGreaterThan(
            try waitForCount(name, above: counted, criuDirectory: criuDirectory), counted,
            "the restored container's count does not go on")

        // The image keeps the tree's PIDs: the container restored first goes before the one
        // under a new name comes back with them.
        let stopped = try podman(["rm", "--force", "--time", "0", name], "rm-restored", criuDirectory: criuDirectory)
        XCTAssertEqual(stopped.status, .exited(0), stopped.output)
        let renamed = try podman(
            ["container", "restore", "--import", export, "--name", newName], "restore-new",
            criuDirectory: criuDirectory)
        XCTAssertEqual(renamed.status, .exited(0), renamed.output)
        XCTAssertGreaterThan(
            try waitForCount(newName, above: counted, criuDirectory: criuDirectory), counted,
            "the container restored under a new name does not count on")
    }

    /// The log runc names in its error ("log file: PATH"), which amber wrote: what failed, for the test's message.
    private static func runtimeLog(named name: String, in output: String) -> String {
        guard let start = output.range(of: "log file: ")?.upperBound,
            let end = output[start...].range(of: name)?.upperBound
        else { return "" }
        let path = String(output[start..<end])
        return "\n\(path):\n" + (Sys.readText(path).map { String($0.suffix(4000)) } ?? "(unreadable)")
    }
}
