import AmberImage
import Glibc
import LinuxKit
import Logging

/// CRIU's `--manage-cgroups` modes: what a restore does with the image's cgroups.
public enum CgroupMode: String, CaseIterable, Sendable {
    /// The tree stays in the restorer's cgroups: its membership is lost, so only on request.
    case ignore
    /// Every cgroup must exist already; no property is written.
    case none
    /// Every cgroup must exist already; the recorded properties are written.
    case props
    /// Missing cgroups are made, and only those get the recorded properties (CRIU's default).
    case soft
    /// Missing cgroups are made, and every cgroup gets the recorded properties.
    case full
    /// No cgroup of the tree's own (below the dumper's at the dump) may exist already: each is
    /// made, with the recorded properties.
    case strict
}

/// What a restore does with the image's cgroups: `--manage-cgroups`, and `--cgroup-root`
/// [CONTROLLER:]/PATH, the cgroup the image's root cgroup becomes.
public struct CgroupRestoreOptions: Sendable {
    public var mode: CgroupMode
    /// By controller ("memory", "name=systemd"), the cgroup the root cgroup of its hierarchy
    /// becomes; "" for every hierarchy no other entry names.
    public var roots: [String: String]

    public init(mode: CgroupMode = .soft, roots: [String: String] = [:]) {
        self.mode = mode
        self.roots = roots
    }

    /// "[CONTROLLER:]/PATH" as --cgroup-root takes it; nil when PATH is not a clean absolute path.
    public static func root(_ argument: String) -> (controller: String, path: String)? {
        let controller = argument.hasPrefix("/") ? "" : String(argument.prefix { $0 != ":" })
        let path = argument.hasPrefix("/") ? argument : String(argument.dropFirst(controller.count + 1))
        guard CgroupRules.isClean(path, relative: false), !controller.contains(",") else { return nil }
        return (controller, path)
    }
}

/// The control groups of the tree: every process's cgroup on each hierarchy mounted where amber
/// runs (v1 controllers, named v1 hierarchies, v2), below one root cgroup per hierarchy (the
/// root process's, or its cgroup namespace's root), and the properties (limits) of those below
/// the dumper's own cgroups. The restore puts each process into its cgroup before any of its
/// state is restored (its memory is charged there), making the missing ones as
/// `--manage-cgroups` says; a tree in a cgroup namespace of its own gets a new one rooted at the
/// cgroup its root cgroup becomes. A cgroup state the restore cannot bring back (frozen,
/// threaded, out of reach, threads apart from their process, a control file of a cgroup below
/// the dumper's holding what `CgroupProperties` does not write back) is refused.
enum CgroupState {
    /// The hierarchies mounted where amber runs, and amber's own cgroups.
    struct Host {
        let mounts: [CgroupHierarchyMount]
        let own: [CgroupLine]

        func mount(for line: CgroupLine) -> CgroupHierarchyMount? {
            mounts.first {
                CgroupFS.sameHierarchy($0.controllers, line.controllers) && (line.id == 0) == ($0.controllers.isEmpty)
            }
        }
    }

    /// Read once: amber's mounts and cgroups do not change under a dump.
    static let host: Result<Host, AmberError> = {
        do throws(LinuxError) {
            return .success(Host(mounts: try CgroupFS.mounts(), own: try CgroupFS.lines(pid: getpid())))
        } catch {
            return .failure(AmberError(.failure, "cannot read amber's own cgroups and their mounts: \(error)"))
        }
    }()

    /// "memory:/a/b", "cgroup2:/a".
    static func describe(_ controllers: String, _ path: String) -> String {
        "\(controllers.isEmpty ? "cgroup2" : controllers):\(path)"
    }

    // MARK: Dump

