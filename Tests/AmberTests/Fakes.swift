import AmberImage
import Glibc
import LinuxKit
import Logging
import Synchronization
import SystemPackage

@testable import Amber

/// A PID above PID_MAX_LIMIT (4194304): no process has it, so a call that slipped past the
/// fakes to the kernel would find no task rather than touch a real one.
let fakePID: Int32 = 5_000_001

/// Where the fake tasks' scratch area is.
let fakeScratch: UInt64 = 0x7000_0000

/// One call injected into a fake task: which thread, the number and the six argument registers,
/// and the task's memory as the call found it (its arguments laid out there).
struct InjectedCall: Equatable, CustomStringConvertible {
    let tid: Int32
    let number: Int
    let arguments: [UInt64]
    var memory = MemoryBytes()

    init(tid: Int32 = fakePID, _ number: Int, _ arguments: UInt64...) {
        self.init(tid: tid, number: number, arguments: arguments)
    }

    init(tid: Int32, number: Int, arguments: [UInt64]) {
        self.tid = tid
        self.number = number
        // The kernel sees all six registers: the ones not passed are 0.
        self.arguments = arguments + Array(repeating: 0, count: max(0, 6 - arguments.count))
    }

    var description: String {
        "\(tid): \(number)(\(arguments.map { "0x" + String($0, radix: 16) }.joined(separator: ", ")))"
    }

    static func == (left: InjectedCall, right: InjectedCall) -> Bool {
        (left.tid, left.number, left.arguments) == (right.tid, right.number, right.arguments)
    }

    /// The bytes at `address` when the call was made.
    func load(_ address: UInt64, count: Int) -> [UInt8] { memory.load(address, count: count) }

    func load<Value: BitwiseCopyable>(_ address: UInt64, as type: Value.Type) -> Value {
        memory.load(address, as: type)
    }
}

/// Bytes of a task's memory by address; bytes never written read as 0.
struct MemoryBytes {
    fileprivate var bytes: [UInt64: UInt8] = [:]

    mutating func store(_ values: [UInt8], at address: UInt64) {
        for (offset, value) in values.enumerated() { bytes[address + UInt64(offset)] = value }
    }

    func load(_ address: UInt64, count: Int) -> [UInt8] {
        (0..<count).map { bytes[address + UInt64($0)] ?? 0 }
    }

    func load<Value: BitwiseCopyable>(_ address: UInt64, as type: Value.Type) -> Value {
        load(address, count: MemoryLayout<Value>.size).withUnsafeBytes { $0.loadUnaligned(as: Value.self) }
    }
}

/// The calls injected into every thread of a fake task, in order, and what they answer: the
/// next result of `script` while one is left, else what `respond` says (which may write
/// results into the task's memory, as the kernel would).
final class CallLog {
    private(set) var calls: [InjectedCall] = []
    var script: [Int64] = []
    var respond: (InjectedCall) -> Int64 = { _ in 0 }
    /// The task's memory, whose state each call records.
    let memory: FakeTaskMemory

    init(memory: FakeTaskMemory) {
        self.memory = memory
    }

    func answer(_ call: InjectedCall) -> Int64 {
        var call = call
        call.memory = memory.contents
        calls.append(call)
        return script.isEmpty ? respond(call) : script.removeFirst()
    }

    var numbers: [Int] { calls.map(\.number) }
}

/// An injector that runs nothing: it records each call in `log` and answers from it.
final class RecordingInjector: SyscallInjecting {
    let tracee: Tracee
    var instruction: UInt64 = 0x7fff_f000_0100
    let savedRegisters: UserRegisters
    let savedSignalMask: UInt64 = 0
    let log: CallLog
    /// The TIDs that clone3 answers with, in order.
    var createdTasks: [Int32] = []

    init(tid: Int32 = fakePID, log: CallLog, stackPointer: UInt64 = 0x7ffd_0000_0000) {
        tracee = Tracee(pid: tid)
        self.log = log
        var registers = UserRegisters()
        registers.rsp = stackPointer
        savedRegisters = registers
    }

    func raw(_ number: Int, arguments: [UInt64]) throws(LinuxError) -> Int64 {
        log.answer(InjectedCall(tid: tracee.pid, number: number, arguments: arguments))
    }

