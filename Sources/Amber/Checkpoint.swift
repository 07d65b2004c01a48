import AmberImage
import CLinux
import FoundationEssentials
import Glibc
import LinuxKit
import Logging

/// Dumps one process into an image directory.
public enum Checkpoint {
    public struct Summary: Sendable {
        public let pid: Int32
        public let comm: String
        public let areas: Int
        public let pageBytes: UInt64
    }

    /// Seizes the process, writes its image, then kills it (waiting until its PID is free) or,
    /// with `leaveRunning`, lets it go on. `durable` fsyncs the image before the process is killed. On any failure the process is left running, untraced.
    public static func run(pid: Int32, directory: String, leaveRunning: Bool, durable: Bool = false, logger: Logger) throws(AmberError) -> Summary {
        let name = ProcessName(pid: pid)
        guard pid > 0, Signals.processExists(pid), (try? ProcFS.status(pid: pid)) != nil else {
            throw AmberError(.noSuchProcess, "no process with PID \(pid)")
        }
        guard pid != getpid() else { throw AmberError(.unsupported, "amber cannot dump itself") }
        let writer: ImageWriter
        do {
            writer = try ImageWriter(directory: directory, durable: durable)
        } catch {
            throw AmberError(error.kind == .directoryNotEmpty ? .directoryNotEmpty : .failure, error.description)
        }
        let tracee: Tracee
        do {
            tracee = try Tracee.seize(pid)
        } catch {
            if error.errno == .noSuchProcess { throw AmberError(.noSuchProcess, "no process with PID \(pid)") }
            throw AmberError(.permissionDenied, "may not ptrace process \(name): \(error.errno.name) (dumping needs the rights to ptrace it)")
        }
        // Injected syscalls cost several times more across CPUs: run where the target last ran.
        let ownAffinity = try? CPUAffinity.of(0)
        if let cpu = try? ProcFS.stat(pid: pid).processor { try? CPUAffinity(cpu: cpu).apply(to: 0) }
        defer { try? ownAffinity?.apply(to: 0) }
        do {
            try Preflight.check(pid: pid, name: name, logger: logger)
            try stop(tracee)
            try Preflight.checkStopped(pid: pid, name: name)
            let task = try collect(pid: pid, name: name, tracee: tracee, writer: writer, logger: logger)
            try writer.finish(inventory: inventory(for: task))
            var pageCount: UInt64 = 0
            for area in task.memory.areas {
                for run in area.pages { pageCount += run.count }
            }
            let summary = Summary(pid: pid, comm: task.comm, areas: task.memory.areas.count, pageBytes: pageCount * 4096)
            if leaveRunning {
                try tracee.detach()
            } else {
                try kill(tracee, name: name, logger: logger)
            }
            return summary
        } catch {
            try? tracee.detach()
            if let error = error as? AmberError { throw error }
            if let error = error as? LinuxError, error.errno == .noSuchProcess {
                throw AmberError(.noSuchProcess, "process \(name) went away during the dump: \(error)")
            }
            throw AmberError(.failure, "dump of process \(name) failed: \(error)")
        }
    }

    /// Interrupts the task; a signal that arrives meanwhile is delivered, not lost.
    private static func stop(_ tracee: Tracee) throws {
        try tracee.interrupt()
        while true {
            let stop = try tracee.waitForStop()
            if stop.event == WaitStatus.eventStop { return }
            try tracee.cont(signal: stop.signal)
        }
    }

