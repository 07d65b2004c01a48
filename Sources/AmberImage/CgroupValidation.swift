/// How the restore writes a recorded property of a cgroup back.
public enum CgroupPropertyWriting: Sendable, Equatable {
    /// The value in one write.
    case whole
    /// One write per line: the file reads one line per device or resource (io.max, rdma.max),
    /// and takes one at a time.
    case lines
    /// cgroup.subtree_control: "+NAME" for each controller the value names.
    case controllers
    /// v1 devices.list: "a" into devices.deny (nothing allowed), then each line into
    /// devices.allow.
    case devices
    /// v1 memory.oom_control: the value of oom_kill_disable, read from its "oom_kill_disable N"
    /// line and written alone.
    case oomKillDisable
}

/// Which lines of a per-line property a fresh cgroup has: those are not written back.
public enum CgroupDefaultLines: Sendable, Equatable {
    /// None: every line is a limit ("8:0 1048576").
    case none
    /// This line ("default 100").
    case exactly(String)
    /// Those whose every field after the first is "max" or "KEY=max" ("sev max").
    case allMax
    /// Those whose second field is "0".
    case zero
}

/// A file of a cgroup whose value the dump records and the restore writes back.
public struct CgroupPropertyRule: Sendable {
    /// The file; a "*" component stands for a huge page size ("hugetlb.*.max": "hugetlb.2MB.max").
    public let name: String
    public let writing: CgroupPropertyWriting
    /// A new cgroup's value, not recorded; nil when a new cgroup takes its parent's (the value
    /// is then always recorded and written back).
    public let fresh: String?
    public let defaultLines: CgroupDefaultLines

    init(_ name: String, _ fresh: String?, _ writing: CgroupPropertyWriting = .whole, lines: CgroupDefaultLines = .none)
    {
        self.name = name
        self.fresh = fresh
        self.writing = writing
        defaultLines = lines
    }

    public func matches(_ file: String) -> Bool {
        Self.matches(name.split(separator: ".", omittingEmptySubsequences: false), file)
    }

    /// Whether `file` matches the pattern of `components` (a rule's name split at its dots).
    static func matches(_ pattern: [Substring], _ file: String) -> Bool {
        let components = file.split(separator: ".", omittingEmptySubsequences: false)
        guard pattern.count == components.count else { return false }
        return zip(pattern, components).allSatisfy { wanted, component in
            wanted == "*" ? CgroupProperties.isPageSize(component) : wanted == component
        }
    }

    /// What the dump records of `value` (the file's text without its final newline): nil when
    /// it is a new cgroup's.
    public func recorded(_ value: String) -> String? {
        switch writing {
        case .oomKillDisable:
            let line = value.split(separator: "\n").first { $0.hasPrefix("oom_kill_disable ") }
            return line.map { String($0.dropFirst("oom_kill_disable ".count)) } ?? value
        case .lines:
            guard fresh != nil else { return value }
            let kept = value.split(separator: "\n").filter { !isDefault($0) }
            return kept.isEmpty ? nil : kept.joined(separator: "\n")
        case .whole, .controllers, .devices:
            guard let fresh else { return value }
            return value == fresh ? nil : value
        }
    }

    private func isDefault(_ line: Substring) -> Bool {
        let fields = line.split(separator: " ")
        switch defaultLines {
        case .none: return false
        case .exactly(let text): return line == text
        case .allMax:
            return fields.count > 1 && fields.dropFirst().allSatisfy { $0 == "max" || $0.hasSuffix("=max") }
        case .zero: return fields.count == 2 && fields[1] == "0"
        }
    }

