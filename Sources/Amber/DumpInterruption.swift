import Glibc
import Synchronization

/// How a dump learns that it must stop. `amber dump` runs the dump in a worker process of its
/// own (the tracer), so that SIGKILL to `amber dump` cannot leave a target in the middle of an
/// injected call: the worker sees that it was orphaned the next time it asks (at each of
/// `FaultPoints.dump`, milliseconds apart), puts back every register and signal mask, unmaps what it mapped,
/// lets the tree go and writes no inventory (the files written are then removed, with every
/// failed dump's). Once the inventory is written the image is complete
/// and the worker finishes the job on its own. SIGINT, SIGTERM or SIGHUP to `amber dump` reach
/// the worker as `requestStop(signal:)`, and it stops the same way at its next step.
public struct DumpInterruption: Sendable {
    /// The signal `amber dump` was asked to stop by, 0 for none: set from a signal handler.
    private static let stopSignal = Atomic<Int32>(0)

    /// Asks the dump to stop at its next step. Only an atomic store: a signal handler may call it.
    public static func requestStop(signal: Int32) {
        stopSignal.store(signal, ordering: .relaxed)
    }

    /// Makes the flag before a signal handler may touch it first: a static is made once, under a lock.
    public static func prepareForSignals() {
        _ = stopSignal.load(ordering: .relaxed)
    }

    /// The `amber dump` process the worker serves, nil when the dump runs in that process itself.
    public let supervisor: pid_t?

    /// `supervisor` nil: no one to watch for (a dump in the calling process itself).
    public init(supervisor: pid_t?) {
        self.supervisor = supervisor
    }

    /// Throws if the dump must stop at `point`, one of `FaultPoints.dump`.
    func check(_ point: String) throws(AmberError) {
        #if DEBUG
        switch TestFault.reached("dump.\(point)") {
        case .fail:
            throw AmberError(.failure, "test fault at dump step \(point)")
        case .killSupervisor:
            guard let supervisor else { break }
            _ = kill(supervisor, SIGKILL)
            // Orphaned once the supervisor has exited: wait for that, so the test knows where the dump stopped.
            while getppid() == supervisor { usleep(100) }
        case .kill, .pause, nil:
            break
        }
        #endif
        guard let supervisor else { return }
        let signal = Self.stopSignal.load(ordering: .relaxed)
        if signal != 0 {
            throw AmberError(
                .interrupted,
                "amber dump (PID \(supervisor)) was interrupted by \([SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGHUP: "SIGHUP"][signal] ?? "signal \(signal)") during the dump (at step \(point)): the process tree was let go as it was and the files written were removed"
            )
        }
        if getppid() != supervisor {
            throw AmberError(
                .interrupted,
                "amber dump (PID \(supervisor)) was killed during the dump (at step \(point)): the process tree was let go as it was and the files written were removed"
            )
        }
    }
}