    private static func collect(pid: Int32, name: ProcessName, tracee: Tracee, writer: ImageWriter, logger: Logger) throws -> Amber_Task {
        let session = try DumpSession(pid: pid, name: name, tracee: tracee, logger: logger)
        var task = Amber_Task()
        do {
            try IdentityState.dump(session, into: &task)
            task.registers = try RegisterState.dump(session)
            task.signals = try SignalState.dump(session)
            task.threadControl = try ThreadControlState.dump(session)
            task.environment = try EnvironmentState.dump(session)
            task.files = try FileState.dump(session)
            let pagesName = ImageFormat.pageFileName(pid: pid)
            let pages = try writer.makePageFile(name: pagesName)
            task.memory = try MemoryState.dump(session, pages: pages, pagesName: pagesName)
        } catch {
            try? session.finish()
            throw error
        }
        try session.finish()
        try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: pid))
        logger.debug("collected process \(name): \(task.memory.areas.count) areas, \(task.files.descriptors.count) fds")
        return task
    }

    private static func inventory(for task: Amber_Task) -> Amber_Inventory {
        var inventory = Amber_Inventory()
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        inventory.amberVersion = AmberVersion.current
        inventory.kernelRelease = field(names.release)
        inventory.machine = field(names.machine)
        inventory.xstateFeatures = HostCPU.xstateFeatures
        inventory.xstateSize = UInt32(task.registers.xstate.count)
        inventory.createdUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        inventory.rootPid = task.pid
        return inventory
    }

    /// Kills the dumped process and waits until its PID can be used again.
    private static func kill(_ tracee: Tracee, name: ProcessName, logger: Logger) throws {
        try Signals.send(SIGKILL, to: tracee.pid)
        // As its tracer we see its death first; then its parent must reap it.
        while let status = try? waitForTask(tracee.pid) {
            if case .stopped = status { continue }
            break
        }
        let deadline = Date().addingTimeInterval(120)
        var announced = false
        while Signals.processExists(tracee.pid) {
            if !announced, deadline.timeIntervalSinceNow < 118 {
                logger.notice("waiting for the parent of process \(name) to reap it, so that PID \(tracee.pid) is free")
                announced = true
            }
            if Date() > deadline {
                throw AmberError(.failure, "process \(name) was killed after the dump but its parent has not reaped it: PID \(tracee.pid) is still taken")
            }
            usleep(2000)
        }
    }
}

/// Refusals made before the target is stopped, so it keeps running untouched.
enum Preflight {
    static func check(pid: Int32, name: ProcessName, logger: Logger) throws {
        let status = try ProcFS.status(pid: pid)
        if status.state == "Z" { throw AmberError.unsupported(name, "is a zombie") }
        try checkStopped(pid: pid, name: name)
        let own = try ProcFS.status(pid: getpid())
        for key in ["Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] where status.fields[key] != own.fields[key] {
            throw AmberError.unsupported(name, "has credentials (\(key): \(status.fields[key] ?? "?")) other than amber's (\(own.fields[key] ?? "?")): restoring other credentials is not supported yet")
        }
        if let mode = status.seccompMode, mode != 0 {
            throw AmberError.unsupported(name, "runs under seccomp (mode \(mode)): not supported yet")
        }
        if let timers = try? ProcFS.readText("/proc/\(pid)/timers"), !timers.isEmpty {
            throw AmberError.unsupported(name, "has POSIX timers: not supported yet")
        }
        if (try? ProcFS.link("/proc/\(pid)/ns/pid")) != (try? ProcFS.link("/proc/self/ns/pid")) {
            throw AmberError.unsupported(name, "is in another PID namespace: not supported yet")
        }
        try FileState.check(pid: pid, process: name)
        try MemoryState.check(try ProcFS.maps(pid: pid), process: name)
    }

    /// What may change until the task stops: threads and children.
    static func checkStopped(pid: Int32, name: ProcessName) throws {
        let threads = try ProcFS.threads(pid: pid)
        if threads.count > 1 {
            throw AmberError.unsupported(name, "has \(threads.count) threads (\(threads.map { String($0) }.joined(separator: ", "))): multi-threaded processes are not supported yet")
        }
        let children = try ProcFS.children(pid: pid)
        if !children.isEmpty {
            let names = children.map { ProcessName(pid: $0).description }.joined(separator: ", ")
            throw AmberError.unsupported(name, "has child processes \(names): process trees are not supported yet")
        }
    }
}

public enum AmberVersion {
    public static let current = "0.1.0"
}

/// This CPU's XSAVE features (XCR0).
public enum HostCPU {
    public static var xstateFeatures: UInt64 {
        var value: UInt64 = 0
        _ = amber_xgetbv0(&value)
        return value
    }
}
