import AmberImage
import Dispatch
import FoundationEssentials
import Glibc
import LinuxKit
import Synchronization

/// The network namespace of a tree, when it is not amber's: every process of the tree must be
/// in its root's. The dump records the namespace's configuration on the root's record (links,
/// addresses, the sysctls under net.ipv4 and net.ipv6 that differ from a new namespace's, and
/// what a new namespace is not made with). The restore makes the tree's processes, and the
/// sockets the restorer makes for them, in one namespace: the restoring thread enters it before
/// the first process is cloned (a thread's namespace is what its sockets and children get) and
/// leaves it once the tree runs. That namespace is the one `--join-ns net:PATH` names, as it
/// is; without it, a new one made with the recorded configuration, which must then be a
/// loopback device and veth ends (each other end named by `--external veth[...]`) with nothing
/// unrestorable, else the restore is refused naming what. Links, addresses and routes are
/// read and made over rtnetlink; policy routing rules, permanent neighbours and firewall
/// tables are only read, through Debian's iproute2 (`ip`) and `nft` run in the namespace, to
/// be refused (docs/security.md, "Network namespaces").
enum NetworkNamespaceState {
    static let ip = "/bin/ip"
    static let nft = "/usr/sbin/nft"
    static let tc = "/usr/sbin/tc"

    /// The link of a new namespace, the one a namespace restored without --join-ns can have.
    static let loopback = "lo"

    /// The namespace of process `pid`, e.g. "net:[4026531840]".
    private static func namespace(of pid: Int32) throws -> String {
        try ProcFS.namespace(pid: pid, kind: "net")
    }

    /// Whether the tree of `root` is in amber's namespace.
    static func isOwnNamespace(of root: Int32) throws -> Bool {
        try namespace(of: root) == namespace(of: getpid())
    }

    /// Before the first task is made: moves the restoring thread into the namespace the tree of
    /// `root` is restored in, the one at `joining` (--join-ns net:PATH) or, for a tree dumped
    /// in a namespace other than the dumper's, a new one made as the image says, its veth ends'
    /// other ends made as `veths` say. Returns the thread's own namespace, to go back into once
    /// the tree runs; nil when it stays there.
    /// `madeInAdvance` (`makeInAdvance`) takes the place of the new one when no veth is asked for.
    static func enter(
        for root: Amber_Task, joining path: String?, veths: [ExternalVeth], madeInAdvance: NetworkNamespace? = nil
    ) throws(AmberError) -> NetworkNamespace? {
        let own: NetworkNamespace
        do {
            own = try NetworkNamespace.ofThisThread()
        } catch {
            throw AmberError(.failure, "cannot open the restorer's own network namespace: \(error)")
        }
        if let path {
            do throws(LinuxError) {
                let joined = try NetworkNamespace(path: path)
                if joined.inode == own.inode { return nil }
                try joined.enter()
            } catch {
                let why = error.errno == .invalidArgument ? "it is not a network namespace" : "\(error)"
                throw AmberError(
                    error.errno == .notPermitted ? .permissionDenied : .failure,
                    "cannot join --join-ns net:\(path): \(why)")
            }
            return own
        }
        guard root.hasNetworkNamespace else {
            if let veth = veths.first {
                throw AmberError(
                    .failure,
                    "--external \(veth.argument): the image's tree was in the dumper's own network namespace, with no veth of its own"
                )
            }
            return nil
        }
        if let madeInAdvance, veths.isEmpty {
            do throws(LinuxError) {
                try madeInAdvance.enter()
                return own
            } catch {
                // Made the usual way below, which says what fails.
            }
        }
        do throws(LinuxError) {
            try NetworkNamespace.enterNew()
        } catch {
            throw AmberError(
                error.errno == .notPermitted ? .permissionDenied : .failure,
                "cannot make a new network namespace for the image's tree: \(error)")
        }
        do {
            try NetworkConfiguration.make(root.networkNamespace, veths: veths, own: own)
        } catch {
            own.enterOrAbort()
            throw error
        }
        return own
    }

