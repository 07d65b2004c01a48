import LinuxKit
import Logging
import Synchronization

/// The connections a dumped TCP listener had not accepted yet: those in its accept queue
/// (handshake done) and the half-open ones (SYN_RECV) to its port. They are not in the image,
/// as CRIU's `--skip-in-flight` leaves them out: each is a connection of its own that only an
/// accept would take, and an accept consumes it. A dump that kills the tree drops them as the
/// kernel does when a listener closes (inet_csk_listen_stop): the peer of each queued
/// connection gets a RST, and the restored listener starts with an empty queue. With
/// `--leave-running` they stay in the running listener's queue, untouched. Either way the dump
/// says so, naming the process, the fd, the listener and how many.
enum PendingConnections {
    struct Listener: Sendable {
        let process: ProcessName
        let fd: Int32
        let address: InetAddress
        let queued: UInt32
        let halfOpen: Int
    }

    private static let listeners = Mutex<[Listener]>([])

    /// A dump starts.
    static func begin() {
        listeners.withLock { $0 = [] }
    }

    /// The listener `listener` goes into the image without what it had not accepted.
    static func note(_ listener: Listener) {
        listeners.withLock { $0.append(listener) }
    }

    /// The dump is written: one notice per listener that had connections waiting, for a tree
    /// that goes on (`leftRunning`) or was killed.
    static func report(leftRunning: Bool, logger: Logger) {
        let noted = listeners.withLock { listeners in
            defer { listeners = [] }
            return listeners
        }
        for listener in noted {
            var counts: [String] = []
            if listener.queued > 0 {
                counts.append(
                    "\(listener.queued) connection\(listener.queued == 1 ? "" : "s") in its accept queue")
            }
            if listener.halfOpen > 0 {
                counts.append(
                    "\(listener.halfOpen) half-open connection\(listener.halfOpen == 1 ? "" : "s") (SYN_RECV)")
            }
            let what =
                "process \(listener.process) fd \(listener.fd): the TCP listener on \(listener.address) had \(counts.joined(separator: " and ")), not accepted yet"
            logger.notice(
                leftRunning
                    ? "\(what): they stay queued in the running listener; the image's listener has none (a restore of it starts with an empty queue)"
                    : "\(what): they are dropped with the dumped tree, as when a listener closes (their clients get a reset); the restored listener starts with an empty queue"
            )
        }
    }
}
