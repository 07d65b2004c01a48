// Process plumbing for the scenario runner: locating amber, building the C scenarios,
// spawning with posix_spawn, reaping, and reading /proc. No Foundation.Process: the runner
// must reap everything itself (it is a child subreaper) and needs exact control over the
// fds a scenario starts with.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Exit codes of the amber CLI

enum AmberExit {
    static let ok: Int32 = 0
    static let otherFailure: Int32 = 1
    static let noSuchProcess: Int32 = 3
    static let permissionDenied: Int32 = 4
    static let unsupportedState: Int32 = 5
    static let imageDirectoryNotEmpty: Int32 = 6
    static let badImage: Int32 = 7
    static let hostCannotRestore: Int32 = 8
    static let pidTaken: Int32 = 9
    static let restoreFailed: Int32 = 10
    static let usage: Int32 = 64
}

// MARK: - Errors and statuses

struct RunnerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum ExitStatus: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus s: Int32) {
        if s & 0x7f == 0 {
            self = .exited((s >> 8) & 0xff)
        } else {
            self = .signaled(s & 0x7f)
        }
    }

    var description: String {
        switch self {
        case .exited(let code): return "exit \(code)"
        case .signaled(let sig): return "killed by signal \(sig)"
        }
    }
}

// MARK: - Locations

enum Locations {
    /// <package root>, from this file's path: <root>/Tests/ScenarioTests/Support.swift.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var scenarioSources: String { packageRoot + "/Tests/Scenarios" }

    /// AMBER_BIN if set (used even if it does not exist, so a wrong setting fails loudly),
    /// else <package root>/.build/debug/amber if it exists, else nil.
    static func amberBinary() -> String? {
        if let env = ProcessInfo.processInfo.environment["AMBER_BIN"], !env.isEmpty {
            return env
        }
        let built = packageRoot + "/.build/debug/amber"
        return access(built, X_OK) == 0 ? built : nil
    }

    static var amberSkipMessage: String {
        "amber is not built: set AMBER_BIN or run `swift build` first (looked for \(packageRoot)/.build/debug/amber)"
    }
}

// MARK: - Scratch space

/// One temporary root per test process; removed at exit unless AMBER_SCENARIO_KEEP is set.
enum Scratch {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var rootPath: String?
    nonisolated(unsafe) private static var counter = 0

    static func root() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let rootPath { return rootPath }
        var template = Array("/tmp/amber-scenarios.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw RunnerError("mkdtemp: \(String(cString: strerror(errno)))") }
        let path = String(cString: made)
        chmod(path, 0o755)  // the permission test runs amber as nobody, which must reach its image dir
        rootPath = path
        atexit {
            Scratch.removeAtExit()
        }
        return path
    }

    /// A fresh directory under the root, named after `label`.
    static func makeDirectory(_ label: String) throws -> String {
        let base = try root()
        lock.lock()
        counter += 1
        let n = counter
        lock.unlock()
        let safe = String(label.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(60))
        let path = "\(base)/\(n)-\(safe)"
        guard mkdir(path, 0o755) == 0 else { throw RunnerError("mkdir \(path): \(String(cString: strerror(errno)))") }
        chmod(path, 0o755)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    private static func removeAtExit() {
        guard ProcessInfo.processInfo.environment["AMBER_SCENARIO_KEEP"] == nil, let rootPath else { return }
        try? FileManager.default.removeItem(atPath: rootPath)
    }
}

// MARK: - libc helpers

enum Sys {
    static func errnoString(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

    /// prctl is variadic in C, so Swift does not import it; call it through dlsym.
    static func prctl(_ option: Int32, _ a2: UInt = 0, _ a3: UInt = 0, _ a4: UInt = 0, _ a5: UInt = 0) -> Int32 {
        typealias Fn = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "prctl") else { return -1 }
        return unsafeBitCast(sym, to: Fn.self)(option, a2, a3, a4, a5)
    }

    private static let subreaperLock = NSLock()
    nonisolated(unsafe) private static var isSubreaper = false

    /// Make this (the test) process a child subreaper, once: restored processes that outlive
    /// `amber restore --detach` are reparented to it and it can reap them.
    static func becomeSubreaper() throws {
        subreaperLock.lock()
        defer { subreaperLock.unlock() }
        if isSubreaper { return }
        let setChildSubreaper: Int32 = 36  // PR_SET_CHILD_SUBREAPER
        guard prctl(setChildSubreaper, 1) == 0 else {
            throw RunnerError("prctl(PR_SET_CHILD_SUBREAPER): \(errnoString())")
        }
        isSubreaper = true
    }

