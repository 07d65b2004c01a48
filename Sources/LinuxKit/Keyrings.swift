internal import CLinux

/// keyctl(2) operations and special keyring IDs, for the calling process and for calls
/// injected into a task.
public enum Keyrings {
    public static let getKeyringID: UInt64 = 0, joinSessionKeyring: UInt64 = 1, chown: UInt64 = 4, describe: UInt64 = 6,
        read: UInt64 = 11
    public static let threadKeyring = UInt64(bitPattern: -1), processKeyring = UInt64(bitPattern: -2)
    public static let sessionKeyring = UInt64(bitPattern: -3)

    /// The serial number of the calling process's session keyring, 0 when it has none.
    public static func ownSessionKeyring() throws(LinuxError) -> Int64 {
        let serial = try kernelResult(
            amber_keyctl(Int32(getKeyringID), sessionKeyring, 0, 0, 0), "keyctl(KEYCTL_GET_KEYRING_ID, session)"
        ).get()
        var description = [UInt8](repeating: 0, count: 128)
        let length = description.withUnsafeMutableBytes {
            amber_keyctl(Int32(describe), UInt64(serial), UInt64(UInt(bitPattern: $0.baseAddress)), UInt64($0.count), 0)
        }
        _ = try kernelResult(length, "keyctl(KEYCTL_DESCRIBE, \(serial))").get()
        return isUserSessionKeyring(description: description) ? 0 : Int64(serial)
    }

    /// Whether KEYCTL_DESCRIBE's answer ("keyring;uid;gid;perm;description") names a user's
    /// session keyring ("_uid_ses.UID"): what a process without a session keyring of its own
    /// finds in its place.
    public static func isUserSessionKeyring(description: [UInt8]) -> Bool {
        let text = String(decoding: description.prefix { $0 != 0 }, as: UTF8.self)
        return text.split(separator: ";", maxSplits: 4).last?.hasPrefix("_uid_ses.") == true
    }
}
