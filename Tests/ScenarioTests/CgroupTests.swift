// cgroups: a tree in cgroups the test made below its own (v1 memory and pids with limits, and
// v2 where it is mounted), its child in sub-cgroups, comes back into them after they were
// removed, with their limits; a tree in a cgroup namespace of its own comes back in a new one
// under another root (--cgroup-root) and reads the same /proc/self/cgroup; a frozen freezer
// cgroup and a child in another cgroup namespace are refused. Every limit a remade cgroup had
// comes back (v1 memory, cpu, blkio, pids, devices; v2 nesting limits, cgroup.subtree_control and
// the hugetlb limits it enables below); a limit amber does not write back is refused by name.
// Cgroups the tree only joined (outside the dumper's) are made again with their limits when
// missing, or not made when they held what amber does not write back.

import AmberImage
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class CgroupTests: ScenarioTestCase {
    /// A cgroup the test made: its directory, and its path in its hierarchy.
    private struct TestCgroup {
        let directory: String
        let path: String
    }

    /// The directory and path of the test's own cgroup on the hierarchy of `controller` ("" for
    /// cgroup v2), from /proc/self/mountinfo and /proc/self/cgroup; nil when not mounted.
    private func ownCgroup(_ controller: String) -> TestCgroup? {
        guard let mountinfo = Sys.readText("/proc/self/mountinfo"), let lines = Sys.readText("/proc/self/cgroup") else {
            return nil
        }
        var mountPoint: String?
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), fields.count > dash + 3, fields[3] == "/" else { continue }
            let type = fields[dash + 1]
            let options = fields[dash + 3].split(separator: ",")
            if controller.isEmpty ? type == "cgroup2" : type == "cgroup" && options.contains(Substring(controller)) {
                mountPoint = String(fields[4])
                break
            }
        }
        guard let mountPoint else { return nil }
        for line in lines.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let matches =
                controller.isEmpty ? fields[0] == "0" : fields[1].split(separator: ",").contains(Substring(controller))
            if matches {
                let path = String(fields[2])
                return TestCgroup(directory: mountPoint + (path == "/" ? "" : path), path: path)
            }
        }
        return nil
    }

    /// Makes the cgroup `name` below `parent`, removed when the test ends.
    private func makeCgroup(_ name: String, in parent: TestCgroup) throws -> TestCgroup {
        let made = TestCgroup(
            directory: parent.directory + "/" + name, path: (parent.path == "/" ? "" : parent.path) + "/" + name)
        guard mkdir(made.directory, 0o755) == 0 else {
            throw RunnerError("mkdir \(made.directory): \(Sys.errnoString())")
        }
        addTeardownBlock { Self.remove(made.directory) }
        return made
    }

    /// Kills what runs in the cgroup at `directory` and below, then removes them.
    private static func remove(_ directory: String) {
        guard Sys.fileExists(directory) else { return }
        let children = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for child in children where Sys.fileExists(directory + "/" + child + "/cgroup.procs") {
            remove(directory + "/" + child)
        }
        if Sys.fileExists(directory + "/freezer.state") { write("THAWED", to: directory + "/freezer.state") }
        let deadline = Sys.now() + 10
        while let procs = Sys.readText(directory + "/cgroup.procs"), !procs.isEmpty, Sys.now() < deadline {
            for pid in procs.split(separator: "\n").compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
            Sys.sleep(milliseconds: 10)
        }
        rmdir(directory)
    }

    @discardableResult
    private static func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return Glibc.write(fd, text, text.utf8.count) == text.utf8.count
    }

    private func value(_ file: String, of cgroup: TestCgroup) -> String? {
        Sys.readText(cgroup.directory + "/" + file)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The line of /proc/PID/cgroup for the hierarchy of `controller`.
    private func cgroupLine(of pid: pid_t, _ controller: String) -> String? {
        Sys.readText("/proc/\(pid)/cgroup")?.split(separator: "\n").map(String.init).first { line in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            return fields.count == 3
                && (controller.isEmpty
                    ? fields[0] == "0" : fields[1].split(separator: ",").contains(Substring(controller)))
        }
    }

    private func requireCgroups(_ controllers: [String]) throws -> [TestCgroup] {
        _ = try requireAmber()
        return try controllers.map { controller in
            guard let own = ownCgroup(controller), access(own.directory, W_OK) == 0 else {
                throw XCTSkip("no writable cgroup v1 \(controller) hierarchy here")
            }
            return own
        }
    }

    func testTreeComesBackIntoRemadeCgroupsWithTheirLimits() throws {
        let own = try requireCgroups(["memory", "pids"])
        let name = "amber-test-\(getpid())-remade"
        let memory = try makeCgroup(name, in: own[0])
        let memoryChild = try makeCgroup("child", in: memory)
        let pids = try makeCgroup(name, in: own[1])
        let pidsChild = try makeCgroup("child", in: pids)
        XCTAssertTrue(Self.write("268435456", to: memory.directory + "/memory.limit_in_bytes"))
        XCTAssertTrue(Self.write("134217728", to: memoryChild.directory + "/memory.limit_in_bytes"))
        XCTAssertTrue(Self.write("64", to: pids.directory + "/pids.max"))
        XCTAssertTrue(Self.write("32", to: pidsChild.directory + "/pids.max"))
        var made = [memory, memoryChild, pids, pidsChild]
        var args = ["--join", memory.directory, "--join", pids.directory]
        var childArgs = ["--child-join", memoryChild.directory, "--child-join", pidsChild.directory]
        if let unifiedOwn = ownCgroup(""), let unified = try? makeCgroup(name, in: unifiedOwn),
            let unifiedChild = try? makeCgroup("child", in: unified)
        {
            made += [unified, unifiedChild]
            args += ["--join", unified.directory]
            childArgs += ["--child-join", unifiedChild.directory]
        }
        let p = try start(Scenario(name: "cgroup_tree", args: args + childArgs))
        let image = try dumpExpectingSuccess(p)
        for cgroup in made.reversed() { XCTAssertEqual(rmdir(cgroup.directory), 0, "rmdir \(cgroup.directory)") }

        // A restore that fails once the tree is in its cgroups removes those it made.
        let failed = try amber(["restore", "-D", image, "--detach"], env: ["AMBER_TEST_FAULT": "restore.cleanup=fail"])
        assertRefusal(failed, exitCode: AmberExit.restoreFailed, mentions: ["test fault", "cleanup"])
        for cgroup in made {
            XCTAssertFalse(Sys.fileExists(cgroup.directory), "the failed restore left \(cgroup.directory)")
        }

        try restoreDetachedExpectingSuccess(p, from: image)
        XCTAssertEqual(value("memory.limit_in_bytes", of: memory), "268435456")
        XCTAssertEqual(value("memory.limit_in_bytes", of: memoryChild), "134217728")
        XCTAssertEqual(value("pids.max", of: pids), "64")
        XCTAssertEqual(value("pids.max", of: pidsChild), "32")
        XCTAssertEqual(cgroupLine(of: p.pid, "memory")?.hasSuffix(":" + memory.path), true)
        XCTAssertEqual(cgroupLine(of: p.pid, "pids")?.hasSuffix(":" + pids.path), true)
        let child = Proc.children(p.pid).first ?? 0
        XCTAssertEqual(cgroupLine(of: child, "memory")?.hasSuffix(":" + memoryChild.path), true)
        XCTAssertEqual(cgroupLine(of: child, "pids")?.hasSuffix(":" + pidsChild.path), true)
        if made.count > 4 {
            XCTAssertEqual(cgroupLine(of: p.pid, ""), "0::" + made[4].path)
            XCTAssertEqual(cgroupLine(of: child, ""), "0::" + made[5].path)
        }
        try terminateAndExpectPass(p, "after the restore into remade cgroups")
    }

    func testCgroupNamespaceComesBackUnderAnotherRoot() throws {
        let own = try requireCgroups(["memory", "pids"])
        let name = "amber-test-\(getpid())-namespace"
        let memory = try makeCgroup(name, in: own[0])
        let memoryChild = try makeCgroup("child", in: memory)
        let pids = try makeCgroup(name, in: own[1])
        XCTAssertTrue(Self.write("100663296", to: memory.directory + "/memory.limit_in_bytes"))
        let p = try start(
            Scenario(
                name: "cgroup_tree",
                args: [
                    "--join", memory.directory, "--join", pids.directory, "--unshare", "--child-join",
                    memoryChild.directory,
                ]))
        let image = try dumpExpectingSuccess(p)

        let movedMemory = TestCgroup(directory: memory.directory + "-moved", path: memory.path + "-moved")
        let movedPids = TestCgroup(directory: pids.directory + "-moved", path: pids.path + "-moved")
        addTeardownBlock {
            Self.remove(movedMemory.directory)
            Self.remove(movedPids.directory)
        }
        try restoreDetachedExpectingSuccess(
            p, from: image,
            options: ["--cgroup-root", "memory:" + movedMemory.path, "--cgroup-root", "pids:" + movedPids.path])
        XCTAssertEqual(cgroupLine(of: p.pid, "memory")?.hasSuffix(":" + movedMemory.path), true)
        XCTAssertEqual(cgroupLine(of: p.pid, "pids")?.hasSuffix(":" + movedPids.path), true)
        let child = Proc.children(p.pid).first ?? 0
        XCTAssertEqual(cgroupLine(of: child, "memory")?.hasSuffix(":" + movedMemory.path + "/child"), true)
        XCTAssertEqual(value("memory.limit_in_bytes", of: movedMemory), "100663296")
        XCTAssertNotEqual(Sys.readlink("/proc/\(p.pid)/ns/cgroup"), Sys.readlink("/proc/self/ns/cgroup"))
        XCTAssertEqual(Sys.readlink("/proc/\(p.pid)/ns/cgroup"), Sys.readlink("/proc/\(child)/ns/cgroup"))
        try terminateAndExpectPass(p, "after the restore of its cgroup namespace under another root")
    }

    /// As runc restores: the new container's cgroups made (with its own limits) before RESTORE,
    /// and named by cg_root per controller; the tree (in a cgroup namespace of its own, so that
    /// it reads the same /proc/self/cgroup) comes back below them, a cgroup that exists keeping
    /// its limit (mode soft) and the child's, made, getting the recorded one.
    func testSwrkRestoreBelowCgRoot() throws {
        let own = try requireCgroups(["memory", "pids"])
        let name = "amber-test-\(getpid())-swrk"
        let memory = try makeCgroup(name, in: own[0])
        let memoryChild = try makeCgroup("child", in: memory)
        let pids = try makeCgroup(name, in: own[1])
        XCTAssertTrue(Self.write("134217728", to: memoryChild.directory + "/memory.limit_in_bytes"))
        let p = try start(
            Scenario(
                name: "cgroup_tree",
                args: [
                    "--join", memory.directory, "--join", pids.directory, "--unshare", "--child-join",
                    memoryChild.directory,
                ]))
        let image = try dumpExpectingSuccess(p)
        let newMemory = try makeCgroup(name + "-new", in: own[0])
        let newPids = try makeCgroup(name + "-new", in: own[1])
        XCTAssertTrue(Self.write("201326592", to: newMemory.directory + "/memory.limit_in_bytes"))

        let imagesFD = open(image, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(imagesFD) }
        var request = Swrk_Request()
        request.type = .restore
        request.opts.imagesDirFd = imagesFD
        request.opts.logFile = "restore.log"
        request.opts.logLevel = 4
        request.opts.manageCgroups = true
        for (controller, path) in [("memory", newMemory.path), ("pids", newPids.path)] {
            var root = Swrk_CgroupRoot()
            (root.ctrl, root.path) = (controller, path)
            request.opts.cgRoot.append(root)
        }
        let restoring = try SwrkClient(self, log: try directory() + "/swrk-restore.out")
        let restored = try restoring.call(request)
        XCTAssertTrue(restored.success, "RESTORE failed: \(restored.crErrmsg)")
        XCTAssertEqual(restoring.finish(), .exited(0))
        p.exitStatus = nil
        p.gone = false
        track(p.pid)
        XCTAssertTrue(Sys.readText(image + "/restore.log")?.contains("cg_root: memory \(newMemory.path)") == true)
        XCTAssertEqual(cgroupLine(of: p.pid, "memory")?.hasSuffix(":" + newMemory.path), true)
        XCTAssertEqual(cgroupLine(of: p.pid, "pids")?.hasSuffix(":" + newPids.path), true)
        let child = Proc.children(p.pid).first ?? 0
        XCTAssertEqual(cgroupLine(of: child, "memory")?.hasSuffix(":" + newMemory.path + "/child"), true)
        XCTAssertEqual(value("memory.limit_in_bytes", of: newMemory), "201326592")
        XCTAssertEqual(
            Sys.readText(newMemory.directory + "/child/memory.limit_in_bytes")?.trimmingCharacters(in: .newlines),
            "134217728")
        try terminateAndExpectPass(p, "after a RESTORE below cg_root")
    }

    /// --manage-cgroups strict makes every cgroup itself, none and props restore into cgroups
    /// made beforehand: each is refused otherwise, leaving the PID free; soft then restores.
    func testModesRefuseCgroupsThatAreOrAreNotThere() throws {
        let own = try requireCgroups(["pids"])
        let pids = try makeCgroup("amber-test-\(getpid())-modes", in: own[0])
        let p = try start(Scenario(name: "cgroup_tree", args: ["--join", pids.directory]))
        let image = try dumpExpectingSuccess(p)
        let strict = try amber(["restore", "-D", image, "--detach", "--manage-cgroups", "strict"])
        assertRefusal(strict, exitCode: AmberExit.restoreFailed, mentions: [pids.path, "exists already"])
        XCTAssertFalse(Proc.pidInUse(p.pid), "the refused restore left PID \(p.pid) taken")
        XCTAssertEqual(rmdir(pids.directory), 0)
        for mode in ["none", "props"] {
            let refused = try amber(["restore", "-D", image, "--detach", "--manage-cgroups", mode])
            assertRefusal(refused, exitCode: AmberExit.restoreFailed, mentions: [pids.path, "does not exist"])
            XCTAssertFalse(Proc.pidInUse(p.pid), "the refused restore left PID \(p.pid) taken")
        }
        try restoreDetachedExpectingSuccess(p, from: image, options: ["--manage-cgroups", "soft"])
        try terminateAndExpectPass(p, "after the restore that made its cgroup again")
    }

    func testDumpRefusesFrozenFreezerCgroup() throws {
        let own = try requireCgroups(["freezer"])
        let freezer = try makeCgroup("amber-test-\(getpid())-frozen", in: own[0])
        let p = try start(Scenario(name: "cgroup_tree", args: ["--join", freezer.directory]))
        XCTAssertTrue(Self.write("FROZEN", to: freezer.directory + "/freezer.state"))
        let deadline = Sys.now() + 10
        while value("freezer.state", of: freezer) != "FROZEN", Sys.now() < deadline { Sys.sleep(milliseconds: 10) }
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        XCTAssertTrue(Self.write("THAWED", to: freezer.directory + "/freezer.state"))
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(p.pid)", freezer.path, "FROZEN"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    func testDumpRefusesChildOutsideItsRootsCgroup() throws {
        let own = try requireCgroups(["pids"])
        let root = try makeCgroup("amber-test-\(getpid())-root", in: own[0])
        let sibling = try makeCgroup("amber-test-\(getpid())-sibling", in: own[0])
        let p = try start(
            Scenario(name: "cgroup_tree", args: ["--join", root.directory, "--child-join", sibling.directory]))
        let child = Proc.children(p.pid).first ?? 0
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(child)", sibling.path, root.path])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        assertRunningUntraced(p.pid, "after the refused dump")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    func testDumpRefusesChildInAnotherCgroupNamespace() throws {
        _ = try requireAmber()
        let p = try start(Scenario(name: "cgroup_tree", args: ["--child-unshare"]))
        let child = Proc.children(p.pid).first ?? 0
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(r, exitCode: AmberExit.unsupportedState, mentions: ["\(child)", "cgroup namespace"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        assertRunningUntraced(p.pid, "after the refused dump")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    /// The major:minor of the disk the root filesystem is on (its whole disk when on a partition).
    private func rootDisk() throws -> String {
        let mountinfo = Sys.readText("/proc/self/mountinfo") ?? ""
        let fields = mountinfo.split(separator: "\n").map { $0.split(separator: " ") }.last {
            $0.count > 4 && $0[4] == "/"
        }
        let device = try XCTUnwrap(fields.map { String($0[2]) }, "no mount of / in /proc/self/mountinfo")
        guard Sys.fileExists("/sys/dev/block/\(device)/partition") else { return device }
        return try XCTUnwrap(
            Sys.readText("/sys/dev/block/\(device)/../dev")?.trimmingCharacters(in: .whitespacesAndNewlines),
            "no disk above the partition \(device)")
    }

    /// Sets `file` of `cgroup`, failing the test when the kernel refuses it or (for a file that
    /// reads back) takes another value.
    private func set(_ file: String, of cgroup: TestCgroup, to text: String, reads expected: String? = nil) {
        XCTAssertTrue(Self.write(text, to: cgroup.directory + "/" + file), "write \(text) to \(cgroup.path)/\(file)")
        if !file.hasPrefix("devices.") {
            XCTAssertEqual(value(file, of: cgroup), expected ?? text, "\(cgroup.path)/\(file) as set")
        }
    }

    func testLimitsBeyondTheFixedListComeBack() throws {
        let own = try requireCgroups(["memory", "cpu", "blkio", "pids", "devices"])
        let unifiedOwn = try XCTUnwrap(ownCgroup(""), "no cgroup v2 hierarchy")
        guard value("cgroup.controllers", of: unifiedOwn)?.split(separator: " ").contains("hugetlb") == true else {
            throw XCTSkip("the cgroup v2 hierarchy here has no hugetlb controller")
        }
        if value("cgroup.subtree_control", of: unifiedOwn)?.split(separator: " ").contains("hugetlb") != true {
            XCTAssertTrue(Self.write("+hugetlb", to: unifiedOwn.directory + "/cgroup.subtree_control"))
            addTeardownBlock { Self.write("-hugetlb", to: unifiedOwn.directory + "/cgroup.subtree_control") }
        }
        let disk = try rootDisk()
        let name = "amber-test-\(getpid())-limits"
        let memory = try makeCgroup(name, in: own[0])
        let memoryChild = try makeCgroup("child", in: memory)
        let cpu = try makeCgroup(name, in: own[1])
        let blkio = try makeCgroup(name, in: own[2])
        let pids = try makeCgroup(name, in: own[3])
        let pidsChild = try makeCgroup("child", in: pids)
        let devices = try makeCgroup(name, in: own[4])
        let devicesChild = try makeCgroup("child", in: devices)
        let unified = try makeCgroup(name, in: unifiedOwn)
        let unifiedLeaf = try makeCgroup("leaf", in: unified)
        let unifiedChild = try makeCgroup("child", in: unified)
        set("memory.limit_in_bytes", of: memory, to: "268435456")
        set("memory.memsw.limit_in_bytes", of: memory, to: "536870912")
        set("memory.soft_limit_in_bytes", of: memory, to: "67108864")
        set("memory.swappiness", of: memory, to: "30")
        set("memory.oom_control", of: memoryChild, to: "1", reads: "oom_kill_disable 1\nunder_oom 0\noom_kill 0")
        set("cpu.cfs_quota_us", of: cpu, to: "50000")
        set("cpu.cfs_burst_us", of: cpu, to: "10000")
        set("cpu.shares", of: cpu, to: "512")
        set("blkio.throttle.read_bps_device", of: blkio, to: "\(disk) 1048576")
        set("blkio.throttle.write_iops_device", of: blkio, to: "\(disk) 100")
        set("pids.max", of: pids, to: "64")
        set("pids.max", of: pidsChild, to: "32")
        set("devices.deny", of: devicesChild, to: "a")
        set("devices.allow", of: devicesChild, to: "c *:* rwm")
        let p = try start(
            Scenario(
                name: "cgroup_tree",
                args: [
                    "--join", memory.directory, "--join", cpu.directory, "--join", blkio.directory, "--join",
                    pids.directory, "--join", devices.directory, "--join", unified.directory, "--unshare",
                    "--then-join", unifiedLeaf.directory, "--child-join", memoryChild.directory, "--child-join",
                    pidsChild.directory, "--child-join", devicesChild.directory, "--child-join",
                    unifiedChild.directory,
                ]))
        // Once the namespace's root cgroup holds no process, it may enable a controller below.
        set("cgroup.subtree_control", of: unified, to: "+hugetlb", reads: "hugetlb")
        set("cgroup.max.descendants", of: unified, to: "4")
        set("cgroup.max.depth", of: unified, to: "2")
        set("hugetlb.2MB.max", of: unifiedLeaf, to: "4194304")
        set("hugetlb.2MB.max", of: unifiedChild, to: "2097152")
        let image = try dumpExpectingSuccess(p)
        let made = [
            memory, memoryChild, cpu, blkio, pids, pidsChild, devices, devicesChild, unified, unifiedLeaf, unifiedChild,
        ]
        for cgroup in made.reversed() { XCTAssertEqual(rmdir(cgroup.directory), 0, "rmdir \(cgroup.directory)") }

        try restoreDetachedExpectingSuccess(p, from: image)
        let expected: [(String, TestCgroup, String)] = [
            ("memory.limit_in_bytes", memory, "268435456"), ("memory.memsw.limit_in_bytes", memory, "536870912"),
            ("memory.soft_limit_in_bytes", memory, "67108864"), ("memory.swappiness", memory, "30"),
            ("memory.oom_control", memoryChild, "oom_kill_disable 1\nunder_oom 0\noom_kill 0"),
            ("cpu.cfs_quota_us", cpu, "50000"), ("cpu.cfs_burst_us", cpu, "10000"), ("cpu.shares", cpu, "512"),
            ("blkio.throttle.read_bps_device", blkio, "\(disk) 1048576"),
            ("blkio.throttle.write_iops_device", blkio, "\(disk) 100"), ("pids.max", pids, "64"),
            ("pids.max", pidsChild, "32"), ("devices.list", devicesChild, "c *:* rwm"),
            ("cgroup.subtree_control", unified, "hugetlb"), ("cgroup.max.descendants", unified, "4"),
            ("cgroup.max.depth", unified, "2"), ("hugetlb.2MB.max", unifiedLeaf, "4194304"),
            ("hugetlb.2MB.max", unifiedChild, "2097152"),
        ]
        for (file, cgroup, text) in expected {
            XCTAssertEqual(value(file, of: cgroup), text, "\(cgroup.path)/\(file) after the restore")
        }
        let child = Proc.children(p.pid).first ?? 0
        let memberships: [(pid_t, String, TestCgroup)] = [
            (p.pid, "memory", memory), (p.pid, "cpu", cpu), (p.pid, "blkio", blkio), (p.pid, "pids", pids),
            (p.pid, "devices", devices), (child, "memory", memoryChild), (child, "pids", pidsChild),
            (child, "devices", devicesChild),
        ]
        for (pid, controller, cgroup) in memberships {
            XCTAssertEqual(
                cgroupLine(of: pid, controller)?.hasSuffix(":" + cgroup.path), true, "\(pid) in \(cgroup.path)")
        }
        XCTAssertEqual(cgroupLine(of: p.pid, ""), "0::" + unifiedLeaf.path)
        XCTAssertEqual(cgroupLine(of: child, ""), "0::" + unifiedChild.path)
        try terminateAndExpectPass(p, "after the restore into cgroups remade with all their limits")
    }

    /// A limit amber does not write back (memory.shown_ram_in_bytes, a file of this kernel's
    /// own) is refused by name before the tree is touched.
    func testDumpRefusesLimitItDoesNotRestore() throws {
        let own = try requireCgroups(["memory"])
        let memory = try makeCgroup("amber-test-\(getpid())-unrestored", in: own[0])
        guard Sys.fileExists(memory.directory + "/memory.shown_ram_in_bytes") else {
            throw XCTSkip("this kernel has no memory.shown_ram_in_bytes")
        }
        set("memory.shown_ram_in_bytes", of: memory, to: "1048576")
        let p = try start(Scenario(name: "cgroup_tree", args: ["--join", memory.directory]))
        let image = try newDirectory("image")
        let r = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p])
        assertRefusal(
            r, exitCode: AmberExit.unsupportedState,
            mentions: ["\(p.pid)", memory.path, "memory.shown_ram_in_bytes", "1048576", "not restored"])
        XCTAssertEqual(listing(image), [], "a refused dump left files in the image directory")
        assertRunningUntraced(p.pid, "after the refused dump")
        try terminateAndExpectPass(p, "after the refused dump")
    }

    /// A tree in cgroups outside the dumper's own (amber dumps from a cgroup of its own) only
    /// joined them; removed after the dump, the restore makes them again with their limits, the
    /// tree's cgroup and the one above it. One that held what amber does not write back is not
    /// made: that restore fails, leaving nothing, and succeeds once it is there.
    func testJoinedCgroupsAreRemadeWithTheirLimits() throws {
        let own = try requireCgroups(["memory"])
        let name = "amber-test-\(getpid())-joined"
        let dumper = try makeCgroup(name + "-dumper", in: own[0])
        let outer = try makeCgroup(name, in: own[0])
        let inner = try makeCgroup("inner", in: outer)
        set("memory.limit_in_bytes", of: outer, to: "268435456")
        set("memory.limit_in_bytes", of: inner, to: "134217728")
        let fromDumperCgroup = ["/bin/sh", "-c", "echo $$ > \(dumper.directory)/cgroup.procs && exec \"$@\"", "sh"]
        let p = try start(Scenario(name: "cgroup_tree", args: ["--join", inner.directory]))
        let image = try newDirectory("image")
        let dumped = try amber(["dump", "-t", "\(p.pid)", "-D", image], reaping: [p], wrapper: fromDumperCgroup)
        XCTAssertEqual(dumped.status, .exited(0), "dump: \(dumped.summary)")
        for cgroup in [inner, outer] { XCTAssertEqual(rmdir(cgroup.directory), 0, "rmdir \(cgroup.directory)") }
        try restoreDetachedExpectingSuccess(p, from: image)
        XCTAssertEqual(value("memory.limit_in_bytes", of: outer), "268435456")
        XCTAssertEqual(value("memory.limit_in_bytes", of: inner), "134217728")
        XCTAssertEqual(cgroupLine(of: p.pid, "memory")?.hasSuffix(":" + inner.path), true)
        try terminateAndExpectPass(p, "after the restore into remade joined cgroups")

        guard Sys.fileExists(outer.directory + "/memory.shown_ram_in_bytes") else { return }
        set("memory.shown_ram_in_bytes", of: outer, to: "1048576")
        let q = try start(Scenario(name: "cgroup_tree", args: ["--join", inner.directory]))
        let second = try newDirectory("image")
        let again = try amber(["dump", "-t", "\(q.pid)", "-D", second], reaping: [q], wrapper: fromDumperCgroup)
        XCTAssertEqual(again.status, .exited(0), "dump: \(again.summary)")
        for cgroup in [inner, outer] { XCTAssertEqual(rmdir(cgroup.directory), 0, "rmdir \(cgroup.directory)") }
        let refused = try amber(["restore", "-D", second, "--detach"])
        assertRefusal(
            refused, exitCode: AmberExit.restoreFailed,
            mentions: [outer.path, "memory.shown_ram_in_bytes", "1048576", "does not write back"])
        XCTAssertFalse(Sys.fileExists(outer.directory), "the refused restore made \(outer.directory)")
        XCTAssertNil(Proc.status(q.pid).flatMap { $0.isGone ? nil : $0 }, "the refused restore left process \(q.pid)")
        XCTAssertEqual(mkdir(outer.directory, 0o755), 0)
        try restoreDetachedExpectingSuccess(q, from: second)
        XCTAssertEqual(value("memory.limit_in_bytes", of: inner), "134217728")
        try terminateAndExpectPass(q, "after the restore into a joined cgroup made beforehand")
    }
}