    /// Read a whole file with open/read (works for /proc files that report size 0).
    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func readText(_ path: String) -> String? {
        readFile(path).map { String(decoding: $0, as: UTF8.self) }
    }

    static func fileExists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func readlink(_ path: String) -> String? {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buf.withUnsafeMutableBytes {
            Glibc.readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count - 1)
        }
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    static func sleep(milliseconds: Int) {
        usleep(useconds_t(milliseconds * 1000))
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

// MARK: - /proc

struct ProcStatus {
    var name: String
    var state: Character
    var ppid: pid_t
    var tracerPid: pid_t
    var threads: Int
    /// NSpid: the PID in every namespace, outermost first.
    var namespacePIDs: [pid_t]
    var raw: String

    /// Stopped (T), traced (t), zombie (Z) or dead (X).
    var isStoppedOrTraced: Bool { state == "T" || state == "t" }
    var isGone: Bool { state == "Z" || state == "X" }
}

enum Proc {
    static func status(_ pid: pid_t) -> ProcStatus? {
        guard let text = Sys.readText("/proc/\(pid)/status") else { return nil }
        var s = ProcStatus(name: "", state: "?", ppid: -1, tracerPid: -1, threads: 0, namespacePIDs: [], raw: text)
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            switch parts[0] {
            case "Name": s.name = value
            case "State": s.state = value.first ?? "?"
            case "PPid": s.ppid = pid_t(value) ?? -1
            case "TracerPid": s.tracerPid = pid_t(value) ?? -1
            case "Threads": s.threads = Int(value) ?? 0
            case "NSpid":
                s.namespacePIDs = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { pid_t($0) }
            default: break
            }
        }
        return s
    }

    static func comm(_ pid: pid_t) -> String? {
        Sys.readText("/proc/\(pid)/comm")?.trimmingCharacters(in: .newlines)
    }

    static func exe(_ pid: pid_t) -> String? { Sys.readlink("/proc/\(pid)/exe") }

    /// First field of /proc/PID/syscall: the syscall number, "running", or nil.
    static func syscall(_ pid: pid_t) -> String? {
        Sys.readText("/proc/\(pid)/syscall")?.split(separator: " ").first.map(String.init)
    }

    /// First field of /proc/PID/task/TID/syscall for one thread.
    static func syscall(_ pid: pid_t, thread tid: pid_t) -> String? {
        Sys.readText("/proc/\(pid)/task/\(tid)/syscall")?.split(separator: " ").first.map(String.init)
    }

    /// The TIDs of a process's threads (empty if it is gone).
    static func threads(_ pid: pid_t) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { pid_t($0) }
            .sorted()
    }

    /// Every process's parent, from /proc/*/stat (this kernel has no /proc/PID/task/TID/children).
    static func parentMap() -> [pid_t: pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [:] }
        var map: [pid_t: pid_t] = [:]
        for e in entries {
            guard let pid = pid_t(e) else { continue }
            guard let stat = Sys.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = pid_t(fields[1]) { map[pid] = ppid }
        }
        return map
    }

    /// The descendants of `root` (not root itself), parents before their children.
    static func descendants(of root: pid_t, parents: [pid_t: pid_t]? = nil) -> [pid_t] {
        let map = parents ?? parentMap()
        var children: [pid_t: [pid_t]] = [:]
        for (pid, ppid) in map { children[ppid, default: []].append(pid) }
        var result: [pid_t] = []
        var queue = (children[root] ?? []).sorted()
        var seen: Set<pid_t> = [root]
        while !queue.isEmpty {
            let pid = queue.removeFirst()
            guard seen.insert(pid).inserted else { continue }
            result.append(pid)
            queue.append(contentsOf: (children[pid] ?? []).sorted())
        }
        return result
    }

