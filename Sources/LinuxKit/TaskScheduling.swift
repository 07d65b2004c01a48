internal import CLinux
import Glibc

/// How the scheduler treats one task (thread), read and set from outside by its TID.
public enum TaskScheduling {
    /// SCHED_RESET_ON_FORK, or-ed into the policy by sched_getscheduler and sched_setscheduler.
    public static let resetOnFork: Int32 = 0x4000_0000
    /// SCHED_FIFO and SCHED_RR, the real-time policies.
    public static let fifoPolicy: Int32 = 1, roundRobinPolicy: Int32 = 2
    /// SCHED_DEADLINE, which glibc 2.36 does not name.
    public static let deadlinePolicy: Int32 = 6
    /// IOPRIO_CLASS_RT in the class bits (13 and up) of an I/O priority.
    public static let ioPriorityClassShift = 13, ioPriorityClassRealtime: Int32 = 1

    /// The policy, with SCHED_RESET_ON_FORK when set.
    public static func policy(of tid: Int32) throws(LinuxError) -> Int32 {
        try libcResult("sched_getscheduler(\(tid))") { sched_getscheduler(tid) }.get()
    }

    /// sched_priority: 1 to 99 under SCHED_FIFO and SCHED_RR, else 0.
    public static func realtimePriority(of tid: Int32) throws(LinuxError) -> Int32 {
        var parameters = sched_param()
        _ = try libcResult("sched_getparam(\(tid))") { sched_getparam(tid, &parameters) }.get()
        return parameters.sched_priority
    }

    public static func setPolicy(_ policy: Int32, realtimePriority: Int32, of tid: Int32) throws(LinuxError) {
        var parameters = sched_param(sched_priority: realtimePriority)
        _ = try libcResult("sched_setscheduler(\(tid), policy \(policy), priority \(realtimePriority))") {
            sched_setscheduler(tid, policy, &parameters)
        }.get()
    }

    public static func nice(of tid: Int32) throws(LinuxError) -> Int32 {
        // -1 is also a valid nice value: only errno tells a failure.
        Glibc.errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid))
        if value == -1 && Glibc.errno != 0 { throw LinuxError.current("getpriority(PRIO_PROCESS, \(tid))") }
        return value
    }

    public static func setNice(_ nice: Int32, of tid: Int32) throws(LinuxError) {
        _ = try libcResult("setpriority(PRIO_PROCESS, \(tid), \(nice))") {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), nice)
        }.get()
    }

    /// The utilization clamps a task asked for (sched_getattr's sched_util_min and _max): 0 and
    /// 1024 unless set by sched_setattr, both 0 on kernels without CONFIG_UCLAMP_TASK.
    public static func utilizationClamp(of tid: Int32) throws(LinuxError) -> (minimum: UInt32, maximum: UInt32) {
        // struct sched_attr up to sched_util_max: 56 bytes, the clamps its last two words.
        var attributes = [UInt32](repeating: 0, count: 14)
        let result = attributes.withUnsafeMutableBytes { amber_sched_getattr(tid, $0.baseAddress, UInt32($0.count)) }
        _ = try kernelResult(result, "sched_getattr(\(tid))").get()
        return (attributes[12], attributes[13])
    }

    /// The core-scheduling cookie of a task (PR_SCHED_CORE_GET), nil on kernels without
    /// CONFIG_SCHED_CORE; 0 when it has none.
    public static func coreSchedulingCookie(of tid: Int32) -> UInt64? {
        var cookie: UInt64 = 0
        let result = withUnsafeMutablePointer(to: &cookie) {
            amber_prctl(
                Int32(TaskControl.schedulingCore), TaskControl.schedulingCoreGet, UInt64(tid),
                TaskControl.schedulingCoreOfTask, UInt64(UInt(bitPattern: $0)))
        }
        return result < 0 ? nil : cookie
    }

    /// ioprio: class << 13 | level.
    public static func ioPriority(of tid: Int32) throws(LinuxError) -> Int32 {
        Int32(try kernelResult(amber_ioprio_get(tid), "ioprio_get(IOPRIO_WHO_PROCESS, \(tid))").get())
    }

    public static func setIOPriority(_ priority: Int32, of tid: Int32) throws(LinuxError) {
        _ = try kernelResult(amber_ioprio_set(tid, priority), "ioprio_set(IOPRIO_WHO_PROCESS, \(tid), \(priority))")
            .get()
    }
}
