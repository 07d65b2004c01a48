internal import CLinux

/// x86_64 general registers as the kernel's struct user_regs_struct (NT_PRSTATUS) has them,
/// field for field (in Swift's case: `origRax` is orig_rax), so that they read as in the kernel's
/// and ptrace's documentation.
public struct UserRegisters: Sendable, Equatable {
    public var r15: UInt64 = 0, r14: UInt64 = 0, r13: UInt64 = 0, r12: UInt64 = 0, rbp: UInt64 = 0, rbx: UInt64 = 0
    public var r11: UInt64 = 0, r10: UInt64 = 0, r9: UInt64 = 0, r8: UInt64 = 0
    public var rax: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0, rsi: UInt64 = 0, rdi: UInt64 = 0
    public var origRax: UInt64 = 0, rip: UInt64 = 0, cs: UInt64 = 0, eflags: UInt64 = 0, rsp: UInt64 = 0, ss: UInt64 = 0
    public var fsBase: UInt64 = 0, gsBase: UInt64 = 0, ds: UInt64 = 0, es: UInt64 = 0, fs: UInt64 = 0, gs: UInt64 = 0

    public init() {}

    init(_ raw: amber_user_regs) {
        r15 = raw.r15
        r14 = raw.r14
        r13 = raw.r13
        r12 = raw.r12
        rbp = raw.rbp
        rbx = raw.rbx
        r11 = raw.r11
        r10 = raw.r10
        r9 = raw.r9
        r8 = raw.r8
        rax = raw.rax
        rcx = raw.rcx
        rdx = raw.rdx
        rsi = raw.rsi
        rdi = raw.rdi
        origRax = raw.orig_rax
        rip = raw.rip
        cs = raw.cs
        eflags = raw.eflags
        rsp = raw.rsp
        ss = raw.ss
        fsBase = raw.fs_base
        gsBase = raw.gs_base
        ds = raw.ds
        es = raw.es
        fs = raw.fs
        gs = raw.gs
    }

    var raw: amber_user_regs {
        amber_user_regs(
            r15: r15, r14: r14, r13: r13, r12: r12, rbp: rbp, rbx: rbx, r11: r11, r10: r10, r9: r9, r8: r8,
            rax: rax, rcx: rcx, rdx: rdx, rsi: rsi, rdi: rdi, orig_rax: origRax, rip: rip, cs: cs, eflags: eflags,
            rsp: rsp, ss: ss,
            fs_base: fsBase, gs_base: gsBase, ds: ds, es: es, fs: fs, gs: gs)
    }

    /// What a syscall interrupted by a stop may leave in rax for the kernel's restart logic
    /// (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK).
    public static let restartSys: Int64 = -512, restartNoIntr: Int64 = -513, restartNoHand: Int64 = -514,
        restartRestartBlock: Int64 = -516
}

/// The XSAVE state components this CPU and kernel have enabled.
public enum XState {
    /// XCR0, read by xgetbv.
    public static var enabledFeatures: UInt64 {
        var value: UInt64 = 0
        _ = amber_xgetbv0(&value)
        return value
    }
}