    /// The new namespace `enter` makes for the tree of `root` with no veth, made ahead of the
    /// restore by a thread that goes back into its own right after; nil when the tree is in
    /// the dumper's namespace. Nothing outside the new namespace is changed, so one the restore
    /// does not take is simply closed.
    static func makeInAdvance(for root: Amber_Task) throws(AmberError) -> NetworkNamespace? {
        guard root.hasNetworkNamespace else { return nil }
        let own: NetworkNamespace
        do throws(LinuxError) {
            own = try NetworkNamespace.ofThisThread()
            try NetworkNamespace.enterNew()
        } catch {
            throw AmberError(.failure, "cannot make a new network namespace for the image's tree: \(error)")
        }
        defer { own.enterOrAbort() }
        try NetworkConfiguration.make(root.networkNamespace, veths: [], own: own)
        do throws(LinuxError) {
            return try NetworkNamespace.ofThisThread()
        } catch {
            throw AmberError(.failure, "cannot open the new network namespace for the image's tree: \(error)")
        }
    }
}

extension NetworkNamespaceState: StateKind {
    static var namespaceKinds: [String] { ["net"] }

    /// The configuration is the namespace's, not the tree's: processes outside the tree may
    /// change it at any time, frozen tree or not. So it is read beside the dump from the first
    /// preflight on (`ip` and `nft` runs and a new namespace to compare with, tens of
    /// milliseconds), and the tree is not kept frozen for it.
    static func check(tree processes: [CheckedProcess]) throws {
        guard let root = processes.first?.tree, try !isOwnNamespace(of: root.pid) else { return }
        NetworkConfiguration.startReading(of: root)
    }

    static func makeDumpState(_ dump: TreeDump) -> Bool { dump.networkMadeAgain }

    static var dumpSteps: [DumpStep<Bool>] {
        [
            DumpStep("network-namespace", .outside) { dump, networkMadeAgain in
                guard dump.pid == dump.tree.pid, try !isOwnNamespace(of: dump.pid) else { return }
                let record = try NetworkConfiguration.take(of: dump.tree)
                // A runtime's restore has no namespace to join: what a new one would lack is lost.
                let unmade = NetworkConfiguration.unmade(record)
                if networkMadeAgain && !unmade.isEmpty {
                    throw AmberError.unsupported(
                        dump.tree,
                        "is in a network namespace with \(unmade.joined(separator: ", ")), which the restore, making a new namespace, would not make"
                    )
                }
                dump.task.networkNamespace = record
            }
        ]
    }
}

/// Reading and making a namespace's configuration: links, addresses and routes over rtnetlink
/// (`RouteNetlink`), sysctls under /proc/sys/net, and what is only read to be refused (policy
/// routing rules, permanent neighbours, firewall tables) through `ip` and `nft`.
enum NetworkConfiguration {
    /// The kind a link's record names: "loopback", its IFLA_INFO_KIND ("veth", "bridge"...) or
    /// its device type ("ether", "none", "arphrd-N").
    private static func kind(of link: RouteNetlink.Link) -> String {
        if link.type == RouteNetlink.loopbackType { return "loopback" }
        if let kind = link.kind, !kind.isEmpty { return kind }
        switch link.type {
        case 1: return "ether"
        case 65534: return "none"
        default: return "arphrd-\(link.type)"
        }
    }

    /// The address flags a restore makes again: IFA_F_SECONDARY (by the order of the
    /// addresses), IFA_F_NODAD, IFA_F_TENTATIVE (gone at once, as IFA_F_NODAD adds them) and
    /// IFA_F_PERMANENT.
    private static let restoredAddressFlags: UInt32 = 0x01 | 0x02 | 0x40 | RouteNetlink.permanentAddress

    /// RTNH_F_ONLINK, the one flag of a route the restore sets again (the others the kernel
    /// shows are the state of its next hop: RTNH_F_LINKDOWN, RTNH_F_DEAD...).
    private static let onLinkRouteFlag: UInt32 = 4

    /// What a new namespace shows of policy routing, `ip rule show` and `ip -6 rule show`.
    private static let defaultRules: Set<String> = [
        "4 0:\tfrom all lookup local", "4 32766:\tfrom all lookup main", "4 32767:\tfrom all lookup default",
        "6 0:\tfrom all lookup local", "6 32766:\tfrom all lookup main",
    ]

    /// A read of the configuration of a tree's namespace, on a thread of its own.
    private final class Reading: Sendable {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<Amber_NetworkNamespace, AmberError>?>(nil)
    }

    /// The reads started, by the PID of the tree's root.
    private static let readings = Mutex<[Int32: Reading]>([:])

