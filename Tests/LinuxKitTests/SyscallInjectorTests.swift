import Glibc
import Testing

@testable import LinuxKit

/// A batch of calls injected into a live helper task: stepped over the `syscall` instruction
/// while the helper's SIGTRAP is at its default, run between syscall stops once it has a
/// handler, with the same results either way.
@Suite struct SyscallInjectorTests {
    @Test func batchesStepOnlyWhileSIGTRAPIsAtItsDefault() throws {
        // clone3 takes the helper's PID from the caller: a free one in the upper half of pid_max
        // (the next, should another process take it first).
        let limit = try ProcFS.readText("/proc/sys/kernel/pid_max")
        let pidMax = try #require(limit.split(separator: "\n").first.flatMap { Int32($0) })
        var made: Tracee?
        for pid in pidMax / 2..<pidMax where made == nil && access("/proc/\(pid)", F_OK) != 0 {
            do {
                made = try createStoppedHelper(pids: [pid], keptDescriptor: -1)
            } catch {
                guard error.errno == .fileExists else { throw error }
            }
        }
        let helper = try #require(made)
        defer {
            _ = kill(helper.pid, SIGKILL)
            _ = try? helper.waitForStop()
        }
        let rip = try helper.registers().rip
        let instruction = try #require(SyscallInjector.syscallInstruction(before: rip, pid: helper.pid))
        let injector = try SyscallInjector(tracee: helper, instruction: instruction)
        // The injector blocks every signal a task can block.
        let blocked = try helper.signalMask()
        let trap: UInt64 = 1 << (UInt64(SIGTRAP) - 1)
        // The helper's session and group are the test's.
        let identity = [
            Syscall("getsid(0)", SyscallNumber.getsid, 0), Syscall("getpgid(0)", SyscallNumber.getpgid, 0),
            Syscall("getsid(0)", SyscallNumber.getsid, 0),
        ]
        let expected = [Int64(getsid(0)), Int64(getpgrp()), Int64(getsid(0))]

        #expect(SyscallInjector.maySingleStep(try ProcFS.status(pid: helper.pid)))
        #expect(try injector.raw(identity) == expected)
        #expect(try helper.signalMask() == blocked)
        // A failing call ends the batch.
        let failing = [Syscall("close(-1)", SyscallNumber.close, UInt64.max), identity[0]]
        #expect(try injector.raw(failing) == [-Int64(EBADF)])

        // A handler for SIGTRAP: struct sigaction (handler, flags, restorer, mask) below the stack
        // pointer, where the helper's stack is.
        let action = injector.savedRegisters.rsp - 4096
        let restorer: UInt64 = 0x0400_0000  // SA_RESTORER
        let fields: [UInt64] = [0x1000, restorer, 0x1000, 0]
        let memory = try ProcessMemoryFile(pid: helper.pid, writable: true)
        try fields.withUnsafeBytes { try memory.write($0, at: action) }
        try injector.call("rt_sigaction(SIGTRAP)", SyscallNumber.rtSigaction, UInt64(SIGTRAP), action, 0, 8)

        #expect(!SyscallInjector.maySingleStep(try ProcFS.status(pid: helper.pid)))
        #expect(try injector.raw(identity) == expected)
        #expect(try injector.raw(failing) == [-Int64(EBADF)])
        #expect(try helper.signalMask() == blocked)
        #expect(try ProcFS.status(pid: helper.pid).caughtSignals & trap == trap)
        try injector.finish()
    }
}
