import AmberImage
import Glibc
import LinuxKit
import Logging

/// Brings a process back from an image directory.
public enum Restore {
    /// Checks the whole image, recreates the process with its PID as our child, and lets it run.
    /// Returns its PID. On failure no task is left behind and the image is untouched.
    public static func run(directory: String, logger: Logger) throws(AmberError) -> Int32 {
        let image: ImageReader
        let task: Amber_Task
        do {
            image = try ImageReader(directory: directory)
            try checkHost(image.inventory)
            task = try image.task(pid: image.inventory.rootPid)
        } catch let error as ImageError {
            throw AmberError(.badImage, error.description)
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(.badImage, "\(error)")
        }
        if Signals.processExists(task.pid) {
            throw AmberError(.pidTaken, "PID \(task.pid) is taken by process \(ProcessName(pid: task.pid)); stop that process, or restore once it is gone")
        }
        // Injected syscalls cost several times more when the restorer and the task run on
        // different CPUs: both stay on this one until the task is let go (the helper inherits it).
        let ownAffinity = try? CPUAffinity.of(0)
        try? CPUAffinity(cpu: CPUAffinity.currentCPU).apply(to: 0)
        defer { try? ownAffinity?.apply(to: 0) }
        let tracee: Tracee
        do {
            tracee = try createStoppedHelper(pids: [task.pid])
        } catch {
            if error.errno == .fileExists {
                throw AmberError(.pidTaken, "PID \(task.pid) is taken by process \(ProcessName(pid: task.pid))")
            }
            throw AmberError(.restoreFailed, "cannot create process \(task.pid): \(error)")
        }
        do {
            try restore(task, image: image, tracee: tracee, logger: logger)
            try ownAffinity?.apply(to: tracee.pid)
            try tracee.detach()
            return tracee.pid
        } catch {
            // The helper is our child: killing and reaping it frees the PID at once.
            _ = Glibc.kill(tracee.pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(tracee.pid, &status, __WALL)
            if let error = error as? AmberError { throw error }
            throw AmberError(.restoreFailed, "restore of process \(task.pid) (\(task.comm)) failed: \(error)")
        }
    }

    /// Refuses an image this host cannot run: other architecture, or CPU state features it lacks.
    static func checkHost(_ inventory: Amber_Inventory) throws(AmberError) {
        var names = utsname()
        uname(&names)
        let machine = withUnsafeBytes(of: names.machine) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard inventory.machine == machine else {
            throw AmberError(.incompatibleHost, "the image was taken on \(inventory.machine), this host is \(machine)")
        }
        let missing = inventory.xstateFeatures & ~HostCPU.xstateFeatures
        guard missing == 0 else {
            throw AmberError(.incompatibleHost, "this CPU lacks xstate features the image uses (XCR0 bits 0x\(String(missing, radix: 16)); image 0x\(String(inventory.xstateFeatures, radix: 16)), here 0x\(String(HostCPU.xstateFeatures, radix: 16)))")
        }
    }

    private static func restore(_ task: Amber_Task, image: ImageReader, tracee: Tracee, logger: Logger) throws {
        let helperMaps = try ProcFS.maps(pid: tracee.pid)
        guard let vdso = helperMaps.first(where: { $0.path == "[vdso]" }) else {
            throw AmberError(.incompatibleHost, "this kernel gives processes no vDSO")
        }
        let injector = try SyscallInjector(tracee: tracee, instruction: SyscallInjector.findSyscallInstruction(pid: tracee.pid, vdso: vdso.start..<vdso.end))
        let session = RestoreSession(task: task, image: image, tracee: tracee, injector: injector, logger: logger)
        try MemoryState.prepareAddressSpace(session)
        try MemoryState.restoreAreas(session)
        logger.debug("process \(task.pid): memory restored")
        try session.mapScratch()
        try FileState.restore(task.files, session)
        try EnvironmentState.restore(task.environment, session)
        try IdentityState.restore(task, session)
        try SignalState.restoreHandlers(task.signals, session)
        try MemoryState.restoreMmFields(session)
        try ThreadControlState.restore(task.threadControl, session)
        try SignalState.restorePending(task.signals, session)
        try session.cleanUp()
        try RegisterState.restore(task.registers, session)
        try SignalState.restoreMask(task.signals, session)
        logger.debug("process \(task.pid): registers set, detaching")
    }
}