    /// kill(pid, 0) says the PID is in use (a zombie counts).
    static func pidInUse(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    /// PIDs whose parent is this process.
    static func childrenOfSelf() -> [pid_t] { children(getpid()) }

    /// PIDs whose parent is `me`.
    static func children(_ me: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var result: [pid_t] = []
        for e in entries {
            guard let pid = pid_t(e), pid != me else { continue }
            guard let stat = Sys.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == me { result.append(pid) }
        }
        return result
    }

    /// A short description of a process for failure messages.
    static func describe(_ pid: pid_t) -> String {
        guard let s = status(pid) else { return "PID \(pid): no such process" }
        return
            "PID \(pid) (\(s.name)): state \(s.state), PPid \(s.ppid), TracerPid \(s.tracerPid), threads \(s.threads)"
            + ", syscall \(syscall(pid) ?? "?")"
    }
}

// MARK: - Spawning and reaping

enum Spawn {
    /// posix_spawn `argv` with stdin from /dev/null, stdout to `stdout` (created/truncated),
    /// stderr to `stderr` or, if nil, the same open file as stdout; every other fd closed; all
    /// signal dispositions default and nothing blocked; the environment is ours plus `env`.
    static func start(_ argv: [String], stdout: String, stderr: String? = nil, env: [String: String] = [:]) throws
        -> pid_t
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Appended to, as a log is: a scenario's orphaned grandchild may hold it too (a
        // description shared outside the tree is refused unless it is only appended to).
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        closeInheritedFds(&actions)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for argument in cArgs { free(argument) }
            for variable in cEnv { free(variable) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cArgs, cEnv)
        guard rc == 0 else { throw RunnerError("posix_spawnp \(argv[0]): \(Sys.errnoString(rc))") }
        return pid
    }

    /// Close every fd above 2 in the child: posix_spawn_file_actions_addclosefrom_np (glibc
    /// 2.34+, looked up with dlsym since Swift's Glibc module does not export it), else one
    /// close action per fd open in this process now.
    private static func closeInheritedFds(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np") {
            if unsafeBitCast(sym, to: CloseFrom.self)(&actions, 3) == 0 { return }
        }
        let fds = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap {
            Int32($0)
        }
        for fd in fds where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    enum ChildState {
        case running
        case exited(ExitStatus)
        case notMyChild
    }

    static func poll(_ pid: pid_t) -> ChildState {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return .exited(ExitStatus(waitStatus: status)) }
            if r == 0 { return .running }
            if errno == EINTR { continue }
            return .notMyChild
        }
    }

    /// Wait for a child to exit, reaping it; nil after `timeout` seconds (still running).
    static func wait(_ pid: pid_t, timeout: Double) -> ExitStatus? {
        let deadline = Sys.now() + timeout
        while true {
            switch poll(pid) {
            case .exited(let s): return s
            case .notMyChild: return nil
            case .running:
                if Sys.now() > deadline { return nil }
                Sys.sleep(milliseconds: 2)
            }
        }
    }

    /// Run a short helper command to completion (compiler, ...): status and combined output.
    static func run(_ argv: [String], in dir: String, timeout: Double = 120) throws -> (ExitStatus, String) {
        let out = dir + "/.cmd-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(out) }
        let pid = try start(argv, stdout: out)
        guard let status = wait(pid, timeout: timeout) else {
            kill(pid, SIGKILL)
            _ = wait(pid, timeout: 10)
            throw RunnerError("\(argv.joined(separator: " ")) did not finish in \(Int(timeout)) s")
        }
        return (status, Sys.readText(out) ?? "")
    }
}

// MARK: - Building the scenarios

/// Compiles each scenario once per test process into the scratch root.
final class ScenarioBuilder: @unchecked Sendable {
    static let shared = ScenarioBuilder()
    private let lock = NSLock()
    private var binaries: [String: String] = [:]

    func binary(_ name: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let b = binaries[name] { return b }
        let dir = try Scratch.root() + "/bin"
        if !Sys.fileExists(dir) {
            guard mkdir(dir, 0o755) == 0 else { throw RunnerError("mkdir \(dir): \(Sys.errnoString())") }
        }
        let source = "\(Locations.scenarioSources)/\(name).c"
        let output = "\(dir)/\(name)"
        guard Sys.fileExists(source) else { throw RunnerError("no scenario source \(source)") }
        let cc = ProcessInfo.processInfo.environment["CC"].flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/bin/cc"
        let (status, log) = try Spawn.run(
            [cc, "-O2", "-Wall", "-Werror", "-pthread", "-mavx2", "-o", output, source], in: dir)
        guard status == .exited(0) else { throw RunnerError("building \(name).c failed (\(status)):\n\(log)") }
        binaries[name] = output
        return output
    }
}

