/// Capability numbers (CAP_*): bit positions in a capability set.
public enum Capability {
    public static let chown = 0
    public static let setgid = 6, setuid = 7, setpcap = 8
    public static let ipcLock = 14
    public static let sysAdmin = 21, sysNice = 23, sysResource = 24
    public static let auditControl = 30, wakeAlarm = 35
    public static let checkpointRestore = 40
    public static let netBindService = 10, netAdmin = 12, netRaw = 13
}

/// securebits (SECBIT_*), as PR_GET_SECUREBITS reports them and PR_SET_SECUREBITS takes them.
public enum Securebits {
    public static let keepCaps: UInt32 = 1 << 4, keepCapsLocked: UInt32 = 1 << 5
    public static let noCapAmbientRaise: UInt32 = 1 << 6
    /// Every SECBIT_*_LOCKED bit: the odd ones.
    public static let locks: UInt32 = 0xaaa
}

/// capset(2) version 3: the header and the three capability sets as its two data structs.
public struct CapsetArguments: Sendable {
    public var effective: UInt64
    public var permitted: UInt64
    public var inheritable: UInt64

    public init(effective: UInt64, permitted: UInt64, inheritable: UInt64) {
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
    }

    /// struct __user_cap_header_struct: _LINUX_CAPABILITY_VERSION_3 for the calling thread (pid 0).
    public static let header: [UInt8] = withUnsafeBytes(of: (UInt32(0x2008_0522), UInt32(0))) { Array($0) }

    /// Two struct __user_cap_data_struct: the low 32 bits of each set, then the high ones.
    public var data: [UInt8] {
        let words: [UInt32] = [
            UInt32(truncatingIfNeeded: effective), UInt32(truncatingIfNeeded: permitted),
            UInt32(truncatingIfNeeded: inheritable),
            UInt32(truncatingIfNeeded: effective >> 32), UInt32(truncatingIfNeeded: permitted >> 32),
            UInt32(truncatingIfNeeded: inheritable >> 32),
        ]
        return words.withUnsafeBytes { Array($0) }
    }
}
