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
/// loopback device alone with nothing unrestorable, else the restore is refused naming what.
/// The configuration is read and made through Debian's iproute2 (`ip`) and `nft`, run in the
/// namespace (docs/security.md, "Network namespaces").
enum NetworkNamespaceState {
    static let ip = "/bin/ip"
    static let nft = "/usr/sbin/nft"

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
    /// in a namespace other than the dumper's, a new one made as the image says. Returns the
    /// thread's own namespace, to go back into once the tree runs; nil when it stays there.
    static func enter(for root: Amber_Task, joining path: String?) throws(AmberError) -> NetworkNamespace? {
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
        guard root.hasNetworkNamespace else { return nil }
        do throws(LinuxError) {
            try NetworkNamespace.enterNew()
        } catch {
            throw AmberError(
                error.errno == .notPermitted ? .permissionDenied : .failure,
                "cannot make a new network namespace for the image's tree: \(error)")
        }
        do {
            try NetworkConfiguration.make(root.networkNamespace)
        } catch {
            own.enterOrAbort()
            throw error
        }
        return own
    }
}

extension NetworkNamespaceState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        let theirs = try namespace(of: process.pid)
        let root = try namespace(of: process.tree.pid)
        guard theirs == root else {
            throw AmberError.unsupported(
                process.name,
                "is in the network namespace \(theirs), not its tree's root's \(root): a tree is restored into one network namespace",
                tree: process.tree)
        }
    }

    /// The configuration is the namespace's, not the tree's: processes outside the tree may
    /// change it at any time, frozen tree or not. So it is read beside the dump from the first
    /// preflight on (`ip` and `nft` runs and a new namespace to compare with, tens of
    /// milliseconds), and the tree is not kept frozen for it.
    static func check(tree processes: [CheckedProcess]) throws {
        guard let root = processes.first?.tree, try !isOwnNamespace(of: root.pid) else { return }
        NetworkConfiguration.startReading(of: root)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("network-namespace", .outside) { dump, _ in
                guard dump.pid == dump.tree.pid, try !isOwnNamespace(of: dump.pid) else { return }
                dump.task.networkNamespace = try NetworkConfiguration.take(of: dump.tree)
            }
        ]
    }
}

/// Reading and making a namespace's configuration.
enum NetworkConfiguration {
    /// A link as `ip -json -details link show` lists it.
    private struct Link: Decodable {
        struct Info: Decodable {
            let kind: String?
            enum CodingKeys: String, CodingKey { case kind = "info_kind" }
        }
        let ifname: String
        let flags: [String]
        let mtu: UInt32
        let type: String
        let linkinfo: Info?
        enum CodingKeys: String, CodingKey {
            case ifname, flags, mtu, linkinfo
            case type = "link_type"
        }
    }

