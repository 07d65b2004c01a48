import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// A tree's cgroups: clean paths (an image never names a cgroup above its root or by
    /// "..", nor an absolute path below it), each after its parent, and only the properties of
    /// the fixed list for its hierarchy, once each, on one line; the cgroups above its root each
    /// below the one before.
    func testCgroupTree() throws {
        func cgroups(_ task: inout Amber_Task, _ change: (inout Amber_CgroupTree) -> Void) {
            var memory = Amber_CgroupHierarchy()
            (memory.controllers, memory.root) = ("memory", "/box")
            var root = Amber_CgroupDirectory()
            var limit = Amber_CgroupProperty()
            (limit.name, limit.value) = ("memory.limit_in_bytes", "268435456")
            root.properties = [limit]
            root.belowDumper = true
            var child = Amber_CgroupDirectory()
            child.path = "child"
            memory.cgroups = [root, child]
            var unified = Amber_CgroupHierarchy()
            unified.root = "/"
            unified.cgroups = [Amber_CgroupDirectory()]
            var tree = Amber_CgroupTree()
            tree.hierarchies = [memory, unified]
            change(&tree)
            task.cgroupTree = tree
        }
        try assertAccepted { cgroups(&$0) { _ in } }
        try assertRejected("cgroup_tree.hierarchies[0].root") {
            cgroups(&$0) { $0.hierarchies[0].root = "/box/../etc" }
        }
        try assertRejected("cgroup_tree.hierarchies[0].root") { cgroups(&$0) { $0.hierarchies[0].root = "box" } }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[1].path") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[1].path = ".." }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[1].path") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[1].path = "/sys" }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[1].path") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[1].path = "a/b" }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups") {
            cgroups(&$0) { $0.hierarchies[0].cgroups.removeFirst() }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[0].properties[0]") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[0].properties[0].name = "cgroup.procs" }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[0].properties[0]") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[0].properties[0].value = "1\n2" }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[0].unrestored") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[0].unrestored = "memory.foo is \"1\"" }
        }
        try assertAccepted {
            cgroups(&$0) {
                $0.hierarchies[0].cgroups[0].belowDumper = false
                $0.hierarchies[0].cgroups[0].unrestored = "memory.foo is \"1\""
            }
        }
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[1].unrestored") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[1].unrestored = String(repeating: "x", count: 513) }
        }
        func ancestor(_ path: String) -> Amber_CgroupDirectory {
            var cgroup = Amber_CgroupDirectory()
            cgroup.path = path
            return cgroup
        }
        try assertAccepted {
            cgroups(&$0) {
                $0.hierarchies[0].root = "/a/b/box"
                $0.hierarchies[0].ancestors = [ancestor("/a"), ancestor("/a/b")]
            }
        }
        for wrong in [["/box"], ["/a/b/box"], ["/a/../etc"], ["/a", "/"], ["/a/b", "/a"]] {
            try assertRejected("cgroup_tree.hierarchies[0].ancestors[") {
                cgroups(&$0) {
                    $0.hierarchies[0].root = "/a/b/box"
                    $0.hierarchies[0].ancestors = wrong.map(ancestor)
                }
            }
        }
        try assertRejected("cgroup_tree.hierarchies[1].controllers") {
            cgroups(&$0) { $0.hierarchies[1].controllers = "memory" }
        }
    }
}

