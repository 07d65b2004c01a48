import Glibc
import LinuxKit

/// The network lock of `--tcp-established`: an nftables table of amber's own, `inet
/// amber-lock-PID` (PID the dump's), whose rules drop every packet of the dumped TCP
/// connections, both ways, so that the peer sees no RST and no data is acknowledged that the
/// image does not hold. The dump adds each connection's rule before it reads the connection's
/// queues; it deletes the table when it lets the tree go on (`--leave-running`) or fails, and
/// keeps it when it kills the tree: then the restore deletes it once the connections are back,
/// or the user does (`nft delete table inet amber-lock-PID`) to give them up. Driven through
/// Debian's libnftables, loaded by amber (docs/security.md, "The network lock").
public struct NetworkLock: Sendable {
    /// The table's name.
    let table: String
    /// The file of the network namespace the table is in (the dumped tree's), nil for the
    /// calling thread's.
    var namespace: String? = nil

    static let prefix = "amber-lock-"

    /// The lock a dump by this process takes, in the network namespace of the tree of `root`.
    static func ofThisProcess(tree root: Int32) -> NetworkLock {
        NetworkLock(table: "\(prefix)\(getpid())", namespace: "/proc/\(root)/ns/net")
    }

    /// In `amber dump`, whose worker (`pid`) died by a signal: its lock, if it took one, goes
    /// (in the namespace of the tree of `root`, or ours once that is gone).
    public static func removeLock(ofDump pid: Int32, tree root: Int32) {
        let namespace = "/proc/\(root)/ns/net"
        try? NetworkLock(table: "\(prefix)\(pid)", namespace: access(namespace, F_OK) == 0 ? namespace : nil).remove()
    }

    /// The table and its chains, which block nothing yet. Hooking a new chain takes the kernel
    /// up to tens of milliseconds (an RCU grace period): made while the tree still runs, the
    /// frozen tree waits only for its rules (`block`).
    private var tableAndChains: [String] {
        [
            "add table inet \(table)",
            "add chain inet \(table) output { type filter hook output priority -300; policy accept; }",
            "add chain inet \(table) input { type filter hook input priority -300; policy accept; }",
        ]
    }

    /// Makes the table and its chains, with no rule: nothing is blocked yet.
    func prepare() throws(AmberError) {
        try run(tableAndChains)
    }

    /// Drops every packet between `local` and `peer`, both ways; makes the table first if it is not there.
    func block(_ local: InetAddress, _ peer: InetAddress) throws(AmberError) {
        // A dual-stack socket's connection to an IPv4 peer travels as IPv4.
        var (local, peer) = (local, peer)
        if let local4 = local.unmappedIPv4, let peer4 = peer.unmappedIPv4 { (local, peer) = (local4, peer4) }
        let ip = local.family == AF_INET6 ? "ip6" : "ip"
        let (l, p) = (Self.host(local), Self.host(peer))
        let outgoing = "\(ip) saddr \(l) \(ip) daddr \(p) tcp sport \(local.port) tcp dport \(peer.port) drop"
        let incoming = "\(ip) saddr \(p) \(ip) daddr \(l) tcp sport \(peer.port) tcp dport \(local.port) drop"
        try run(
            tableAndChains + [
                "add rule inet \(table) output \(outgoing)", "add rule inet \(table) output \(incoming)",
                "add rule inet \(table) input \(outgoing)", "add rule inet \(table) input \(incoming)",
            ])
    }

    /// Deletes the table, if it is there (adding a table that exists changes nothing; nft 1.0.6
    /// has no `destroy`). Asked first: a restore on another host than the dump's finds no
    /// table, and making one to delete it is a change, whose clean-up the kernel makes the
    /// library's socket wait for when it closes (`amber_nft_run`).
    func remove() throws(AmberError) {
        guard exists() else { return }
        try run(["add table inet \(table)", "delete table inet \(table)"])
    }

    /// Whether the table is there; true when nft cannot tell, for `remove` to report why.
    func exists() -> Bool {
        do {
            try run(["list table inet \(table)"])
            return true
        } catch {
            return !error.description.contains("No such file or directory")
        }
    }

    /// Runs nftables commands in the table's namespace.
    private func run(_ commands: [String]) throws(AmberError) {
        guard let namespace else { return try Self.run(commands) }
        do {
            try NetworkNamespace(path: namespace).inside { try Self.run(commands) }
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(.failure, "cannot enter the network namespace of the TCP connections' lock: \(error)")
        }
    }

    private static func host(_ address: InetAddress) -> String {
        var plain = address
        plain.port = 0
        plain.scopeID = 0
        let text = plain.description
        return address.family == AF_INET6 ? String(text.dropFirst().prefix { $0 != "]" }) : String(text.dropLast(2))
    }

    /// Runs `commands` as one nftables transaction (libnftables, in this process).
    private static func run(_ commands: [String]) throws(AmberError) {
        let script = commands.joined(separator: "; ")
        do {
            try Nftables.run(script)
        } catch {
            switch error {
            case .libraryMissing:
                throw AmberError(
                    .failure,
                    "cannot lock the network of the TCP connections: libnftables.so.1 is missing (Debian's libnftables1)"
                )
            case .refused(let message):
                throw AmberError(.failure, "nft '\(script)' failed: \(message)")
            }
        }
    }
}
