internal import CLinux
import Glibc

/// A task's CPU affinity mask (sched_getaffinity/sched_setaffinity), as raw 64-bit words.
public struct CPUAffinity: Equatable, Sendable {
    public var words: [UInt64]

    /// Only `cpu`.
    public init(cpu: Int32) {
        words = [UInt64](repeating: 0, count: 16)
        words[Int(cpu) / 64] |= 1 << UInt64(cpu % 64)
    }

    public init(words: [UInt64]) { self.words = words }

    /// The mask of `pid` (0: the calling thread).
    public static func of(_ pid: Int32) throws(LinuxError) -> CPUAffinity {
        var words = [UInt64](repeating: 0, count: 16)
        let result = words.withUnsafeMutableBufferPointer { amber_sched_getaffinity(pid, $0.count * 8, $0.baseAddress) }
        _ = try kernelResult(result, "sched_getaffinity(\(pid))").get()
        return CPUAffinity(words: words)
    }

    public func apply(to pid: Int32) throws(LinuxError) {
        let result = words.withUnsafeBufferPointer { amber_sched_setaffinity(pid, $0.count * 8, $0.baseAddress) }
        _ = try kernelResult(result, "sched_setaffinity(\(pid))").get()
    }

    /// The CPU the calling thread runs on now.
    public static var currentCPU: Int32 { Int32(max(0, amber_getcpu())) }
}
