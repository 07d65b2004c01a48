// Authenticated images: a root restore of a user's image grants that user nothing.
// The attacks are built as a user would: she dumps her own process (her dump cannot read the
// host key, so it has no inventory.mac), edits a task record with the generated types, and
// recomputes the inventory's size and XXH64 of it; then root restores it.

import AmberImage
import CChecksum
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class AuthenticationTests: ScenarioTestCase {
    /// Hole A: the user points her log's descriptor at a root-only file, read-write, with that
    /// file's device, inode and change time: the identity that let the restorer reopen a file
    /// the task opened before dropping privilege. Root's restore refuses it by name, and
    /// `verify --needs` lists it.
    func testUserImageNamingARootOnlyFileIsRefused() throws {
        let (p, image) = try userDumpedCounter()
        let secret = try directory() + "/secret"
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: secret, contents: Data("secret\n".utf8), attributes: [.posixPermissions: 0o600]))
        var status = stat()
        XCTAssertEqual(stat(secret, &status), 0)
        try edit(image, pid: p.pid) { task in
            let index = try XCTUnwrap(
                task.files.descriptions.firstIndex { $0.regularFile.path == p.directory + "/log" },
                "the counter's log is open")
            task.files.descriptions[index].regularFile.path = secret
            task.files.descriptions[index].flags = UInt32(O_RDWR)
            task.files.descriptions[index].offset = 0
            task.files.descriptions[index].regularFile.device = UInt64(status.st_dev)
            task.files.descriptions[index].regularFile.inode = UInt64(status.st_ino)
            task.files.descriptions[index].regularFile.size = UInt64(status.st_size)
            task.files.descriptions[index].regularFile.changeTimeNs =
                UInt64(status.st_ctim.tv_sec) * 1_000_000_000 + UInt64(status.st_ctim.tv_nsec)
        }
        let needs = try amber(["verify", "--needs", image])
        XCTAssertEqual(needs.status, .exited(0), needs.summary)
        XCTAssertTrue(needs.stdout.contains("not authenticated"), needs.stdout)
        XCTAssertTrue(needs.stdout.contains("\(secret) (read-write): uid \(PrivilegeTests.user)"), needs.stdout)
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: [secret, "process \(p.pid)", "not authenticated", "--trust-image"])
        XCTAssertEqual(Sys.readText(secret), "secret\n")
    }

    /// Hole B: the user gives her process a seccomp filter without no_new_privs, under which a
    /// set-user-ID program it ran would run. Refused by name unless root trusts the image.
    func testUserImageAddingSeccompWithoutNoNewPrivsIsRefused() throws {
        let (p, image) = try userDumpedCounter()
        try edit(image, pid: p.pid) { task in
            var allow = Amber_SeccompFilter()
            // ret SECCOMP_RET_ALLOW (BPF_RET | BPF_K, k 0x7fff0000)
            allow.program = Data([0x06, 0, 0, 0, 0, 0, 0xff, 0x7f])
            task.seccomp.filters = [allow]
            task.threads[0].seccomp.mode = .filter
            task.threads[0].seccomp.chain = [0]
            task.threads[0].threadFlags.noNewPrivs = false
        }
        let needs = try amber(["verify", "--needs", image])
        XCTAssertTrue(
            needs.stdout.contains("process \(p.pid) (counter): seccomp filters without no_new_privs"), needs.stdout)
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: [
                "process \(p.pid)", "seccomp", "no_new_privs", "CAP_SYS_ADMIN", "not authenticated", "--trust-image",
            ])
        try restoreDetachedExpectingSuccess(p, from: image, options: ["--trust-image"])
        let restored = Proc.status(p.pid)?.raw ?? ""
        XCTAssertTrue(
            restored.contains("Seccomp:\t2") && restored.contains("NoNewPrivs:\t0"),
            "trusted, the filter is given as the image asks: \(restored)")
        try terminateAndExpectPass(p, "restored with --trust-image")
    }

    /// Every other privileged setting, each alone in the user's image: refused before any
    /// task is made, naming the process and what it asks. Unedited, root restores it.
    func testUserImageAskingForPrivilegedSettingsIsRefused() throws {
        let (p, image) = try userDumpedCounter()
        let original = contents(of: image)
        var files = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files), 0)
        var cases: [(String, (inout Amber_Task) -> Void)] = [
            (
                "SCHED_FIFO priority 10",
                {
                    $0.threads[0].scheduling.policy = 1
                    $0.threads[0].scheduling.rtPriority = 10
                }
            ),
            ("nice -10", { $0.threads[0].scheduling.nice = -10 }),
            ("oom_score_adj -500", { $0.processFlags.oomScoreAdj = -500 }),
            ("IOPRIO_CLASS_RT", { $0.threads[0].scheduling.ioPriority = 1 << 13 | 4 }),
            (
                "of locked memory, above its RLIMIT_MEMLOCK",
                { task in
                    for index in task.memory.areas.indices where task.memory.areas[index].kind == .areaStack {
                        task.memory.areas[index].locked = true
                    }
                    for index in task.environment.limits.indices where task.environment.limits[index].resource == 8 {
                        task.environment.limits[index].soft = 0
                    }
                }
            ),
            (
                "POSIX timer 7 on CLOCK_BOOTTIME_ALARM",
                { task in
                    var timer = Amber_PosixTimer()
                    timer.id = 7
                    timer.clock = 9
                    timer.notify = 1
                    task.timers.posixTimers = [timer]
                }
            ),
        ]
        /// A pipe end the image adds, with its capacity and owner.
        func pipe(capacity: UInt32, owner: UInt32?) -> (inout Amber_Task) -> Void {
            { task in
                var end = Amber_PipeEnd()
                (end.pipeID, end.capacity) = (1, capacity)
                end.ownerUid = owner ?? task.threads[0].credentials.fsuid
                end.ownerGid = owner ?? task.threads[0].credentials.fsgid
                var description = Amber_OpenFileDescription()
                description.id = 9999
                description.pipeEnd = end
                task.files.descriptions.append(description)
            }
        }
        cases.append(("a pipe capacity of \(2 << 20) bytes", pipe(capacity: 2 << 20, owner: nil)))
        cases.append(("pipe 1 owned by uid 0, gid 0", pipe(capacity: 65536, owner: 0)))
        if UInt64(files.rlim_max) != UInt64.max {
            cases.append(
                (
                    "RLIMIT_NOFILE of \(files.rlim_max + 1)",
                    { task in
                        for index in task.environment.limits.indices
                        where task.environment.limits[index].resource == UInt32(RLIMIT_NOFILE.rawValue) {
                            task.environment.limits[index].hard = UInt64(files.rlim_max) + 1
                        }
                    }
                ))
        }
        for (asked, change) in cases {
            try restore(image, to: original)
            try edit(image, pid: p.pid, change)
            try expectRestoreRefused(
                image, pid: p.pid, exitCode: AmberExit.permissionDenied,
                mentions: ["process \(p.pid) (counter)", asked, "not authenticated", "--trust-image"])
        }
        try restore(image, to: original)
        // A restorer with an audit login uid of its own would write the task's unset one.
        let withLoginUID = ["/bin/sh", "-c", "echo 1234 > /proc/self/loginuid && exec \"$0\" \"$@\""]
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: [
                "process \(p.pid) (counter)", "audit login uid 4294967295", "CAP_AUDIT_CONTROL", "--trust-image",
            ], setpriv: withLoginUID)
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "the user's unedited image, restored by root")
    }

    /// Root's image of credentials_tree is authenticated: its child's result file, opened
    /// before it dropped privilege, comes back. The host key is root's alone.
    func testAuthenticatedImageKeepsTheFileOpenedBeforeTheDrop() throws {
        _ = try requireAmber()
        let p = try start(.credentialsTree)
        let image = try dumpExpectingSuccess(p)
        XCTAssertTrue(Sys.fileExists(image + "/" + ImageFormat.macName))
        var key = stat()
        XCTAssertEqual(stat(try Self.imageKeyPath(), &key), 0)
        XCTAssertEqual(key.st_uid, 0)
        XCTAssertEqual(key.st_mode & 0o777, 0o600)
        let verify = try amber(["verify", "--needs", image])
        XCTAssertTrue(verify.stdout.contains("is authenticated"), verify.summary)
        XCTAssertTrue(
            verify.stdout.contains("process \(p.pid) (credentials_tre): uids 0,0,0,0"),
            "root's credentials are listed: \(verify.stdout)")
        XCTAssertTrue(
            verify.stdout.contains("child-result (write-only)"),
            "the file opened before the drop is listed: \(verify.stdout)")
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "authenticated, restored by root")
    }

    /// Root's image of credentials_tree --private-paths is authenticated: the child's working
    /// directory and the file it maps, which only root may open and which it entered and mapped
    /// before it dropped privilege, are opened with the restorer's rights, being the very ones
    /// it had (device and inode).
    func testAuthenticatedImageKeepsTheDirectoryAndMappingOfBeforeTheDrop() throws {
        _ = try requireAmber()
        let p = try start(Scenario(name: "credentials_tree", args: ["--private-paths"]))
        let image = try dumpExpectingSuccess(p)
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "authenticated, restored by root")
    }

    /// The same for two processes that share them, both under uid 65534: opened once for the
    /// tree (`TreeFiles`), with the restorer's rights, being the very ones dumped.
    func testAuthenticatedImageKeepsThePathsTwoProcessesShare() throws {
        _ = try requireAmber()
        let p = try start(Scenario(name: "private_paths"))
        let image = try dumpExpectingSuccess(p)
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "authenticated, restored by root")
    }

    /// A tampered authenticated image (bytes added to a record, checksums recomputed) and one
    /// checked with another host's key are not authenticated: credentials_tree's file opened
    /// before the drop is refused, until root trusts the image.
    func testTamperedImageIsNotAuthenticated() throws {
        _ = try requireAmber()
        let p = try start(.credentialsTree)
        let image = try dumpExpectingSuccess(p)
        let otherHost = try newDirectory("other-host") + "/image-key"
        let elsewhere = try amber(["verify", image], env: ["AMBER_IMAGE_KEY": otherHost])
        XCTAssertEqual(elsewhere.status, .exited(0), elsewhere.summary)
        XCTAssertTrue(elsewhere.stdout.contains("not authenticated"), elsewhere.summary)
        try editBytes(image, pid: p.pid) { bytes in
            // An unknown field (number 1000, varint 1): decoded and ignored.
            bytes += [0xc0, 0x3e, 0x01]
        }
        let verify = try amber(["verify", image])
        XCTAssertTrue(verify.stdout.contains("does not match"), verify.summary)
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: ["not authenticated", "--trust-image"])
        try restoreDetachedExpectingSuccess(p, from: image, options: ["--trust-image"])
        try terminateAndExpectPass(p, "tampered, restored with --trust-image")
    }

    /// The seccomp scenario's authenticated image restores its filters.
    func testAuthenticatedSeccompImageRestores() throws {
        _ = try requireAmber()
        let p = try start(.seccomp)
        let image = try dumpExpectingSuccess(p)
        XCTAssertTrue(try amber(["verify", image]).stdout.contains("is authenticated"))
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "authenticated seccomp image")
    }

    /// Two dumps making the host key at once agree on one: both images are authenticated
    /// under the key left in place, which is root's, 0600. A key file others could read, or a
    /// directory others could write, is refused by name.
    func testHostKeyIsMadeOnceAndKeptRootsAlone() throws {
        _ = try requireAmber()
        let keyDirectory = try newDirectory("key")
        let key = keyDirectory + "/image-key"
        let env = ["AMBER_IMAGE_KEY": key]
        let first = try start(.counter)
        let second = try start(.counter)
        let images = [try newDirectory("image"), try newDirectory("image")]
        let runs = try zip([first, second], images).map { p, image in
            try startAmber(["dump", "-t", "\(p.pid)", "-D", image], env: env)
        }
        for (run, p) in zip(runs, [first, second]) {
            let r = try finish(run, reaping: [p])
            XCTAssertEqual(r.status, .exited(0), r.summary)
        }
        var status = stat()
        XCTAssertEqual(stat(key, &status), 0)
        XCTAssertEqual(status.st_uid, 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        XCTAssertEqual(status.st_size, 32)
        XCTAssertEqual(listing(keyDirectory), ["image-key"], "a temporary key was left behind")
        for image in images {
            let verify = try amber(["verify", image], env: env)
            XCTAssertTrue(verify.stdout.contains("is authenticated"), verify.summary)
        }
        XCTAssertEqual(chmod(key, 0o644), 0)
        let readable = try amber(["verify", images[0]], env: env)
        assertRefusal(readable, exitCode: AmberExit.otherFailure, mentions: [key, "0600"])
        XCTAssertEqual(chmod(key, 0o600), 0)
        XCTAssertEqual(chmod(keyDirectory, 0o777), 0)
        let third = try start(.counter)
        let refused = try amber(
            ["dump", "-t", "\(third.pid)", "-D", try newDirectory("image")], reaping: [third], env: env)
        assertRefusal(refused, exitCode: AmberExit.otherFailure, mentions: [keyDirectory, "root's"])
        XCTAssertNil(third.exitStatus, "the target exited: \(third.diagnostics)")
        try terminateAndExpectPass(third, "after the refused dump")
    }

    // MARK: the user's side

    /// The user's counter, dumped by the user into a directory of hers: no MAC.
    func userDumpedCounter(file: StaticString = #filePath, line: UInt = #line) throws -> (
        ScenarioProcess, String
    ) {
        _ = try requireAmber()
        guard Sys.fileExists("/usr/bin/setpriv") else { throw XCTSkip("needs /usr/bin/setpriv") }
        let p = try start(
            Scenario(name: "counter", setpriv: PrivilegeTests.asUser, owner: PrivilegeTests.user), file: file,
            line: line)
        let image = try newDirectory("image")
        XCTAssertEqual(chown(image, PrivilegeTests.user, PrivilegeTests.user), 0)
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], setpriv: PrivilegeTests.asUser)
        XCTAssertEqual(dump.status, .exited(0), "the user's dump: \(dump.summary)", file: file, line: line)
        XCTAssertFalse(
            Sys.fileExists(image + "/" + ImageFormat.macName), "a user's dump wrote a MAC", file: file, line: line)
        return (p, image)
    }

    /// Changes the task record of `pid` and reseals the inventory and its checksum, as the image's owner can.
    func edit(_ image: String, pid: pid_t, _ change: (inout Amber_Task) throws -> Void) throws {
        try editBytes(image, pid: pid) { bytes in
            var task = try Amber_Task(serializedBytes: bytes)
            try change(&task)
            bytes = try task.serializedBytes()
        }
    }

    private func editBytes(_ image: String, pid: pid_t, _ change: (inout [UInt8]) throws -> Void) throws {
        let name = "task-\(pid).pb"
        var bytes = try XCTUnwrap(Sys.readFile(image + "/" + name))
        try change(&bytes)
        var inventory = try Amber_Inventory(serializedBytes: try XCTUnwrap(Sys.readFile(image + "/inventory.pb")))
        let index = try XCTUnwrap(inventory.files.firstIndex { $0.name == name })
        inventory.files[index].size = UInt64(bytes.count)
        inventory.files[index].xxh64 = bytes.withUnsafeBytes { amber_xxh64($0.baseAddress, $0.count) }
        try write(bytes, to: image + "/" + name)
        let inventoryBytes: [UInt8] = try inventory.serializedBytes()
        try write(inventoryBytes, to: image + "/inventory.pb")
        try write(
            InventoryChecksum.file(forInventory: inventoryBytes), to: image + "/" + ImageFormat.inventoryChecksumName)
    }

    private func restore(_ image: String, to files: [String: [UInt8]]) throws {
        for (name, bytes) in files { try write(bytes, to: image + "/" + name) }
    }

    private func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// An inet socket the image adds, bound to port 80 (below net.ipv4.ip_unprivileged_port_start)
    /// in a user's image: the restorer binds with its own rights, so the task's own must allow it.
    func testUserImageBindingAPrivilegedPortIsRefused() throws {
        let (p, image) = try userDumpedCounter()
        try edit(image, pid: p.pid) { task in
            var socket = Amber_InetSocket()
            (socket.family, socket.type, socket.protocol) = (2, 1, 6)
            (socket.state, socket.address, socket.port) = (.bound, Data([127, 0, 0, 1]), 80)
            (socket.ownerUid, socket.ownerGid) = (task.threads[0].credentials.fsuid, task.threads[0].credentials.fsgid)
            var description = Amber_OpenFileDescription()
            (description.id, description.flags) = (9999, 2)
            description.inetSocket = socket
            task.files.descriptions.append(description)
        }
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: AmberExit.permissionDenied,
            mentions: [
                "process \(p.pid) (counter)", "privileged port 80", "CAP_NET_BIND_SERVICE", "not authenticated",
                "--trust-image",
            ])
    }
}