    /// Whether `value` is what the dump records for this file: printable text, one line (or
    /// lines, for a per-line file), within bounds.
    public func isWellFormed(_ value: String) -> Bool {
        let multiline = writing == .lines || writing == .devices
        guard value.utf8.count <= (multiline ? 16384 : 256) else { return false }
        let lines = value.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count <= (multiline ? 256 : 1) else { return false }
        guard lines.allSatisfy({ line in line.utf8.count <= 256 && line.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f } })
        else { return false }
        switch writing {
        case .whole: return true
        // An empty list is no line (a devices cgroup allowing nothing).
        case .lines, .devices: return value.isEmpty || lines.allSatisfy { !$0.isEmpty }
        case .controllers:
            return value.isEmpty
                || value.split(separator: " ", omittingEmptySubsequences: false).allSatisfy { name in
                    !name.isEmpty
                        && name.utf8.allSatisfy {
                            ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f || ($0 >= 0x30 && $0 <= 0x39)
                        }
                }
        case .oomKillDisable: return value == "0" || value == "1"
        }
    }
}

/// What the dump does with a file of a cgroup.
public enum CgroupFileKind: Sendable, Equatable {
    /// Recorded (unless a new cgroup's) and written back by the rule at this index of the
    /// hierarchy's `rules`.
    case restored(Int)
    /// Writable, and holds nothing to restore: membership, triggers, counters a write resets,
    /// actions, state checked apart (cgroup.type, freezer.state).
    case stateless
    /// Not restored: refused unless it holds this value, a new cgroup's.
    case refusedUnless(String)
    /// Writable and unknown to amber (a newer kernel's): refused.
    case unknown
}

/// The properties of a cgroup the dump records and the restore writes back, by the hierarchy's
/// controllers, in the order they are written (cpuset.cpus before its partition, a quota's
/// period before it, a parent's cgroup.subtree_control before its children's limits): a fixed
/// table, so an image never makes amber write another file of a cgroup (cgroup.procs,
/// cgroup.kill, memory.reclaim...). Every other writable file of a dumped cgroup is either known
/// to hold no state, or refused at the dump unless it holds a new cgroup's value.
public enum CgroupProperties {
    /// PAGE_COUNTER_MAX in bytes: a v1 memory or hugetlb limit that is not set.
    static let noLimit = "9223372036854771712"

    /// cgroup v2 (Documentation/admin-guide/cgroup-v2.rst, kernel 6.18).
    static let unified: [CgroupPropertyRule] = [
        .init("cgroup.subtree_control", "", .controllers),
        .init("cgroup.max.depth", "max"),
        .init("cgroup.max.descendants", "max"),
        .init("cgroup.pressure", "1"),
        .init("cpuset.cpus", ""),
        .init("cpuset.mems", ""),
        .init("cpuset.cpus.exclusive", ""),
        .init("cpuset.cpus.partition", "member"),
        .init("cpu.weight", "100"),
        .init("cpu.max", "max 100000"),
        .init("cpu.max.burst", "0"),
        .init("cpu.idle", "0"),
        .init("cpu.uclamp.min", "0.00"),
        .init("cpu.uclamp.max", "max"),
        .init("memory.min", "0"),
        .init("memory.low", "0"),
        .init("memory.high", "max"),
        .init("memory.max", "max"),
        .init("memory.swap.high", "max"),
        .init("memory.swap.max", "max"),
        .init("memory.zswap.max", "max"),
        .init("memory.zswap.writeback", "1"),
        .init("memory.oom.group", "0"),
        .init("io.weight", "", .lines, lines: .exactly("default 100")),
        .init("io.bfq.weight", "", .lines, lines: .exactly("default 100")),
        .init("io.max", "", .lines, lines: .allMax),
        .init("io.latency", "", .lines),
        .init("io.prio.class", "no-change"),
        .init("pids.max", "max"),
        .init("hugetlb.*.max", "max"),
        .init("hugetlb.*.rsvd.max", "max"),
        .init("rdma.max", "", .lines, lines: .allMax),
        .init("misc.max", "", .lines, lines: .allMax),
        .init("dmem.max", "", .lines, lines: .allMax),
        .init("dmem.min", "", .lines, lines: .zero),
        .init("dmem.low", "", .lines, lines: .zero),
    ]

