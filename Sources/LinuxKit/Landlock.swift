internal import CLinux

/// Landlock, the unprivileged sandbox: its domains are in the credentials of each thread,
/// and the kernel shows them nowhere.
public enum Landlock {
    /// The Landlock ABI version this kernel runs, or nil where it has no Landlock or runs it
    /// disabled (landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION).
    public static func abiVersion() -> Int? {
        let version = amber_landlock_abi_version()
        return version > 0 ? Int(version) : nil
    }
}