    /// Starts reading the configuration of the namespace of the tree of `root`, once per dump.
    static func startReading(of root: ProcessName) {
        let reading = Reading()
        let started = readings.withLock { readings in
            guard readings[root.pid] == nil else { return false }
            readings[root.pid] = reading
            return true
        }
        guard started else { return }
        DispatchQueue.global().async {
            let result: Result<Amber_NetworkNamespace, AmberError>
            do {
                result = .success(try read(of: root.pid, tree: root))
            } catch let error as AmberError {
                result = .failure(error)
            } catch {
                result = .failure(AmberError(.failure, "\(error)"))
            }
            reading.result.withLock { $0 = result }
            reading.done.signal()
        }
    }

    /// The configuration of the namespace of the tree of `root`, read beside the dump.
    static func take(of root: ProcessName) throws -> Amber_NetworkNamespace {
        startReading(of: root)
        let reading = readings.withLock { $0.removeValue(forKey: root.pid) }!
        reading.done.wait()
        return try reading.result.withLock { $0! }.get()
    }

    /// The configuration of the namespace of `pid`, the tree's root.
    private static func read(of pid: Int32, tree: ProcessName) throws -> Amber_NetworkNamespace {
        let namespace = try NetworkNamespace.of(pid: pid)
        var record = Amber_NetworkNamespace()
        record.inode = namespace.inode
        do {
            try namespace.inside {
                let netlink = try RouteNetlink()
                let links = try netlink.links()
                let names = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
                readLinks(links, names: names, into: &record)
                try readAddresses(netlink, names: names, into: &record)
                try readRoutes(netlink, names: names, into: &record)
                try readUnrestorable(into: &record)
                readUnmade(into: &record)
                try readAgainstNewNamespace(into: &record)
            }
        } catch {
            throw AmberError(
                .failure, "cannot read the network namespace net:[\(namespace.inode)] of process \(tree): \(error)")
        }
        return record
    }

    private static func readLinks(
        _ links: [RouteNetlink.Link], names: [Int32: String], into record: inout Amber_NetworkNamespace
    ) {
        for link in links {
            var recorded = Amber_NetworkLink()
            recorded.name = link.name
            recorded.kind = kind(of: link)
            recorded.mtu = link.mtu
            recorded.up = link.flags & RouteNetlink.up != 0
            if recorded.kind == "veth" { recorded.hardwareAddress = Data(link.hardwareAddress) }
            record.links.append(recorded)
            if link.master != 0 {
                record.unrestorable.append(
                    "the link \(link.name) attached to \(names[link.master] ?? "link \(link.master)")")
            }
            if recorded.kind == "veth" && link.pairedHere {
                record.unrestorable.append("the veth \(link.name), whose other end is in the namespace too")
            }
        }
    }

    private static func readAddresses(
        _ netlink: RouteNetlink, names: [Int32: String], into record: inout Amber_NetworkNamespace
    ) throws {
        for address in try netlink.addresses() {
            let link = names[address.link] ?? "link \(address.link)"
            let text = "\(InetAddress.text(address.address))/\(address.prefixLength) on \(link)"
            guard address.flags & ~restoredAddressFlags == 0 else {
                record.unrestorable.append(
                    "the address \(text) with flags 0x\(String(address.flags, radix: 16)) (autoconfigured, deprecated, without prefix route...)"
                )
                continue
            }
            if let label = address.label, label != link {
                record.unrestorable.append("the address \(text) labelled \(label)")
                continue
            }
            if !address.peer.isEmpty {
                record.unrestorable.append("the address \(text) with the peer \(InetAddress.text(address.peer))")
                continue
            }
            if address.routeMetric != 0 {
                record.unrestorable.append("the address \(text) with the metric \(address.routeMetric)")
                continue
            }
            var recorded = Amber_NetworkAddress()
            recorded.link = link
            recorded.address = Data(address.address)
            recorded.prefixLength = UInt32(address.prefixLength)
            recorded.scope = UInt32(address.scope)
            recorded.broadcast = Data(address.broadcast)
            record.addresses.append(recorded)
        }
    }

