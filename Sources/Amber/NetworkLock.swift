import Glibc
import LinuxKit

/// The network lock of `--tcp-established`: an nftables table of amber's own, `inet
/// amber-lock-PID` (PID the dump's), whose rules drop every packet of the dumped TCP
/// connections, both ways, so that the peer sees no RST and no data is acknowledged that the
/// image does not hold. The dump adds each connection's rule before it reads the connection's
/// queues; it deletes the table when it lets the tree go on (`--leave-running`) or fails, and
/// keeps it when it kills the tree: then the restore deletes it once the connections are back,
/// or the user does (`nft delete table inet amber-lock-PID`) to give them up. Driven through
/// Debian's `nft` (docs/security.md, "The network lock").
public struct NetworkLock: Sendable {
    /// The table's name.
    let table: String
    /// The file of the network namespace the table is in (the dumped tree's), nil for the
    /// calling thread's.
    var namespace: String? = nil

    static let prefix = "amber-lock-"
    static let nft = "/usr/sbin/nft"

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

    /// Drops every packet between `local` and `peer`, both ways; makes the table first if it is not there.
    func block(_ local: InetAddress, _ peer: InetAddress) throws(AmberError) {
        let ip = local.family == AF_INET6 ? "ip6" : "ip"
        let (l, p) = (Self.host(local), Self.host(peer))
        let outgoing = "\(ip) saddr \(l) \(ip) daddr \(p) tcp sport \(local.port) tcp dport \(peer.port) drop"
        let incoming = "\(ip) saddr \(p) \(ip) daddr \(l) tcp sport \(peer.port) tcp dport \(local.port) drop"
        try run([
            "add table inet \(table)",
            "add chain inet \(table) output { type filter hook output priority -300; policy accept; }",
            "add chain inet \(table) input { type filter hook input priority -300; policy accept; }",
            "add rule inet \(table) output \(outgoing)", "add rule inet \(table) output \(incoming)",
            "add rule inet \(table) input \(outgoing)", "add rule inet \(table) input \(incoming)",
        ])
    }

    /// Deletes the table, if it is there (adding a table that exists changes nothing; nft 1.0.6
    /// has no `destroy`).
    func remove() throws(AmberError) {
        try run(["add table inet \(table)", "delete table inet \(table)"])
    }

    /// Runs `nft` in the table's namespace.
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

    /// Runs `nft` with `commands` as one transaction, its standard error kept for the message.
    private static func run(_ commands: [String]) throws(AmberError) {
        let script = commands.joined(separator: "; ")
        guard access(nft, X_OK) == 0 else {
            throw AmberError(
                .failure,
                "cannot lock the network of the TCP connections: \(nft) is missing (Debian's nftables package)")
        }
        var errorPipe: [Int32] = [-1, -1]
        guard pipe(&errorPipe) == 0 else {
            throw AmberError(.failure, "cannot run nft: \(LinuxError.current("pipe"))")
        }
        for end in errorPipe where fcntl(end, F_SETFD, FD_CLOEXEC) != 0 {
            throw AmberError(.failure, "cannot run nft: \(LinuxError.current("fcntl"))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, errorPipe[1], 2)
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup(nft), strdup(script), nil]
        defer { for argument in argv { free(argument) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, nft, &actions, nil, &argv, [nil])
        close(errorPipe[1])
        defer { close(errorPipe[0]) }
        guard spawned == 0 else {
            throw AmberError(.failure, "cannot run \(nft): \(String(cString: strerror(spawned)))")
        }
        var message = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(errorPipe[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            message += chunk[..<count]
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            let text = String(decoding: message, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            throw AmberError(.failure, "nft '\(script)' failed (status 0x\(String(status, radix: 16))): \(text)")
        }
    }
}
