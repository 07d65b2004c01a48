/// The sysctls of an IPC namespace that a restore without --join-ns writes in the new
/// namespace it makes, by path under /proc/sys: every one the kernel keeps per IPC namespace,
/// a fixed list, so an image never names another file.
public enum IPCSysctls {
    public static let paths: [String] = [
        "kernel/msgmax", "kernel/msgmnb", "kernel/msgmni", "kernel/sem", "kernel/shmall", "kernel/shmmax",
        "kernel/shmmni", "kernel/shm_rmid_forced", "kernel/msg_next_id", "kernel/sem_next_id", "kernel/shm_next_id",
        "fs/mqueue/queues_max", "fs/mqueue/msg_max", "fs/mqueue/msgsize_max", "fs/mqueue/msg_default",
        "fs/mqueue/msgsize_default",
    ]
}

/// The checks of a tree's UTS and IPC namespaces (`Amber_UtsNamespace`, `Amber_IpcNamespace`):
/// names sethostname and setdomainname take, and sysctls of `IPCSysctls` with numbers for values.
extension TaskValidator {
    private static let ipcSysctlValueLimit = 64

    func validateUTSNamespace(_ namespace: Amber_UtsNamespace) throws(ImageError) {
        for (field, name) in [("hostname", namespace.hostname), ("domainname", namespace.domainname)] {
            guard name.utf8.count <= 64, !name.utf8.contains(0) else {
                throw invalid("uts_namespace.\(field)", "not a name of at most 64 bytes without NUL")
            }
        }
    }

    func validateIPCNamespace(_ namespace: Amber_IpcNamespace) throws(ImageError) {
        var paths: Set<String> = []
        for (index, sysctl) in namespace.sysctls.enumerated() {
            guard IPCSysctls.paths.contains(sysctl.path), paths.insert(sysctl.path).inserted else {
                throw invalid(
                    "ipc_namespace.sysctls[\(index)].path",
                    "\"\(sysctl.path)\" is not an IPC namespace's sysctl, or is there twice")
            }
            let value = sysctl.value.utf8
            guard !value.isEmpty, value.count <= Self.ipcSysctlValueLimit,
                value.allSatisfy({
                    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-")
                        || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t")
                })
            else {
                throw invalid("ipc_namespace.sysctls[\(index)].value", "not numbers")
            }
        }
    }
}

extension CrossRecordCheck {
    /// A tree is in one UTS and one IPC namespace: only the root's record says which.
    static func checkUTSAndIPCNamespaces(_ tasks: [Amber_Task]) throws(ImageError) {
        for task in tasks.dropFirst() where task.hasUtsNamespace || task.hasIpcNamespace {
            throw ImageError(
                .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                detail:
                    "\(task.hasUtsNamespace ? "uts" : "ipc")_namespace: only the root's record holds the tree's namespace"
            )
        }
    }
}