    /// Refuses a process in a cgroup the restore cannot bring it back into.
    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        let host = try host.get()
        let lines = try CgroupFS.lines(pid: pid)
        for line in lines {
            guard let mount = host.mount(for: line) else {
                if host.own.contains(line) { continue }
                throw AmberError.unsupported(
                    process,
                    "is in the cgroup \(describe(line.controllers, line.path)), on a hierarchy not mounted where amber runs: the restore could not put it back there",
                    tree: tree)
            }
            guard let relative = mount.relativePath(of: line.path) else {
                throw AmberError.unsupported(
                    process,
                    "is in the cgroup \(describe(line.controllers, line.path)), which the mount of its hierarchy at \(mount.mountPoint) (of \(mount.root)) does not show: the restore could not put it back there",
                    tree: tree)
            }
            try checkState(of: relative, line: line, mount: mount, process: process, tree: tree)
        }
        for tid in (try? ProcFS.threads(pid: pid)) ?? [] where tid != pid {
            // A thread that ended meanwhile has nothing left to compare; one ending has already
            // left its cgroups for the root's.
            guard let theirs = try? CgroupFS.lines(pid: pid, tid: tid), theirs != lines else { continue }
            if let stat = try? ProcFS.threadStat(pid: pid, tid: tid), stat.flags & ProcessStat.exiting != 0 { continue }
            let differing = theirs.first { !lines.contains($0) }.map { describe($0.controllers, $0.path) } ?? "?"
            throw AmberError.unsupported(
                process,
                "has thread \(tid) in the cgroup \(differing), apart from its process's: a restored process's threads are in its cgroup",
                tree: tree)
        }
    }

    /// Refuses a frozen cgroup and a v2 cgroup that is not a domain one.
    private static func checkState(
        of relative: String, line: CgroupLine, mount: CgroupHierarchyMount, process: ProcessName, tree: ProcessName
    ) throws {
        let directory = try CgroupFS.openHierarchy(mount)
        defer { close(directory) }
        let cgroup = describe(line.controllers, line.path)
        if line.controllers.split(separator: ",").contains("freezer"),
            let state = try CgroupFS.read("freezer.state", of: relative, below: directory), state != "THAWED"
        {
            throw AmberError.unsupported(
                process,
                "is in the freezer cgroup \(cgroup), which is \(state): a frozen cgroup is not restored (thaw it first)",
                tree: tree)
        }
        guard line.id == 0 else { return }
        if try CgroupFS.read("cgroup.freeze", of: relative, below: directory) == "1" {
            throw AmberError.unsupported(
                process,
                "is in the cgroup \(cgroup), which is frozen (cgroup.freeze): a frozen cgroup is not restored (thaw it first)",
                tree: tree)
        }
        if let type = try CgroupFS.read("cgroup.type", of: relative, below: directory), type != "domain" {
            throw AmberError.unsupported(
                process, "is in the cgroup \(cgroup) of type \(type): threaded cgroups are not restored", tree: tree)
        }
    }

    /// The root cgroup of the tree on each mounted hierarchy, by its controllers: the root
    /// process's cgroup, or with `ownNamespace` its cgroup namespace's root.
    static func roots(of root: ProcessName, ownNamespace: Bool) throws -> [String: String] {
        let host = try host.get()
        let lines = try CgroupFS.lines(pid: root.pid)
        let inside = ownNamespace ? try CgroupFS.linesInOwnNamespace(pid: root.pid) : []
        var roots: [String: String] = [:]
        for line in lines where host.mount(for: line) != nil {
            guard ownNamespace else {
                roots[line.controllers] = line.path
                continue
            }
            guard let seen = inside.first(where: { $0.id == line.id }), !seen.path.split(separator: "/").contains("..")
            else {
                throw AmberError.unsupported(
                    root,
                    "is in the cgroup \(describe(line.controllers, line.path)), outside the root of its own cgroup namespace: the restore roots the new namespace at the tree's cgroups"
                )
            }
            let components = line.path.split(separator: "/")
            roots[line.controllers] =
                "/" + components.dropLast(seen.path.split(separator: "/").count).joined(separator: "/")
        }
        return roots
    }

    /// Whether the tree of `root` is in a cgroup namespace of its own.
    static func hasOwnNamespace(_ root: Int32) throws -> Bool {
        try ProcFS.namespace(pid: root, kind: "cgroup") != ProcFS.namespace(pid: getpid(), kind: "cgroup")
    }

    /// The inode of the cgroup namespace of `pid` (cgroup:[INODE]), for messages.
    static func namespaceInode(of pid: Int32) throws -> UInt64 {
        let link = try ProcFS.namespace(pid: pid, kind: "cgroup")
        return UInt64(link.drop { $0 != "[" }.dropFirst().prefix { $0 != "]" }) ?? 0
    }

    /// Refuses a process outside its tree's root cgroups: the restore makes the tree's cgroups
    /// below one root cgroup on each hierarchy.
    static func check(tree processes: [CheckedProcess]) throws {
        guard let root = processes.first?.tree else { return }
        let host = try host.get()
        let roots = try Self.roots(of: root, ownNamespace: try hasOwnNamespace(root.pid))
        // A tree amber has frozen (traces) gets these limits read by `record`, which refuses the
        // same: they are read once while it is frozen, not twice.
        let frozen = processes.allSatisfy { $0.status.tracerPID == getpid() }
        var scanned: Set<String> = []
        processes: for process in processes {
            let lines: [CgroupLine]
            do {
                lines = try CgroupFS.lines(pid: process.pid)
            } catch {
                // It exited while the running tree was checked: the freeze finds the tree as it is then.
                if !Signals.processExists(process.pid) { continue }
                throw error
            }
            for line in lines {
                guard let mount = host.mount(for: line), let top = roots[line.controllers] else { continue }
                guard let relative = CgroupPaths.relative(line.path, below: top) else {
                    // An exiting process leaves its cgroups (a v1 hierarchy then shows its root)
                    // before it is a zombie: the freeze finds the tree as it is then.
                    if hasExited(process.pid) { continue processes }
                    throw AmberError.unsupported(
                        process.name,
                        "is in the cgroup \(describe(line.controllers, line.path)), outside the cgroup \(top) of its tree's root: a tree's cgroups are restored below its root's",
                        tree: root)
                }
                if frozen { continue }
                var path = ""
                for component in [""] + relative.split(separator: "/").map(String.init) {
                    path = [path, component].filter { !$0.isEmpty }.joined(separator: "/")
                    let absolute = CgroupPaths.join(top, path)
                    guard scanned.insert(describe(line.controllers, absolute)).inserted,
                        let own = host.own.first(where: { $0.controllers == line.controllers })?.path,
                        let below = CgroupPaths.relative(absolute, below: own), !below.isEmpty,
                        let here = mount.relativePath(of: absolute)
                    else { continue }
                    let directory = try CgroupFS.openHierarchy(mount)
                    defer { close(directory) }
                    do {
                        _ = try properties(of: here, controllers: line.controllers, below: directory)
                    } catch let unrestored as UnrestoredProperty {
                        throw unrestored.refusal(process.name, cgroup: describe(line.controllers, absolute), tree: root)
                    }
                }
            }
        }
    }

    /// Gone, or a zombie within 10 ms.
    private static func hasExited(_ pid: Int32) -> Bool {
        for _ in 0..<10 {
            guard let status = try? ProcFS.status(pid: pid), status.state != "Z" else { return true }
            usleep(1000)
        }
        return false
    }

    /// A file of a cgroup holding what the restore would not bring back.
    struct UnrestoredProperty: Error {
        let file: String
        let value: String
        let why: String

        /// "FILE is "VALUE": WHY", the value cut to one short line.
        var summary: String {
            let shown = value.split(separator: "\n").joined(separator: "; ")
            let brief = shown.count > 120 ? String(shown.prefix(120)) + "..." : shown
            return "\(file) is \"\(brief)\": \(why)"
        }

        func refusal(_ process: ProcessName, cgroup: String, tree: ProcessName) -> AmberError {
            AmberError.unsupported(process, "is in the cgroup \(cgroup), whose \(summary); not restored", tree: tree)
        }
    }

    /// The properties of the cgroup `relative` (below the mount `directory` of the hierarchy of
    /// `controllers`) a restore that makes it writes back, in their order: every file of
    /// `CgroupProperties` whose value is not a new cgroup's. Throws `UnrestoredProperty` for a
    /// writable file holding what no rule writes back.
    static func properties(of relative: String, controllers: String, below directory: Int32) throws
        -> [Amber_CgroupProperty]
    {
        let kinds = CgroupFileKinds(controllers: controllers)
        let rules = kinds.rules
        var found: [(rule: Int, property: Amber_CgroupProperty)] = []
        for name in try CgroupFS.files(of: relative, below: directory) {
            switch kinds.kind(of: name) {
            case .stateless: continue
            case .restored(let index):
                guard let value = try CgroupFS.read(name, of: relative, below: directory),
                    let recorded = rules[index].recorded(value)
                else { continue }
                guard rules[index].isWellFormed(recorded) else {
                    throw UnrestoredProperty(
                        file: name, value: value, why: "longer, or of more lines, than an image holds")
                }
                var property = Amber_CgroupProperty()
                property.name = name
                property.value = recorded
                found.append((index, property))
            case .refusedUnless(let fresh):
                guard try CgroupFS.isWritable(name, of: relative, below: directory),
                    let value = try CgroupFS.read(name, of: relative, below: directory), value != fresh
                else { continue }
                throw UnrestoredProperty(
                    file: name, value: value, why: "amber does not write it back (a new cgroup has \(fresh))")
            case .unknown:
                guard try CgroupFS.isWritable(name, of: relative, below: directory) else { continue }
                let value = (try? CgroupFS.read(name, of: relative, below: directory)).flatMap { $0 } ?? "(unreadable)"
                throw UnrestoredProperty(
                    file: name, value: value,
                    why: "a control file amber does not know, which it cannot show to hold a new cgroup's value")
            }
        }
        return found.sorted { ($0.rule, $0.property.name) < ($1.rule, $1.property.name) }.map(\.property)
    }

    /// The properties of a cgroup the tree ran in without owning it (not below the dumper's):
    /// a restore writes them back only when it has to make that cgroup, and refuses to make one
    /// that held what amber does not write back (`unrestored`), rather than the dump refusing a
    /// tree whose cgroups the restoring host may well have.
    private static func recordJoined(
        _ cgroup: inout Amber_CgroupDirectory, relative: String, controllers: String, below directory: Int32
    ) {
        // The hierarchy's own root takes no limits.
        guard !relative.isEmpty else { return }
        do {
            cgroup.properties = try properties(of: relative, controllers: controllers, below: directory)
        } catch let unrestored as UnrestoredProperty {
            cgroup.unrestored = String(unrestored.summary.prefix(CgroupRules.unrestoredLimit))
        } catch {
            cgroup.unrestored = String(
                "its control files could not be read (\(error))".prefix(CgroupRules.unrestoredLimit))
        }
    }

    /// What one dump records: the root's `CgroupTree` and each process's memberships.
    struct Dump {
        var tree = Amber_CgroupTree()
        var memberships: [Int32: [Amber_CgroupMembership]] = [:]
    }

    static func record(_ processes: [FrozenProcess]) throws -> Dump {
        guard let root = processes.first else { return Dump() }
        let host = try host.get()
        var dump = Dump()
        dump.tree.ownNamespace = try hasOwnNamespace(root.pid)
        if dump.tree.ownNamespace {
            dump.tree.namespaceInode = try namespaceInode(of: root.pid)
        }
        let roots = try Self.roots(of: root.name, ownNamespace: dump.tree.ownNamespace)
        let lines = try processes.filter { !$0.zombie }.map { ($0.pid, try CgroupFS.lines(pid: $0.pid)) }
        for mount in host.mounts {
            guard let top = roots.first(where: { CgroupFS.sameHierarchy($0.key, mount.controllers) }) else { continue }
            let index = UInt32(dump.tree.hierarchies.count)
            var hierarchy = Amber_CgroupHierarchy()
            hierarchy.controllers = top.key
            hierarchy.root = top.value
            var paths: [String] = [""]
            // The first process in each cgroup or below it, which a refusal names.
            var members: [String: Int32] = [:]
            for (pid, processLines) in lines {
                guard let line = processLines.first(where: { $0.controllers == top.key }),
                    let relative = CgroupPaths.relative(line.path, below: top.value)
                else { continue }
                var membership = Amber_CgroupMembership()
                membership.hierarchy = index
                membership.path = relative
                dump.memberships[pid, default: []].append(membership)
                var parent = ""
                for component in relative.split(separator: "/") {
                    parent = parent.isEmpty ? String(component) : parent + "/" + component
                    if !paths.contains(parent) { paths.append(parent) }
                    if members[parent] == nil { members[parent] = pid }
                }
            }
            let own = host.own.first { $0.controllers == top.key }?.path
            let directory = try CgroupFS.openHierarchy(mount)
            defer { close(directory) }
            var ancestor = ""
            for component in top.value.split(separator: "/").dropLast() {
                ancestor += "/" + component
                guard let relative = mount.relativePath(of: ancestor), !relative.isEmpty else { continue }
                var cgroup = Amber_CgroupDirectory()
                cgroup.path = ancestor
                recordJoined(&cgroup, relative: relative, controllers: top.key, below: directory)
                hierarchy.ancestors.append(cgroup)
            }
            for path in paths {
                var cgroup = Amber_CgroupDirectory()
                cgroup.path = path
                let absolute = CgroupPaths.join(top.value, path)
                if let relative = mount.relativePath(of: absolute) {
                    // A cgroup below the dumper's own is the tree's to remake with its limits.
                    if let own, let below = CgroupPaths.relative(absolute, below: own), !below.isEmpty {
                        cgroup.belowDumper = true
                        do {
                            cgroup.properties = try properties(of: relative, controllers: top.key, below: directory)
                        } catch let unrestored as UnrestoredProperty {
                            let member = processes.first { $0.pid == members[path] }?.name ?? root.name
                            throw unrestored.refusal(member, cgroup: describe(top.key, absolute), tree: root.name)
                        }
                    } else {
                        recordJoined(&cgroup, relative: relative, controllers: top.key, below: directory)
                    }
                }
                hierarchy.cgroups.append(cgroup)
            }
            dump.tree.hierarchies.append(hierarchy)
        }
        return dump
    }
}

