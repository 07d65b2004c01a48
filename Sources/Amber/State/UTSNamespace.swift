import AmberImage
import Glibc
import LinuxKit

/// The UTS namespace of a tree, when it is not amber's: every process of the tree must be in
/// its root's. The dump records its host and domain names on the root's record. The restore
/// makes the tree's processes in one namespace: the restoring thread enters it before the first
/// process is cloned (a UTS namespace is a thread's, and its children get it) and leaves it once
/// the tree runs. That namespace is the one `--join-ns uts:PATH` names, as it is; without it, a
/// new one given the recorded names.
enum UTSNamespaceState {
    /// Whether the tree of `root` is in amber's namespace.
    static func isOwnNamespace(of root: Int32) throws -> Bool {
        try ProcFS.namespace(pid: root, kind: "uts") == ProcFS.namespace(pid: getpid(), kind: "uts")
    }

    /// Before the first task is made: moves the restoring thread into the namespace the tree of
    /// `root` is restored in, the one at `joining` (--join-ns uts:PATH) or, for a tree dumped in
    /// a namespace other than the dumper's, a new one with its names. Returns the thread's own
    /// namespace, to go back into once the tree runs; nil when it stays there.
    static func enter(for root: Amber_Task, joining path: String?) throws(AmberError) -> ThreadNamespace? {
        let own: ThreadNamespace
        do {
            own = try ThreadNamespace.ofThisThread(.uts)
        } catch {
            throw AmberError(.failure, "cannot open the restorer's own UTS namespace: \(error)")
        }
        if let path {
            do throws(LinuxError) {
                let joined = try ThreadNamespace(path: path, kind: .uts)
                if joined.inode == own.inode { return nil }
                try joined.enter()
            } catch {
                let why = error.errno == .invalidArgument ? "it is not a UTS namespace" : "\(error)"
                throw AmberError(
                    error.errno == .notPermitted ? .permissionDenied : .failure,
                    "cannot join --join-ns uts:\(path): \(why)")
            }
            return own
        }
        guard root.hasUtsNamespace else { return nil }
        let names = root.utsNamespace
        do throws(LinuxError) {
            try ThreadNamespace.enterNew(.uts)
        } catch {
            throw AmberError(
                error.errno == .notPermitted ? .permissionDenied : .failure,
                "cannot make a new UTS namespace for the image's tree: \(error)")
        }
        do throws(LinuxError) {
            try HostNames.set(hostname: names.hostname, domainname: names.domainname)
        } catch {
            own.enterOrAbort()
            throw AmberError(
                .restoreFailed, "cannot name the new UTS namespace of the image's tree uts:[\(names.inode)]: \(error)")
        }
        return own
    }
}

extension UTSNamespaceState: StateKind {
    static var namespaceKinds: [String] { ["uts"] }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("uts-namespace", .outside) { dump, _ in
                guard dump.pid == dump.tree.pid, try !isOwnNamespace(of: dump.pid) else { return }
                let namespace = try ThreadNamespace.of(pid: dump.pid, .uts)
                let names = try namespace.inside { HostNames.current() }
                var record = Amber_UtsNamespace()
                record.inode = namespace.inode
                record.hostname = names.hostname
                record.domainname = names.domainname
                dump.task.utsNamespace = record
            }
        ]
    }
}
