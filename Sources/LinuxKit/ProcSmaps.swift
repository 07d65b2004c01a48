/// The kernel's flags of one memory area, from the VmFlags line of /proc/PID/smaps. Every
/// mnemonic this kernel prints on x86_64 is named; any other (a newer kernel's) is `unknown`,
/// which the dump refuses, since it cannot tell what it would lose.
public struct MemoryAreaFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let readable = MemoryAreaFlags(rawValue: 1 << 0)  // rd
    public static let writable = MemoryAreaFlags(rawValue: 1 << 1)  // wr
    public static let executable = MemoryAreaFlags(rawValue: 1 << 2)  // ex
    public static let shared = MemoryAreaFlags(rawValue: 1 << 3)  // sh
    public static let growsDown = MemoryAreaFlags(rawValue: 1 << 4)  // gd
    public static let locked = MemoryAreaFlags(rawValue: 1 << 5)  // lo
    public static let doNotCopy = MemoryAreaFlags(rawValue: 1 << 6)  // dc (MADV_DONTFORK)
    public static let doNotExpand = MemoryAreaFlags(rawValue: 1 << 7)  // de
    /// VM_ACCOUNT: charged against the commit limit; stays once set.
    public static let accounted = MemoryAreaFlags(rawValue: 1 << 8)  // ac
    public static let noReserve = MemoryAreaFlags(rawValue: 1 << 9)  // nr
    public static let wipeOnFork = MemoryAreaFlags(rawValue: 1 << 10)  // wf
    public static let doNotDump = MemoryAreaFlags(rawValue: 1 << 11)  // dd
    public static let mergeable = MemoryAreaFlags(rawValue: 1 << 12)  // mg
    public static let hugePage = MemoryAreaFlags(rawValue: 1 << 13)  // hg
    public static let noHugePage = MemoryAreaFlags(rawValue: 1 << 14)  // nh
    /// VM_MAYWRITE: mprotect may make the area writable.
    public static let mayWrite = MemoryAreaFlags(rawValue: 1 << 15)  // mw
    public static let sequentialRead = MemoryAreaFlags(rawValue: 1 << 16)  // sr
    public static let randomRead = MemoryAreaFlags(rawValue: 1 << 17)  // rr
    public static let lockOnFault = MemoryAreaFlags(rawValue: 1 << 18)  // lf
    public static let droppable = MemoryAreaFlags(rawValue: 1 << 19)  // dp
    public static let sealed = MemoryAreaFlags(rawValue: 1 << 20)  // sl
    public static let io = MemoryAreaFlags(rawValue: 1 << 21)  // io
    public static let pfnMap = MemoryAreaFlags(rawValue: 1 << 22)  // pf
    public static let mixedMap = MemoryAreaFlags(rawValue: 1 << 23)  // mm
    public static let hugeTLB = MemoryAreaFlags(rawValue: 1 << 24)  // ht
    public static let synchronous = MemoryAreaFlags(rawValue: 1 << 25)  // sf (MAP_SYNC)
    public static let userfaultMissing = MemoryAreaFlags(rawValue: 1 << 26)  // um
    public static let userfaultWriteProtect = MemoryAreaFlags(rawValue: 1 << 27)  // uw
    public static let userfaultMinor = MemoryAreaFlags(rawValue: 1 << 28)  // ui
    public static let shadowStack = MemoryAreaFlags(rawValue: 1 << 29)  // ss
    public static let mayRead = MemoryAreaFlags(rawValue: 1 << 30)  // mr
    public static let mayExecute = MemoryAreaFlags(rawValue: 1 << 31)  // me
    public static let mayShare = MemoryAreaFlags(rawValue: 1 << 32)  // ms
    /// VM_MAYBE_GUARD: guard regions were installed in it (MADV_GUARD_INSTALL).
    public static let guardRegions = MemoryAreaFlags(rawValue: 1 << 33)  // gu
    /// VM_SOFTDIRTY: the soft-dirty tracking's own mark, nothing the process sees.
    public static let softDirty = MemoryAreaFlags(rawValue: 1 << 34)  // sd
    /// VM_ARCH_1, on x86 VM_PAT: a device's memory with its own caching.
    public static let architecture = MemoryAreaFlags(rawValue: 1 << 35)  // ar
    /// A mnemonic not named here.
    public static let unknown = MemoryAreaFlags(rawValue: 1 << 63)

    /// The flag of a two-letter VmFlags mnemonic, `unknown` for one not named here.
    init(mnemonic first: UInt8, _ second: UInt8) {
        switch (first, second) {
        case (0x72, 0x64): self = .readable  // rd
        case (0x77, 0x72): self = .writable  // wr
        case (0x65, 0x78): self = .executable  // ex
        case (0x73, 0x68): self = .shared  // sh
        case (0x67, 0x64): self = .growsDown  // gd
        case (0x6C, 0x6F): self = .locked  // lo
        case (0x64, 0x63): self = .doNotCopy  // dc
        case (0x64, 0x65): self = .doNotExpand  // de
        case (0x61, 0x63): self = .accounted  // ac
        case (0x6E, 0x72): self = .noReserve  // nr
        case (0x77, 0x66): self = .wipeOnFork  // wf
        case (0x64, 0x64): self = .doNotDump  // dd
        case (0x6D, 0x67): self = .mergeable  // mg
        case (0x68, 0x67): self = .hugePage  // hg
        case (0x6E, 0x68): self = .noHugePage  // nh
        case (0x6D, 0x77): self = .mayWrite  // mw
        case (0x73, 0x72): self = .sequentialRead  // sr
        case (0x72, 0x72): self = .randomRead  // rr
        case (0x6C, 0x66): self = .lockOnFault  // lf
        case (0x64, 0x70): self = .droppable  // dp
        case (0x73, 0x6C): self = .sealed  // sl
        case (0x69, 0x6F): self = .io  // io
        case (0x70, 0x66): self = .pfnMap  // pf
        case (0x6D, 0x6D): self = .mixedMap  // mm
        case (0x68, 0x74): self = .hugeTLB  // ht
        case (0x73, 0x66): self = .synchronous  // sf
        case (0x75, 0x6D): self = .userfaultMissing  // um
        case (0x75, 0x77): self = .userfaultWriteProtect  // uw
        case (0x75, 0x69): self = .userfaultMinor  // ui
        case (0x73, 0x73): self = .shadowStack  // ss
        case (0x6D, 0x72): self = .mayRead  // mr
        case (0x6D, 0x65): self = .mayExecute  // me
        case (0x6D, 0x73): self = .mayShare  // ms
        case (0x67, 0x75): self = .guardRegions  // gu
        case (0x73, 0x64): self = .softDirty  // sd
        case (0x61, 0x72): self = .architecture  // ar
        default: self = .unknown
        }
    }
}