extension CgroupState: StateKind {
    static var namespaceKinds: [String] { ["cgroup"] }

    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }

    static func makeDumpState(_ dump: TreeDump) throws -> Dump {
        try record(dump.processes)
    }

    static var dumpSteps: [DumpStep<Dump>] {
        [
            DumpStep("cgroups", .frozen) { dump, state in
                dump.task.cgroups = state.memberships[dump.pid] ?? []
                if dump.pid == dump.tree.pid { dump.task.cgroupTree = state.tree }
            }
        ]
    }
}

// MARK: Restore

/// One restore's cgroups: the image's hierarchies matched to this host's mounts, the cgroup
/// each root cgroup becomes, and the cgroups the restore made (removed again if it fails).
final class CgroupRestore {
    private struct Hierarchy {
        let record: Amber_CgroupHierarchy
        let mount: CgroupHierarchyMount
        let directory: Int32
        /// The image's root cgroup here, relative to the mount.
        let root: String
    }

    private let hierarchies: [Hierarchy]
    private let mode: CgroupMode
    private let tree: Amber_CgroupTree
    private let imageTrusted: Bool
    private let logger: Logger
    /// The cgroups made, parents first, with their hierarchy's directory.
    private var made: [(directory: Int32, path: String)] = []

    /// Matches the image's hierarchies to this host's; nothing is made yet.
    init(
        tasks: [Amber_Task], options: CgroupRestoreOptions, imageTrusted: Bool, logger: Logger
    ) throws(AmberError) {
        mode = options.mode
        tree = tasks[0].cgroupTree
        self.imageTrusted = imageTrusted
        self.logger = logger
        guard tasks[0].hasCgroupTree, options.mode != .ignore else {
            if tasks[0].hasCgroupTree {
                logger.notice("--manage-cgroups ignore: the tree stays in amber's cgroups, not the image's")
            }
            hierarchies = []
            return
        }
        let mounts: [CgroupHierarchyMount]
        do throws(LinuxError) {
            mounts = try CgroupFS.mounts()
        } catch {
            throw AmberError(.failure, "cannot read this host's cgroup mounts: \(error)")
        }
        for controller in options.roots.keys where !controller.isEmpty {
            guard
                tree.hierarchies.contains(where: {
                    $0.controllers.split(separator: ",").contains(Substring(controller))
                })
            else {
                throw AmberError(
                    .failure, "--cgroup-root \(controller):...: the image has no hierarchy with that controller")
            }
        }
        var hierarchies: [Hierarchy] = []
        for record in tree.hierarchies {
            let what = CgroupState.describe(record.controllers, record.root)
            guard let mount = mounts.first(where: { CgroupFS.sameHierarchy($0.controllers, record.controllers) }) else {
                for opened in hierarchies { close(opened.directory) }
                throw AmberError(
                    .incompatibleHost,
                    "the image's tree was in the cgroup \(what), and no such hierarchy is mounted here (restore with --manage-cgroups ignore to leave it in amber's cgroups)"
                )
            }
            let named = record.controllers.split(separator: ",").compactMap { options.roots[String($0)] }
            guard Set(named).count <= 1 else {
                for opened in hierarchies { close(opened.directory) }
                throw AmberError(.failure, "--cgroup-root names two cgroups for the hierarchy \(record.controllers)")
            }
            let target = named.first ?? options.roots[""] ?? record.root
            guard let root = mount.relativePath(of: target) else {
                for opened in hierarchies { close(opened.directory) }
                throw AmberError(
                    .failure,
                    "the cgroup \(CgroupState.describe(record.controllers, target)) is not below the mount of its hierarchy here (\(mount.mountPoint), of \(mount.root))"
                )
            }
            do throws(LinuxError) {
                hierarchies.append(
                    Hierarchy(record: record, mount: mount, directory: try CgroupFS.openHierarchy(mount), root: root))
            } catch {
                for opened in hierarchies { close(opened.directory) }
                throw AmberError(.failure, "cannot open the cgroup hierarchy at \(mount.mountPoint): \(error)")
            }
        }
        self.hierarchies = hierarchies
    }

