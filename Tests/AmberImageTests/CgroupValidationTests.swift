import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// A tree's cgroups: clean paths (an image never names a cgroup above its root or by
    /// "..", nor an absolute path below it), each after its parent, and only the properties of
    /// the fixed list for its hierarchy, once each, on one line.
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
        try assertRejected("cgroup_tree.hierarchies[0].cgroups[0].properties") {
            cgroups(&$0) { $0.hierarchies[0].cgroups[0].belowDumper = false }
        }
        try assertRejected("cgroup_tree.hierarchies[1].controllers") {
            cgroups(&$0) { $0.hierarchies[1].controllers = "memory" }
        }
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
