/// The properties (limits) of a cgroup the dump records and the restore writes back, by the
/// hierarchy's controllers, in the order they are written: a fixed list, so an image never
/// names another file of a cgroup.
public enum CgroupProperties {
    public static func names(controllers: String) -> [String] {
        if controllers.isEmpty { return ["cpu.weight", "cpu.max", "memory.max", "pids.max"] }
        let set = Set(controllers.split(separator: ","))
        var names: [String] = []
        if set.contains("cpuset") { names += ["cpuset.cpus", "cpuset.mems"] }
        if set.contains("cpu") { names += ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"] }
        if set.contains("memory") { names += ["memory.limit_in_bytes"] }
        if set.contains("pids") { names += ["pids.max"] }
        return names
    }
}

/// The shape of the cgroup paths an image names.
public enum CgroupRules {
    /// Whether `path` is absolute (or, with `relative`, relative: "" for the cgroup itself) with
    /// no empty, "." or ".." component, no NUL or newline, of at most 4096 bytes.
    public static func isClean(_ path: String, relative: Bool) -> Bool {
        if path.utf8.count > 4096 || path.utf8.contains(0) || path.utf8.contains(UInt8(ascii: "\n")) { return false }
        if relative {
            if path.isEmpty { return true }
            if path.hasPrefix("/") { return false }
        } else {
            if !path.hasPrefix("/") { return false }
            if path == "/" { return true }
        }
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(relative ? 0 : 1)
        return components.allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." && $0.utf8.count <= 255 }
    }

    /// Whether `controllers` is a hierarchy's list of controllers ("" for cgroup v2).
    static func isControllerList(_ controllers: String) -> Bool {
        if controllers.isEmpty { return true }
        return controllers.utf8.count <= 256
            && controllers.split(separator: ",", omittingEmptySubsequences: false).allSatisfy { name in
                !name.isEmpty
                    && name.utf8.allSatisfy {
                        $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "/")
                    }
            }
    }
}

/// The checks of a tree's cgroups (`Amber_CgroupTree`, `Amber_CgroupMembership`): clean paths,
/// each cgroup's parent before it, properties of `CgroupProperties` only.
extension TaskValidator {
    private static let hierarchyLimit = 64, cgroupLimit = 4096, propertyValueLimit = 256

    func validateCgroupTree(_ tree: Amber_CgroupTree) throws(ImageError) {
        guard tree.hierarchies.count <= Self.hierarchyLimit else {
            throw invalid("cgroup_tree.hierarchies", "more than \(Self.hierarchyLimit)")
        }
        var seen: [Set<Substring>] = []
        for (index, hierarchy) in tree.hierarchies.enumerated() {
            let field = "cgroup_tree.hierarchies[\(index)]"
            let set = Set(hierarchy.controllers.split(separator: ","))
            guard CgroupRules.isControllerList(hierarchy.controllers), !seen.contains(set) else {
                throw invalid(
                    "\(field).controllers",
                    "\"\(hierarchy.controllers)\" is not a list of controllers, or is there twice")
            }
            seen.append(set)
            guard CgroupRules.isClean(hierarchy.root, relative: false) else {
                throw invalid("\(field).root", "not an absolute cgroup path without \".\", \"..\" or empty components")
            }
            guard hierarchy.cgroups.count <= Self.cgroupLimit, hierarchy.cgroups.first?.path == "" else {
                throw invalid("\(field).cgroups", "not the root cgroup first, then at most \(Self.cgroupLimit) in all")
            }
            var paths: Set<String> = []
            let allowed = CgroupProperties.names(controllers: hierarchy.controllers)
            for (number, cgroup) in hierarchy.cgroups.enumerated() {
                let path = cgroup.path
                let parent = path.split(separator: "/").dropLast().joined(separator: "/")
                guard CgroupRules.isClean(path, relative: true), !paths.contains(path),
                    path.isEmpty || paths.contains(parent)
                else {
                    throw invalid(
                        "\(field).cgroups[\(number)].path",
                        "\"\(path)\" is not a relative cgroup path after its parent's, or is there twice")
                }
                paths.insert(path)
                guard cgroup.belowDumper || cgroup.properties.isEmpty else {
                    throw invalid(
                        "\(field).cgroups[\(number)].properties", "on a cgroup that was not below the dumper's")
                }
                var names: Set<String> = []
                for (place, property) in cgroup.properties.enumerated() {
                    guard allowed.contains(property.name), names.insert(property.name).inserted,
                        property.value.utf8.count <= Self.propertyValueLimit,
                        property.value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f })
                    else {
                        throw invalid(
                            "\(field).cgroups[\(number)].properties[\(place)]",
                            "\(property.name) is not a property amber restores on this hierarchy, is there twice, or its value is not one line of printable text"
                        )
                    }
                }
            }
        }
    }

    func validateCgroupMemberships(_ memberships: [Amber_CgroupMembership]) throws(ImageError) {
        guard memberships.count <= Self.hierarchyLimit else {
            throw invalid("cgroups", "more than \(Self.hierarchyLimit)")
        }
    }
}

extension CrossRecordCheck {
    /// Only the root's record holds the cgroups of the tree; every live process has one of
    /// them on each of its hierarchies, a zombie none.
    static func checkCgroups(_ tasks: [Amber_Task]) throws(ImageError) {
        let tree = tasks[0].cgroupTree
        let paths = tree.hierarchies.map { Set($0.cgroups.map(\.path)) }
        for task in tasks {
            let file = ImageFormat.taskRecordName(pid: task.pid)
            if task.hasCgroupTree && task.pid != tasks[0].pid {
                throw ImageError(
                    .invalid, file: file, detail: "cgroup_tree: only the root's record holds the tree's cgroups")
            }
            let expected = task.zombie ? 0 : tasks[0].hasCgroupTree ? tree.hierarchies.count : 0
            let hierarchies = task.cgroups.map { Int($0.hierarchy) }
            guard hierarchies.count == expected, Set(hierarchies) == Set(0..<expected) else {
                throw ImageError(
                    .invalid, file: file,
                    detail: "cgroups: not one cgroup on each hierarchy of the root's cgroup_tree (\(expected))")
            }
            for (index, membership) in task.cgroups.enumerated()
            where !paths[Int(membership.hierarchy)].contains(membership.path) {
                throw ImageError(
                    .invalid, file: file,
                    detail:
                        "cgroups[\(index)].path: \"\(membership.path)\" is not a cgroup of its hierarchy in cgroup_tree"
                )
            }
        }
    }
}