    deinit {
        for hierarchy in hierarchies { close(hierarchy.directory) }
    }

    /// The cgroup at `path` (relative to the image's root cgroup) of hierarchy `hierarchy`, relative to its mount.
    private func here(_ hierarchy: Hierarchy, _ path: String) -> String {
        [hierarchy.root, path].filter { !$0.isEmpty }.joined(separator: "/")
    }

    /// Runs `body` as the root process's filesystem identity when the image is not trusted.
    private func asTree<T>(_ root: Amber_Task, what: String, _ body: () throws(LinuxError) -> T) throws(LinuxError) -> T
    {
        guard !imageTrusted, let credentials = root.processCredentials else { return try body() }
        let identity = FileAccessIdentity(uid: credentials.fsuid, gid: credentials.fsgid, groups: credentials.groups)
        return try PathOpening.perform(as: identity, what: what, body)
    }

    /// Makes the cgroups (writing the properties of v1 ones as each is made: a v1 devices
    /// cgroup's list changes only while it has no child), gives the tree its cgroup namespace,
    /// puts every process of `built` (created, not yet restored) into its cgroups, then writes
    /// the properties of v2 ones: a v2 cgroup with controllers in its cgroup.subtree_control
    /// takes no process (the namespace's root joins its root cgroup first), and
    /// cgroup.max.depth and cgroup.max.descendants could forbid the cgroups below.
    func apply(to built: [TreeTask], restorerPidfd: Int32) throws {
        guard !hierarchies.isEmpty, let root = built.first else { return }
        var written: [(Hierarchy, path: String, Amber_CgroupDirectory)] = []
        for hierarchy in hierarchies {
            written += try prepare(hierarchy, root: root.record).map { (hierarchy, $0.path, $0.1) }
        }
        if tree.ownNamespace { try makeNamespace(built, restorerPidfd: restorerPidfd) }
        for task in built { try place(task) }
        for (hierarchy, path, cgroup) in written {
            try writeProperties(of: cgroup, at: path, hierarchy, root: root.record)
        }
    }

