import Glibc
import LinuxKit
import SystemPackage

/// The kernel interfaces amber relies on, probed on the running kernel.
public struct KernelFeature: Sendable {
    public let name: String
    public let enables: String
    public let required: Bool
    public let present: Bool
    public let detail: String?
}

public enum KernelFeatures {
    public static func probe() -> [KernelFeature] {
        var features: [KernelFeature] = []
        func add(_ name: String, _ enables: String, required: Bool = true, _ test: () -> (Bool, String?)) {
            let (present, detail) = test()
            features.append(
                KernelFeature(name: name, enables: enables, required: required, present: present, detail: detail))
        }
        add(
            "clone3 with set_tid",
            "restoring a process with its PID (Linux 5.5, CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)"
        ) {
            let capabilities = (try? ProcFS.status(pid: getpid()))?.capabilities?.effective ?? 0
            let allowed =
                capabilities & (1 << Capability.sysAdmin) != 0
                || capabilities & (1 << Capability.checkpointRestore) != 0
            return (
                allowed && kernelAtLeast(5, 5), allowed ? nil : "amber lacks CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE"
            )
        }
        add("pidfd_getfd", "copying open files between processes (Linux 5.6)") {
            guard let pidfd = try? Pidfd(pid: getpid()) else { return (false, "pidfd_open failed") }
            guard let copy = try? pidfd.duplicate(0) else { return (false, "pidfd_getfd failed") }
            try? copy.close()
            return (true, nil)
        }
        add("kcmp", "finding descriptors that share one open file (CONFIG_CHECKPOINT_RESTORE)") {
            ((try? openFileOrder(pid1: getpid(), fd1: 0, pid2: getpid(), fd2: 0)) == 0, nil)
        }
        add("PAGEMAP_SCAN", "skipping absent and zero pages while dumping (Linux 6.7)") {
            guard let pageMap = try? PageMap(pid: getpid()) else { return (false, "cannot open /proc/self/pagemap") }
            var probe: UInt8 = 1
            let address = withUnsafeMutablePointer(to: &probe) { UInt64(UInt(bitPattern: $0)) } & ~4095
            return ((try? pageMap.scan(start: address, end: address + 4096, anyOf: [.present])) != nil, nil)
        }
        add("PTRACE_GET_RSEQ_CONFIGURATION", "saving and restoring rseq registrations (Linux 5.13)") {
            (kernelAtLeast(5, 13), nil)
        }
        add("process_vm_readv", "reading and writing process memory") {
            var value: UInt64 = 42
            var copy: UInt64 = 0
            let address = withUnsafeMutablePointer(to: &value) { UInt64(UInt(bitPattern: $0)) }
            let read = withUnsafeMutableBytes(of: &copy) {
                try? ProcessMemory(pid: getpid()).read(into: $0, from: [(address, 8)])
            }
            return (read == 8 && copy == 42, nil)
        }
        add("soft-dirty tracking", "incremental dumps (not used yet)", required: false) {
            (pathExists("/proc/self/clear_refs") && kernelConfigHasSoftDirty(), nil)
        }
        add("time namespaces", "keeping CLOCK_MONOTONIC across hosts (not used yet)", required: false) {
            (pathExists("/proc/self/ns/time"), nil)
        }
        return features
    }

    static func kernelAtLeast(_ major: Int, _ minor: Int) -> Bool {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: names.release) {
            String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return (parts[0], parts[1]) >= (major, minor)
    }

    /// Soft-dirty shows as bit 55 of pagemap entries once a written page is tracked.
    static func kernelConfigHasSoftDirty() -> Bool {
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var value: UInt8 = 7
        let address = withUnsafeMutablePointer(to: &value) { UInt(bitPattern: $0) }
        var entry: UInt64 = 0
        guard pread(fd, &entry, 8, off_t(address / 4096 * 8)) == 8 else { return false }
        return entry & (1 << 55) != 0
    }
}

func pathExists(_ path: String) -> Bool { access(path, F_OK) == 0 }
