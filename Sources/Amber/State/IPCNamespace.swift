import AmberImage
import Glibc
import LinuxKit

/// The IPC namespace of a tree, when it is not amber's: every process of the tree must be in its
/// root's, and the namespace must hold no System V message queue, semaphore set or shared memory
/// segment and no POSIX message queue (refused by name, before the tree is frozen and again at
/// the dump). The dump records its sysctls that differ from a new namespace's on the root's
/// record. The restore makes the tree's processes in one namespace, as for UTS
/// (`UTSNamespaceState`): the one `--join-ns ipc:PATH` names, as it is; without it, a new one
/// with the recorded sysctls. The ids the kernel gives the namespace's next new objects are not
/// restored beyond its *_next_id sysctls.
enum IPCNamespaceState {
    /// Whether the tree of `root` is in amber's namespace.
    static func isOwnNamespace(of root: Int32) throws -> Bool {
        try ProcFS.namespace(pid: root, kind: "ipc") == ProcFS.namespace(pid: getpid(), kind: "ipc")
    }

    /// Refuses the namespace of the tree of `root` if it holds any object, naming them.
    private static func checkEmpty(_ namespace: ThreadNamespace, root: ProcessName) throws {
        let objects: [String]
        do {
            objects = try namespace.inside {
                try IPCObjects.systemV() + IPCObjects.messageQueues().map { "the POSIX message queue /\($0)" }
            }
        } catch {
            throw AmberError(
                .failure,
                "cannot list the objects of the IPC namespace ipc:[\(namespace.inode)] of process \(root): \(error)")
        }
        guard objects.isEmpty else {
            throw AmberError.unsupported(
                root,
                "is in the IPC namespace ipc:[\(namespace.inode)], which holds \(objects.joined(separator: ", ")): an IPC namespace is restored empty",
                tree: root)
        }
    }

    private static func readSysctl(_ path: String) -> String? {
        guard let bytes = try? ProcFS.read("/proc/sys/\(path)") else { return nil }
        var value = String(decoding: bytes, as: UTF8.self)
        if value.hasSuffix("\n") { value.removeLast() }
        return value
    }

    private static func writeSysctl(_ sysctl: Amber_IpcSysctl) throws(LinuxError) {
        let path = "/proc/sys/\(sysctl.path)"
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw LinuxError.current("open \(path)") }
        defer { close(fd) }
        let bytes = Array("\(sysctl.value)\n".utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else {
            throw LinuxError.current("write \(sysctl.value) to \(path)")
        }
    }

    /// The namespace's sysctls that differ from a new namespace's.
    private static func sysctls(of namespace: ThreadNamespace) throws -> [Amber_IpcSysctl] {
        let current = try namespace.inside { IPCSysctls.paths.map(readSysctl) }
        let fresh = try ThreadNamespace.insideNew(.ipc) { IPCSysctls.paths.map(readSysctl) }
        return zip(IPCSysctls.paths, zip(current, fresh)).compactMap { path, values in
            guard let value = values.0, value != values.1 else { return nil }
            var sysctl = Amber_IpcSysctl()
            sysctl.path = path
            sysctl.value = value
            return sysctl
        }
    }

    /// Before the first task is made: moves the restoring thread into the namespace the tree of
    /// `root` is restored in, the one at `joining` (--join-ns ipc:PATH) or, for a tree dumped in
    /// a namespace other than the dumper's, a new one with its sysctls. Returns the thread's own
    /// namespace, to go back into once the tree runs; nil when it stays there.
    static func enter(for root: Amber_Task, joining path: String?) throws(AmberError) -> ThreadNamespace? {
        let own: ThreadNamespace
        do {
            own = try ThreadNamespace.ofThisThread(.ipc)
        } catch {
            throw AmberError(.failure, "cannot open the restorer's own IPC namespace: \(error)")
        }
        if let path {
            do throws(LinuxError) {
                let joined = try ThreadNamespace(path: path, kind: .ipc)
                if joined.inode == own.inode { return nil }
                try joined.enter()
            } catch {
                let why = error.errno == .invalidArgument ? "it is not an IPC namespace" : "\(error)"
                throw AmberError(
                    error.errno == .notPermitted ? .permissionDenied : .failure,
                    "cannot join --join-ns ipc:\(path): \(why)")
            }
            return own
        }
        guard root.hasIpcNamespace else { return nil }
        let record = root.ipcNamespace
        do throws(LinuxError) {
            try ThreadNamespace.enterNew(.ipc)
        } catch {
            throw AmberError(
                error.errno == .notPermitted ? .permissionDenied : .failure,
                "cannot make a new IPC namespace for the image's tree: \(error)")
        }
        for sysctl in record.sysctls {
            do throws(LinuxError) {
                try writeSysctl(sysctl)
            } catch {
                own.enterOrAbort()
                throw AmberError(
                    .restoreFailed,
                    "cannot set \(sysctl.path) in the new IPC namespace of the image's tree ipc:[\(record.inode)]: \(error)"
                )
            }
            let value = readSysctl(sysctl.path)
            guard value == sysctl.value else {
                own.enterOrAbort()
                throw AmberError(
                    .restoreFailed,
                    "/proc/sys/\(sysctl.path) reads \(value ?? "nothing") in the new IPC namespace of the image's tree after it was set to \(sysctl.value)"
                )
            }
        }
        return own
    }
}

extension IPCNamespaceState: StateKind {
    static var namespaceKinds: [String] { ["ipc"] }

    static func check(tree processes: [CheckedProcess]) throws {
        guard let root = processes.first?.tree, try !isOwnNamespace(of: root.pid) else { return }
        try checkEmpty(try ThreadNamespace.of(pid: root.pid, .ipc), root: root)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("ipc-namespace", .outside) { dump, _ in
                guard dump.pid == dump.tree.pid, try !isOwnNamespace(of: dump.pid) else { return }
                let namespace = try ThreadNamespace.of(pid: dump.pid, .ipc)
                try checkEmpty(namespace, root: dump.tree)
                var record = Amber_IpcNamespace()
                record.inode = namespace.inode
                record.sysctls = try sysctls(of: namespace)
                dump.task.ipcNamespace = record
            }
        ]
    }
}
