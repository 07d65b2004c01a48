/// membarrier(2) commands.
public enum MembarrierCommand {
    public static let registerGlobalExpedited: UInt64 = 1 << 2
    public static let privateExpedited: UInt64 = 1 << 3
    public static let registerPrivateExpedited: UInt64 = 1 << 4
    public static let privateExpeditedSyncCore: UInt64 = 1 << 5
    public static let registerPrivateExpeditedSyncCore: UInt64 = 1 << 6
    public static let privateExpeditedRseq: UInt64 = 1 << 7
    public static let registerPrivateExpeditedRseq: UInt64 = 1 << 8
    /// MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3): the REGISTER_* commands the calling
    /// process has issued, as a mask of those commands.
    public static let getRegistrations: UInt64 = 1 << 9
}