extension ProcFS {
    /// The VmFlags of every area in /proc/PID/smaps, by start address.
    public static func memoryFlags(pid: Int32) throws(LinuxError) -> [UInt64: MemoryAreaFlags] {
        try parseMemoryFlags(bytes: read("/proc/\(pid)/smaps")[...])
    }

    public static func parseMemoryFlags(_ text: String) throws(LinuxError) -> [UInt64: MemoryAreaFlags] {
        try parseMemoryFlags(bytes: Array(text.utf8)[...])
    }

    /// An area begins with a line "start-end perms ..." (hex addresses); its VmFlags line ends it.
    static func parseMemoryFlags(bytes: ArraySlice<UInt8>) throws(LinuxError) -> [UInt64: MemoryAreaFlags] {
        let vmFlagsKey = Array("VmFlags:".utf8)
        var flags: [UInt64: MemoryAreaFlags] = [:]
        var current: UInt64?
        for line in ProcText.lines(bytes) {
            if line.starts(with: vmFlagsKey) {
                guard let start = current else { throw ProcText.malformed("smaps: VmFlags before any area") }
                var set: MemoryAreaFlags = []
                for word in ProcText.words(line.dropFirst(vmFlagsKey.count)) {
                    guard word.count == 2 else {
                        set.insert(.unknown)
                        continue
                    }
                    set.insert(MemoryAreaFlags(mnemonic: word[word.startIndex], word[word.startIndex + 1]))
                }
                flags[start] = set
            } else if let dash = line.firstIndex(of: 0x2D), let start = ProcText.unsigned(line[..<dash], radix: 16),
                dash + 1 < line.endIndex, ProcText.unsigned(line[(dash + 1)...(dash + 1)], radix: 16) != nil
            {
                current = start
            }
        }
        return flags
    }
}

extension ProcessStatus {
    /// VmLck: the bytes of the process's locked areas (mm->locked_vm).
    public var lockedMemoryBytes: UInt64? {
        guard let value = fields["VmLck"], let kilobytes = UInt64(value.split(separator: " ").first ?? "") else {
            return nil
        }
        return kilobytes * 1024
    }
}