    func createTask(_ name: @autoclosure () -> String, cloneArguments: UInt64, size: UInt64) throws(LinuxError)
        -> Tracee
    {
        _ = log.answer(InjectedCall(tid: tracee.pid, number: SyscallNumber.clone3, arguments: [cloneArguments, size]))
        guard !createdTasks.isEmpty else {
            throw LinuxError(.noSuchProcess, "\(name()): the fake has no task left to create")
        }
        return Tracee(pid: createdTasks.removeFirst())
    }

    func start(_ number: Int, arguments: [UInt64]) throws(LinuxError) {
        _ = log.answer(InjectedCall(tid: tracee.pid, number: number, arguments: arguments))
    }

    func finish() throws(LinuxError) {}

    func stopSteppingOverCalls() throws(LinuxError) {}
}

/// A task's memory that is only a table: it records every write and serves reads from what was
/// written or stored (bytes never written read as 0).
final class FakeTaskMemory: RemoteMemory {
    private(set) var contents = MemoryBytes()
    private(set) var writes: [(address: UInt64, bytes: [UInt8])] = []

    /// Puts `values` at `address`, as the kernel leaves a call's results.
    func store(_ values: [UInt8], at address: UInt64) {
        contents.store(values, at: address)
    }

    func store<Value: BitwiseCopyable>(_ value: Value, at address: UInt64) {
        store(withUnsafeBytes(of: value) { Array($0) }, at: address)
    }

    func load(_ address: UInt64, count: Int) -> [UInt8] { contents.load(address, count: count) }

    func load<Value: BitwiseCopyable>(_ address: UInt64, as type: Value.Type) -> Value {
        contents.load(address, as: type)
    }

    func read(into local: UnsafeMutableRawBufferPointer, from remote: [(address: UInt64, length: Int)])
        throws(LinuxError) -> Int
    {
        var done = 0
        for range in remote {
            for (offset, value) in load(range.address, count: range.length).enumerated() {
                local[done + offset] = value
            }
            done += range.length
        }
        return done
    }

    func write(_ local: UnsafeRawBufferPointer, to remote: [(address: UInt64, length: Int)]) throws(LinuxError) -> Int {
        var done = 0
        for range in remote {
            let values = Array(local[done..<(done + range.length)])
            writes.append((range.address, values))
            store(values, at: range.address)
            done += range.length
        }
        return done
    }
}

/// /proc as a table of files and links; what is not in it is missing (ENOENT), so that no
/// read falls through to the real /proc. Records every write.
final class FakeProc: ProcReading {
    private struct Contents {
        var files: [String: [UInt8]] = [:]
        var links: [String: String] = [:]
        var writes: [(path: String, text: String)] = []
        var writeErrors: [String: Errno] = [:]
    }

    private let contents = Mutex(Contents())

    subscript(file path: String) -> String? {
        get { contents.withLock { $0.files[path].map { String(decoding: $0, as: UTF8.self) } } }
        set { contents.withLock { $0.files[path] = newValue.map { Array($0.utf8) } } }
    }

    subscript(link path: String) -> String? {
        get { contents.withLock { $0.links[path] } }
        set { contents.withLock { $0.links[path] = newValue } }
    }

    var writes: [(path: String, text: String)] { contents.withLock { $0.writes } }

    /// Makes a write to `path` fail with `errno`.
    func failWrites(to path: String, with errno: Errno) {
        contents.withLock { $0.writeErrors[path] = errno }
    }

    func read(_ path: String) throws(LinuxError) -> [UInt8] {
        guard let bytes = contents.withLock({ $0.files[path] }) else {
            throw LinuxError(.noSuchFileOrDirectory, "open \(path) (not in the fake /proc)")
        }
        return bytes
    }

    func link(_ path: String) throws(LinuxError) -> String {
        guard let target = contents.withLock({ $0.links[path] }) else {
            throw LinuxError(.noSuchFileOrDirectory, "readlink \(path) (not in the fake /proc)")
        }
        return target
    }

    func write(_ text: String, to path: String) throws(LinuxError) {
        try contents.withLock { contents throws(LinuxError) in
            guard contents.files[path] != nil else {
                throw LinuxError(.noSuchFileOrDirectory, "open \(path) (not in the fake /proc)")
            }
            if let errno = contents.writeErrors[path] { throw LinuxError(errno, "write \(path)") }
            contents.writes.append((path, text))
            contents.files[path] = Array(text.utf8)
        }
    }
}