    /// A link's addresses as `ip -json address show` lists them.
    private struct Addresses: Decodable {
        struct Address: Decodable {
            let family: String
            let local: String
            let prefixlen: UInt32
        }
        let ifname: String
        let addresses: [Address]
        enum CodingKeys: String, CodingKey {
            case ifname
            case addresses = "addr_info"
        }
    }

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
                try readLinks(into: &record)
                try readUnrestorable(into: &record)
                record.sysctls = try differingSysctls()
            }
        } catch {
            throw AmberError(
                .failure, "cannot read the network namespace net:[\(namespace.inode)] of process \(tree): \(error)")
        }
        return record
    }

    private static func readLinks(into record: inout Amber_NetworkNamespace) throws {
        let decoder = JSONDecoder()
        for link in try decoder.decode(
            [Link].self, from: Data(try run(NetworkNamespaceState.ip, ["-json", "-details", "link", "show"]).utf8))
        {
            var recorded = Amber_NetworkLink()
            recorded.name = link.ifname
            recorded.kind = link.type == "loopback" ? "loopback" : link.linkinfo?.kind ?? link.type
            recorded.mtu = link.mtu
            recorded.up = link.flags.contains("UP")
            record.links.append(recorded)
        }
        for link in try decoder.decode(
            [Addresses].self, from: Data(try run(NetworkNamespaceState.ip, ["-json", "address", "show"]).utf8))
        {
            for address in link.addresses where address.family == "inet" || address.family == "inet6" {
                guard let bytes = InetAddress.bytes(address.local) else {
                    throw AmberError(
                        .failure, "ip shows the address \(address.local) of \(link.ifname), which does not parse")
                }
                var recorded = Amber_NetworkAddress()
                recorded.link = link.ifname
                recorded.address = Data(bytes)
                recorded.prefixLength = address.prefixlen
                record.addresses.append(recorded)
            }
        }
    }

    /// Routes, rules, neighbours and firewall tables that a new namespace is not made with.
    private static func readUnrestorable(into record: inout Amber_NetworkNamespace) throws {
        let ip = NetworkNamespaceState.ip
        for family in ["4", "6"] {
            for line in try lines(run(ip, ["-\(family)", "route", "show", "table", "all"])) {
                // Routes the kernel makes for an address or a link, in the main or local table.
                let ownTable = !line.contains(" table ") || line.contains(" table local ")
                if ownTable && line.contains(" proto kernel ") { continue }
                record.unrestorable.append("the IPv\(family) route \(line)")
            }
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

    private static func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map { String($0) }.filter { !$0.isEmpty }
    }

    /// The writable sysctls under /proc/sys/net/ipv4 and ipv6 of the calling thread's namespace
    /// whose value differs from a new namespace's, or that a new namespace lacks (those of a
    /// link of its own).
    private static func differingSysctls() throws -> [Amber_NetworkSysctl] {
        let current = sysctls()
        let own = try NetworkNamespace.ofThisThread()
        try NetworkNamespace.enterNew()
        defer { own.enterOrAbort() }
        let fresh = sysctls()
        return current.keys.sorted().compactMap { path in
            guard let fresh = fresh[path], fresh != current[path] else { return nil }
            var sysctl = Amber_NetworkSysctl()
            sysctl.path = path
            sysctl.value = current[path] ?? ""
            return sysctl
        }
    }

    /// Every writable and readable sysctl under /proc/sys/net/ipv4 and ipv6, by its path under
    /// /proc/sys/net.
    private static func sysctls() -> [String: String] {
        var values: [String: String] = [:]
        func walk(_ path: String) {
            guard let directory = opendir("/proc/sys/net/\(path)") else { return }
            defer { closedir(directory) }
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let child = "\(path)/\(name)"
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
        walk("ipv4")
        walk("ipv6")
        return values
    }

    /// Makes the calling thread's namespace, a new one, into `record`'s, or refuses, naming
    /// what it cannot make. Called before any task is made.
    static func make(_ record: Amber_NetworkNamespace) throws(AmberError) {
        let refusal = "the image's tree was in the network namespace net:[\(record.inode)]"
        let others = record.links.filter { $0.name != NetworkNamespaceState.loopback || $0.kind != "loopback" }
        var unrestorable = others.map { "the \($0.kind) link \($0.name)" } + record.unrestorable
        if !record.links.contains(where: { $0.name == NetworkNamespaceState.loopback }) {
            unrestorable.append("no loopback link \(NetworkNamespaceState.loopback)")
        }
        guard unrestorable.isEmpty else {
            throw AmberError(
                .unsupported,
                "\(refusal), with \(unrestorable.joined(separator: ", ")): a new namespace is made with a loopback link alone; restore it into a namespace made for it with --join-ns net:PATH"
            )
        }
        let loopback = record.links.first { $0.name == NetworkNamespaceState.loopback }!
        let ip = NetworkNamespaceState.ip
        do {
            try run(ip, ["link", "set", "dev", loopback.name, "mtu", "\(loopback.mtu)", "up"])
            let wanted = Set(record.addresses.map { AddressText($0) })
            var present = Set(try readAddresses())
            for address in present.subtracting(wanted) {
                try run(ip, ["address", "delete", address.text, "dev", address.link])
            }
            for address in wanted.subtracting(present).sorted(by: { $0.text < $1.text }) {
                try run(ip, ["address", "add", address.text, "dev", address.link])
            }
            if !loopback.up { try run(ip, ["link", "set", "dev", loopback.name, "down"]) }
            present = Set(try readAddresses())
            guard present == wanted else {
                throw AmberError(
                    .restoreFailed,
                    "its addresses came out as \(present.map(\.text).sorted()), not \(wanted.map(\.text).sorted())")
            }
            for sysctl in record.sysctls {
                let path = "/proc/sys/net/\(sysctl.path)"
                let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { throw LinuxError.current("open \(path)") }
                defer { close(fd) }
                let bytes = Array("\(sysctl.value)\n".utf8)
                guard write(fd, bytes, bytes.count) == bytes.count else {
                    throw LinuxError.current("write \(sysctl.value) to \(path)")
                }
            }
        } catch let error as AmberError {
            throw AmberError(error.code, "cannot make the new network namespace of \(refusal): \(error.message)")
        } catch {
            throw AmberError(.restoreFailed, "cannot make the new network namespace of \(refusal): \(error)")
        }
    }

    /// An address as `ip` takes it, "ADDRESS/PREFIX", on its link.
    private struct AddressText: Hashable {
        let link: String
        let text: String

        init(_ record: Amber_NetworkAddress) {
            link = record.link
            text = "\(InetAddress.text([UInt8](record.address)))/\(record.prefixLength)"
        }

        init(link: String, text: String) {
            self.link = link
            self.text = text
        }
    }

    private static func readAddresses() throws -> [AddressText] {
        try JSONDecoder().decode(
            [Addresses].self, from: Data(try run(NetworkNamespaceState.ip, ["-json", "address", "show"]).utf8)
        ).flatMap { link in
            try link.addresses.filter { $0.family == "inet" || $0.family == "inet6" }.map { address in
                guard let bytes = InetAddress.bytes(address.local) else {
                    throw AmberError(.failure, "ip shows the address \(address.local), which does not parse")
                }
                var record = Amber_NetworkAddress()
                record.link = link.ifname
                record.address = Data(bytes)
                record.prefixLength = address.prefixlen
                return AddressText(record)
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
        let spawned = posix_spawn(&child, tool, &actions, nil, &argv, [nil])
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
