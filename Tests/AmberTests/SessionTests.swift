import AmberImage
import Glibc
import LinuxKit
import Testing

@testable import Amber

@Suite struct SessionTests {
    @Test func installMovesTheRestorersPidfdAboveTheImagesDescriptorsOnce() throws {
        let task = FakeTask()
        var record = Amber_Task()
        var descriptor = Amber_FileDescriptor()
        descriptor.fd = 9
        record.files.descriptors = [descriptor]
        let session = task.restoreSession(record)
        task.log.script = [12, 0, 13, 14]
        #expect(try session.install(40) == 13)
        #expect(try session.install(41) == 14)
        #expect(
            task.calls == [
                InjectedCall(SyscallNumber.fcntl, 3, UInt64(F_DUPFD_CLOEXEC), 10),
                InjectedCall(SyscallNumber.close, 3),
                InjectedCall(SyscallNumber.pidfdGetfd, 12, 40, 0),
                InjectedCall(SyscallNumber.pidfdGetfd, 12, 41, 0),
            ])

        try session.cleanUp()
        #expect(
            Array(task.calls.dropFirst(4)) == [
                InjectedCall(SyscallNumber.close, 12),
                InjectedCall(SyscallNumber.munmap, fakeScratch, UInt64(RestoreSession.scratchSize)),
            ])
        #expect(session.scratch == 0)
    }

    @Test func aDumpPutsBackTheStackBytesItBorrowed() throws {
        let task = FakeTask()
        let session = try task.dumpSession(savedStackBytes: [1, 2, 3, 4])
        try session.finish()
        #expect(task.calls.isEmpty)
        #expect(task.memory.writes.map(\.address) == [fakeScratch])
        #expect(task.memory.writes.map(\.bytes) == [[1, 2, 3, 4]])
    }

    @Test func aDumpUnmapsTheScratchPageItMapped() throws {
        let task = FakeTask()
        try task.dumpSession().finish()
        #expect(task.calls == [InjectedCall(SyscallNumber.munmap, fakeScratch, 4096)])
        #expect(task.memory.writes.isEmpty)
    }

    @Test func theLeadersInjectorIsTheSessionsAndEachOtherThreadGetsItsOwn() throws {
        let task = FakeTask()
        let session = task.restoreSession(Amber_Task(), threads: [fakePID + 1])
        #expect(try session.injector(for: Tracee(pid: fakePID)) as? RecordingInjector === task.injector)
        let other = try session.injector(for: Tracee(pid: fakePID + 1))
        #expect(other.tracee.pid == fakePID + 1 && other.instruction == task.injector.instruction)
        #expect(task.threadInjectors[fakePID + 1] === other as? RecordingInjector)
    }
}
