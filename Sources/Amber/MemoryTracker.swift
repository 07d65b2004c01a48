import FoundationEssentials
import Glibc
import LinuxKit

/// One process whose writes are tracked: its userfaultfd (bound to its mm) and a pidfd that
/// tells when it is gone, both ours to close.
final class TrackedProcess: @unchecked Sendable {
    let pid: Int32
    /// Field 22 of /proc/PID/stat: with the PID, which process this is.
    let startTime: UInt64
    let userfaultfd: Userfaultfd
    let pidfd: Int32

    init(pid: Int32, startTime: UInt64, userfaultfd: Userfaultfd, pidfd: Int32) {
        self.pid = pid
        self.startTime = startTime
        self.userfaultfd = userfaultfd
        self.pidfd = pidfd
    }

    deinit { close(pidfd) }
}

/// The memory tracker: a small process `amber pre-dump` starts (`amber --memory-tracker NAME`),
/// outside the tree, in a session of its own, that holds the tree's userfaultfds between the
/// pre-dump and the dump (closing the last descriptor of a userfaultfd unregisters its areas,
/// which would end the tracking). It listens on the abstract unix socket NAME, recorded in the
/// pre-dump's inventory, and answers only a peer of its own UID:
/// - "put EPOCH", then "process PID START" with the userfaultfd and a pidfd for each, then "end":
///   it holds these from now on (and closes what it held before), their write bits those of
///   the pre-dump EPOCH names;
/// - "get": it sends "epoch EPOCH", then copies of what it holds the same way, then "end";
/// - "invalidate": its write bits belong to no pre-dump any more (EPOCH "-"), sent before a
///   pre-dump protects pages again: should that pre-dump fail, no dump trusts the bits;
/// - "release": it closes everything and exits: the areas are unregistered.
/// It exits by itself when every process it tracks is gone, when no "put" came in the first
/// minute, or on SIGTERM (`kill TRACKER_PID`, printed by the pre-dump). It ignores SIGINT and
/// SIGHUP, which a terminal sends.
public enum MemoryTracker {
    static let flag = "--memory-tracker"
    static let socketPrefix = "amber-memory-tracker-"

    /// A fresh socket name: the prefix and 128 random bits in hex.
    static func makeSocketName() -> String { socketPrefix + makeToken() }

    /// 128 random bits in hex: a socket name's end, or an epoch.
    static func makeToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// No epoch: the write bits belong to no pre-dump.
    static let noEpoch = "-"

    /// Whether `name` (read from an image) is a name `makeSocketName` makes.
    static func isSocketName(_ name: String) -> Bool {
        guard name.hasPrefix(socketPrefix) else { return false }
        let digits = name.dropFirst(socketPrefix.count)
        return digits.count == 32 && digits.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// Starts the tracker listening on `name` and waits until it listens; returns its PID.
    static func spawn(name: String) throws(AmberError) -> Int32 {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink("/proc/self/exe", &buffer, buffer.count)
        guard length > 0 else { throw AmberError(.failure, "cannot find amber's own binary (/proc/self/exe)") }
        let binary = String(decoding: buffer[..<length], as: UTF8.self)
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0, fcntl(ends[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0
        else { throw AmberError(.failure, "cannot make a pipe for the tracker") }
        defer { close(ends[0]) }
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 3)
        // 0x80: POSIX_SPAWN_SETSID: no terminal, no job control reaches it.
        posix_spawnattr_setflags(&attributes, Int16(0x80))
        let words: [String] = [binary, flag, name]
        var argv = words.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = ChildStarts.exclusive { posix_spawn(&pid, binary, &actions, &attributes, &argv, environ) }
        close(ends[1])
        guard result == 0 else {
            throw AmberError(.failure, "cannot start the memory tracker: \(String(cString: strerror(result)))")
        }
        var ready: UInt8 = 0
        while read(ends[0], &ready, 1) < 0 && errno == EINTR {}
        guard ready == 1 else {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw AmberError(.failure, "the memory tracker did not start (it could not listen on @\(name))")
        }
        return pid
    }

    /// In `amber --memory-tracker NAME`: serves until told to let go or the tree is gone.
    /// Returns when this is no tracker.
    public static func runIfTracker(_ arguments: [String]) {
        guard arguments.count == 3, arguments[1] == flag else { return }
        let name = arguments[2]
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        guard isSocketName(name), let listener = try? MessageSocket.listen(name: name) else { exit(1) }
        var ready: UInt8 = 1
        _ = write(3, &ready, 1)
        close(3)
        var held: [TrackerEntry] = []
        var epoch = noEpoch
        let started = time(nil)
        while true {
            var polled = [pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)]
            polled += held.map { pollfd(fd: $0.pidfd, events: Int16(POLLIN), revents: 0) }
            let count = poll(&polled, nfds_t(polled.count), 10_000)
            if count < 0 && errno != EINTR { exit(1) }
            // A pidfd polls readable once its process has exited: what it tracked is gone.
            let living = held.indices.filter { polled[$0 + 1].revents == 0 }
            if living.count < held.count {
                for index in held.indices where !living.contains(index) { held[index].close() }
                held = living.map { held[$0] }
                if held.isEmpty { exit(0) }
            }
            if held.isEmpty && time(nil) - started > 60 { exit(0) }
            guard polled[0].revents & Int16(POLLIN) != 0, let connection = try? listener.accept() else { continue }
            guard let peer = try? connection.peer(), peer.uid == geteuid() else { continue }
            switch serve(connection, held: &held, epoch: &epoch) {
            case .release:
                for entry in held { entry.close() }
                exit(0)
            case .serving:
                continue
            }
        }
    }

    private enum Outcome { case serving, release }

    /// One request; anything malformed ends the connection and changes nothing.
    private static func serve(_ connection: MessageSocket, held: inout [TrackerEntry], epoch: inout String)
        -> Outcome
    {
        guard let (request, stray) = try? connection.receive() else { return .serving }
        for fd in stray { close(fd) }
        let words = request.split(separator: " ").map(String.init)
        switch words.first {
        case "get":
            guard (try? connection.send("epoch \(epoch)")) != nil else { return .serving }
            for entry in held {
                guard (try? connection.send(entry.text, descriptors: [entry.userfaultfd, entry.pidfd])) != nil else {
                    return .serving
                }
            }
            try? connection.send("end")
        case "put":
            guard words.count == 2, let received = receiveEntries(connection) else { return .serving }
            for entry in held { entry.close() }
            held = received
            epoch = words[1]
            try? connection.send("ok")
        case "invalidate":
            epoch = noEpoch
            try? connection.send("ok")
        case "release":
            try? connection.send("ok")
            return .release
        default:
            break
        }
        return .serving
    }

    /// Entries up to "end"; nil (closing what came) on anything else.
    private static func receiveEntries(_ connection: MessageSocket) -> [TrackerEntry]? {
        var entries: [TrackerEntry] = []
        while let (text, descriptors) = try? connection.receive() {
            if text == "end" && descriptors.isEmpty { return entries }
            guard descriptors.count == 2, parseEntry(text) != nil else {
                for fd in descriptors { close(fd) }
                break
            }
            entries.append(TrackerEntry(text: text, userfaultfd: descriptors[0], pidfd: descriptors[1]))
        }
        for entry in entries { entry.close() }
        return nil
    }

    /// "process PID START".
    static func parseEntry(_ text: String) -> (pid: Int32, startTime: UInt64)? {
        let words = text.split(separator: " ")
        guard words.count == 3, words[0] == "process", let pid = Int32(words[1]), pid > 0,
            let start = UInt64(words[2])
        else { return nil }
        return (pid, start)
    }

    /// What the tracker holds for one process: raw descriptors, closed by hand.
    private struct TrackerEntry {
        let text: String
        let userfaultfd: Int32
        let pidfd: Int32

        func close() {
            Glibc.close(userfaultfd)
            Glibc.close(pidfd)
        }
    }
}

/// `amber pre-dump` and `amber dump --prev-images-dir` talking to a running tracker.
struct TrackerClient {
    let name: String