    static let unifiedStateless: Set<String> = [
        "cgroup.procs", "cgroup.threads", "cgroup.kill", "cgroup.type", "cpu.pressure",
        "io.pressure", "memory.pressure", "irq.pressure", "memory.reclaim", "memory.peak", "memory.swap.peak",
        // Another view of cpu.weight, which is restored.
        "cpu.weight.nice",
    ]

    /// cgroup v1, by controller (Documentation/admin-guide/cgroup-v1/). Those a new cgroup
    /// takes from its parent are always recorded.
    static let legacy: [String: [CgroupPropertyRule]] = [
        "cpuset": [
            .init("cpuset.cpus", ""), .init("cpuset.mems", ""), .init("cpuset.cpu_exclusive", "0"),
            .init("cpuset.mem_exclusive", "0"), .init("cpuset.mem_hardwall", "0"),
            .init("cpuset.memory_migrate", "0"), .init("cpuset.memory_spread_page", nil),
            .init("cpuset.memory_spread_slab", nil), .init("cpuset.sched_load_balance", "1"),
            .init("cpuset.sched_relax_domain_level", "-1"),
        ],
        "cpu": [
            .init("cpu.shares", "1024"), .init("cpu.cfs_period_us", "100000"), .init("cpu.cfs_quota_us", "-1"),
            .init("cpu.cfs_burst_us", "0"), .init("cpu.idle", "0"), .init("cpu.rt_period_us", "1000000"),
            .init("cpu.rt_runtime_us", "0"), .init("cpu.uclamp.min", "0.00"), .init("cpu.uclamp.max", "max"),
        ],
        "memory": [
            .init("memory.limit_in_bytes", noLimit), .init("memory.memsw.limit_in_bytes", noLimit),
            .init("memory.soft_limit_in_bytes", noLimit), .init("memory.kmem.tcp.limit_in_bytes", noLimit),
            .init("memory.swappiness", nil), .init("memory.oom_control", nil, .oomKillDisable),
            .init("memory.move_charge_at_immigrate", "0"),
        ],
        "blkio": [
            .init("blkio.weight", "100"), .init("blkio.weight_device", "", .lines),
            .init("blkio.bfq.weight", "100"), .init("blkio.bfq.weight_device", "", .lines),
            .init("blkio.throttle.read_bps_device", "", .lines),
            .init("blkio.throttle.write_bps_device", "", .lines),
            .init("blkio.throttle.read_iops_device", "", .lines),
            .init("blkio.throttle.write_iops_device", "", .lines),
        ],
        "devices": [.init("devices.list", nil, .devices)],
        "pids": [.init("pids.max", "max")],
        "hugetlb": [.init("hugetlb.*.limit_in_bytes", noLimit), .init("hugetlb.*.rsvd.limit_in_bytes", noLimit)],
        "net_cls": [.init("net_cls.classid", "0")],
        "net_prio": [.init("net_prio.ifpriomap", nil, .lines)],
        "rdma": [.init("rdma.max", "", .lines, lines: .allMax)],
        "misc": [.init("misc.max", "", .lines, lines: .allMax)],
    ]

    /// Every v1 hierarchy's: a new cgroup takes its parent's.
    static let legacyCommon: [CgroupPropertyRule] = [
        .init("cgroup.clone_children", nil), .init("notify_on_release", nil),
    ]

    static let legacyStateless: Set<String> = [
        "cgroup.procs", "tasks", "cgroup.event_control", "memory.force_empty", "memory.failcnt",
        "memory.max_usage_in_bytes", "memory.kmem.failcnt", "memory.kmem.max_usage_in_bytes",
        "memory.kmem.tcp.failcnt", "memory.kmem.tcp.max_usage_in_bytes", "memory.memsw.failcnt",
        "memory.memsw.max_usage_in_bytes", "blkio.reset_stats", "cpuacct.usage", "freezer.state",
        "devices.allow", "devices.deny", "hugetlb.*.failcnt", "hugetlb.*.max_usage_in_bytes",
        "hugetlb.*.rsvd.failcnt", "hugetlb.*.rsvd.max_usage_in_bytes",
    ]