/// Threads' scheduling as a table by TID, of what was stored or set; a thread not in it is
/// gone (ESRCH). Records every change, in order.
final class FakeScheduling: ThreadScheduling {
    struct Settings: Equatable {
        var policy: Int32 = 0
        var realtimePriority: Int32 = 0
        var nice: Int32 = 0
        var ioPriority: Int32 = 0
        var affinity = CPUAffinity(words: [1])
        /// nil: not readable from outside, as without CAP_SYS_NICE.
        var timerSlack: UInt64?
    }

    enum Change: Equatable {
        case policy(tid: Int32, policy: Int32, realtimePriority: Int32)
        case nice(tid: Int32, Int32)
        case ioPriority(tid: Int32, Int32)
        case affinity(tid: Int32, [UInt64])
    }

    private struct Contents {
        var threads: [Int32: Settings] = [:]
        var changes: [Change] = []
        /// What setting the affinity fails with, if it does.
        var affinityError: Errno?
    }

    private let contents = Mutex(Contents())

    subscript(tid: Int32) -> Settings? {
        get { contents.withLock { $0.threads[tid] } }
        set { contents.withLock { $0.threads[tid] = newValue } }
    }

    var changes: [Change] { contents.withLock { $0.changes } }

    func failAffinity(with errno: Errno) {
        contents.withLock { $0.affinityError = errno }
    }

    private func settings(_ tid: Int32) throws(LinuxError) -> Settings {
        guard let settings = self[tid] else { throw LinuxError(.noSuchProcess, "thread \(tid) (not in the fake)") }
        return settings
    }

    private func change(_ tid: Int32, _ change: Change, _ apply: (inout Settings) -> Void) throws(LinuxError) {
        try contents.withLock { contents throws(LinuxError) in
            guard var settings = contents.threads[tid] else {
                throw LinuxError(.noSuchProcess, "thread \(tid) (not in the fake)")
            }
            if case .affinity = change, let errno = contents.affinityError {
                throw LinuxError(errno, "sched_setaffinity(\(tid))")
            }
            apply(&settings)
            contents.threads[tid] = settings
            contents.changes.append(change)
        }
    }

    func policy(of tid: Int32) throws(LinuxError) -> Int32 { try settings(tid).policy }
    func realtimePriority(of tid: Int32) throws(LinuxError) -> Int32 { try settings(tid).realtimePriority }
    func nice(of tid: Int32) throws(LinuxError) -> Int32 { try settings(tid).nice }
    func ioPriority(of tid: Int32) throws(LinuxError) -> Int32 { try settings(tid).ioPriority }
    func affinity(of tid: Int32) throws(LinuxError) -> CPUAffinity { try settings(tid).affinity }
    func timerSlack(of tid: Int32) throws(LinuxError) -> UInt64? { try settings(tid).timerSlack }

    func setPolicy(_ policy: Int32, realtimePriority: Int32, of tid: Int32) throws(LinuxError) {
        try change(tid, .policy(tid: tid, policy: policy, realtimePriority: realtimePriority)) {
            $0.policy = policy
            $0.realtimePriority = realtimePriority
        }
    }

    func setNice(_ nice: Int32, of tid: Int32) throws(LinuxError) {
        try change(tid, .nice(tid: tid, nice)) { $0.nice = nice }
    }

    func setIOPriority(_ priority: Int32, of tid: Int32) throws(LinuxError) {
        try change(tid, .ioPriority(tid: tid, priority)) { $0.ioPriority = priority }
    }

    func setAffinity(_ affinity: CPUAffinity, of tid: Int32) throws(LinuxError) {
        try change(tid, .affinity(tid: tid, affinity.words)) { $0.affinity = affinity }
    }
}

/// A fake task: its injectors' calls, its memory and its /proc, and sessions over them.
final class FakeTask {
    let memory = FakeTaskMemory()
    let log: CallLog
    let proc = FakeProc()
    let scheduling = FakeScheduling()
    /// The injector into the leader; injectors into other threads are made as the engine asks.
    let injector: RecordingInjector
    /// Every injector the sessions made for another thread, by TID.
    private(set) var threadInjectors: [Int32: RecordingInjector] = [:]
    let logger = Logger(label: "amber-tests")

    init() {
        log = CallLog(memory: memory)
        injector = RecordingInjector(log: log)
    }

    var calls: [InjectedCall] { log.calls }

    private func makeInjector(_ tracee: Tracee, _ instruction: UInt64) -> any SyscallInjecting {
        let made = RecordingInjector(tid: tracee.pid, log: log)
        made.instruction = instruction
        threadInjectors[tracee.pid] = made
        return made
    }

