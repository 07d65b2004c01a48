/// Constants of madvise, mlock and mmap that glibc 2.36 lacks or that the area flags map to.
public enum MemoryAdvice {
    /// prctl PR_SET_VMA and its PR_SET_VMA_ANON_NAME: names a range of anonymous memory.
    public static let setVMA: UInt64 = 0x5356_4d41, setVMAAnonymousName: UInt64 = 0
    /// madvise(2) advice values.
    public static let random: UInt64 = 1
    public static let sequential: UInt64 = 2
    public static let dontFork: UInt64 = 10
    public static let mergeable: UInt64 = 12
    public static let hugePage: UInt64 = 14
    public static let noHugePage: UInt64 = 15
    public static let dontDump: UInt64 = 16
    public static let wipeOnFork: UInt64 = 18

    /// mmap type: private anonymous memory the kernel may drop under memory pressure (Linux 6.11).
    public static let mapDroppable: Int32 = 0x08
    /// mlock2 flag: lock pages as they are faulted in.
    public static let lockOnFault: UInt64 = 1
    /// mremap flags: the area may move, to the address given.
    public static let remapMayMove: UInt64 = 1, remapFixed: UInt64 = 2
    /// mlockall flags.
    public static let lockFuture: UInt64 = 2
    public static let lockOnFaultAll: UInt64 = 4
}
