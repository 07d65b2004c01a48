/// A thread's scheduling as the engine reads and sets it from outside, by TID:
/// `LiveThreadScheduling` in a live task, a fake that records what is set in the engine's unit tests.
public protocol ThreadScheduling: Sendable {
    /// The policy, with SCHED_RESET_ON_FORK or-ed in when set.
    func policy(of tid: Int32) throws(LinuxError) -> Int32
    func realtimePriority(of tid: Int32) throws(LinuxError) -> Int32
    func nice(of tid: Int32) throws(LinuxError) -> Int32
    func ioPriority(of tid: Int32) throws(LinuxError) -> Int32
    func affinity(of tid: Int32) throws(LinuxError) -> CPUAffinity
    /// The timer slack (PR_GET_TIMERSLACK's value), or nil where only the thread itself may
    /// read it: /proc/TID/timerslack_ns asks for CAP_SYS_NICE over the thread.
    func timerSlack(of tid: Int32) throws(LinuxError) -> UInt64?
    func setPolicy(_ policy: Int32, realtimePriority: Int32, of tid: Int32) throws(LinuxError)
    func setNice(_ nice: Int32, of tid: Int32) throws(LinuxError)
    func setIOPriority(_ priority: Int32, of tid: Int32) throws(LinuxError)
    func setAffinity(_ affinity: CPUAffinity, of tid: Int32) throws(LinuxError)
}

/// The kernel's, through `TaskScheduling` and `CPUAffinity`.
public struct LiveThreadScheduling: ThreadScheduling {
    public init() {}

    public func policy(of tid: Int32) throws(LinuxError) -> Int32 { try TaskScheduling.policy(of: tid) }
    public func realtimePriority(of tid: Int32) throws(LinuxError) -> Int32 {
        try TaskScheduling.realtimePriority(of: tid)
    }
    public func nice(of tid: Int32) throws(LinuxError) -> Int32 { try TaskScheduling.nice(of: tid) }
    public func ioPriority(of tid: Int32) throws(LinuxError) -> Int32 { try TaskScheduling.ioPriority(of: tid) }
    public func affinity(of tid: Int32) throws(LinuxError) -> CPUAffinity { try CPUAffinity.of(tid) }
    public func timerSlack(of tid: Int32) throws(LinuxError) -> UInt64? {
        do {
            return try ProcFS.number("/proc/\(tid)/timerslack_ns") { UInt64($0) }
        } catch  where error.errno == .notPermitted {
            return nil
        }
    }

    public func setPolicy(_ policy: Int32, realtimePriority: Int32, of tid: Int32) throws(LinuxError) {
        try TaskScheduling.setPolicy(policy, realtimePriority: realtimePriority, of: tid)
    }

    public func setNice(_ nice: Int32, of tid: Int32) throws(LinuxError) { try TaskScheduling.setNice(nice, of: tid) }
    public func setIOPriority(_ priority: Int32, of tid: Int32) throws(LinuxError) {
        try TaskScheduling.setIOPriority(priority, of: tid)
    }
    public func setAffinity(_ affinity: CPUAffinity, of tid: Int32) throws(LinuxError) { try affinity.apply(to: tid) }
}
