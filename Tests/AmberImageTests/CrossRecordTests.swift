import AmberImage
import Foundation
import XCTest

/// `ImageReader.tasks()`: every record, each valid alone, must also agree with the others:
/// one tree under the root, and open file descriptions described alike wherever they are shared.
final class CrossRecordTests: ImageTestCase {
    private var imageCount = 0

    /// The fixture task `pid` whose parent is `ppid`.
    private func task(_ pid: Int32, parent ppid: Int32) -> Amber_Task {
        var task = Fixture.task(pid: pid)
        task.ppid = ppid
        return task
    }

    /// A thread besides the leader.
    private func thread(_ tid: Int32) -> Amber_Thread {
        Fixture.thread(tid: tid, comm: "worker")
    }

    /// A reader of an image of `tasks`, rooted at `root`.
    private func reader(_ tasks: [Amber_Task], root: Int32 = Fixture.pid) throws -> ImageReader {
        imageCount += 1
        let directory = path("image-\(imageCount)")
        try Fixture.writeImage(at: directory, tasks: tasks, inventory: Fixture.inventory(rootPID: root))
        return try ImageReader(directory: directory)
    }

    /// Asserts that every task of `tasks` reads alone, but the whole image is refused as
    /// `.invalid` naming `file`, with a detail that contains `detail`; `amber show` refuses it too.
    private func assertRefused(
        _ tasks: [Amber_Task], root: Int32 = Fixture.pid, file: String, detail: String,
        sourceFile: StaticString = #filePath, line: UInt = #line
    ) throws {
        let reader = try reader(tasks, root: root)
        for pid in reader.taskPIDs { XCTAssertNoThrow(try reader.task(pid: pid), file: sourceFile, line: line) }
        for read in [{ _ = try reader.tasks() }, { _ = try imageJSON(reader) }] {
            guard let error = imageError(file: sourceFile, line: line, read) else { continue }
            XCTAssertEqual(error.kind, .invalid, "\(error)", file: sourceFile, line: line)
            XCTAssertEqual(error.file, file, "\(error)", file: sourceFile, line: line)
            XCTAssert(
                error.detail.contains(detail), "\"\(error.detail)\" does not say \"\(detail)\"", file: sourceFile,
                line: line)
        }
    }

    func testTreeIsReadRootFirst() throws {
        let tasks = [task(4242, parent: 4243), Fixture.task(pid: 4243), task(4244, parent: 4242)]
        let whole = try reader(tasks, root: 4243).tasks()
        XCTAssertEqual(whole.map(\.pid), [4243, 4242, 4244])
        XCTAssertEqual(whole, [tasks[1], tasks[0], tasks[2]])
    }

    func testMissingParentIsRefused() throws {
        try assertRefused(
            [Fixture.task(), task(4243, parent: 4999)], file: "task-4243.pb", detail: "ppid 4999 has no task record")
    }

    func testCycleOfParentsIsRefused() throws {
        let tasks = [Fixture.task(), task(4243, parent: 4244), task(4244, parent: 4243)]
        try assertRefused(tasks, file: "task-4243.pb", detail: "not reachable from the root 4242")
    }

    func testTIDOfTwoTasksIsRefused() throws {
        var root = Fixture.task()
        root.threads.append(thread(4300))
        var child = task(4243, parent: 4242)
        child.threads.append(thread(4300))
        try assertRefused([root, child], file: "task-4243.pb", detail: "TID 4300 belongs to two tasks")
        child = task(4243, parent: 4242)
        child.threads.append(thread(4242))
        try assertRefused([Fixture.task(), child], file: "task-4243.pb", detail: "TID 4242 belongs to two tasks")
    }

    func testZombieRootIsRefused() throws {
        var root = Amber_Task()
        root.pid = Fixture.pid
        root.comm = "gone"
        root.zombie = true
        root.exitStatus = 9
        try assertRefused([root], file: "task-4242.pb", detail: "the root cannot be a zombie")
        try assertRefused(
            [root, task(4243, parent: 4242)], file: "task-4242.pb", detail: "the root cannot be a zombie")
    }

    func testSharedOpenFileMustBeDescribedAlike() throws {
        let root = Fixture.task()
        XCTAssertEqual(try reader([root, task(4243, parent: 4242)]).tasks().count, 2)
        var child = task(4243, parent: 4242)
        child.files.descriptions[1].offset += 1
        try assertRefused(
            [root, child], file: "task-4243.pb", detail: "open file 2 differs from the one task-4242.pb describes")
        child = task(4243, parent: 4242)
        child.files.descriptions[0].characterDevice.path = "/dev/zero"
        try assertRefused(
            [root, child], file: "task-4243.pb", detail: "open file 1 differs from the one task-4242.pb describes")
    }

