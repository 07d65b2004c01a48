import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit
import Testing

@testable import Amber

@Suite struct SignalStateTests {
    private func action(_ signal: Int32, handler: UInt64, flags: UInt64 = 0, restorer: UInt64 = 0, mask: UInt64 = 0)
        -> Amber_SignalAction
    {
        var action = Amber_SignalAction()
        action.signal = UInt32(signal)
        action.handler = handler
        action.flags = flags
        action.restorer = restorer
        action.mask = mask
        return action
    }

    @Test func restoreHandlersInjectsRtSigactionForEachHandler() throws {
        let task = FakeTask()
        var record = Amber_Signals()
        record.actions = [
            action(SIGUSR1, handler: 0x40_1000, flags: 0x0400_0004, restorer: 0x40_2000, mask: 1 << 1),
            // SIG_IGN.
            action(SIGPIPE, handler: 1),
        ]
        try SignalState.restoreHandlers(record, task.restoreSession(Amber_Task()))

        let calls = task.calls
        try #require(calls.count == 2)
        for (call, expected) in zip(calls, record.actions) {
            #expect(call.number == SyscallNumber.rtSigaction)
            #expect(
                call.arguments[0] == UInt64(expected.signal) && call.arguments[2] == 0
                    && call.arguments[3] == Signals.setSize)
            // struct sigaction as the kernel takes it: handler, flags, restorer, mask.
            let address = call.arguments[1]
            #expect(call.load(address, as: UInt64.self) == expected.handler)
            #expect(call.load(address + 8, as: UInt64.self) == expected.flags)
            #expect(call.load(address + 16, as: UInt64.self) == expected.restorer)
            #expect(call.load(address + 24, as: UInt64.self) == expected.mask)
        }
    }

    @Test func restorePendingQueuesToTheProcessOrToTheThread() throws {
        let task = FakeTask()
        var restoredTask = Amber_Task()
        restoredTask.namespacePids = [fakePID, 40]
        let session = task.restoreSession(restoredTask)
        var shared = Amber_PendingSignal()
        shared.signal = UInt32(SIGTERM)
        shared.siginfo = Data([UInt8(SIGTERM), 0, 0, 0] + Array(repeating: 7, count: 124))
        var own = Amber_PendingSignal()
        own.signal = UInt32(SIGUSR2)
        own.siginfo = Data([UInt8(SIGUSR2), 0, 0, 0] + Array(repeating: 9, count: 124))
        try SignalState.restorePending([shared], toThread: nil, task.injector, session)
        try SignalState.restorePending([own], toThread: 41, task.injector, session)

        let calls = task.calls
        try #require(calls.count == 2)
        // The process as its own namespace numbers it.
        #expect(
            calls[0].number == SyscallNumber.rtSigqueueinfo && calls[0].arguments[0] == 40
                && calls[0].arguments[1] == UInt64(SIGTERM))
        #expect(calls[0].load(calls[0].arguments[2], count: 128) == [UInt8](shared.siginfo))
        #expect(
            calls[1].number == SyscallNumber.rtTgsigqueueinfo && calls[1].arguments[0] == 40
                && calls[1].arguments[1] == 41 && calls[1].arguments[2] == UInt64(SIGUSR2))
        #expect(calls[1].load(calls[1].arguments[3], count: 128) == [UInt8](own.siginfo))
    }

    @Test func restoreAlternateStackOnlyWhenItDiffersFromTheInheritedOne() throws {
        let task = FakeTask()
        let session = task.restoreSession(Amber_Task())
        var none = Amber_SignalStack()
        none.flags = UInt32(SS_DISABLE)
        try SignalState.restoreAlternateStack(none, task.injector, session)
        #expect(task.calls.isEmpty)

        var stack = Amber_SignalStack()
        stack.base = 0x7f00_0000_0000
        stack.size = 0x4000
        // SS_ONSTACK is a state the kernel reports, not a flag to set.
        stack.flags = UInt32(SS_ONSTACK)
        try SignalState.restoreAlternateStack(stack, task.injector, session)
        try #require(task.calls.count == 1)
        let call = task.calls[0]
        #expect(call.number == SyscallNumber.sigaltstack && call.arguments[1] == 0)
        #expect(call.load(call.arguments[0], as: UInt64.self) == 0x7f00_0000_0000)
        #expect(call.load(call.arguments[0] + 8, as: Int32.self) == 0)
        #expect(call.load(call.arguments[0] + 16, as: UInt64.self) == 0x4000)
    }

    @Test func alternateStackDumpReadsWhatSigaltstackLeaves() throws {
        let task = FakeTask()
        let memory = task.memory
        task.log.respond = { call in
            memory.store(
                SignalStack(base: 0x1234_0000, flags: SignalStack.onStack, size: 0x8000).bytes, at: call.arguments[1])
            return 0
        }
        let record = try SignalState.alternateStack(task.injector, task.dumpSession())
        #expect(task.calls == [InjectedCall(SyscallNumber.sigaltstack, 0, fakeScratch)])
        #expect(record.base == 0x1234_0000 && record.size == 0x8000 && record.flags == UInt32(SS_ONSTACK))
    }
}