    /// The routes of the main table the kernel did not make itself are recorded; the kernel's
    /// own (RTPROT_KERNEL in the main and local tables) come back with the addresses and links,
    /// and any other is unrestorable.
    private static func readRoutes(
        _ netlink: RouteNetlink, names: [Int32: String], into record: inout Amber_NetworkNamespace
    ) throws {
        for route in try netlink.routes() {
            let ownTable = route.table == RouteNetlink.mainTable || route.table == 255
            if ownTable && route.protocol == RouteNetlink.kernelProtocol { continue }
            let link = route.outputLink == 0 ? nil : names[route.outputLink]
            guard route.table == RouteNetlink.mainTable, route.type == RouteNetlink.unicast, route.sourceLength == 0,
                route.otherAttributes.isEmpty, route.outputLink == 0 || link != nil
            else {
                record.unrestorable.append("the route \(describe(route, link: link))")
                continue
            }
            var recorded = Amber_NetworkRoute()
            recorded.family = UInt32(route.family)
            recorded.destination = Data(route.destination)
            recorded.destinationLength = UInt32(route.destinationLength)
            recorded.gateway = Data(route.gateway)
            recorded.link = link ?? ""
            if let priority = route.priority { recorded.priority = priority }
            recorded.preferredSource = Data(route.preferredSource)
            recorded.protocol = UInt32(route.protocol)
            recorded.scope = UInt32(route.scope)
            recorded.tos = UInt32(route.tos)
            recorded.flags = route.flags & onLinkRouteFlag
            record.routes.append(recorded)
        }
    }

    /// A route as `ip route` would show it, near enough to be recognised.
    private static func describe(_ route: RouteNetlink.Route, link: String?) -> String {
        var words = [
            route.destination.isEmpty
                ? "default" : "\(InetAddress.text(route.destination))/\(route.destinationLength)"
        ]
        if !route.gateway.isEmpty { words.append("via \(InetAddress.text(route.gateway))") }
        if route.outputLink != 0 { words.append("dev \(link ?? "link \(route.outputLink)")") }
        words.append("table \(route.table) proto \(route.protocol) type \(route.type)")
        if route.sourceLength != 0 { words.append("from a source prefix of \(route.sourceLength) bits") }
        if !route.otherAttributes.isEmpty {
            words.append("with attributes \(route.otherAttributes.map(String.init).joined(separator: ","))")
        }
        return "IPv\(route.family == UInt8(AF_INET) ? 4 : 6) " + words.joined(separator: " ")
    }

    /// Rules, neighbours and firewall tables that a new namespace is not made with.
    private static func readUnrestorable(into record: inout Amber_NetworkNamespace) throws {
        let ip = NetworkNamespaceState.ip
        for family in ["4", "6"] {
            let rules = try lines(run(ip, ["-\(family)", "rule", "show"])).map { "\(family) \($0)" }
            for rule in rules where !defaultRules.contains(rule) {
                record.unrestorable.append(
                    "the IPv\(family) routing rule \(rule.dropFirst(2).replacing("\t", with: " "))")
            }
            for rule in defaultRules.subtracting(rules).sorted() where rule.hasPrefix(family) {
                record.unrestorable.append(
                    "no IPv\(family) routing rule \(rule.dropFirst(2).replacing("\t", with: " ")), which a new namespace has"
                )
            }
        }
        for line in try lines(run(ip, ["neighbour", "show", "nud", "permanent"])) {
            record.unrestorable.append("the permanent neighbour \(line)")
        }
        guard access(NetworkNamespaceState.nft, X_OK) == 0 else {
            record.unrestorable.append(
                "its nftables rules, not read: \(NetworkNamespaceState.nft) is missing (Debian's nftables)")
            return
        }
        for line in try lines(run(NetworkNamespaceState.nft, ["list", "tables"]))
        where !(line.split(separator: " ").last?.hasPrefix(NetworkLock.prefix) ?? false) {
            record.unrestorable.append("the nftables \(line)")
        }
        let legacy =
            (try? ProcFS.read("/proc/thread-self/net/ip_tables_names")).map { String(decoding: $0, as: UTF8.self) }
            ?? ""
        for table in legacy.split(separator: "\n") {
            record.unrestorable.append("the iptables table \(table)")
        }
    }

    /// The tables a new namespace has its own of, as `ip` lists them: the IPv6 address labels
    /// and the MPTCP limits. Any difference is unrestorable.
    private static func tablesOfItsOwn() -> [String: [String]] {
        var tables: [String: [String]] = [:]
        for (what, arguments) in [
            ("the IPv6 address labels", ["addrlabel", "list"]), ("the MPTCP limits", ["mptcp", "limits"]),
        ] {
            tables[what] = ((try? run(NetworkNamespaceState.ip, arguments)).map(lines) ?? []).map(trimmed)
        }
        return tables
    }