/// Two hosts for the tests of images that travel between them (PageServerTests,
/// PostCopyTests): a network namespace each, joined by a veth pair.
extension ScenarioTestCase {
    static let ipTool = "/bin/ip"
    static let nsenterTool = "/usr/bin/nsenter"
    static let streamHostA = "10.78.0.1"
    static let streamHostB = "10.78.0.2"

    func requireTwoHostTools() throws {
        _ = try requireAmber()
        for tool in [Self.ipTool, Self.nsenterTool] where !Sys.fileExists(tool) {
            throw XCTSkip("\(tool) is not installed (.ci/run installs it)")
        }
    }

    @discardableResult
    func runTool(_ argv: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let (status, output) = try Spawn.run(argv, in: try directory())
        guard status == .exited(0) else {
            XCTFail("\(argv.joined(separator: " ")): \(status) \(output)", file: file, line: line)
            throw RunnerError("\(argv.joined(separator: " ")) failed")
        }
        return output
    }

    /// Hosts A and B: a network namespace each, their loopback up, joined by a veth pair
    /// (10.78.0.1 in A, 10.78.0.2 in B). The pair is deleted after the test by name, at once,
    /// before the namespaces: links left to the namespaces' cleanup go later, in the kernel's,
    /// whose notifications would reach the netlink sockets of the tests that come next. Names
    /// are the test process's own (link names have 15 bytes at most).
    /// Returns the wrappers that run a command in A and in B.
    func twoHosts() throws -> (a: [String], b: [String]) {
        let tag = "\(getpid() % 100_000)"
        let names = ["amber-sa-\(tag)", "amber-sb-\(tag)"]
        for name in names {
            addTeardownBlock { _ = try? Spawn.run([Self.ipTool, "netns", "delete", name], in: "/") }
            try runTool([Self.ipTool, "netns", "add", name])
            try runTool([Self.ipTool, "-n", name, "link", "set", "lo", "up"])
        }
        let link = "ps\(tag)"
        addTeardownBlock { _ = try? Spawn.run([Self.ipTool, "-n", names[0], "link", "delete", link], in: "/") }
        try runTool([
            Self.ipTool, "link", "add", link, "netns", names[0], "type", "veth", "peer", "name", link, "netns",
            names[1],
        ])
        for (name, address) in zip(names, [Self.streamHostA, Self.streamHostB]) {
            try runTool([Self.ipTool, "-n", name, "address", "add", "\(address)/24", "dev", link])
            try runTool([Self.ipTool, "-n", name, "link", "set", link, "up"])
        }
        return (
            [Self.nsenterTool, "--net=/run/netns/\(names[0])"], [Self.nsenterTool, "--net=/run/netns/\(names[1])"]
        )
    }

    /// The address a server amber printed once it listens ("... listening on ADDRESS").
    func listeningAddress(of server: RunningAmber) throws -> String {
        let deadline = Sys.now() + Self.amberTimeout
        while Sys.now() < deadline {
            let printed = Sys.readText(server.stdoutPath) ?? ""
            if let line = printed.split(separator: "\n").first(where: { $0.contains("listening on ") }) {
                return String(line.split(separator: " ").last!)
            }
            if case .exited(let status) = Spawn.poll(server.pid) {
                throw RunnerError("\(server.pid) exited \(status): \(Sys.readText(server.stderrPath) ?? "")")
            }
            Sys.sleep(milliseconds: 5)
        }
        throw RunnerError("the server did not say it listens")
    }
}

// MARK: - Container root file systems

/// A container's root file system from Debian's busybox-static, nothing downloaded: busybox and
/// the links of `applets` in bin, and the directories a runtime mounts on.
enum BusyboxRootfs {
    static let busybox = "/bin/busybox"

    static func make(at rootfs: String, applets: [String]) throws {
        for directory in ["bin", "proc", "dev", "sys", "tmp"] {
            try FileManager.default.createDirectory(
                atPath: "\(rootfs)/\(directory)", withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: busybox, toPath: "\(rootfs)/bin/busybox")
        for applet in applets {
            try FileManager.default.createSymbolicLink(
                atPath: "\(rootfs)/bin/\(applet)", withDestinationPath: "busybox")
        }
    }
}