    /// Makes the cgroups of one hierarchy as the mode says, writing the properties of v1 ones;
    /// returns the v2 ones whose properties are to be written, parents first.
    private func prepare(_ hierarchy: Hierarchy, root: Amber_Task) throws -> [(path: String, Amber_CgroupDirectory)] {
        var written: [(path: String, Amber_CgroupDirectory)] = []
        let isCpuset = hierarchy.record.controllers.split(separator: ",").contains("cpuset")
        // The cgroups above the image's root, where they are in the image (not moved by
        // --cgroup-root), by their paths here.
        var ancestors: [String: Amber_CgroupDirectory] = [:]
        if hierarchy.mount.relativePath(of: hierarchy.record.root) == hierarchy.root {
            for ancestor in hierarchy.record.ancestors {
                if let here = hierarchy.mount.relativePath(of: ancestor.path) { ancestors[here] = ancestor }
            }
        }
        for cgroup in hierarchy.record.cgroups {
            let path = here(hierarchy, cgroup.path)
            // The hierarchy's own root is always there, and takes no limits.
            if path.isEmpty { continue }
            let what = CgroupState.describe(hierarchy.record.controllers, CgroupPaths.join(hierarchy.mount.root, path))
            let exists = CgroupFS.exists(path, below: hierarchy.directory)
            switch (mode, exists) {
            case (.none, false), (.props, false):
                throw AmberError(
                    .restoreFailed,
                    "the cgroup \(what) does not exist: --manage-cgroups \(mode.rawValue) restores into cgroups made beforehand"
                )
            case (.strict, true) where cgroup.belowDumper:
                throw AmberError(
                    .restoreFailed,
                    "the cgroup \(what) exists already: --manage-cgroups strict makes every cgroup itself")
            default: break
            }
            var madeHere = false
            if !exists {
                var parent = ""
                for component in path.split(separator: "/") {
                    let next = parent.isEmpty ? String(component) : parent + "/" + component
                    if !CgroupFS.exists(next, below: hierarchy.directory) {
                        let joined = next == path ? cgroup : ancestors[next]
                        if let joined, !joined.unrestored.isEmpty {
                            throw AmberError(
                                .restoreFailed,
                                "cannot make the cgroup \(CgroupState.describe(hierarchy.record.controllers, CgroupPaths.join(hierarchy.mount.root, next))): at the dump its \(joined.unrestored), which amber does not write back (make it beforehand, or restore with --cgroup-root or --manage-cgroups ignore)"
                            )
                        }
                        do throws(LinuxError) {
                            try asTree(root, what: "mkdir \(what)") { () throws(LinuxError) in
                                try CgroupFS.makeCgroup(String(component), in: parent, below: hierarchy.directory)
                            }
                        } catch {
                            throw AmberError(
                                error.errno == .permissionDenied ? .permissionDenied : .restoreFailed,
                                "cannot make the cgroup \(what): \(error)\(imageTrusted ? "" : " (as the tree's root's user: the image is not authenticated)")"
                            )
                        }
                        made.append((hierarchy.directory, next))
                        if isCpuset { try inheritCpuset(next, parent: parent, hierarchy.directory) }
                        if next != path, let ancestor = ancestors[next] {
                            try write(ancestor, at: next, hierarchy, root: root, into: &written)
                        }
                    }
                    parent = next
                }
                madeHere = true
            }
            // A cgroup the tree only joined keeps the limits it has here.
            guard cgroup.belowDumper || madeHere else { continue }
            guard mode == .props || mode == .full || mode == .strict || (mode == .soft && madeHere) else { continue }
            try write(cgroup, at: path, hierarchy, root: root, into: &written)
        }
        return written
    }