@Suite struct MembarrierStateTests {
    @Test func dumpReadsTheRegistrationsInOneCall() throws {
        let task = FakeTask()
        task.log.script = [
            Int64(MembarrierCommand.registerPrivateExpedited | MembarrierCommand.registerGlobalExpedited)
        ]
        let record = try MembarrierState.dump(task.dumpSession())
        #expect(task.calls == [InjectedCall(SyscallNumber.membarrier, MembarrierCommand.getRegistrations, 0, 0)])
        #expect(
            record.privateExpedited && record.globalExpedited && !record.privateExpeditedSyncCore
                && !record.privateExpeditedRseq)
    }

    @Test func dumpOnAnOlderKernelIssuesEachPrivateCommand() throws {
        let task = FakeTask()
        // No GET_REGISTRATIONS; registered for SYNC_CORE only; RSEQ unknown.
        task.log.script = [-Int64(EINVAL), -Int64(EPERM), 0, -Int64(EINVAL)]
        let record = try MembarrierState.dump(task.dumpSession())
        #expect(
            task.calls.map { $0.arguments[0] } == [
                MembarrierCommand.getRegistrations, MembarrierCommand.privateExpedited,
                MembarrierCommand.privateExpeditedSyncCore, MembarrierCommand.privateExpeditedRseq,
            ])
        #expect(
            !record.privateExpedited && record.privateExpeditedSyncCore && !record.privateExpeditedRseq
                && !record.globalExpedited)
    }

    @Test func dumpFailsOnAnUnexpectedError() throws {
        let task = FakeTask()
        task.log.script = [-Int64(EFAULT)]
        #expect(throws: LinuxError.self) { try MembarrierState.dump(task.dumpSession()) }
    }

    @Test func restoreRegistersEachRecordedRegistration() throws {
        let task = FakeTask()
        var record = Amber_Membarrier()
        record.privateExpeditedRseq = true
        record.globalExpedited = true
        try MembarrierState.restore(record, task.restoreSession(Amber_Task()))
        #expect(
            task.calls == [
                InjectedCall(SyscallNumber.membarrier, MembarrierCommand.registerPrivateExpeditedRseq, 0, 0),
                InjectedCall(SyscallNumber.membarrier, MembarrierCommand.registerGlobalExpedited, 0, 0),
            ])
    }
}

@Suite struct KeyringStateTests {
    /// Answers KEYCTL_DESCRIBE with `description`, KEYCTL_GET_KEYRING_ID with `keyrings` (by the
    /// special ID asked for; ENOKEY for the others) and KEYCTL_READ with `keyBytes`.
    private func respond(_ task: FakeTask, keyrings: [UInt64: Int64], description: String, keyBytes: Int64 = 0) {
        let memory = task.memory
        task.log.respond = { call in
            switch call.arguments[0] {
            case Keyrings.getKeyringID: return keyrings[call.arguments[1]] ?? -Int64(ENOKEY)
            case Keyrings.describe:
                memory.store(Array(description.utf8) + [0], at: call.arguments[2])
                return Int64(description.utf8.count + 1)
            case Keyrings.read: return keyBytes
            default: return -Int64(EINVAL)
            }
        }
    }