    /// One object outside the tree is on one description: one descriptor takes its place.
    func testExternalObjectIsOnOneDescription() throws {
        func external(_ id: UInt32) -> Amber_OpenFileDescription {
            var description = Amber_OpenFileDescription()
            description.id = id
            description.flags = 1
            description.externalFile.name = "pipe:[77]"
            return description
        }
        var root = Fixture.task()
        root.files.descriptions.append(external(10))
        var child = task(4243, parent: 4242)
        child.files.descriptions.append(external(10))
        XCTAssertEqual(try reader([root, child]).tasks().count, 2)
        child.files.descriptions.append(external(11))
        try assertRefused([root, child], file: "task-4243.pb", detail: "pipe:[77] is on open files 10 and 11")
    }

    func testSharedAnonymousMemoryMustBeDescribedAlike() throws {
        var root = Fixture.task()
        root.memory.areas[1].shared = true
        root.memory.areas[1].pages = []
        root.memory.areas[1].sharedAnonymousID = 77
        var object = Amber_SharedAnonymousMemory()
        object.id = 77
        object.size = 0x4000
        object.pageFile = ImageFormat.sharedAnonymousFileName(id: 77)
        root.memory.sharedAnonymous = [object]
        var child = task(4243, parent: 4242)
        child.memory = root.memory
        XCTAssertEqual(try reader([root, child]).tasks().count, 2)
        child.memory.sharedAnonymous[0].size = 0x8000
        try assertRefused(
            [root, child], file: "task-4243.pb",
            detail: "object 77 differs from its description in task-4242.pb")
    }

    /// A unix socket of the image with `inode`, in open file `id`.
    private func unixSocket(
        _ id: UInt32, inode: UInt64, _ change: (inout Amber_UnixSocket) -> Void
    ) -> Amber_OpenFileDescription {
        var socket = Amber_UnixSocket()
        (socket.inode, socket.type, socket.peekOffset) = (inode, 1, -1)
        change(&socket)
        var description = Amber_OpenFileDescription()
        (description.id, description.flags) = (id, 2)
        description.unixSocket = socket
        return description
    }

    /// A pair's sockets name each other; a listener and the sockets waiting on it agree.
    func testUnixSocketsMustAgree() throws {
        func image(_ other: (inout Amber_UnixSocket) -> Void) -> [Amber_Task] {
            var root = Fixture.task()
            var child = task(4243, parent: 4242)
            root.files.descriptions.append(unixSocket(50, inode: 11) { ($0.pairID, $0.peerInode) = (11, 12) })
            child.files.descriptions.append(unixSocket(51, inode: 12) { ($0.pairID, $0.peerInode) = (11, 11) })
            root.files.descriptions.append(
                unixSocket(52, inode: 20) {
                    ($0.address, $0.fileInode, $0.listening, $0.pendingConnections) = (Data([0, 65]), 0, true, [21])
                })
            child.files.descriptions.append(unixSocket(53, inode: 21, other))
            return [root, child]
        }
        XCTAssertEqual(try reader(image { $0.listenerInode = 20 }).tasks().count, 2)
        try assertRefused(image { _ in }, file: "task-4242.pb", detail: "is not a socket of the image that waits on it")
        var tasks = image { $0.listenerInode = 20 }
        tasks[1].files.descriptions[2].unixSocket.peerInode = 13
        tasks[1].files.descriptions[2].unixSocket.pairID = 12
        try assertRefused(tasks, file: "task-4242.pb", detail: "unix socket 11's peer 12 is not a socket of the image")
    }

    /// An epoll instance's watches are added by the process it names, which holds it and has
    /// each fd watched; a pidfd is of a live process of the image.
    func testEpollWatcherAndPidfdTarget() throws {
        func withEpoll(watcher: Int32, fd: Int32) -> Amber_Task {
            var task = Fixture.task()
            var record = Amber_Epoll()
            record.watcherPid = watcher
            var watch = Amber_EpollWatch()
            (watch.fd, watch.events) = (fd, 0x19)
            record.watches = [watch]
            (task.files.descriptions[1].flags, task.files.descriptions[1].offset) = (2, 0)
            task.files.descriptions[1].epoll = record
            return task
        }
        XCTAssertEqual(try reader([withEpoll(watcher: 4242, fd: 1)]).tasks().count, 1)
        try assertRefused(
            [withEpoll(watcher: 4243, fd: 1)], file: "task-4242.pb",
            detail: "names process 4243, which does not hold it")
        try assertRefused(
            [withEpoll(watcher: 4242, fd: 9)], file: "task-4242.pb",
            detail: "watches fd 9, which process 4242 does not have")

        func withPidfd(_ pid: Int32) -> Amber_Task {
            var task = Fixture.task()
            var record = Amber_Pidfd()
            record.pid = pid
            (task.files.descriptions[1].flags, task.files.descriptions[1].offset) = (2, 0)
            task.files.descriptions[1].pidfd = record
            return task
        }
        XCTAssertEqual(try reader([withPidfd(4242)]).tasks().count, 1)
        try assertRefused([withPidfd(4243)], file: "task-4242.pb", detail: "is of 4243, no live process of the image")
    }