    /// What `ip` and `tc` show that a restore does not make: IPsec policies and states,
    /// nexthop objects, MPTCP endpoints, queueing disciplines other than the default, link
    /// flags, queue lengths, groups, modes and aliases other than a new link's, and addresses
    /// with a lifetime.
    private static func readUnmade(into record: inout Amber_NetworkNamespace) {
        let ip = NetworkNamespaceState.ip
        for (what, arguments) in [
            ("the IPsec policy", ["xfrm", "policy", "list"]), ("the IPsec state", ["xfrm", "state", "list"]),
            ("the nexthop", ["nexthop", "show"]), ("the MPTCP endpoint", ["mptcp", "endpoint", "show"]),
        ] {
            // A multi-line entry starts unindented.
            for line in (try? run(ip, arguments)).map(lines) ?? [] where !line.hasPrefix(" ") && !line.hasPrefix("\t") {
                record.unrestorable.append("\(what) \(trimmed(line))")
            }
        }
        for line in (try? run(NetworkNamespaceState.tc, ["qdisc", "show"])).map(lines) ?? [] {
            let words = line.split(separator: " ")
            guard words.count >= 2, words[0] == "qdisc", words[1] != "noqueue" else { continue }
            record.unrestorable.append("the queueing discipline \(trimmed(line))")
        }
        for line in (try? run(ip, ["-o", "link", "show"])).map(lines) ?? [] {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\\" }).map(String.init)
            guard words.count > 2 else { continue }
            let name = String(words[1].dropLast().split(separator: "@").first ?? "")
            let flags = Set(words[2].filter { $0 != "<" && $0 != ">" }.split(separator: ","))
            var odd = ["PROMISC", "ALLMULTI", "NOARP", "DEBUG", "DYNAMIC"].filter { flags.contains(Substring($0)) }
            if !flags.contains("LOOPBACK") && !flags.contains("MULTICAST") { odd.append("no MULTICAST") }
            func value(after key: String) -> String? {
                words.firstIndex(of: key).flatMap { $0 + 1 < words.count ? words[$0 + 1] : nil }
            }
            if let length = value(after: "qlen"), length != "1000" { odd.append("qlen \(length)") }
            if let group = value(after: "group"), group != "default" { odd.append("group \(group)") }
            if let mode = value(after: "mode"), mode != "DEFAULT" { odd.append("mode \(mode)") }
            if let alias = value(after: "alias") { odd.append("alias \(alias)") }
            if !odd.isEmpty { record.unrestorable.append("the link \(name) with \(odd.joined(separator: ", "))") }
        }
        for line in (try? run(ip, ["-o", "address", "show"])).map(lines) ?? [] {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\\" })
            guard let at = words.firstIndex(of: "valid_lft"), at + 1 < words.count, words[at + 1] != "forever",
                words.count > 3
            else { continue }
            record.unrestorable.append(
                "the address \(words[3]) on \(words[1]) with a lifetime (valid_lft \(words[at + 1]))")
        }
    }