    @Test func aUsersSessionKeyringStandsForNone() throws {
        let task = FakeTask()
        respond(task, keyrings: [Keyrings.sessionKeyring: 55], description: "keyring;1000;1000;3f030000;_uid_ses.1000")
        let (serial, own) = try KeyringState.dump(task.dumpSession(), parentKeyring: 0)
        #expect(serial == 0 && !own)
        #expect(
            task.calls.map { $0.arguments[0] } == [Keyrings.getKeyringID, Keyrings.getKeyringID, Keyrings.describe])
        #expect(task.calls[2].arguments[1] == 55 && task.calls[2].arguments[3] == UInt64(DumpSession.scratchSize))
    }

    @Test func theParentsKeyringIsNotTheProcesssOwn() throws {
        let task = FakeTask()
        respond(task, keyrings: [Keyrings.sessionKeyring: 55], description: "keyring;0;0;3f1b0000;_ses")
        let (serial, own) = try KeyringState.dump(task.dumpSession(), parentKeyring: 55)
        #expect(serial == 55 && !own)
    }

    @Test func anEmptyKeyringOfItsOwnIsKept() throws {
        let task = FakeTask()
        respond(task, keyrings: [Keyrings.sessionKeyring: 77], description: "keyring;0;0;3f1b0000;_ses")
        let (serial, own) = try KeyringState.dump(task.dumpSession(), parentKeyring: 55)
        #expect(serial == 77 && own)
        #expect(task.calls.last == InjectedCall(SyscallNumber.keyctl, Keyrings.read, 77, 0, 0))
    }

    @Test func keysAreRefused() throws {
        let task = FakeTask()
        respond(task, keyrings: [Keyrings.sessionKeyring: 77], description: "keyring;0;0;3f1b0000;_ses", keyBytes: 8)
        let error = amberError(.unsupported) { _ = try KeyringState.dump(task.dumpSession(), parentKeyring: 55) }
        #expect(error?.message.contains("holds 2 keys") == true)

        let processKeyring = FakeTask()
        respond(
            processKeyring, keyrings: [Keyrings.processKeyring: 12, Keyrings.sessionKeyring: 77],
            description: "keyring;0;0;3f1b0000;_ses")
        #expect(
            amberError(.unsupported) { _ = try KeyringState.dump(processKeyring.dumpSession(), parentKeyring: 55) }
                != nil)

        let threadKeyring = FakeTask()
        respond(threadKeyring, keyrings: [Keyrings.threadKeyring: 13], description: "")
        #expect(
            amberError(.unsupported) {
                try KeyringState.checkThread(threadKeyring.injector, threadKeyring.dumpSession())
            } != nil)
        #expect(
            threadKeyring.calls == [
                InjectedCall(SyscallNumber.keyctl, Keyrings.getKeyringID, Keyrings.threadKeyring, 0)
            ])
    }

    @Test func aNewSessionKeyringIsOwnedByTheTasksFilesystemIDs() throws {
        let task = FakeTask()
        task.log.script = [91]
        var leader = Amber_Thread()
        leader.credentials.fsuid = geteuid() &+ 1000
        leader.credentials.fsgid = 1234
        let record = taskRecord(threads: [leader])
        try KeyringState.joinNewSessionKeyring(task.injector, for: record)
        #expect(
            task.calls == [
                InjectedCall(SyscallNumber.keyctl, Keyrings.joinSessionKeyring, 0),
                InjectedCall(SyscallNumber.keyctl, Keyrings.chown, 91, UInt64(leader.credentials.fsuid), 1234),
            ])
    }

    @Test func whoNeedsANewSessionKeyring() {
        var task = Amber_Task()
        #expect(!KeyringState.needsNewSessionKeyring(task, isRoot: false))
        task.ownSessionKeyring = true
        #expect(KeyringState.needsNewSessionKeyring(task, isRoot: false))
        var leader = Amber_Thread()
        leader.credentials.uid = getuid() &+ 1
        leader.credentials.euid = geteuid()
        let root = taskRecord(threads: [leader])
        #expect(KeyringState.needsNewSessionKeyring(root, isRoot: true))
        #expect(!KeyringState.needsNewSessionKeyring(root, isRoot: false))
    }
}