    /// A listener lists the accepted socket of each of its connections; the accepted socket and
    /// its client name it, and it lists exactly one of them.
    func testAcceptedUnixConnectionsMustAgree() throws {
        func image(listed: [UInt64], clientFrom: UInt64 = 20) -> [Amber_Task] {
            var root = Fixture.task()
            var child = task(4243, parent: 4242)
            root.files.descriptions.append(
                unixSocket(60, inode: 20) {
                    ($0.address, $0.listening, $0.acceptedConnections) = (Data([0, 65]), true, listed)
                })
            root.files.descriptions.append(
                unixSocket(61, inode: 30) { ($0.pairID, $0.peerInode, $0.acceptedFrom) = (30, 31, 20) })
            child.files.descriptions.append(
                unixSocket(62, inode: 31) { ($0.pairID, $0.peerInode, $0.acceptedFrom) = (30, 30, clientFrom) })
            return [root, child]
        }
        XCTAssertEqual(try reader(image(listed: [30])).tasks().count, 2)
        try assertRefused(
            image(listed: []), file: "task-4242.pb", detail: "which does not list exactly one of it and its peer")
        try assertRefused(
            image(listed: [30, 31]), file: "task-4242.pb", detail: "which does not list exactly one of it and its peer")
        try assertRefused(
            image(listed: [30, 32]), file: "task-4242.pb", detail: "is not a socket of the image accepted from it")
        try assertRefused(
            image(listed: [30], clientFrom: 99), file: "task-4242.pb",
            detail: "which does not list exactly one of it and its peer")
    }

    /// Only the root records a shell job, and descriptors on its terminal need that record.
    func testShellJobIsTheRoots() throws {
        var root = Fixture.task()
        var child = task(4243, parent: Fixture.pid)
        child.shellJob.terminal = "/dev/pts/3"
        try assertRefused([root, child], file: "task-4243.pb", detail: "only the root's record has it")
        child.clearShellJob()
        // The fixture's tasks share their descriptions: both are on the terminal.
        func onTerminal(_ task: inout Amber_Task) {
            task.files.descriptions[1].flags = 2
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].shellJobTerminal.path = "/dev/pts/3"
        }
        onTerminal(&root)
        onTerminal(&child)
        try assertRefused([root, child], file: "task-4242.pb", detail: "the root's record has no shell_job")
        root.shellJob.terminal = "/dev/pts/3"
        XCTAssertEqual(try reader([root, child]).tasks().count, 2)
    }

    /// A pty's slave names a master of the image (/dev/tty, one that is a session's controlling
    /// terminal); the session of a master's slave is led by a task of the image, and its
    /// foreground group is a group of that session.
    func testPtysAgree() throws {
        func withPty(
            _ change: (inout Amber_PtyMaster) -> Void = { _ in }, slaveOf index: UInt32 = 3, devTty: Bool = false
        ) -> [Amber_Task] {
            var root = Fixture.task()
            var master = Amber_OpenFileDescription()
            master.id = 30
            master.flags = 0o2
            master.ptyMaster.index = 3
            master.ptyMaster.path = "/dev/ptmx"
            master.ptyMaster.settings.controlCharacters = Data(repeating: 0, count: 19)
            change(&master.ptyMaster)
            var slave = Amber_OpenFileDescription()
            slave.id = 31
            slave.flags = 0o2
            slave.ptySlave.index = index
            slave.ptySlave.controllingTerminal = devTty
            root.files.descriptions += [master, slave]
            return [root]
        }
        XCTAssertNoThrow(try reader(withPty { $0.session = Fixture.pid }).tasks())
        try assertRefused(withPty(slaveOf: 4), file: "task-4242.pb", detail: "which has no master")
        XCTAssertNoThrow(try reader(withPty({ $0.session = Fixture.pid }, devTty: true)).tasks())
        try assertRefused(
            withPty(devTty: true), file: "task-4242.pb", detail: "which is no session's controlling terminal")
        try assertRefused(
            withPty { $0.session = 4999 }, file: "task-4999.pb", detail: "which no live task of the image leads")
        try assertRefused(
            withPty { ($0.session, $0.foregroundGroup) = (Fixture.pid, 4999) }, file: "task-4242.pb",
            detail: "has no task in session")
    }
}