    /// v2 files amber does not write back: refused unless a new cgroup's. A frozen cgroup
    /// (cgroup.freeze 1, its processes' or an ancestor's) is not restored.
    static let unifiedRefusedUnless: [String: String] = ["cgroup.freeze": "0"]

    /// v1 files amber does not write back: refused unless a new cgroup's. memory.use_hierarchy
    /// can no longer be 0, writes to memory.kmem.limit_in_bytes are ignored, and
    /// memory.shown_ram_in_bytes is not a mainline file.
    static let legacyRefusedUnless: [String: String] = [
        "memory.use_hierarchy": "1", "memory.kmem.limit_in_bytes": noLimit, "memory.shown_ram_in_bytes": "0",
    ]

    /// The rules of a hierarchy by its controllers ("" for cgroup v2), in the order they are written.
    public static func rules(controllers: String) -> [CgroupPropertyRule] {
        if controllers.isEmpty { return unified }
        let names = controllers.split(separator: ",").map(String.init)
        return legacyCommon
            + legacy.keys.sorted { order($0) < order($1) }.filter(names.contains).flatMap { legacy[$0] ?? [] }
    }

    /// cpuset first (a v1 cpuset cgroup takes no process without CPUs), then as the kernel lists them.
    private static func order(_ controller: String) -> Int {
        ["cpuset", "cpu", "memory", "blkio", "devices", "pids", "hugetlb", "net_cls", "net_prio", "rdma", "misc"]
            .firstIndex(of: controller) ?? Int.max
    }

    /// The rule of the file `name` on the hierarchy of `controllers`.
    public static func rule(for name: String, controllers: String) -> CgroupPropertyRule? {
        let kinds = CgroupFileKinds(controllers: controllers)
        return kinds.ruleIndex(of: name).map { kinds.rules[$0] }
    }

    /// What the dump does with the file `name` of a cgroup on the hierarchy of `controllers`.
    public static func kind(of name: String, controllers: String) -> CgroupFileKind {
        CgroupFileKinds(controllers: controllers).kind(of: name)
    }

    /// "2MB", "1GB", "64KB": a huge page size as hugetlb's files name it.
    static func isPageSize(_ text: Substring) -> Bool {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        return !digits.isEmpty && ["KB", "MB", "GB"].contains(text.dropFirst(digits.count))
    }
}

/// What the dump does with each file of the cgroups of one hierarchy (`CgroupProperties.kind`),
/// looked up by name: made once for a hierarchy, where matching every rule's pattern against
/// every file of every cgroup (a v1 memory cgroup has about 100) cost milliseconds a dump.
public struct CgroupFileKinds: Sendable {
    /// `CgroupProperties.rules` of the hierarchy, in their order.
    public let rules: [CgroupPropertyRule]
    /// The first rule of each name without a "*" component.
    private let ruleByName: [String: Int]
    /// The rules with a "*" component, split at their dots, in their order.
    private let patternRules: [(index: Int, pattern: [Substring])]
    private let stateless: Set<String>
    private let statelessPatterns: [[Substring]]
    private let refusedUnless: [String: String]

    public init(controllers: String) {
        rules = CgroupProperties.rules(controllers: controllers)
        var byName: [String: Int] = [:]
        var patterns: [(index: Int, pattern: [Substring])] = []
        for (index, rule) in rules.enumerated() {
            let pattern = rule.name.split(separator: ".", omittingEmptySubsequences: false)
            if pattern.contains("*") {
                patterns.append((index, pattern))
            } else if byName[rule.name] == nil {
                byName[rule.name] = index
            }
        }
        ruleByName = byName
        patternRules = patterns
        stateless = controllers.isEmpty ? CgroupProperties.unifiedStateless : CgroupProperties.legacyStateless
        statelessPatterns = stateless.filter { $0.contains("*") }.map {
            $0.split(separator: ".", omittingEmptySubsequences: false)
        }
        refusedUnless =
            controllers.isEmpty ? CgroupProperties.unifiedRefusedUnless : CgroupProperties.legacyRefusedUnless
    }