extension TaskValidationTests {
    /// A hostile image names only files of the table, in its order, with values of the shape the
    /// dump records: never cgroup.procs or memory.reclaim, never a second line in a one-line
    /// file, never a controller list that is not names.
    func testCgroupPropertiesOfAnImage() throws {
        func unified(_ task: inout Amber_Task, _ properties: [(String, String)]) {
            var hierarchy = Amber_CgroupHierarchy()
            hierarchy.root = "/box"
            var root = Amber_CgroupDirectory()
            root.belowDumper = true
            root.properties = properties.map { name, value in
                var property = Amber_CgroupProperty()
                (property.name, property.value) = (name, value)
                return property
            }
            hierarchy.cgroups = [root]
            task.cgroupTree.hierarchies = [hierarchy]
        }
        try assertAccepted {
            unified(
                &$0,
                [
                    ("cgroup.subtree_control", "hugetlb memory"), ("cgroup.max.descendants", "4"),
                    ("memory.high", "1073741824"),
                    ("io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max\n8:16 wiops=10"),
                    ("hugetlb.2MB.max", "4194304"),
                ])
        }
        let place = "cgroup_tree.hierarchies[0].cgroups[0].properties"
        for name in [
            "cgroup.procs", "cgroup.kill", "memory.reclaim", "cgroup.freeze", "../memory.max", "hugetlb.x.max",
        ] {
            try assertRejected("\(place)[0]") { unified(&$0, [(name, "1")]) }
        }
        try assertRejected("\(place)[0]") { unified(&$0, [("memory.high", "1\n2")]) }
        try assertRejected("\(place)[0]") { unified(&$0, [("io.max", "8:0 rbps=1\n\n8:1 rbps=2")]) }
        try assertRejected("\(place)[0]") { unified(&$0, [("io.max", "8:0 rbps=1\u{7}")]) }
        try assertRejected("\(place)[0]") { unified(&$0, [("memory.high", String(repeating: "9", count: 300))]) }
        try assertRejected("\(place)[0]") { unified(&$0, [("cgroup.subtree_control", "+memory")]) }
        try assertRejected("\(place)[1]") { unified(&$0, [("memory.high", "1"), ("cgroup.max.depth", "2")]) }
        try assertRejected("\(place)[1]") { unified(&$0, [("memory.high", "1"), ("memory.high", "2")]) }
    }

    /// The lookup table of a hierarchy's files finds, for every name, the first rule whose
    /// pattern matches it, as matching each rule in turn does: huge page sizes in a "*"
    /// component, and names one component off.
    func testCgroupFileKindsFindTheFirstMatchingRule() {
        for controllers in ["", "memory", "cpu,cpuacct", "hugetlb", "net_cls,net_prio", "cpuset", "blkio", "name=x"] {
            let rules = CgroupProperties.rules(controllers: controllers)
            let kinds = CgroupFileKinds(controllers: controllers)
            var names = rules.flatMap { rule in
                ["2MB", "1GB", "64KB", "2M", "MB", ""].map { rule.name.replacingOccurrences(of: "*", with: $0) }
            }
            names += ["hugetlb.max", "hugetlb.2MB.max.extra", "cgroup.procs", "memory.future_limit", "tasks"]
            for name in names {
                XCTAssertEqual(
                    kinds.ruleIndex(of: name), rules.firstIndex { $0.matches(name) }, "\(name) on \(controllers)")
            }
        }
        XCTAssertEqual(CgroupFileKinds(controllers: "hugetlb").kind(of: "hugetlb.2MB.failcnt"), .stateless)
        XCTAssertEqual(CgroupFileKinds(controllers: "hugetlb").kind(of: "hugetlb.2M.failcnt"), .unknown)
    }