    /// A /proc/PID/status with what its parser needs; `extra` lines are added.
    static func status(
        pid: Int32 = fakePID, tid: Int32? = nil, caught: UInt64 = 0, ignored: UInt64 = 0, umask: UInt32? = nil,
        extra: [String] = []
    ) throws -> ProcessStatus {
        let own = tid ?? pid
        var lines = [
            "Name:\tfake", "State:\tt (tracing stop)", "Tgid:\t\(pid)", "Pid:\t\(own)", "PPid:\t1", "TracerPid:\t1",
            "Threads:\t1",
            "SigPnd:\t0000000000000000", "ShdPnd:\t0000000000000000", "SigBlk:\t0000000000000000",
            "SigIgn:\t\(hex(ignored))", "SigCgt:\t\(hex(caught))",
        ]
        if let umask { lines.append("Umask:\t" + String(umask, radix: 8)) }
        return try ProcFS.parseStatus((lines + extra).joined(separator: "\n") + "\n")
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// A dump session of the task, stopped with `threads` (other than the leader), each with its
    /// status, its scratch area borrowed from its stack (`savedStackBytes`) or else mapped.
    func dumpSession(
        status: ProcessStatus? = nil, threads: [(tid: Int32, status: ProcessStatus)] = [],
        savedStackBytes: [UInt8]? = nil
    ) throws -> DumpSession {
        let leaderStatus = try status ?? Self.status()
        // Fields (3) to (52): the state, then zeros.
        let stat = try ProcFS.parseStat(
            "\(fakePID) (fake) t " + Array(repeating: "0", count: 49).joined(separator: " "))
        var statuses = [fakePID: leaderStatus]
        for thread in threads { statuses[thread.tid] = thread.status }
        var target = DumpTarget(
            pid: fakePID, name: ProcessName(pid: fakePID, comm: "fake"),
            snapshot: ProcessSnapshot(stat: stat, status: leaderStatus, threadStatuses: statuses),
            interruption: DumpInterruption(supervisor: nil))
        target.proc = proc
        target.scheduling = scheduling
        return DumpSession(
            target: target, threads: [Tracee(pid: fakePID)] + threads.map { Tracee(pid: $0.tid) }, injector: injector,
            memory: memory,
            makeInjector: makeInjector, scratch: fakeScratch, savedStackBytes: savedStackBytes, logger: logger)
    }

    /// What a helper starts with, as a copy of a restorer with these settings.
    static func baseline(
        umask: UInt32 = 0o022, dumpable: UInt32 = 1, personality: UInt32 = 0, timerSlackNs: UInt64 = 50_000
    ) -> HelperBaseline {
        var stack = Amber_SignalStack()
        stack.flags = UInt32(SS_DISABLE)
        return HelperBaseline(
            personality: personality, umask: umask, timerSlackNs: timerSlackNs, thpDisable: 0, machineCheckKill: 0,
            dumpable: dumpable,
            alternateStack: stack, credentials: Amber_Credentials())
    }

    /// A restore session that makes `task` of the fake helper, with `threads` (other than the
    /// leader) already recreated.
    func restoreSession(_ task: Amber_Task, baseline: HelperBaseline = FakeTask.baseline(), threads: [Int32] = [])
        -> RestoreSession
    {
        var record = task
        record.pid = fakePID
        let session = RestoreSession(
            task: record, image: nil, imageTrusted: false, tracee: Tracee(pid: fakePID), injector: injector,
            memory: memory, proc: proc, scheduling: scheduling,
            makeInjector: makeInjector, baseline: baseline, treeFiles: nil, openFiles: OpenFileTable(),
            inheritedPidfd: 3, logger: logger)
        session.threads += threads.map { Tracee(pid: $0) }
        session.scratch = fakeScratch
        return session
    }
}

/// Expects `body` to throw an `AmberError` with `code`; returns it.
@discardableResult
func amberError(_ code: AmberError.Code, _ body: () throws -> Void) -> AmberError? {
    do {
        try body()
    } catch let error as AmberError {
        return error.code == code ? error : nil
    } catch {
        return nil
    }
    return nil
}

/// A task record with `threads`, the leader first.
func taskRecord(threads: [Amber_Thread]) -> Amber_Task {
    var task = Amber_Task()
    task.pid = fakePID
    task.comm = threads[0].comm
    task.namespacePids = threads[0].namespaceTids
    task.threads = threads
    return task
}