    /// `line` without the spaces and tabs at its ends.
    private static func trimmed(_ line: String) -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return String(line.drop(while: isBlank).reversed().drop(while: isBlank).reversed())
    }

    private static func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map { String($0) }.filter { !$0.isEmpty }
    }

    /// What of the calling thread's namespace differs from a new namespace's, made for the
    /// comparison: the writable sysctls under /proc/sys/net whose value differs from what a
    /// restore would find (a new namespace's, or for a link of the namespace's own,
    /// net.ipv4.conf.LINK..., what the namespace's "default" gives a link made there), of which
    /// those of `NetworkSysctls` are recorded and the others unrestorable; and the tables a new
    /// namespace has its own of (`tablesOfItsOwn`), unrestorable where they differ.
    private static func readAgainstNewNamespace(into record: inout Amber_NetworkNamespace) throws {
        let current = sysctls()
        let currentTables = tablesOfItsOwn()
        let own = try NetworkNamespace.ofThisThread()
        try NetworkNamespace.enterNew()
        let fresh: [String: String]
        let freshTables: [String: [String]]
        do {
            defer { own.enterOrAbort() }
            fresh = sysctls()
            freshTables = tablesOfItsOwn()
        }
        for (what, lines) in currentTables.sorted(by: { $0.key < $1.key }) where lines != freshTables[what] {
            record.unrestorable.append("\(what) \(lines.joined(separator: "; ")) (a new namespace's differ)")
        }
        let links = Set(record.links.map(\.name))
        for path in current.keys.sorted() {
            let baseline: String?
            if fresh[path] == nil, let link = NetworkSysctls.link(of: path) {
                baseline = current[path.replacing("/\(link)/", with: "/default/")]
            } else {
                baseline = fresh[path]
            }
            guard let baseline, let value = current[path], value != baseline else { continue }
            guard NetworkSysctls.isRestored(path, links: links) else {
                record.unrestorable.append(
                    "the sysctl net.\(path.replacing("/", with: ".")) = \(value) (\(baseline) in a new namespace), which amber does not set"
                )
                continue
            }
            var sysctl = Amber_NetworkSysctl()
            sysctl.path = path
            sysctl.value = value
            record.sysctls.append(sysctl)
        }
        // Writing one that spreads to every link overwrites each link's own: then each link's
        // is recorded too, whatever a new namespace's link has, and written after it.
        let recorded = Set(record.sysctls.map(\.path))
        for spread in record.sysctls.compactMap({ NetworkSysctls.spread(by: $0.path) }) {
            for path in current.keys.sorted() where !recorded.contains(path) {
                let components = path.split(separator: "/").map(String.init)
                guard components.count == 4, components[0] == spread.family, components[1] == "conf",
                    components[2] != "all", components[3] == spread.name,
                    NetworkSysctls.isRestored(path, links: links), let value = current[path]
                else { continue }
                var sysctl = Amber_NetworkSysctl()
                sysctl.path = path
                sysctl.value = value
                record.sysctls.append(sysctl)
            }
        }
    }

    /// Every writable and readable sysctl under /proc/sys/net, by its path under it.
    private static func sysctls() -> [String: String] {
        var values: [String: String] = [:]
        func walk(_ path: String) {
            guard let directory = opendir(path.isEmpty ? "/proc/sys/net" : "/proc/sys/net/\(path)") else { return }
            defer { closedir(directory) }
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let child = path.isEmpty ? name : "\(path)/\(name)"
                if entry.pointee.d_type == UInt8(DT_DIR) {
                    walk(child)
                } else if access("/proc/sys/net/\(child)", W_OK) == 0,
                    let bytes = try? ProcFS.read("/proc/sys/net/\(child)")
                {
                    var value = String(decoding: bytes, as: UTF8.self)
                    if value.hasSuffix("\n") { value.removeLast() }
                    values[child] = value
                }
            }
        }
        // Every one, net.core, net.unix, net.netfilter and net.mptcp too: one that differs
        // from a new namespace's is restored, or recorded as not.
        walk("")
        return values
    }

    private static func readSysctl(_ path: String) -> String? {
        guard let bytes = try? ProcFS.read("/proc/sys/net/\(path)") else { return nil }
        var value = String(decoding: bytes, as: UTF8.self)
        if value.hasSuffix("\n") { value.removeLast() }
        return value
    }

    private static func writeSysctl(_ sysctl: Amber_NetworkSysctl) throws {
        let path = "/proc/sys/net/\(sysctl.path)"
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw LinuxError.current("open \(path)") }
        defer { close(fd) }
        let bytes = Array("\(sysctl.value)\n".utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else {
            throw LinuxError.current("write \(sysctl.value) to \(path)")
        }
    }

    /// What a new namespace made for `record` would lack.
    static func unmade(_ record: Amber_NetworkNamespace) -> [String] {
        let loopback = NetworkNamespaceState.loopback
        let others = record.links.filter { ($0.name != loopback || $0.kind != "loopback") && $0.kind != "veth" }
        var unrestorable = others.map { "the \($0.kind) link \($0.name)" } + record.unrestorable
        if !record.links.contains(where: { $0.name == loopback }) {
            unrestorable.append("no loopback link \(loopback)")
        }
        return unrestorable
    }

    /// Makes the calling thread's namespace, a new one, into `record`'s, or refuses, naming
    /// what it cannot make. Each veth end is made with its other end in `own` (amber's
    /// namespace) as `veths` name it, attached to its bridge and up. Called before any task is
    /// made; on failure the other ends made are deleted.
    static func make(_ record: Amber_NetworkNamespace, veths: [ExternalVeth], own: NetworkNamespace) throws(AmberError)
    {
        let refusal = "the image's tree was in the network namespace net:[\(record.inode)]"
        let vethLinks = record.links.filter { $0.kind == "veth" }
        let unrestorable = unmade(record)
        guard unrestorable.isEmpty else {
            throw AmberError(
                .unsupported,
                "\(refusal), with \(unrestorable.joined(separator: ", ")): a new namespace is made with a loopback link and veth ends alone; restore it into a namespace made for it with --join-ns net:PATH"
            )
        }
        let external = Dictionary(veths.map { ($0.inside, $0) }, uniquingKeysWith: { first, _ in first })
        let missing = vethLinks.filter { external[$0.name] == nil }
        guard missing.isEmpty else {
            throw AmberError(
                .unsupported,
                "\(refusal), with \(missing.map { "the veth link \($0.name)" }.joined(separator: ", ")), whose other end was outside it: name where each goes with --external veth[NAME]:OUTSIDE_NAME[@BRIDGE] (or restore into a namespace made for it with --join-ns net:PATH)"
            )
        }
        for veth in veths where !vethLinks.contains(where: { $0.name == veth.inside }) {
            throw AmberError(
                .failure, "--external \(veth.argument): the image's namespace has no veth link \(veth.inside)")
        }
        var madeOutside: [String] = []
        let outside: RouteNetlink
        do {
            outside = try own.inside { try RouteNetlink() }
        } catch {
            throw AmberError(.failure, "cannot open rtnetlink in amber's network namespace: \(error)")
        }
        do {
            try checkOutside(veths, outside)
            try makeInside(record, veths: veths, vethLinks: vethLinks, outside: outside, own: own) {
                madeOutside.append($0)
            }
        } catch {
            if let links = try? outside.links() {
                for link in links where madeOutside.contains(link.name) { try? outside.deleteLink(link.index) }
            }
            if let error = error as? AmberError {
                throw AmberError(error.code, "cannot make the new network namespace of \(refusal): \(error.message)")
            }
            let code: AmberError.Code =
                (error as? LinuxError)?.errno == .notPermitted ? .permissionDenied : .restoreFailed
            throw AmberError(code, "cannot make the new network namespace of \(refusal): \(error)")
        }
    }

    /// The other ends' names are free in amber's namespace and each bridge named is a bridge.
    private static func checkOutside(_ veths: [ExternalVeth], _ outside: RouteNetlink) throws {
        let links = try outside.links()
        for veth in veths {
            if links.contains(where: { $0.name == veth.outside }) {
                throw AmberError(
                    .restoreFailed,
                    "--external \(veth.argument): a link \(veth.outside) is already in amber's namespace")
            }
            if let bridge = veth.bridge, !links.contains(where: { $0.name == bridge && $0.kind == "bridge" }) {
                throw AmberError(
                    .restoreFailed, "--external \(veth.argument): amber's namespace has no bridge \(bridge)")
            }
        }
    }

    /// The steps of `make`, in the new namespace: the namespace-wide sysctls (so that the links
    /// made next get its "default" settings), the veth pairs, each link's MAC and MTU, the
    /// links' own sysctls, the other ends attached and up, the links up, the addresses, the
    /// links recorded down set down, the routes; then what was made is read back.
    private static func makeInside(
        _ record: Amber_NetworkNamespace, veths: [ExternalVeth], vethLinks: [Amber_NetworkLink], outside: RouteNetlink,
        own: NetworkNamespace, madeOutside: (String) -> Void
    ) throws {
        let inside = try RouteNetlink()
        let vethNames = Set(vethLinks.map(\.name))
        let (linkSysctls, namespaceSysctls) = (
            record.sysctls.filter { NetworkSysctls.link(of: $0.path).map(vethNames.contains) ?? false },
            record.sysctls.filter { !(NetworkSysctls.link(of: $0.path).map(vethNames.contains) ?? false) }
        )
        // Those that spread to every link first: each link's own is written after.
        for sysctl in namespaceSysctls where NetworkSysctls.spread(by: sysctl.path) != nil { try writeSysctl(sysctl) }
        for sysctl in namespaceSysctls where NetworkSysctls.spread(by: sysctl.path) == nil { try writeSysctl(sysctl) }
        for veth in veths {
            try inside.makeVeth(veth.inside, peer: veth.outside, peerNamespace: own.fd)
            madeOutside(veth.outside)
        }
        var indices = Dictionary(
            try inside.links().map { ($0.name, $0.index) }, uniquingKeysWith: { first, _ in first })
        for link in record.links {
            guard let index = indices[link.name] else {
                throw AmberError(.restoreFailed, "no link \(link.name) was made")
            }
            try inside.setLink(
                index, mtu: link.mtu, hardwareAddress: link.kind == "veth" ? [UInt8](link.hardwareAddress) : nil)
        }
        for sysctl in linkSysctls { try writeSysctl(sysctl) }
        let outsideIndices = Dictionary(
            try outside.links().map { ($0.name, $0.index) }, uniquingKeysWith: { first, _ in first })
        for veth in veths {
            guard let index = outsideIndices[veth.outside] else {
                throw AmberError(.restoreFailed, "the other end \(veth.outside) was not made")
            }
            try outside.setLink(index, master: veth.bridge.flatMap { outsideIndices[$0] }, up: true)
        }
        for link in record.links { try inside.setLink(indices[link.name]!, up: true) }
        indices = Dictionary(try inside.links().map { ($0.name, $0.index) }, uniquingKeysWith: { first, _ in first })
        let wanted = record.addresses.map { address in
            RouteNetlink.Address(
                family: address.address.count == 4 ? UInt8(AF_INET) : UInt8(AF_INET6), link: indices[address.link]!,
                address: [UInt8](address.address), prefixLength: UInt8(address.prefixLength),
                scope: UInt8(address.scope), broadcast: [UInt8](address.broadcast))
        }
        func same(_ one: RouteNetlink.Address, _ other: RouteNetlink.Address) -> Bool {
            one.link == other.link && one.address == other.address && one.prefixLength == other.prefixLength
        }
        var present = try inside.addresses()
        for address in wanted where !present.contains(where: { same($0, address) }) {
            try inside.addAddress(address)
        }
        for address in present where !wanted.contains(where: { same($0, address) }) {
            try inside.deleteAddress(address)
        }
        for link in record.links where !link.up { try inside.setLink(indices[link.name]!, up: false) }
        present = try inside.addresses()
        let names = Dictionary(indices.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
        func text(_ addresses: [RouteNetlink.Address]) -> [String] {
            addresses.map { "\(InetAddress.text($0.address))/\($0.prefixLength) on \(names[$0.link] ?? "?")" }.sorted()
        }
        guard present.count == wanted.count, wanted.allSatisfy({ address in present.contains { same($0, address) } })
        else {
            throw AmberError(
                .restoreFailed, "its addresses came out as \(text(present)), not \(text(wanted))")
        }
        for route in record.routes {
            var made = RouteNetlink.Route(
                family: UInt8(route.family), destinationLength: UInt8(route.destinationLength),
                table: RouteNetlink.mainTable, protocol: UInt8(route.protocol), scope: UInt8(route.scope),
                type: RouteNetlink.unicast)
            made.tos = UInt8(route.tos)
            made.flags = route.flags
            made.destination = [UInt8](route.destination)
            made.gateway = [UInt8](route.gateway)
            made.outputLink = route.link.isEmpty ? 0 : indices[route.link]!
            made.priority = route.hasPriority ? route.priority : nil
            made.preferredSource = [UInt8](route.preferredSource)
            try inside.addRoute(made)
        }
        for sysctl in record.sysctls {
            let value = readSysctl(sysctl.path)
            guard value == sysctl.value else {
                throw AmberError(
                    .restoreFailed,
                    "its sysctl net.\(sysctl.path.replacing("/", with: ".")) reads \(value ?? "nothing") after it was set to \(sysctl.value)"
                )
            }
        }
    }

    /// Runs `tool` with `arguments` in the calling thread's namespace and returns what it
    /// printed; its standard error is in the error when it fails.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> String {
        guard access(tool, X_OK) == 0 else {
            throw AmberError(
                .failure, "\(tool) is missing (Debian's \(tool.hasSuffix("nft") ? "nftables" : "iproute2"))")
        }
        var output: [Int32] = [-1, -1]
        guard pipe(&output) == 0 else { throw LinuxError.current("pipe") }
        for end in output where fcntl(end, F_SETFD, FD_CLOEXEC) != 0 { throw LinuxError.current("fcntl") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, output[1], 2)
        var argv: [UnsafeMutablePointer<CChar>?] = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var child: pid_t = 0
        let spawned = ChildStarts.exclusive { posix_spawn(&child, tool, &actions, nil, &argv, [nil]) }
        close(output[1])
        defer { close(output[0]) }
        guard spawned == 0 else {
            throw AmberError(.failure, "cannot run \(tool): \(String(cString: strerror(spawned)))")
        }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(output[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        let text = String(decoding: bytes, as: UTF8.self)
        guard status == 0 else {
            throw AmberError(
                .failure,
                "\(([tool] + arguments).joined(separator: " ")) failed (status 0x\(String(status, radix: 16))): \(text.split(separator: "\n").first ?? "")"
            )
        }
        return text
    }
}