    /// Writes the properties of a v1 cgroup now; a v2 one's go into `written`, for later.
    private func write(
        _ cgroup: Amber_CgroupDirectory, at path: String, _ hierarchy: Hierarchy, root: Amber_Task,
        into written: inout [(path: String, Amber_CgroupDirectory)]
    ) throws {
        if hierarchy.record.controllers.isEmpty {
            written.append((path, cgroup))
        } else {
            try writeProperties(of: cgroup, at: path, hierarchy, root: root)
        }
    }

    /// Writes the recorded properties of one cgroup, as their rules say (the validator checked
    /// that each has one).
    private func writeProperties(
        of cgroup: Amber_CgroupDirectory, at path: String, _ hierarchy: Hierarchy, root: Amber_Task
    ) throws {
        let what = CgroupState.describe(hierarchy.record.controllers, CgroupPaths.join(hierarchy.mount.root, path))
        for property in cgroup.properties {
            guard let rule = CgroupProperties.rule(for: property.name, controllers: hierarchy.record.controllers)
            else {
                throw AmberError(
                    .restoreFailed, "\(property.name) of the cgroup \(what) is not a property amber writes")
            }
            let lines = property.value.split(separator: "\n").map(String.init)
            let writes: [(file: String, value: String)]
            switch rule.writing {
            case .whole, .oomKillDisable: writes = [(property.name, property.value)]
            case .lines: writes = lines.map { (property.name, $0) }
            case .controllers:
                writes = property.value.split(separator: " ").map { (property.name, "+" + $0) }
            case .devices:
                // A cgroup with children takes no "a": a list it has already is left as it is.
                let current = try? CgroupFS.read(property.name, of: path, below: hierarchy.directory)
                writes = current == property.value ? [] : [("devices.deny", "a")] + lines.map { ("devices.allow", $0) }
            }
            for (file, value) in writes {
                do throws(LinuxError) {
                    try asTree(root, what: "write \(file)") { () throws(LinuxError) in
                        try CgroupFS.write(value, to: file, of: path, below: hierarchy.directory)
                    }
                } catch {
                    throw AmberError(
                        .restoreFailed,
                        "cannot set \(property.name) of the cgroup \(what) to \(property.value) (writing \(value) to \(file)): \(error)"
                    )
                }
            }
        }
    }

