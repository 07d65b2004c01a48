/// The namespaces and control groups a process lives in.
extension ProcFS {
    /// The namespace kinds under /proc/PID/ns that are not PID or user namespaces;
    /// `time_for_children` is the one the process's next children will be in.
    public static let otherNamespaceKinds = ["mnt", "net", "uts", "ipc", "cgroup", "time", "time_for_children"]

    /// The namespace of kind `kind` ("uts", "mnt", ...) process `pid` is in, e.g. "uts:[4026531838]".
    public static func namespace(pid: Int32, kind: String) throws(LinuxError) -> String {
        try link("/proc/\(pid)/ns/\(kind)")
    }

    /// The lines of /proc/PID/cgroup ("hierarchy-ID:controllers:path"), one per hierarchy.
    public static func cgroups(pid: Int32) throws(LinuxError) -> [String] {
        ProcText.lines(try read("/proc/\(pid)/cgroup")[...]).map { ProcText.string($0) }
    }
}
