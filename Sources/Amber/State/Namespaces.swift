import Glibc
import LinuxKit

/// Namespaces (but PID and user namespaces, see `TreeState` and `CredentialState`, and the kinds
/// a kind of state of their own takes, its `namespaceKinds`: `NetworkNamespaceState`,
/// `MountNamespaceState`...): a restored task is made in amber's own, so a task in others is
/// refused until they can be recreated. Control groups are `CgroupState`'s.
enum NamespaceState {
    /// Amber's own namespaces, read once.
    private static let own: [String: String] = {
        let pid = getpid()
        var namespaces: [String: String] = [:]
        for kind in ProcFS.otherNamespaceKinds {
            guard let namespace = try? ProcFS.namespace(pid: pid, kind: kind) else { continue }
            namespaces[kind] = namespace
        }
        return namespaces
    }()

    static func check(pid: Int32, process: ProcessName, tree: ProcessName) throws {
        let restored = Set(StateKinds.all.flatMap { $0.namespaceKinds })
        // A kind that restores a namespace makes one for the whole tree: every process in its root's.
        for kind in restored.sorted() {
            let theirs = try ProcFS.namespace(pid: pid, kind: kind)
            let root = try ProcFS.namespace(pid: tree.pid, kind: kind)
            guard theirs == root else {
                throw AmberError.unsupported(
                    process,
                    "is in the \(name(of: kind)) namespace \(theirs), not its tree's root's \(root): a tree is restored into one \(name(of: kind)) namespace",
                    tree: tree)
            }
        }
        // unshare(CLONE_NEWPID) leaves the process in its PID namespace and makes its next
        // children in a new one, which its restored self would not.
        let pidNamespace = try ProcFS.namespace(pid: pid, kind: "pid")
        if let forChildren = try? ProcFS.namespace(pid: pid, kind: "pid_for_children"), forChildren != pidNamespace {
            throw AmberError.unsupported(
                process,
                "makes its children in the PID namespace \(forChildren), not its own \(pidNamespace) (unshare(CLONE_NEWPID), setns): not restored",
                tree: tree)
        }
        for kind in ProcFS.otherNamespaceKinds where !restored.contains(kind) {
            // A kernel without this kind of namespace has no such file for amber either.
            guard let ours = own[kind] else { continue }
            let theirs = try ProcFS.namespace(pid: pid, kind: kind)
            if theirs != ours {
                let what =
                    kind == "time_for_children"
                    ? "makes its children in the time namespace \(theirs) (unshare(CLONE_NEWTIME))"
                    : "is in the \(name(of: kind)) namespace \(theirs)"
                throw AmberError.unsupported(
                    process, "\(what), not amber's \(ours): namespaces are not supported yet", tree: tree)
            }
        }
    }

    private static func name(of kind: String) -> String {
        switch kind {
        case "mnt": "mount"
        case "net": "network"
        case "uts": "UTS"
        case "ipc": "IPC"
        default: kind
        }
    }
}

extension NamespaceState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        try check(pid: process.pid, process: process.name, tree: process.tree)
    }
}
