import AmberImage
import LinuxKit
import Testing

@testable import Amber

/// The watches of an epoll instance, added by epoll_ctl injected into the process whose fds
/// they name.
@Suite struct EpollWatchesTests {
    private func task(watcher: Int32, watches: [(fd: Int32, events: UInt32, data: UInt64, reported: Bool)])
        -> Amber_Task
    {
        var epoll = Amber_Epoll()
        epoll.watcherPid = watcher
        epoll.watches = watches.map { watch in
            var entry = Amber_EpollWatch()
            (entry.fd, entry.events, entry.data, entry.reported) = watch
            return entry
        }
        var description = Amber_OpenFileDescription()
        description.id = 9
        description.flags = 2
        description.epoll = epoll
        var descriptor = Amber_FileDescriptor()
        (descriptor.fd, descriptor.descriptionID) = (7, 9)
        var task = Amber_Task()
        task.files.descriptions = [description]
        task.files.descriptors = [descriptor]
        return task
    }

    /// The reported edge-triggered watch first, an epoll_wait with no wait, then the others.
    @Test func reportedWatchesAreAddedAndTakenOffTheReadyListFirst() throws {
        let fake = FakeTask()
        let record = task(
            watcher: fakePID,
            watches: [(4, 0x19, 0xaa, false), (5, 0x8000_0019, 0xbb, true)])
        try EpollWatches.restore(fake.restoreSession(record))
        let calls = fake.calls
        try #require(calls.count == 3)
        #expect(calls[0].number == SyscallNumber.epollCtl && Array(calls[0].arguments[0...2]) == [7, Epoll.add, 5])
        #expect(calls[0].load(calls[0].arguments[3], as: UInt32.self) == 0x8000_0019)
        #expect(calls[0].load(calls[0].arguments[3] + 4, as: UInt64.self) == 0xbb)
        #expect(calls[1].number == SyscallNumber.epollWait && calls[1].arguments[0] == 7 && calls[1].arguments[3] == 0)
        #expect(calls[2].number == SyscallNumber.epollCtl && Array(calls[2].arguments[0...2]) == [7, Epoll.add, 4])
        #expect(calls[2].load(calls[2].arguments[3] + 4, as: UInt64.self) == 0xaa)
    }

    /// Another process of the tree adds them: this one injects nothing.
    @Test func watchesOfAnotherProcessAreLeftToIt() throws {
        let fake = FakeTask()
        try EpollWatches.restore(fake.restoreSession(task(watcher: 4242, watches: [(4, 0x19, 0, false)])))
        #expect(fake.calls.isEmpty)
    }
}
