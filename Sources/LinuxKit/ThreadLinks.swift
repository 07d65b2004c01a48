internal import CLinux

/// A thread's rseq registration (the kernel's struct ptrace_rseq_configuration).
public struct RseqConfiguration: Sendable, Equatable {
    /// Where the thread's struct rseq is; 0 with `size` 0 when it has none.
    public var address: UInt64
    public var size: UInt32
    public var signature: UInt32
    public var flags: UInt32

    init(_ raw: amber_rseq_configuration) {
        address = raw.rseq_abi_pointer
        size = raw.rseq_abi_size
        signature = raw.signature
        flags = raw.flags
    }

    /// RSEQ_FLAG_UNREGISTER: rseq(2) drops the registration.
    public static let flagUnregister: UInt64 = 1
}

/// A thread's robust futex list, as get_robust_list(2) reports it.
public struct RobustList: Sendable, Equatable {
    public var head: UInt64
    public var length: UInt64

    /// The list of the task `tid`.
    public static func of(_ tid: Int32) throws(LinuxError) -> RobustList {
        var head: UInt64 = 0
        var length: UInt64 = 0
        _ = try kernelResult(amber_get_robust_list(tid, &head, &length), "get_robust_list(\(tid))").get()
        return RobustList(head: head, length: length)
    }
}