    /// A new v1 cpuset cgroup has no CPUs and memory nodes, and takes no process until it has:
    /// it gets its parent's (the image's properties, written next, may narrow them).
    private func inheritCpuset(_ path: String, parent: String, _ directory: Int32) throws {
        do throws(LinuxError) {
            for name in ["cpuset.cpus", "cpuset.mems"] {
                guard let value = try CgroupFS.read(name, of: parent, below: directory), !value.isEmpty,
                    try CgroupFS.read(name, of: path, below: directory)?.isEmpty == true
                else { continue }
                try CgroupFS.write(value, to: name, of: path, below: directory)
            }
        } catch {
            throw AmberError(
                .restoreFailed, "cannot give the new cpuset cgroup \(path) its parent's CPUs and nodes: \(error)")
        }
    }

    /// Puts the root into the image's root cgroups, makes it a new cgroup namespace there, and
    /// moves every other process into it.
    private func makeNamespace(_ built: [TreeTask], restorerPidfd: Int32) throws {
        let root = built[0]
        for hierarchy in hierarchies { try join(root, hierarchy, path: hierarchy.root) }
        do throws(LinuxError) {
            try root.injector.call("unshare(CLONE_NEWCGROUP)", SyscallNumber.unshare, UInt64(CgroupFS.newNamespaceFlag))
        } catch {
            throw AmberError(
                error.errno == .notPermitted ? .permissionDenied : .restoreFailed,
                "cannot make a new cgroup namespace for the image's tree cgroup:[\(tree.namespaceInode)]: \(error)")
        }
        guard built.count > 1 else { return }
        let namespace = open("/proc/\(root.pid)/ns/cgroup", O_RDONLY | O_CLOEXEC)
        guard namespace >= 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot open the new cgroup namespace of process \(root.pid): \(LinuxError.current("open"))")
        }
        defer { close(namespace) }
        for task in built.dropFirst() {
            do throws(LinuxError) {
                let fd = try task.injector.call(
                    "pidfd_getfd(restorer, cgroup namespace)", SyscallNumber.pidfdGetfd, UInt64(restorerPidfd),
                    UInt64(namespace), 0)
                defer { _ = try? task.injector.call("close", SyscallNumber.close, fd) }
                try task.injector.call(
                    "setns(CLONE_NEWCGROUP)", SyscallNumber.setns, fd, UInt64(CgroupFS.newNamespaceFlag))
            } catch {
                throw AmberError(
                    .restoreFailed,
                    "cannot move process \(task.record.pid) into its tree's new cgroup namespace: \(error)")
            }
        }
    }

    /// Puts one process into its cgroup on every hierarchy.
    private func place(_ task: TreeTask) throws {
        let current: [CgroupLine]
        do throws(LinuxError) {
            current = try CgroupFS.lines(pid: task.pid)
        } catch {
            throw AmberError(.restoreFailed, "cannot read the cgroups of process \(task.record.pid): \(error)")
        }
        for membership in task.record.cgroups {
            let hierarchy = hierarchies[Int(membership.hierarchy)]
            let path = here(hierarchy, membership.path)
            let absolute = CgroupPaths.join(hierarchy.mount.root, path)
            if current.contains(where: {
                CgroupFS.sameHierarchy($0.controllers, hierarchy.mount.controllers) && $0.path == absolute
            }) {
                continue
            }
            try join(task, hierarchy, path: path)
        }
    }

    /// Writes the process's PID into cgroup.procs of `path` (relative to the mount).
    private func join(_ task: TreeTask, _ hierarchy: Hierarchy, path: String) throws {
        let what = CgroupState.describe(hierarchy.record.controllers, CgroupPaths.join(hierarchy.mount.root, path))
        do throws(LinuxError) {
            let fd = try asTree(task.record, what: "open \(what)/cgroup.procs") { () throws(LinuxError) in
                try CgroupFS.open(
                    path.isEmpty ? "cgroup.procs" : path + "/cgroup.procs", below: hierarchy.directory, flags: O_WRONLY)
            }
            defer { close(fd) }
            try CgroupFS.write(String(task.pid), toOpen: fd, what: "\(what)/cgroup.procs")
        } catch {
            throw AmberError(
                error.errno == .permissionDenied ? .permissionDenied : .restoreFailed,
                "cannot put process \(task.record.pid) (\(task.record.comm)) into the cgroup \(what): \(error)\(imageTrusted ? "" : " (as its own user: the image is not authenticated)")"
            )
        }
        logger.trace("process \(task.record.pid): in the cgroup \(what)")
    }

    /// After a failed restore, once its processes are gone: removes the cgroups it made.
    func removeMade() {
        for cgroup in made.reversed() { try? CgroupFS.removeCgroup(cgroup.path, below: cgroup.directory) }
        made = []
    }
}