    private func connect() throws(AmberError) -> MessageSocket {
        guard MemoryTracker.isSocketName(name) else {
            throw AmberError(.badImage, "the pre-dump names no memory tracker this amber makes (\"\(name)\")")
        }
        let socket: MessageSocket
        do {
            socket = try MessageSocket.connect(name: name)
        } catch {
            throw AmberError(.failure, "no memory tracker answers at @\(name): \(error)")
        }
        // Another user's process could have bound the name: only our own UID's tracker is believed.
        guard let peer = try? socket.peer(), peer.uid == geteuid() else {
            throw AmberError(.failure, "the process at @\(name) is not a memory tracker of this user")
        }
        return socket
    }

    /// The epoch of the tracker's write bits and what it holds, or nil when no tracker answers
    /// (tracking was stopped: every page is then read again).
    func processes() throws(AmberError) -> (epoch: String, processes: [TrackedProcess])? {
        guard let socket = try? connect() else { return nil }
        var result: [TrackedProcess] = []
        do {
            try socket.send("get")
            guard let first = try socket.receive()?.text, first.hasPrefix("epoch ") else {
                throw AmberError(.failure, "the memory tracker at @\(name) answered no epoch")
            }
            let epoch = String(first.dropFirst("epoch ".count))
            while let (text, descriptors) = try socket.receive() {
                if text == "end" { return (epoch, result) }
                guard descriptors.count == 2, let (pid, start) = MemoryTracker.parseEntry(text) else {
                    for fd in descriptors { close(fd) }
                    break
                }
                result.append(
                    TrackedProcess(
                        pid: pid, startTime: start, userfaultfd: Userfaultfd(adopting: descriptors[0]),
                        pidfd: descriptors[1]))
            }
        } catch {
            throw AmberError(.failure, "the memory tracker at @\(name) failed: \(error)")
        }
        throw AmberError(.failure, "the memory tracker at @\(name) ended its answer early")
    }

    /// Tells the tracker its write bits belong to no pre-dump (before they are protected again).
    func invalidate() throws(AmberError) {
        do {
            let socket = try connect()
            try socket.send("invalidate")
            guard try socket.receive()?.text == "ok" else {
                throw AmberError(.failure, "the memory tracker at @\(name) did not take the invalidation")
            }
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(.failure, "the memory tracker at @\(name) failed: \(error)")
        }
    }

    /// Hands the tracker what it holds from now on, its write bits those of pre-dump `epoch`.
    func hold(_ processes: [TrackedProcess], epoch: String) throws(AmberError) {
        do {
            let socket = try connect()
            try socket.send("put \(epoch)")
            for process in processes {
                try socket.send(
                    "process \(process.pid) \(process.startTime)",
                    descriptors: [process.userfaultfd.fd, process.pidfd])
            }
            try socket.send("end")
            guard try socket.receive()?.text == "ok" else {
                throw AmberError(.failure, "the memory tracker at @\(name) refused the descriptors")
            }
        } catch let error as AmberError {
            throw error
        } catch {
            throw AmberError(.failure, "the memory tracker at @\(name) failed: \(error)")
        }
    }

    /// Tells the tracker to let go and exit; nothing when none answers.
    func release() {
        guard let socket = try? connect() else { return }
        try? socket.send("release")
        _ = try? socket.receive()
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