    /// What the dump does with each file of a cgroup: records what a new cgroup would not have
    /// (a per-line file's lines apart from its default ones), passes over files holding no
    /// state, and refuses a known file it does not restore that is set, and any unknown one.
    func testCgroupFileKinds() throws {
        XCTAssertEqual(CgroupProperties.kind(of: "cgroup.kill", controllers: ""), .stateless)
        XCTAssertEqual(CgroupProperties.kind(of: "memory.pressure", controllers: ""), .stateless)
        XCTAssertEqual(CgroupProperties.kind(of: "memory.peak", controllers: ""), .stateless)
        XCTAssertEqual(CgroupProperties.kind(of: "memory.future_limit", controllers: ""), .unknown)
        XCTAssertEqual(CgroupProperties.kind(of: "cgroup.freeze", controllers: ""), .refusedUnless("0"))
        XCTAssertEqual(CgroupProperties.kind(of: "cgroup.procs", controllers: "memory"), .stateless)
        XCTAssertEqual(CgroupProperties.kind(of: "hugetlb.1GB.max_usage_in_bytes", controllers: "hugetlb"), .stateless)
        XCTAssertEqual(CgroupProperties.kind(of: "memory.use_hierarchy", controllers: "memory"), .refusedUnless("1"))
        XCTAssertEqual(CgroupProperties.kind(of: "memory.future_limit", controllers: "memory"), .unknown)
        XCTAssertEqual(CgroupProperties.kind(of: "cpu.shares", controllers: "memory"), .unknown)
        guard case .restored = CgroupProperties.kind(of: "hugetlb.1GB.rsvd.max", controllers: "") else {
            return XCTFail("hugetlb.1GB.rsvd.max is not restored")
        }

        func recorded(_ name: String, _ controllers: String, _ value: String) -> String? {
            CgroupProperties.rule(for: name, controllers: controllers)?.recorded(value)
        }
        XCTAssertNil(recorded("io.weight", "", "default 100"))
        XCTAssertEqual(recorded("io.weight", "", "default 100\n8:0 200"), "8:0 200")
        XCTAssertEqual(recorded("io.weight", "", "default 50"), "default 50")
        XCTAssertNil(recorded("misc.max", "", "sev max\nsev_es max"))
        XCTAssertEqual(recorded("misc.max", "", "sev max\nsev_es 4"), "sev_es 4")
        XCTAssertNil(recorded("rdma.max", "", "mlx4_0 hca_handle=max hca_object=max"))
        XCTAssertNil(recorded("cpu.max", "", "max 100000"))
        XCTAssertEqual(recorded("cpu.max", "", "50000 100000"), "50000 100000")
        XCTAssertNil(recorded("memory.limit_in_bytes", "memory", "9223372036854771712"))
        XCTAssertEqual(recorded("memory.swappiness", "memory", "60"), "60")
        XCTAssertEqual(recorded("memory.oom_control", "memory", "oom_kill_disable 1\nunder_oom 0\noom_kill 0"), "1")
        XCTAssertEqual(recorded("net_prio.ifpriomap", "net_cls,net_prio", "lo 0\neth0 3"), "lo 0\neth0 3")
        let devices = try XCTUnwrap(CgroupProperties.rule(for: "devices.list", controllers: "devices"))
        XCTAssertEqual(devices.recorded(""), "")
        XCTAssertTrue(devices.isWellFormed(""), "a devices cgroup allowing nothing")
        XCTAssertFalse(devices.isWellFormed("c 1:3 rwm\n\nc 1:5 rwm"))

        let cpu = CgroupProperties.rules(controllers: "cpu,cpuacct").map(\.name)
        XCTAssertLessThan(
            try XCTUnwrap(cpu.firstIndex(of: "cpu.cfs_period_us")),
            try XCTUnwrap(cpu.firstIndex(of: "cpu.cfs_quota_us")))
        let unified = CgroupProperties.rules(controllers: "").map(\.name)
        XCTAssertLessThan(
            try XCTUnwrap(unified.firstIndex(of: "cpuset.cpus")),
            try XCTUnwrap(unified.firstIndex(of: "cpuset.cpus.partition")))
    }
}

extension CrossRecordTests {
    /// Each process is in one of the root's recorded cgroups on every hierarchy.
    func testCgroupMembershipOutsideTheTreeIsRefused() throws {
        var root = Fixture.task()
        var hierarchy = Amber_CgroupHierarchy()
        hierarchy.controllers = "pids"
        hierarchy.root = "/box"
        hierarchy.cgroups = [Amber_CgroupDirectory()]
        root.cgroupTree.hierarchies = [hierarchy]
        var membership = Amber_CgroupMembership()
        membership.path = "elsewhere"
        root.cgroups = [membership]
        let directory = path("image-cgroup-membership")
        try Fixture.writeImage(at: directory, tasks: [root], inventory: Fixture.inventory(rootPID: 4242))
        let reader = try ImageReader(directory: directory)
        let error = imageError { _ = try reader.tasks() }
        XCTAssertEqual(error?.kind, .invalid)
        XCTAssertTrue(error?.detail.contains("cgroups[0].path") == true, "\(String(describing: error))")
    }
}
