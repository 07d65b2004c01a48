internal import CLinux
import Glibc

extension SyscallNumber {
    public static let pause = 34
}

extension CloneFlags {
    /// CLONE_PARENT: the child's parent is the caller's parent.
    public static let parent: UInt64 = 0x8000
}

/// Creates a helper task with chosen PIDs (innermost namespace first) as a child of the
/// caller's parent, as CRIU's --restore-sibling does: the runtime that started the restorer
/// waits for it as its own child. The helper cannot ask to be traced (its tracer would be that
/// parent), so the caller seizes it and interrupts it until it is found waiting in pause(),
/// set up as `createStoppedHelper`'s helpers are: no descriptor but `keptDescriptor`, every
/// signal at its default and unblocked, the capabilities of `boundingDrop` out of its bounding
/// set. Returns it traced and stopped.
public func createSiblingHelper(pids: [Int32], flags: UInt64 = 0, keptDescriptor: Int32, boundingDrop: UInt64 = 0)
    throws(LinuxError) -> Tracee
{
    let result = pids.withUnsafeBufferPointer {
        amber_clone3_sibling_helper($0.baseAddress, $0.count, flags, keptDescriptor, boundingDrop)
    }
    let pid = Int32(try kernelResult(result, "clone3 with CLONE_PARENT and set_tid \(pids)").get())
    do throws(LinuxError) {
        let tracee = try Tracee.seize(pid, options: helperOptions)
        // A restorer keeps to one CPU, which the helper inherits: yielding it that CPU first lets
        // it get to pause() before the first look, rather than after a poll or two (about 0.5 ms).
        sched_yield()
        while true {
            try tracee.interrupt()
            _ = try tracee.waitForStop()
            if try tracee.registers().origRax == UInt64(SyscallNumber.pause) { return tracee }
            try tracee.cont()
            usleep(100)
        }
    } catch {
        // Not our child: its parent reaps it.
        _ = kill(pid, SIGKILL)
        throw error
    }
}
