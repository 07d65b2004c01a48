// `amber swrk FD`: CRIU's RPC, spoken by a client of the test's own (as a container runtime
// speaks it), and by runc itself.

import AmberImage
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A runtime's side of `amber swrk 3`: a SOCK_SEQPACKET pair, one message per packet.
final class SwrkClient {
    let socket: Int32
    let pid: pid_t
    /// The notifications received, in order, each answered with success.
    private(set) var notifications: [String] = []

    /// `descriptors`: more of ours at chosen numbers of its (its standard error, say).
    init(_ test: ScenarioTestCase, log: String, descriptors: [Int32: Int32] = [:]) throws {
        let amber = try test.requireAmber()
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw RunnerError("socketpair: \(Sys.errnoString())")
        }
        defer { close(pair[1]) }
        socket = pair[0]
        pid = try DescriptorSpawn.start(
            [amber, "swrk", "3"], descriptors: descriptors.merging([3: pair[1]]) { _, socket in socket }, log: log,
            env: ["AMBER_IMAGE_KEY": try ScenarioTestCase.imageKeyPath()])
        test.track(pid)
    }

    deinit { close(socket) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// The next response, nil when swrk closed its end. Meanwhile `reaping` is reaped when it
    /// exits: a dump waits until the dumped PID is free, and the test is its parent.
    func receive(reaping: ScenarioProcess? = nil) throws -> Swrk_Response? {
        var ready = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        while poll(&ready, 1, 10) == 0 {
            if let p = reaping, p.exitStatus == nil, case .exited(let status) = Spawn.poll(p.pid) {
                p.exitStatus = status
            }
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return try Swrk_Response(serializedBytes: Array(buffer[..<count]))
    }

    /// Sends `request` and answers every notification, as runc does, until the response.
    func call(_ request: Swrk_Request, reaping: ScenarioProcess? = nil) throws -> Swrk_Response {
        send(try request.serializedBytes())
        while true {
            guard let response = try receive(reaping: reaping) else {
                throw RunnerError("swrk closed the socket without a response")
            }
            guard response.type == .notify else { return response }
            notifications.append(response.notify.script)
            var answer = Swrk_Request()
            answer.type = .notify
            answer.notifySuccess = true
            send(try answer.serializedBytes())
        }
    }

    /// swrk's exit status once the socket is closed.
    func finish() -> ExitStatus? {
        shutdown(socket, Int32(SHUT_RDWR))
        return Spawn.wait(pid, timeout: ScenarioTestCase.amberTimeout)
    }
}

final class SwrkTests: ScenarioTestCase {
    private func request(_ type: Swrk_RequestType, _ configure: (inout Swrk_Options) -> Void = { _ in }) -> Swrk_Request
    {
        var request = Swrk_Request()
        request.type = type
        var options = Swrk_Options()
        configure(&options)
        if type == .dump || type == .restore || type == .preDump { request.opts = options }
        return request
    }

    /// DUMP of `p` through an `amber swrk` of its own (its output in `log`), which must answer
    /// success and exit 0.
    private func dumpThroughSwrk(
        _ p: ScenarioProcess, log: String, file: StaticString = #filePath, line: UInt = #line,
        _ configure: (inout Swrk_Options) -> Void
    ) throws {
        let dumping = try SwrkClient(self, log: try directory() + "/" + log)
        let dumped = try dumping.call(request(.dump, configure), reaping: p)
        XCTAssertTrue(dumped.success, "DUMP failed: \(dumped.crErrmsg)", file: file, line: line)
        XCTAssertEqual(dumping.finish(), .exited(0), file: file, line: line)
    }

    /// VERSION, DUMP of a counter into a directory the runtime already wrote into (its
    /// descriptor passed as runc passes it), then RESTORE: the counter counts on, and the
    /// notifications came in CRIU's order.
    func testDumpAndRestoreOverTheProtocol() throws {
        let p = try start(.counter)
        let image = try newDirectory("swrk-image")
        FileManager.default.createFile(atPath: image + "/descriptors.json", contents: Data("[]".utf8))
        let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(imagesFD, 0)
        defer { close(imagesFD) }

        let dumping = try SwrkClient(self, log: try directory() + "/swrk-dump.out")
        var version = request(.version)
        version.keepOpen = true
        let versionResponse = try dumping.call(version)
        XCTAssertTrue(versionResponse.success)
        XCTAssertEqual(versionResponse.version.majorNumber * 100 + versionResponse.version.minorNumber, 316)
        var dump = request(.dump) {
            $0.imagesDirFd = imagesFD
            $0.pid = p.pid
            $0.logFile = "dump.log"
            $0.logLevel = 4
            $0.notifyScripts = true
            $0.orphanPtsMaster = true
            $0.root = "/"
        }
        dump.keepOpen = false
        let dumped = try dumping.call(dump, reaping: p)
        XCTAssertTrue(dumped.success, "DUMP failed: \(dumped.crErrmsg)")
        XCTAssertEqual(dumped.type, .dump)
        XCTAssertEqual(dumping.notifications, ["pre-dump", "post-dump"])
        XCTAssertEqual(dumping.finish(), .exited(0))
        XCTAssertNotNil(p.exitStatus, "the dumped counter still runs")
        XCTAssertTrue(Sys.fileExists(image + "/inventory.pb"))
        XCTAssertTrue(Sys.readText(image + "/dump.log")?.contains("dumped process \(p.pid)") == true)

        let restoring = try SwrkClient(self, log: try directory() + "/swrk-restore.out")
        let restored = try restoring.call(
            request(.restore) {
                $0.imagesDirFd = imagesFD
                $0.logFile = "restore.log"
                $0.notifyScripts = true
            })
        XCTAssertTrue(restored.success, "RESTORE failed: \(restored.crErrmsg)")
        XCTAssertEqual(restored.restore.pid, p.pid)
        XCTAssertEqual(restoring.notifications, ["setup-namespaces", "post-restore"])
        XCTAssertEqual(restoring.finish(), .exited(0))
        p.exitStatus = nil
        p.gone = false
        track(p.pid)
        assertRunningUntraced(p.pid, "after RESTORE")
        try terminateAndExpectPass(p, "after DUMP and RESTORE through amber swrk")
    }

    /// A container's stderr is a pipe of the runtime's, which runc hands the RESTORE as swrk's
    /// own standard error, named by an inherit_fd: the log file takes swrk's fd 2 only after
    /// that pipe is kept, and the restored tree writes into the runtime's pipe, not the log.
    func testRestoredStandardErrorIsTheRuntimesPipeNotTheLog() throws {
        _ = try requireAmber()
        let logs = try newDirectory("swrk-stderr")
        var before: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&before), 0)
        let pid = try DescriptorSpawn.start(
            ["/bin/sh", "-c", "trap 'echo restored-stderr >&2; exit 0' TERM; /bin/sleep 1000 & wait"],
            descriptors: [2: before[1]], log: logs + "/out")
        close(before[1])
        defer { close(before[0]) }
        track(pid)
        addTeardownBlock { kill(pid, SIGKILL) }
        let deadline = Sys.now() + Self.pidfileTimeout
        while Proc.descendants(of: pid).isEmpty, Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        var status = stat()
        XCTAssertEqual(fstat(before[0], &status), 0)
        let image = try newDirectory("swrk-image")
        let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(imagesFD) }
        let shell = ScenarioProcess(scenario: Scenario(name: "sh"), binary: "/bin/sh", directory: logs, pid: pid)
        try dumpThroughSwrk(shell, log: "swrk-dump.out") {
            $0.imagesDirFd = imagesFD
            $0.pid = pid
            $0.logFile = "dump.log"
        }

        var after: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&after), 0)
        defer { close(after[0]) }
        let restoring = try SwrkClient(self, log: logs + "/swrk-restore.out", descriptors: [2: after[1]])
        close(after[1])
        let restored = try restoring.call(
            request(.restore) {
                $0.imagesDirFd = imagesFD
                $0.logFile = "restore.log"
                var inherited = Swrk_InheritFd()
                inherited.key = "pipe:[\(status.st_ino)]"
                inherited.fd = 2
                $0.inheritFd = [inherited]
            })
        XCTAssertTrue(restored.success, "RESTORE failed: \(restored.crErrmsg)")
        _ = restoring.finish()
        track(pid)
        XCTAssertEqual(kill(pid, SIGTERM), 0, "the restored shell is gone")
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(after[0], &buffer, buffer.count)
        XCTAssertEqual(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self), "restored-stderr\n")
        XCTAssertFalse(
            Sys.readText(image + "/restore.log")?.contains("restored-stderr") ?? false,
            "the restored tree wrote into amber's log")
    }

    /// A tree in a network namespace holding what a new one lacks (a queueing discipline):
    /// a runtime's restore makes the namespace again, with none to join, so DUMP refuses,
    /// naming it, and the tree runs on untouched.
    func testDumpRefusesNetworkANewNamespaceWouldLack() throws {
        _ = try requireAmber()
        let logs = try newDirectory("swrk-network")
        let pid = try Spawn.start(
            [
                "/usr/bin/unshare", "-n", "/bin/sh", "-c",
                "/usr/sbin/tc qdisc add dev lo root pfifo && exec /bin/sleep 1000",
            ], stdout: logs + "/log")
        track(pid)
        addTeardownBlock { kill(pid, SIGKILL) }
        let deadline = Sys.now() + Self.pidfileTimeout
        while Proc.exe(pid) != "/usr/bin/sleep", Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        let image = try newDirectory("swrk-image")
        let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(imagesFD, 0)
        defer { close(imagesFD) }
        let dumping = try SwrkClient(self, log: logs + "/swrk-dump.out")
        let dumped = try dumping.call(
            request(.dump) {
                $0.imagesDirFd = imagesFD
                $0.pid = pid
                $0.logFile = "dump.log"
            })
        XCTAssertFalse(dumped.success, "DUMP of a namespace a new one would not be made as succeeded")
        XCTAssertTrue(dumped.crErrmsg.contains("queueing discipline qdisc pfifo"), dumped.crErrmsg)
        XCTAssertEqual(dumping.finish(), .exited(1))
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"), "the refused DUMP left an image")
        assertRunningUntraced(pid, "after the refused DUMP")
    }

    /// A RESTORE sent after a pause, as runc sends it once it has moved swrk into the container's
    /// cgroups: swrk has read the image in advance from the one image directory the runtime
    /// holds open, and the restore takes that read. With a second directory that looks like an
    /// image's open beside it, nothing is read in advance and the restore reads the image itself.
    func testRestoreTakesTheImageReadInAdvance() throws {
        let p = try start(.counter)
        let decoy = try newDirectory("swrk-decoy")
        FileManager.default.createFile(atPath: decoy + "/inventory.pb", contents: Data())
        for (round, withDecoy) in [(1, true), (2, false)] {
            let image = try newDirectory("swrk-advance-\(round)")
            let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            XCTAssertGreaterThanOrEqual(imagesFD, 0)
            defer { close(imagesFD) }
            try dumpThroughSwrk(p, log: "swrk-dump-\(round).out") {
                $0.imagesDirFd = imagesFD
                $0.pid = p.pid
                $0.logFile = "dump.log"
            }
            XCTAssertNotNil(p.exitStatus, "the dumped counter still runs")

            let decoyFD = withDecoy ? open(decoy, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
            defer { if decoyFD >= 0 { close(decoyFD) } }
            let restoring = try SwrkClient(self, log: try directory() + "/swrk-restore-\(round).out")
            usleep(200_000)
            let restored = try restoring.call(
                request(.restore) {
                    $0.imagesDirFd = imagesFD
                    $0.logFile = "restore.log"
                    $0.logLevel = 4
                    $0.notifyScripts = true
                })
            XCTAssertTrue(restored.success, "RESTORE failed: \(restored.crErrmsg)")
            XCTAssertEqual(restoring.finish(), .exited(0))
            let log = Sys.readText(image + "/restore.log") ?? ""
            XCTAssertEqual(log.contains("image read and checked in advance"), !withDecoy, "round \(round): \(log)")
            XCTAssertTrue(log.contains("image read and checked"), log)
            p.exitStatus = nil
            p.gone = false
            track(p.pid)
            assertRunningUntraced(p.pid, "after RESTORE \(round)")
        }
        try terminateAndExpectPass(p, "after two DUMPs and RESTOREs through amber swrk, one read in advance")
    }

    /// PRE_DUMP, then a DUMP referring to it (parent_img, as runc's --parent-path gives it),
    /// each by its own swrk; the incremental image restores, and the counter counts on.
    func testPreDumpThenDump() throws {
        let p = try start(.counter)
        let base = try newDirectory("swrk-chain")
        for name in ["pre", "final"] { mkdir(base + "/" + name, 0o700) }
        let pre = open(base + "/pre", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let final = open(base + "/final", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer {
            close(pre)
            close(final)
        }
        let preDumping = try SwrkClient(self, log: try directory() + "/swrk-pre.out")
        let preDumped = try preDumping.call(
            request(.preDump) {
                $0.imagesDirFd = pre
                $0.pid = p.pid
                $0.trackMem = true
                $0.logFile = "pre-dump.log"
            })
        XCTAssertTrue(preDumped.success, "PRE_DUMP failed: \(preDumped.crErrmsg)")
        XCTAssertEqual(preDumped.type, .preDump)
        XCTAssertEqual(preDumping.finish(), .exited(0))

        try dumpThroughSwrk(p, log: "swrk-final.out") {
            $0.imagesDirFd = final
            $0.pid = p.pid
            $0.parentImg = "../pre"
            $0.trackMem = true
            $0.logFile = "dump.log"
        }
        XCTAssertNotNil(p.exitStatus, "the dumped counter still runs")

        let restoring = try SwrkClient(self, log: try directory() + "/swrk-restore.out")
        let restored = try restoring.call(request(.restore) { $0.imagesDirFd = final })
        XCTAssertTrue(restored.success, "RESTORE failed: \(restored.crErrmsg)")
        XCTAssertEqual(restoring.finish(), .exited(0))
        p.exitStatus = nil
        p.gone = false
        track(p.pid)
        try terminateAndExpectPass(p, "after PRE_DUMP, DUMP and RESTORE through amber swrk")
    }

    /// A tree in a mount namespace of its own (Tests/Scenarios/mnt_namespace.c) dumped with its
    /// bind mount named by ext_mnt, plus an ext_mnt naming no mount (runc names device nodes it
    /// did not bind), and restored with root and ext_mnt, as runc asks: the scenario checks its
    /// mounts, files and /proc.
    func testMountNamespaceOverTheProtocol() throws {
        let p = try start(.mountNamespace)
        let image = try newDirectory("swrk-mnt")
        let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(imagesFD, 0)
        defer { close(imagesFD) }
        func mount(_ key: String, _ value: String) -> Swrk_ExternalMount {
            var mount = Swrk_ExternalMount()
            mount.key = key
            mount.val = value
            return mount
        }
        try dumpThroughSwrk(p, log: "swrk-dump.out") {
            $0.imagesDirFd = imagesFD
            $0.pid = p.pid
            $0.logFile = "dump.log"
            $0.logLevel = 4
            $0.extMnt = [mount(p.directory, "scenario-dir"), mount("/dev/null", "/dev/null")]
        }
        XCTAssertTrue(
            Sys.readText(image + "/dump.log")?.contains("ext_mnt mnt[/dev/null]:/dev/null: no such mount") == true)

        let restoring = try SwrkClient(self, log: try directory() + "/swrk-restore.out")
        let restored = try restoring.call(
            request(.restore) {
                $0.imagesDirFd = imagesFD
                $0.logFile = "restore.log"
                $0.root = p.directory + "/rootfs"
                $0.extMnt = [mount("scenario-dir", p.directory)]
            })
        XCTAssertTrue(restored.success, "RESTORE failed: \(restored.crErrmsg)")
        XCTAssertEqual(restoring.finish(), .exited(0))
        p.exitStatus = nil
        p.gone = false
        p.pid = restored.restore.pid
        track(p.pid)
        assertRunningUntraced(p.pid, "after RESTORE")
        try terminateAndExpectPass(p, "after DUMP and RESTORE of a mount namespace through amber swrk")
    }

    /// Options amber does not honour are refused by name, in the response and the log, before
    /// the tree is touched.
    func testRefusesOptionsByName() throws {
        let p = try start(.counter)
        let image = try newDirectory("swrk-refused")
        let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(imagesFD) }
        let client = try SwrkClient(self, log: try directory() + "/swrk.out")
        let response = try client.call(
            request(.dump) {
                $0.imagesDirFd = imagesFD
                $0.pid = p.pid
                $0.logFile = "dump.log"
                $0.autoDedup = true
                $0.manageCgroups = true
                $0.cgroupYard = "/tmp/yard"
                $0.skipMnt = ["/etc/hosts"]
                $0.lazyPages = true
            })
        XCTAssertFalse(response.success)
        XCTAssertEqual(response.type, .dump)
        for name in ["auto_dedup", "cgroup_yard", "skip_mnt", "ext_mnt", "lazy_pages"] {
            XCTAssertTrue(response.crErrmsg.contains(name), "\(name) not in: \(response.crErrmsg)")
        }
        XCTAssertTrue(Sys.readText(image + "/dump.log")?.contains("auto_dedup") == true)
        XCTAssertEqual(client.notifications, [])
        XCTAssertEqual(client.finish(), .exited(1))
        XCTAssertFalse(Sys.fileExists(image + "/inventory.pb"))
        assertRunningUntraced(p.pid, "after a refused DUMP")
        try terminateAndExpectPass(p, "after a refused DUMP")
    }

    /// Packets that are no request, too long, of unknown types or missing what a dump needs:
    /// an error response each, and swrk exits 1.
    func testMalformedPackets() throws {
        var unknownType = Swrk_Request()
        unknownType.type = .pageServer
        var noPid = request(.dump) { $0.imagesDirFd = 0 }
        noPid.keepOpen = false
        let cases: [([UInt8], String)] = [
            ([0xff, 0xff, 0xff, 0x01], "not a valid message"),
            ([UInt8](repeating: 0x08, count: 70_000), "longer than"),
            ([0x08, 0x63], "without a (known) type"),
            (try unknownType.serializedBytes(), "PAGE_SERVER is not served"),
            (try noPid.serializedBytes(), "pid: missing"),
            (try request(.dump).serializedBytes() + [0xf8, 0x07, 0x01], "fields unknown to amber: 127"),
        ]
        for (index, (packet, expected)) in cases.enumerated() {
            let client = try SwrkClient(self, log: try directory() + "/swrk-\(index).out")
            client.send(packet)
            let response = try client.receive()
            XCTAssertEqual(response?.success, false, "packet \(index)")
            XCTAssertTrue(
                response?.crErrmsg.contains(expected) == true,
                "packet \(index): \(expected) not in \(response?.crErrmsg ?? "no response")")
            XCTAssertEqual(client.finish(), .exited(1), "packet \(index)")
        }
    }
}