    /// The index in `rules` of the first rule matching the file `name`.
    public func ruleIndex(of name: String) -> Int? {
        let named = ruleByName[name]
        guard !patternRules.isEmpty else { return named }
        let before = named ?? .max
        let patterned = patternRules.first { $0.index < before && CgroupPropertyRule.matches($0.pattern, name) }
        return patterned?.index ?? named
    }

    /// What the dump does with the file `name` of a cgroup of the hierarchy.
    public func kind(of name: String) -> CgroupFileKind {
        if let index = ruleIndex(of: name) { return .restored(index) }
        if stateless.contains(name) || statelessPatterns.contains(where: { CgroupPropertyRule.matches($0, name) }) {
            return .stateless
        }
        if let fresh = refusedUnless[name] { return .refusedUnless(fresh) }
        return .unknown
    }
}

/// The shape of the cgroup paths an image names.
public enum CgroupRules {
    /// The longest `CgroupDirectory.unrestored` an image holds.
    public static let unrestoredLimit = 512

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
    private static let hierarchyLimit = 64, cgroupLimit = 4096, ancestorLimit = 256

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
            let rules = CgroupFileKinds(controllers: hierarchy.controllers)
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
                try validateCgroupDirectory(cgroup, "\(field).cgroups[\(number)]", rules)
            }
            guard hierarchy.ancestors.count <= Self.ancestorLimit else {
                throw invalid("\(field).ancestors", "more than \(Self.ancestorLimit)")
            }
            var above = "/"
            for (number, ancestor) in hierarchy.ancestors.enumerated() {
                let path = ancestor.path
                guard CgroupRules.isClean(path, relative: false), path != "/",
                    Self.isStrictly(path, below: above), Self.isStrictly(hierarchy.root, below: path),
                    !ancestor.belowDumper
                else {
                    throw invalid(
                        "\(field).ancestors[\(number)]",
                        "\"\(path)\" is not a cgroup above the root cgroup, below the one before it")
                }
                above = path
                try validateCgroupDirectory(ancestor, "\(field).ancestors[\(number)]", rules)
            }
        }
    }

    private static func isStrictly(_ path: String, below ancestor: String) -> Bool {
        let components = path.split(separator: "/")
        let above = ancestor.split(separator: "/")
        return above.count < components.count && components.starts(with: above)
    }

    /// A cgroup's properties: each of `rules`, in their order, once, with a value of the shape a
    /// dump records; `unrestored` short, and only on a cgroup the tree joined.
    private func validateCgroupDirectory(
        _ cgroup: Amber_CgroupDirectory, _ field: String, _ kinds: CgroupFileKinds
    ) throws(ImageError) {
        guard cgroup.unrestored.isEmpty || !cgroup.belowDumper,
            cgroup.unrestored.utf8.count <= CgroupRules.unrestoredLimit
        else {
            throw invalid(
                "\(field).unrestored",
                "longer than \(CgroupRules.unrestoredLimit) bytes, or on a cgroup below the dumper's")
        }
        var names: Set<String> = []
        var lastRule = -1
        for (place, property) in cgroup.properties.enumerated() {
            let rule = kinds.ruleIndex(of: property.name)
            guard let rule, rule >= lastRule, names.insert(property.name).inserted,
                kinds.rules[rule].isWellFormed(property.value)
            else {
                throw invalid(
                    "\(field).properties[\(place)]",
                    "\(property.name) is not a property amber restores on this hierarchy, is out of the order they are written in, is there twice, or its value is not what a dump records (printable text, one line but for a per-line file, within bounds)"
                )
            }
            lastRule = rule
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
