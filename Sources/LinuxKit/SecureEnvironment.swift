internal import CLinux

/// The calling process's environment as secure_getenv(3) reads it: empty for a set-user-ID,
/// set-group-ID or file-capability program (AT_SECURE), whose environment its caller chose.
public enum SecureEnvironment {
    public static func value(of name: String) -> String? {
        amber_secure_getenv(name).map { String(cString: $0) }
    }
}
