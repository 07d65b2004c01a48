import AmberImage
import Foundation
import XCTest

/// Each rule of the task validation, broken once on an otherwise valid task
/// written through `ImageWriter` and read back through `ImageReader`.
final class TaskValidationTests: ImageTestCase {
    private var imageCount = 0

    /// Writes the fixture task changed by `change` and asserts that reading it
    /// fails with `.invalid`, naming task-4242.pb and `field`.
    func assertRejected(
        _ field: String,
        inventory: Amber_Inventory = Fixture.inventory(),
        file: StaticString = #filePath, line: UInt = #line,
        _ change: (inout Amber_Task) -> Void
    ) throws {
        var task = Fixture.task()
        change(&task)
        imageCount += 1
        let directory = path("image-\(imageCount)")
        try Fixture.writeImage(at: directory, tasks: [task], pid: Fixture.pid, inventory: inventory)
        let reader = try ImageReader(directory: directory)
        guard let error = imageError(file: file, line: line, { _ = try reader.task(pid: Fixture.pid) }) else { return }
        XCTAssertEqual(error.kind, .invalid, "\(error)", file: file, line: line)
        XCTAssertEqual(error.file, "task-4242.pb", file: file, line: line)
        XCTAssert(
            error.detail.hasPrefix(field), "\"\(error.detail)\" does not start with \(field)", file: file, line: line)
    }

    /// Writes the fixture task changed by `change` and asserts that it reads back unchanged.
    func assertAccepted(
        file: StaticString = #filePath, line: UInt = #line, _ change: (inout Amber_Task) -> Void
    ) throws {
        var task = Fixture.task()
        change(&task)
        imageCount += 1
        let directory = path("image-\(imageCount)")
        try Fixture.writeImage(at: directory, tasks: [task], pid: Fixture.pid)
        XCTAssertEqual(try ImageReader(directory: directory).task(pid: Fixture.pid), task, file: file, line: line)
    }

    private func siginfo(_ signal: UInt32) -> Data {
        Data([UInt8(signal), 0, 0, 0] + [UInt8](repeating: 0, count: 124))
    }

    func testFixtureIsValid() throws {
        try Fixture.writeImage(at: path("image"))
        XCTAssertEqual(try ImageReader(directory: path("image")).task(pid: Fixture.pid), Fixture.task())
    }

    func testZombie() throws {
        try assertRejected("zombie") {
            $0.zombie = true
            $0.exitStatus = 42 << 8
        }
        try assertRejected("exit_status") { task in
            task = Amber_Task()
            task.pid = Fixture.pid
            task.zombie = true
            task.exitStatus = 0x7f
        }
        try assertAccepted { task in
            task = Amber_Task()
            task.pid = Fixture.pid
            task.comm = "gone"
            task.zombie = true
            task.exitStatus = 9
        }
        try assertRejected("zombie") { task in
            task = Amber_Task()
            task.pid = Fixture.pid
            task.zombie = true
            task.exitStatus = 9
            task.threads = [Fixture.thread(tid: Fixture.pid)]
        }
    }

    func testStop() throws {
        try assertAccepted { $0.stopSignal = 19 }
        try assertAccepted {
            $0.stopSignal = 20
            $0.stopReported = true
        }
        try assertRejected("stop_signal") { $0.stopSignal = 9 }
        try assertRejected("stop_signal") { $0.stopSignal = 23 }
        try assertRejected("stop_reported") { $0.stopReported = true }
        try assertAccepted { $0.exitSignal = 0 }
        try assertAccepted { $0.exitSignal = 10 }
        try assertRejected("exit_signal") { $0.exitSignal = 65 }
        try assertRejected("zombie") { task in
            task = Amber_Task()
            task.pid = Fixture.pid
            task.zombie = true
            task.stopSignal = 19
        }
    }

    func testThreads() throws {
        let other = Fixture.thread(tid: 4243)
        try assertAccepted { $0.threads += [other, Fixture.thread(tid: 4244)] }
        try assertRejected("threads") { $0.threads = [] }
        try assertRejected("threads[0].tid") { $0.threads = [other] }
        try assertRejected("threads[0].tid") { $0.threads.insert(other, at: 0) }
        try assertRejected("threads[0].comm") { $0.threads[0].comm = "other" }
        try assertRejected("threads[1].tid") { $0.threads.append($0.threads[0]) }
        try assertRejected("threads[2].tid") { $0.threads += [other, other] }
        try assertRejected("threads[0].registers") { $0.threads[0].clearRegisters() }
        try assertRejected("threads[1].registers") {
            $0.threads.append(other)
            $0.threads[1].clearRegisters()
        }
        try assertRejected("threads[1].comm") {
            $0.threads.append(other)
            $0.threads[1].comm = "sixteen-bytes-xx"
        }
        try assertRejected("threads[1].alternate_stack.flags") {
            $0.threads.append(other)
            $0.threads[1].alternateStack.flags = 4
        }
    }

    func testSeccomp() throws {
        // Kill on getpriority (141), allow the rest: 4 instructions.
        let program = Data([
            0x20, 0, 0, 0, 0, 0, 0, 0, 0x15, 0, 0, 1, 141, 0, 0, 0, 0x06, 0, 0, 0, 0, 0, 0, 0x80, 0x06, 0, 0, 0, 0, 0,
            0xff, 0x7f,
        ])
        func filter(_ bytes: Data = program, flags: UInt64 = 0) -> Amber_SeccompFilter {
            var filter = Amber_SeccompFilter()
            filter.program = bytes
            filter.flags = flags
            return filter
        }
        func thread(_ mode: Amber_SeccompMode, _ chain: [UInt32]) -> Amber_SeccompThread {
            var thread = Amber_SeccompThread()
            thread.mode = mode
            thread.chain = chain
            return thread
        }
        func withThread(_ task: inout Amber_Task, _ seccomp: Amber_SeccompThread) {
            var other = Fixture.thread(tid: 4243)
            other.seccomp = seccomp
            task.threads.append(other)
        }
        try assertAccepted { task in
            task.seccomp.filters = [filter(), filter(flags: 2), filter()]
            task.threads[0].seccomp = thread(.filter, [0, 1])
            withThread(&task, thread(.filter, [0, 1, 2]))
        }
        try assertAccepted { withThread(&$0, thread(.strict, [])) }
        try assertRejected("seccomp.filters[0].program") {
            $0.seccomp.filters = [filter(Data())]
            $0.threads[0].seccomp = thread(.filter, [0])
        }
        try assertRejected("seccomp.filters[0].program") {
            $0.seccomp.filters = [filter(program.prefix(7))]
            $0.threads[0].seccomp = thread(.filter, [0])
        }
        try assertRejected("seccomp.filters[0].program") {
            $0.seccomp.filters = [filter(Data(count: 4097 * 8))]
            $0.threads[0].seccomp = thread(.filter, [0])
        }
        try assertRejected("seccomp.filters[0].flags") {
            $0.seccomp.filters = [filter(flags: 1)]
            $0.threads[0].seccomp = thread(.filter, [0])
        }
        try assertRejected("threads[0].seccomp.mode") { $0.threads[0].seccomp.mode = .UNRECOGNIZED(3) }
        try assertRejected("threads[0].seccomp.chain") {
            $0.seccomp.filters = [filter()]
            $0.threads[0].seccomp = thread(.strict, [0])
        }
        try assertRejected("threads[0].seccomp.chain") { $0.threads[0].seccomp = thread(.filter, []) }
        try assertRejected("threads[0].seccomp.chain[0]") {
            $0.seccomp.filters = [filter()]
            $0.threads[0].seccomp = thread(.filter, [1])
        }
        try assertRejected("threads[0].seccomp.chain[1]") {
            $0.seccomp.filters = [filter()]
            $0.threads[0].seccomp = thread(.filter, [0, 0])
        }
        try assertRejected("threads[1].seccomp.chain[0]") { task in
            task.seccomp.filters = [filter()]
            task.threads[0].seccomp = thread(.filter, [0])
            withThread(&task, thread(.filter, [5]))
        }
        try assertRejected("threads[0].seccomp.chain") { task in
            task.seccomp.filters = (0..<9).map { _ in filter(Data(count: 4096 * 8)) }
            task.threads[0].seccomp = thread(.filter, Array(0..<9))
        }
        try assertRejected("seccomp.filters") {
            $0.seccomp.filters = [filter(), filter()]
            $0.threads[0].seccomp = thread(.filter, [0])
        }
        try assertRejected("zombie") { task in
            task = Amber_Task()
            task.pid = Fixture.pid
            task.zombie = true
            task.exitStatus = 9
            task.seccomp.filters = [filter()]
        }
    }

    func testNamespacePIDs() throws {
        try assertAccepted {
            $0.namespacePids = [Fixture.pid, 1]
            $0.namespacePgids = [Fixture.pid, 1]
            $0.threads[0].namespaceTids = [Fixture.pid, 1]
        }
        try assertRejected("namespace_pids") { $0.namespacePids = [7, 1] }
        try assertRejected("namespace_pids") { $0.namespacePids = [Fixture.pid] }
        try assertRejected("namespace_pgids") {
            $0.namespacePids = [Fixture.pid, 1]
            $0.namespacePgids = [Fixture.pid]
        }
        try assertRejected("threads[0].namespace_tids") { $0.namespacePids = [Fixture.pid, 1] }
        try assertRejected("threads[0].namespace_tids") {
            $0.namespacePids = [Fixture.pid, 1]
            $0.threads[0].namespaceTids = [Fixture.pid, 2]
        }
        try assertRejected("threads[1].namespace_tids") { task in
            var thread = Fixture.thread(tid: 4243)
            thread.namespaceTids = [4243, 2]
            task.threads.append(thread)
        }
    }

    func testIdentity() throws {
        try assertRejected("pid") { $0.pid = 0 }
        try assertRejected("pid") { $0.pid = 4243 }
        try assertRejected("ppid") { $0.ppid = -1 }
        try assertRejected("pgid") { $0.pgid = -2 }
        try assertRejected("sid") { $0.sid = -3 }
        try assertRejected("comm") { $0.comm = "sixteen-bytes-xx" }
        try assertRejected("comm") { $0.comm = "nul\u{0}" }
        try assertRejected("ppid") { $0.ppid = 4_194_305 }
        try assertRejected("sid") { $0.sid = Int32.max }
        try assertAccepted { $0.ppid = 0 }
    }

    func testRegisters() throws {
        try assertRejected("threads[0].registers") { $0.threads[0].clearRegisters() }
        try assertRejected("threads[0].registers.xstate") { $0.threads[0].registers.xstate = Data(count: 100) }
        try assertRejected("threads[0].registers.xstate") { $0.threads[0].registers.xstate = Data(count: 70000) }
        var inventory = Fixture.inventory()
        inventory.xstateSize = 1024
        try assertRejected("threads[0].registers.xstate", inventory: inventory) { _ in }
        try assertRejected("threads[0].registers.xstate") { $0.threads[0].registers.xstate[512] |= 0x8 }
        try assertRejected("threads[0].registers.xstate") { $0.threads[0].registers.xstate[520] = 1 }
        try assertRejected("threads[0].registers.fs_base") {
            $0.threads[0].registers.fsBase = ImageFormat.userAddressLimit
        }
        try assertRejected("threads[0].registers.gs_base") { $0.threads[0].registers.gsBase = UInt64.max }
        try assertAccepted { $0.threads[0].registers.xstate[512] = 0x3 }
    }

    func testMemoryAreas() throws {
        try assertRejected("memory.areas[1]") { $0.memory.areas[1].end = $0.memory.areas[1].start }
        try assertRejected("memory.areas[1]") { $0.memory.areas[1].start += 1 }
        try assertRejected("memory.areas[1]") { $0.memory.areas[1].end -= 1 }
        try assertRejected("memory.areas[3].end") { $0.memory.areas[3].end = ImageFormat.userAddressLimit + 0x1000 }
        try assertRejected("memory.areas[2]") { $0.memory.areas.swapAt(1, 2) }
        try assertRejected("memory.areas[2]") { $0.memory.areas[2].start = $0.memory.areas[1].end - 0x1000 }
        try assertRejected("memory.areas[1].protection") { $0.memory.areas[1].protection = 8 }
        try assertRejected("memory.areas[1].kind") { $0.memory.areas[1].kind = .UNRECOGNIZED(42) }
        try assertRejected("memory.areas[0].path") { $0.memory.areas[0].path = "usr/bin/sleeper" }
        try assertRejected("memory.areas[0].path") { $0.memory.areas[0].path = "/usr/../bin/sleeper" }
        try assertRejected("memory.areas[0].path") { $0.memory.areas[0].path = "/usr/bin/\u{0}" }
        try assertRejected("memory.areas[0].path") { $0.memory.areas[0].path = "" }
        try assertRejected("memory.areas[0].path") {
            $0.memory.areas[0].path = "/" + String(repeating: "a", count: 4095)
        }
        try assertRejected("memory.areas[0].file_offset") { $0.memory.areas[0].fileOffset = 100 }
        try assertRejected("memory.areas[0].file_offset") { $0.memory.areas[0].fileOffset = UInt64(Int64.max) & ~0xfff }
        try assertRejected("memory.areas[5].kind") { $0.memory.areas[4].kind = .areaVdso }
        try assertRejected("memory.areas[6]") {
            $0.memory.areas[6].start -= 0x1000
            $0.memory.areas[6].end -= 0x1000
        }
        try assertRejected("memory.areas[7].kind") { $0.memory.areas.append($0.memory.areas[6]) }
        try assertAccepted { $0.memory.areas[0].fileOffset = 0x7000 }
    }

    func testAnonymousAreaName() throws {
        let anonymous = try XCTUnwrap(
            Fixture.task().memory.areas.firstIndex { $0.kind == .areaAnonymous && !$0.shared })
        try assertAccepted { $0.memory.areas[anonymous].anonymousName = "arena 1" }
        try assertRejected("memory.areas[\(anonymous)].anonymous_name") {
            $0.memory.areas[anonymous].anonymousName = "bad]name"
        }
        try assertRejected("memory.areas[\(anonymous)].anonymous_name") {
            $0.memory.areas[anonymous].anonymousName = String(repeating: "x", count: 81)
        }
        let file = try XCTUnwrap(Fixture.task().memory.areas.firstIndex { $0.kind == .areaFile })
        try assertRejected("memory.areas[\(file)].anonymous_name") { $0.memory.areas[file].anonymousName = "name" }
    }

    func testMemoryAreaFlags() throws {
        try assertRejected("memory.areas[1].random_read") {
            $0.memory.areas[1].sequentialRead = true
            $0.memory.areas[1].randomRead = true
        }
        try assertRejected("memory.areas[1].no_huge_page") {
            $0.memory.areas[1].hugePage = true
            $0.memory.areas[1].noHugePage = true
        }
        try assertRejected("memory.areas[1].lock_on_fault") { $0.memory.areas[1].lockOnFault = true }
        try assertRejected("memory.areas[0].droppable") { $0.memory.areas[0].droppable = true }
        try assertRejected("memory.areas[0].wipe_on_fork") { $0.memory.areas[0].wipeOnFork = true }
        try assertRejected("memory.lock_future_on_fault") { $0.memory.lockFutureOnFault = true }
        try assertAccepted {
            $0.memory.areas[0].locked = true
            $0.memory.areas[0].lockOnFault = true
            $0.memory.areas[0].mayWrite = true
            $0.memory.areas[0].sealed = true
            $0.memory.lockFuture = true
            $0.memory.lockFutureOnFault = true
        }
    }

    func testPageRuns() throws {
        func run(_ address: UInt64, _ count: UInt64, _ offset: UInt64) -> Amber_PageRun {
            var run = Amber_PageRun()
            run.address = address
            run.count = count
            run.offset = offset
            return run
        }
        try assertRejected("memory.areas[5].pages") { $0.memory.areas[5].pages = [run(0x7ffd_0010_4000, 1, 0)] }
        try assertRejected("memory.areas[0].pages") {
            $0.memory.areas[0].shared = true
            $0.memory.areas[0].pages = [run(0x40_0000, 1, 0)]
        }
        try assertRejected("memory.areas[1].pages[0].count") { $0.memory.areas[1].pages[0].count = 0 }
        try assertRejected("memory.areas[1].pages[0].address") { $0.memory.areas[1].pages[0].address += 8 }
        try assertRejected("memory.areas[1].pages[0].address") { $0.memory.areas[1].pages[0].address = 0x50_0000 }
        try assertRejected("memory.areas[1].pages[1].count") { $0.memory.areas[1].pages[1].count = 2 }
        try assertRejected("memory.areas[1].pages[1].count") { $0.memory.areas[1].pages[1].count = UInt64.max }
        try assertRejected("memory.areas[1].pages[1].address") { $0.memory.areas[1].pages[1].address = 0x60_1000 }
        try assertRejected("memory.areas[1].pages[0].offset") { $0.memory.areas[1].pages[0].offset = 100 }
        try assertRejected("memory.areas[1].pages[1].offset") { $0.memory.areas[1].pages[1].offset = 5 * 4096 }
        try assertRejected("memory.areas[1].pages[1].offset") { $0.memory.areas[1].pages[1].offset = UInt64.max - 4095 }
        try assertRejected("memory.page_files[0]") { $0.memory.pageFiles = ["pages-1.img"] }
        try assertRejected("memory.areas[1].pages") { $0.memory.pageFiles = [] }
        try assertRejected("memory.page_files[0]") { $0.memory.pageFiles = ["task-4242.pb"] }
        try assertRejected("memory.page_files[1]") { $0.memory.pageFiles.append("pages-4243.img") }
        try assertRejected("memory.areas[1].pages[1].file") { $0.memory.areas[1].pages[1].file = 1 }
        try assertRejected("memory.areas[2].pages[0].file") { $0.memory.areas[2].pages[0].file = UInt32.max }
        try assertAccepted {
            $0.memory.pageFiles.append($0.memory.pageFiles[0])
            $0.memory.areas[3].pages[0].file = 1
        }
    }

    /// An incremental image's page files may be up its chain: one depth per page file, within it.
    func testPageFileDepths() throws {
        try assertRejected("memory.page_file_depth") { $0.memory.pageFileDepth = [0, 0] }
        try assertRejected("memory.page_file_depth[0]") { $0.memory.pageFileDepth = [1] }
        try assertAccepted { $0.memory.pageFileDepth = [0] }
    }

    func testMmFields() throws {
        try assertRejected("memory.mm.brk") { $0.memory.mm.brk = ImageFormat.userAddressLimit + 1 }
        try assertRejected("memory.mm.env_end") { $0.memory.mm.envEnd = UInt64.max }
        try assertRejected("memory.mm.auxv") { $0.memory.mm.auxv = Data(count: 20) }
        try assertRejected("memory.mm.auxv") { $0.memory.mm.auxv = Data(count: 1040) }
        try assertRejected("memory.mm.exe_path") { $0.memory.mm.exePath = "sleeper" }
        try assertRejected("memory.mm.end_code") { $0.memory.mm.endCode = $0.memory.mm.startCode - 0x1000 }
        try assertRejected("memory.mm.end_data") { $0.memory.mm.startData = 0x60_0000 }
        try assertRejected("memory.mm.brk") { $0.memory.mm.brk = $0.memory.mm.startBrk - 1 }
        try assertRejected("memory.mm.arg_end") { $0.memory.mm.argStart = 0x7ffd_0002_0f00 }
        try assertRejected("memory.mm.env_end") { $0.memory.mm.envStart = 1 }
        try assertRejected("memory.mm.auxv") { $0.memory.mm.auxv[16] = 6 }
        try assertAccepted { $0.memory.mm.auxv = Data() }
    }

    func testSignals() throws {
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 9 }
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 19 }
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 0 }
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 65 }
        try assertRejected("signals.actions[1].signal") { $0.signals.actions.append($0.signals.actions[0]) }
        try assertRejected("signals.pending[0].signal") { $0.signals.pending[0].signal = 65 }
        try assertRejected("signals.pending[0].siginfo") { $0.signals.pending[0].siginfo = Data(count: 127) }
        try assertRejected("threads[0].alternate_stack.flags") { $0.threads[0].alternateStack.flags = 4 }
        try assertRejected("signals.actions[0].handler") {
            $0.signals.actions[0].handler = ImageFormat.userAddressLimit + 1
        }
        try assertRejected("signals.actions[0].restorer") { $0.signals.actions[0].restorer = UInt64.max }
        try assertRejected("signals.actions[0].flags") { $0.signals.actions[0].flags = 0x100 }
        try assertRejected("signals.actions[0].flags") { $0.signals.actions[0].flags = 1 << 32 }
        try assertRejected("signals.pending[0].siginfo") { $0.signals.pending[0].signal = 3 }
        try assertRejected("signals.pending[1].signal") { $0.signals.pending.append($0.signals.pending[0]) }
        try assertRejected("threads[0].pending[1].signal") {
            $0.threads[0].pending = [$0.signals.pending[0], $0.signals.pending[0]]
        }
        try assertRejected("threads[0].pending[0].siginfo") {
            $0.threads[0].pending = [$0.signals.pending[0]]
            $0.threads[0].pending[0].signal = 3
        }
        try assertRejected("threads[0].alternate_stack") {
            $0.threads[0].alternateStack = Amber_SignalStack()
            $0.threads[0].alternateStack.base = ImageFormat.userAddressLimit - 0x1000
            $0.threads[0].alternateStack.size = 0x2000
        }
        try assertAccepted {
            $0.signals.actions[0].flags = 0x1400_0004
            $0.threads[0].alternateStack.flags = 0
            $0.threads[0].alternateStack.base = 0x7ffd_0000_0000
            $0.threads[0].alternateStack.size = 0x2000
        }
        try assertAccepted {
            var realTime = Amber_PendingSignal()
            realTime.signal = 40
            realTime.siginfo = self.siginfo(40)
            $0.signals.pending += [realTime, realTime]
            // A standard signal may be pending once on each queue.
            $0.threads[0].pending = [$0.signals.pending[0]]
        }
    }

    func testFiles() throws {
        try assertRejected("files.descriptions[1].id") { $0.files.descriptions[1].id = 1 }
        try assertRejected("files.descriptions[0].file") { $0.files.descriptions[0].file = nil }
        // Only the devices of ImageFormat.reopenableDevices are reopened; O_PATH is a flag like the others.
        try assertRejected("files.descriptions[0].character_device.path") {
            $0.files.descriptions[0].characterDevice.path = "/dev/kmsg"
        }
        try assertAccepted { $0.files.descriptions[0].characterDevice.path = "/dev/urandom" }
        try assertAccepted { $0.files.descriptions[1].flags = 0o10000000 }
        try assertRejected("files.descriptions[1].regular_file.path") {
            $0.files.descriptions[1].regularFile.path = "tmp/sleeper.log"
        }
        try assertRejected("files.descriptions[1].regular_file.path") {
            $0.files.descriptions[1].regularFile.path = "/tmp/../etc/shadow"
        }
        // O_CREAT, O_EXCL, O_TRUNC: reopening must never create or truncate a file.
        for flag: UInt32 in [0o100, 0o200, 0o1000] {
            try assertRejected("files.descriptions[1].flags") { $0.files.descriptions[1].flags |= flag }
        }
        try assertRejected("files.descriptors[0].fd") { $0.files.descriptors[0].fd = -1 }
        try assertRejected("files.descriptors[0].fd") { $0.files.descriptors[0].fd = 1 << 20 }
        try assertRejected("files.descriptors[2].fd") { $0.files.descriptors[2].fd = 0 }
        try assertRejected("files.descriptors[2].description_id") { $0.files.descriptors[2].descriptionID = 3 }
        try assertRejected("files.descriptions[1].offset") { $0.files.descriptions[1].offset = UInt64(Int64.max) + 1 }
        try assertRejected("files.descriptions[1].regular_file.path") {
            $0.files.descriptions[1].regularFile.path = "/tmp/" + String(repeating: "x", count: 4091)
        }
        try assertAccepted { $0.files.descriptions[1].regularFile.path = "/tmp/" + String(repeating: "x", count: 4090) }
    }

    /// Each kind of open file has its own record and validator, reached through the oneof.
    func testFileKinds() throws {
        try assertAccepted { $0.files.descriptions[1].directory.path = "/tmp" }
        try assertRejected("files.descriptions[1].directory.path") { $0.files.descriptions[1].directory.path = "tmp" }
        try assertAccepted { $0.files.descriptions[1].fifo.path = "/tmp/sleeper.fifo" }
        try assertRejected("files.descriptions[1].fifo.path") {
            $0.files.descriptions[1].fifo.path = "/tmp/../sleeper.fifo"
        }
        try assertRejected("files.descriptions[1].character_device.path") {
            $0.files.descriptions[1].characterDevice.path = "/tmp/sleeper.log"
        }
    }

    /// An object outside the tree: a name KIND:[INODE], on a description with an access mode.
    func testExternalFiles() throws {
        func external(_ task: inout Amber_Task, name: String, flags: UInt32 = 1) {
            task.files.descriptions[1].flags = flags
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].externalFile.name = name
        }
        try assertAccepted { external(&$0, name: "pipe:[4242]") }
        try assertAccepted { external(&$0, name: "unix:[18446744073709551615]", flags: 2) }
        let bad = [
            "", "pipe:4242", "pipe:[]", "pipe:[-1]", "pipe:[+1]", "Pipe:[1]", ":[1]", "pipe:[18446744073709551616]",
            "pipe:[1] ", "pipe:[\u{FF11}]", "abcdefghijklmnopq:[1]",
        ]
        for name in bad {
            try assertRejected("files.descriptions[1].external_file.name") { external(&$0, name: name) }
        }
        try assertRejected("files.descriptions[1].external_file") { external(&$0, name: "pipe:[1]", flags: 3) }
    }

    /// A pipe end: its access mode, a capacity of a power of two pages within the bound, and what
    /// it holds on its read end only, fitting the capacity, packets at most a page.
    func testPipeEnds() throws {
        func readEnd(_ task: inout Amber_Task, _ change: (inout Amber_PipeEnd) -> Void = { _ in }) {
            var end = Amber_PipeEnd()
            (end.pipeID, end.capacity) = (4242, 65536)
            change(&end)
            task.files.descriptions[1].flags = end.writeEnd ? 1 : 0
            task.files.descriptions[1].pipeEnd = end
        }
        let field = "files.descriptions[1].pipe_end"
        try assertAccepted {
            readEnd(&$0) {
                $0.packets = [Data(repeating: 1, count: 4096)]
                $0.data = Data(repeating: 2, count: 61440)
            }
        }
        try assertAccepted {
            readEnd(&$0) {
                $0.capacity = UInt32(ImageFormat.maximumPipeCapacity)
                $0.data = Data(repeating: 2, count: 1 << 20)
            }
        }
        try assertRejected("\(field).pipe_id") { readEnd(&$0) { $0.pipeID = 0 } }
        try assertRejected("\(field).write_end") {
            readEnd(&$0)
            $0.files.descriptions[1].flags = 1
        }
        try assertRejected("\(field).capacity") { readEnd(&$0) { $0.capacity = 65535 } }
        try assertRejected("\(field).capacity") { readEnd(&$0) { $0.capacity = 2048 } }
        try assertRejected("\(field).capacity") {
            readEnd(&$0) { $0.capacity = UInt32(ImageFormat.maximumPipeCapacity) * 2 }
        }
        try assertRejected("\(field).data") {
            readEnd(&$0) {
                $0.writeEnd = true
                $0.data = Data([1])
            }
        }
        try assertRejected("\(field).data") { readEnd(&$0) { $0.data = Data(repeating: 2, count: 65537) } }
        try assertRejected("\(field).data") { readEnd(&$0) { $0.packets = Array(repeating: Data([1]), count: 17) } }
        try assertRejected("\(field).packets[0]") { readEnd(&$0) { $0.packets = [Data(repeating: 1, count: 4097)] } }
        try assertRejected("\(field).packets[0]") { readEnd(&$0) { $0.packets = [Data()] } }
        let fifo = "files.descriptions[1].fifo"
        func fifoReader(_ task: inout Amber_Task, capacity: UInt32, writeOnly: Bool = false) {
            var record = Amber_Fifo()
            (record.path, record.capacity, record.data) = ("/tmp/sleeper.fifo", capacity, Data([1, 2]))
            task.files.descriptions[1].flags = writeOnly ? 1 : 0
            task.files.descriptions[1].fifo = record
        }
        try assertAccepted { fifoReader(&$0, capacity: 1 << 20) }
        try assertRejected("\(fifo).capacity") { fifoReader(&$0, capacity: 0) }
        try assertRejected("\(fifo).data") { fifoReader(&$0, capacity: 65536, writeOnly: true) }
    }

    /// eventfds, signalfds and timerfds: O_RDWR with or without O_NONBLOCK, no offset, and each
    /// record within what the kernel takes.
    func testEventFileKinds() throws {
        func eventFile(_ task: inout Amber_Task, flags: UInt32 = 0o4002, _ file: Amber_OpenFileDescription.OneOf_File) {
            task.files.descriptions[1].flags = flags
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].file = file
        }
        var eventFD = Amber_EventFD()
        eventFD.count = 0xffff_ffff_ffff_fffe
        eventFD.semaphore = true
        try assertAccepted { eventFile(&$0, .eventFd(eventFD)) }
        try assertRejected("files.descriptions[1].flags") { eventFile(&$0, flags: 0o2002, .eventFd(eventFD)) }
        try assertRejected("files.descriptions[1].flags") { eventFile(&$0, flags: 0o4000, .eventFd(eventFD)) }
        try assertRejected("files.descriptions[1].offset") {
            eventFile(&$0, .eventFd(eventFD))
            $0.files.descriptions[1].offset = 8
        }
        eventFD.count = UInt64.max
        try assertRejected("files.descriptions[1].event_fd.count") { eventFile(&$0, .eventFd(eventFD)) }

        var signalFD = Amber_SignalFD()
        signalFD.mask = 1 << 9 | 1 << 33
        try assertAccepted { eventFile(&$0, flags: 0o2, .signalFd(signalFD)) }
        signalFD.mask |= 1 << 8
        try assertRejected("files.descriptions[1].signal_fd.mask") { eventFile(&$0, .signalFd(signalFD)) }

        var timerFD = Amber_TimerFD()
        timerFD.clock = 0
        timerFD.settimeFlags = 3
        timerFD.remainingNs = 600_000_000_000
        timerFD.realtimeExpiryNs = 1_800_000_000_000_000_000
        timerFD.ticks = UInt64.max
        try assertAccepted { eventFile(&$0, .timerFd(timerFD)) }
        for (field, change) in [
            ("clock", { (timer: inout Amber_TimerFD) in timer.clock = 8 }),
            ("settime_flags", { $0.settimeFlags = 4 }),
            ("remaining_ns", { $0.remainingNs = UInt64(Int64.max) + 1 }),
            ("interval_ns", { $0.intervalNs = UInt64.max }),
            ("realtime_expiry_ns", { $0.realtimeExpiryNs = 0 }),
            ("realtime_expiry_ns", { $0.clock = 1 }),
        ] as [(String, (inout Amber_TimerFD) -> Void)] {
            var wrong = timerFD
            change(&wrong)
            try assertRejected("files.descriptions[1].timer_fd.\(field)") { eventFile(&$0, .timerFd(wrong)) }
        }
    }

    /// flock and OFD locks on a description, POSIX locks per process through one of its descriptions.
    func testFileLocks() throws {
        func lock(_ kind: Amber_FileLock.Kind, start: UInt64 = 0, length: UInt64 = 0, description: UInt32 = 0)
            -> Amber_FileLock
        {
            var lock = Amber_FileLock()
            lock.kind = kind
            lock.write = true
            lock.start = start
            lock.length = length
            lock.descriptionID = description
            return lock
        }
        let largest = UInt64(Int64.max)
        try assertAccepted { task in
            task.files.descriptions[1].locks = [
                lock(.flock), lock(.ofd, start: 10, length: 5), lock(.ofd, start: largest, length: 1),
            ]
            task.files.posixLocks = [
                lock(.posix, start: 0, length: largest + 1, description: task.files.descriptions[1].id),
                lock(.posix, start: 7, description: task.files.descriptions[0].id),
            ]
        }
        try assertRejected("files.descriptions[1].locks[1]") {
            $0.files.descriptions[1].locks = [lock(.flock), lock(.flock)]
        }
        try assertRejected("files.descriptions[1].locks[0]") {
            $0.files.descriptions[1].locks = [lock(.flock, start: 1)]
        }
        try assertRejected("files.descriptions[1].locks[0].kind") { $0.files.descriptions[1].locks = [lock(.posix)] }
        try assertRejected("files.descriptions[1].locks[0].kind") {
            $0.files.descriptions[1].locks = [lock(.unspecified)]
        }
        try assertRejected("files.descriptions[1].locks[0].description_id") {
            $0.files.descriptions[1].locks = [lock(.ofd, description: 1)]
        }
        try assertRejected("files.descriptions[1].locks[0].start") {
            $0.files.descriptions[1].locks = [lock(.ofd, start: largest + 1)]
        }
        try assertRejected("files.descriptions[1].locks[0].length") {
            $0.files.descriptions[1].locks = [lock(.ofd, start: largest, length: 2)]
        }
        try assertRejected("files.descriptions[1].locks") {
            $0.files.descriptions[1].locks = Array(repeating: lock(.ofd), count: 4097)
        }
        try assertRejected("files.posix_locks[0].kind") {
            $0.files.posixLocks = [lock(.ofd, description: $0.files.descriptions[1].id)]
        }
        try assertRejected("files.posix_locks[0].description_id") {
            $0.files.posixLocks = [lock(.posix, description: 99)]
        }
        try assertRejected("files.posix_locks[0].length") {
            $0.files.posixLocks = [
                lock(.posix, start: 1, length: largest + 1, description: $0.files.descriptions[1].id)
            ]
        }
        try assertRejected("files.posix_locks") { task in
            task.files.posixLocks = Array(
                repeating: lock(.posix, description: task.files.descriptions[1].id), count: 4097)
        }
    }

    func testEnvironment() throws {
        try assertRejected("environment.cwd") { $0.environment.cwd = "home" }
        try assertRejected("environment.cwd") { $0.environment.cwd = "" }
        try assertRejected("environment.umask") { $0.environment.umask = 0o1000 }
        try assertRejected("environment.limits[0].resource") { $0.environment.limits[0].resource = 16 }
        try assertRejected("environment.limits[1].resource") { $0.environment.limits.append($0.environment.limits[0]) }
        try assertRejected("environment.limits[0].soft") { $0.environment.limits[0].soft = 8192 }
    }

    func testThreadControl() throws {
        try assertRejected("threads[0].thread_control.exit_addresses") {
            $0.threads[0].threadControl.exitAddresses = [0x1000, ImageFormat.userAddressLimit + 1]
        }
        try assertRejected("threads[0].thread_control.exit_addresses") {
            $0.threads[0].threadControl.exitAddresses = Array(repeating: 0x1000, count: 2 * 2048 + 5)
        }
        try assertRejected("threads[0].thread_control.rseq_size") { $0.threads[0].threadControl.rseqSize = 16 }
        try assertRejected("threads[0].thread_control.rseq_size") { $0.threads[0].threadControl.rseqSize = 8192 }
        try assertRejected("threads[0].thread_control.rseq_size") { $0.threads[0].threadControl.rseqAddress += 0x10 }
        try assertRejected("threads[0].thread_control.rseq_address") {
            $0.threads[0].threadControl.rseqAddress = ImageFormat.userAddressLimit
        }
        try assertRejected("threads[0].thread_control.child_tid_address") {
            $0.threads[0].threadControl.childTidAddress = UInt64.max
        }
        try assertRejected("threads[0].thread_control.robust_list_head") {
            $0.threads[0].threadControl.robustListHead = ImageFormat.userAddressLimit + 8
        }
        try assertRejected("threads[0].thread_control.robust_list_length") {
            $0.threads[0].threadControl.robustListHead = 0x7ffd_0000_2000
            $0.threads[0].threadControl.robustListLength = 16
        }
        try assertAccepted {
            $0.threads[0].threadControl.robustListHead = 0x7ffd_0000_2000
            $0.threads[0].threadControl.robustListLength = 24
        }
    }

    func testCredentials() throws {
        var credentials = Amber_Credentials()
        (credentials.uid, credentials.euid, credentials.suid, credentials.fsuid) = (1000, 1001, 1002, 1002)
        (credentials.gid, credentials.egid, credentials.sgid, credentials.fsgid) = (1000, 1001, 1002, 1000)
        credentials.groups = [1000, 1001]
        (credentials.capInheritable, credentials.capPermitted, credentials.capEffective) = (0x400, 0x400, 0x400)
        (credentials.capBounding, credentials.capAmbient) = (0x1ff_febf_ffff, 0x400)
        credentials.securebits = 0x13
        var thread = Fixture.thread(tid: 4243)
        thread.credentials = credentials
        try assertAccepted {
            $0.threads[0].credentials = credentials
            $0.threads.append(thread)
        }
        try assertAccepted {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.groups = Array(0..<65536)
        }
        try assertRejected("threads[0].credentials.suid") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.suid = UInt32.max
        }
        try assertRejected("threads[0].credentials.fsgid") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.fsgid = UInt32.max
        }
        try assertRejected("threads[0].credentials.groups") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.groups = Array(0...65536)
        }
        try assertRejected("threads[0].credentials.groups[1]") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.groups[1] = UInt32.max
        }
        try assertRejected("threads[0].credentials.cap_effective") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.capEffective = 0x401
        }
        try assertRejected("threads[0].credentials.cap_ambient") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.capInheritable = 0
        }
        try assertRejected("threads[0].credentials.securebits") {
            $0.threads[0].credentials = credentials
            $0.threads[0].credentials.securebits = 0x1000
        }
        try assertRejected("threads[1].credentials.cap_ambient") {
            $0.threads.append(thread)
            $0.threads[1].credentials.capPermitted = 0
            $0.threads[1].credentials.capEffective = 0
        }
    }

    /// Sections a task may lack (a zombie has no memory, files or environment) are not required.
    func testMinimalTask() throws {
        var task = Amber_Task()
        task.pid = Fixture.pid
        var leader = Amber_Thread()
        leader.tid = Fixture.pid
        leader.registers = Amber_Registers()
        task.threads = [leader]
        let writer = try ImageWriter(directory: path("image"))
        try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        XCTAssertEqual(try ImageReader(directory: path("image")).task(pid: Fixture.pid), task)
    }

    /// Inet sockets: TCP or UDP over AF_INET or AF_INET6, an address of the family's size when
    /// bound, a backlog only when listening, and only the options amber sets again, each once.
    func testInetSocket() throws {
        let field = "files.descriptions[1].inet_socket"
        func socket(_ task: inout Amber_Task, flags: UInt32 = 0o4002, _ change: (inout Amber_InetSocket) -> Void) {
            var record = Amber_InetSocket()
            (record.family, record.type, record.protocol) = (2, 1, 6)
            (record.state, record.address, record.port, record.backlog) = (.listening, Data([127, 0, 0, 1]), 8000, 5)
            var option = Amber_InetSocketOption()
            (option.level, option.name, option.value) = (1, 2, Data([1, 0, 0, 0]))
            record.options = [option]
            change(&record)
            task.files.descriptions[1].flags = flags
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].inetSocket = record
        }
        try assertAccepted { socket(&$0) { _ in } }
        try assertAccepted {
            socket(&$0) {
                ($0.family, $0.type, $0.protocol) = (10, 2, 17)
                ($0.state, $0.address, $0.scopeID, $0.backlog) = (.bound, Data(count: 16), 2, 0)
            }
        }
        try assertAccepted { socket(&$0) { ($0.state, $0.address, $0.port, $0.backlog) = (.fresh, Data(), 0, 0) } }
        try assertRejected("files.descriptions[1].flags") { socket(&$0, flags: 0o2002) { _ in } }
        try assertRejected("\(field).family") { socket(&$0) { $0.family = 1 } }
        try assertRejected("\(field).type") { socket(&$0) { $0.protocol = 17 } }
        try assertRejected("\(field).type") { socket(&$0) { $0.type = 3 } }
        try assertRejected("\(field).state") { socket(&$0) { $0.state = .unspecified } }
        try assertRejected("\(field).address") { socket(&$0) { $0.address = Data(count: 16) } }
        try assertRejected("\(field).address") { socket(&$0) { $0.state = .fresh } }
        try assertRejected("\(field).port") { socket(&$0) { $0.port = 65536 } }
        try assertRejected("\(field).scope_id") { socket(&$0) { $0.scopeID = 1 } }
        try assertRejected("\(field).backlog") {
            socket(&$0) { ($0.type, $0.protocol) = (2, 17) }
        }
        try assertRejected("\(field).backlog") { socket(&$0) { ($0.state, $0.backlog) = (.bound, 5) } }
        try assertRejected("\(field).options[1]") { socket(&$0) { $0.options.append($0.options[0]) } }
        try assertRejected("\(field).options[0].value") { socket(&$0) { $0.options[0].value = Data([1]) } }
        try assertRejected("\(field).options[0]") { socket(&$0) { $0.options[0].name = 36 } }
    }

    /// A unix socket bound to a path: its address absolute and plain, and the link-free
    /// directory its socket file is in, if recorded, too; an abstract name has neither.
    func testUnixSocketFileDirectory() throws {
        let field = "files.descriptions[1].unix_socket"
        func socket(_ task: inout Amber_Task, _ change: (inout Amber_UnixSocket) -> Void) {
            var record = Amber_UnixSocket()
            (record.inode, record.type, record.address) = (7, 2, Data("/var/run/app.sock".utf8))
            (record.fileInode, record.fileMode, record.fileDirectory) = (9, 0o755, "/run")
            change(&record)
            task.files.descriptions[1].flags = 0o2
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].unixSocket = record
        }
        try assertAccepted { socket(&$0) { _ in } }
        try assertAccepted { socket(&$0) { $0.fileDirectory = "/" } }
        try assertAccepted { socket(&$0) { $0.fileDirectory = "" } }
        for directory in ["run", "/run/../etc", "/run/", "/run//x", "/run/./x"] {
            try assertRejected("\(field).file_directory") { socket(&$0) { $0.fileDirectory = directory } }
        }
        try assertRejected("\(field).file_directory") {
            socket(&$0) { ($0.address, $0.fileInode, $0.fileMode) = (Data([0, 0x61]), 0, 0) }
        }
        try assertRejected("\(field).address") { socket(&$0) { $0.address = Data("var/run/app.sock".utf8) } }
    }

    /// A connected UDP socket: bound, its peer an address of its family (v4-mapped in an
    /// AF_INET6 one) and a port; no TCP socket, fresh socket or listener has a peer.
    func testInetSocketPeer() throws {
        let field = "files.descriptions[1].inet_socket"
        func socket(_ task: inout Amber_Task, _ change: (inout Amber_InetSocket) -> Void) {
            var record = Amber_InetSocket()
            (record.family, record.type, record.protocol) = (2, 2, 17)
            (record.state, record.address, record.port) = (.bound, Data([127, 0, 0, 1]), 5353)
            (record.peerAddress, record.peerPort) = (Data([127, 0, 0, 1]), 53)
            change(&record)
            task.files.descriptions[1].flags = 0o2
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].inetSocket = record
        }
        try assertAccepted { socket(&$0) { _ in } }
        try assertAccepted {
            socket(&$0) {
                $0.family = 10
                $0.address = Data(count: 16)
                $0.peerAddress = Data([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1])
                $0.peerScopeID = 3
            }
        }
        try assertRejected("\(field).peer_address") { socket(&$0) { ($0.type, $0.protocol) = (1, 6) } }
        try assertRejected("\(field).peer_address") {
            socket(&$0) { ($0.state, $0.address, $0.port) = (.fresh, Data(), 0) }
        }
        try assertRejected("\(field).peer_address") { socket(&$0) { $0.peerAddress = Data(count: 16) } }
        try assertRejected("\(field).peer_address") { socket(&$0) { $0.peerAddress = Data() } }
        try assertRejected("\(field).peer_port") { socket(&$0) { $0.peerPort = 0 } }
        try assertRejected("\(field).peer_port") { socket(&$0) { $0.peerPort = 65536 } }
        try assertRejected("\(field).peer_scope_id") { socket(&$0) { $0.peerScopeID = 1 } }
    }

    /// Netlink sockets: NETLINK_ROUTE or NETLINK_SOCK_DIAG, raw or datagram, groups ascending
    /// from 1, only the options amber sets again, each once.
    func testNetlinkSocket() throws {
        let field = "files.descriptions[1].netlink_socket"
        func socket(_ task: inout Amber_Task, flags: UInt32 = 0o4002, _ change: (inout Amber_NetlinkSocket) -> Void) {
            var record = Amber_NetlinkSocket()
            (record.type, record.protocol, record.portID, record.groups) = (3, 0, 4242, [1, 5, 33])
            var option = Amber_InetSocketOption()
            (option.level, option.name, option.value) = (270, 11, Data([1, 0, 0, 0]))
            record.options = [option]
            change(&record)
            task.files.descriptions[1].flags = flags
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].netlinkSocket = record
        }
        try assertAccepted { socket(&$0) { _ in } }
        try assertAccepted { socket(&$0, flags: 0o2) { ($0.type, $0.protocol, $0.portID, $0.groups) = (2, 4, 0, []) } }
        try assertRejected("files.descriptions[1].flags") { socket(&$0, flags: 0o2000) { _ in } }
        try assertRejected("\(field).type") { socket(&$0) { $0.type = 1 } }
        try assertRejected("\(field).protocol") { socket(&$0) { $0.protocol = 16 } }
        try assertRejected("\(field).groups[0]") { socket(&$0) { $0.groups = [0] } }
        try assertRejected("\(field).groups[1]") { socket(&$0) { $0.groups = [5, 5] } }
        try assertRejected("\(field).groups[0]") { socket(&$0) { $0.groups = [1025] } }
        try assertRejected("\(field).options[1]") { socket(&$0) { $0.options.append($0.options[0]) } }
        try assertRejected("\(field).options[0].value") { socket(&$0) { $0.options[0].value = Data([1]) } }
        try assertRejected("\(field).options[0]") { socket(&$0) { $0.options[0].name = 8 } }
    }

    /// The fixture's anonymous area 1 made shared anonymous memory: object 77 of 8 pages, mapped
    /// from its second page, its fourth page saved in shmem-77.img.
    private static func sharingAnonymousMemory(_ task: inout Amber_Task) {
        task.memory.areas[1].shared = true
        task.memory.areas[1].pages = []
        task.memory.areas[1].sharedAnonymousID = 77
        task.memory.areas[1].fileOffset = 0x1000
        var run = Amber_PageRun()
        run.address = 0x3000
        run.count = 1
        run.offset = 0x1000
        var object = Amber_SharedAnonymousMemory()
        object.id = 77
        object.size = 0x8000
        object.pageFile = ImageFormat.sharedAnonymousFileName(id: 77)
        object.pages = [run]
        task.memory.sharedAnonymous = [object]
    }

    func testSharedAnonymousMemory() throws {
        let share = Self.sharingAnonymousMemory
        try assertAccepted { share(&$0) }
        try assertRejected("memory.areas[1].pages") {
            share(&$0)
            $0.memory.areas[1].pages = Fixture.task().memory.areas[1].pages
        }
        try assertRejected("memory.areas[1].shared_anonymous_id") {
            share(&$0)
            $0.memory.areas[1].sharedAnonymousID = 0
        }
        try assertRejected("memory.areas[1].shared_anonymous_id") {
            share(&$0)
            $0.memory.areas[1].sharedAnonymousID = 78
        }
        try assertRejected("memory.areas[2].shared_anonymous_id") {
            share(&$0)
            $0.memory.areas[2].sharedAnonymousID = 77
        }
        try assertRejected("memory.areas[1].file_offset") {
            share(&$0)
            $0.memory.areas[1].fileOffset = 0x1001
        }
        try assertRejected("memory.shared_anonymous[1].id") {
            share(&$0)
            $0.memory.sharedAnonymous.append($0.memory.sharedAnonymous[0])
        }
        try assertRejected("memory.shared_anonymous[0].id") {
            share(&$0)
            $0.memory.areas[1].shared = false
            $0.memory.areas[1].sharedAnonymousID = 0
        }
        for size: UInt64 in [0, 0x8001, ImageFormat.userAddressLimit + 0x1000] {
            try assertRejected("memory.shared_anonymous[0].size") {
                share(&$0)
                $0.memory.sharedAnonymous[0].size = size
            }
        }
        try assertRejected("memory.shared_anonymous[0].page_file") {
            share(&$0)
            $0.memory.sharedAnonymous[0].pageFile = ImageFormat.pageFileName(pid: Fixture.pid)
        }
        try assertRejected("memory.shared_anonymous[0].pages[0]") {
            share(&$0)
            $0.memory.sharedAnonymous[0].pages[0].file = 1
        }
        try assertRejected("memory.shared_anonymous[0].pages[0].address") {
            share(&$0)
            $0.memory.sharedAnonymous[0].pages[0].address = 0x8000
        }
        try assertRejected("memory.shared_anonymous[0].pages[0].address") {
            share(&$0)
            $0.memory.sharedAnonymous[0].pages[0].count = UInt64.max
        }
        try assertRejected("memory.shared_anonymous[0].pages[1].address") {
            share(&$0)
            $0.memory.sharedAnonymous[0].pages.append($0.memory.sharedAnonymous[0].pages[0])
        }
        try assertRejected("memory.shared_anonymous[0].pages[0].offset") {
            share(&$0)
            $0.memory.sharedAnonymous[0].pages[0].offset = 0x2000
        }
    }

    /// A unix socket: O_RDWR, a known type, a pair id that is the smaller inode of the pair, and
    /// messages only on a connected socket, one for a stream.
    func testUnixSockets() throws {
        func socket(_ task: inout Amber_Task, _ change: (inout Amber_UnixSocket) -> Void = { _ in }) {
            var record = Amber_UnixSocket()
            (record.inode, record.type, record.pairID, record.peerInode) = (12, 1, 11, 11)
            record.messages = [Data("queued".utf8)]
            record.peekOffset = -1
            change(&record)
            task.files.descriptions[1].flags = 2
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].unixSocket = record
        }
        let field = "files.descriptions[1].unix_socket"
        try assertAccepted { socket(&$0) }
        try assertAccepted { socket(&$0) { ($0.type, $0.messages) = (2, [Data(), Data([1])]) } }
        try assertAccepted { socket(&$0) { ($0.pairID, $0.peerInode, $0.shutdown) = (12, 0, 3) } }
        try assertAccepted { socket(&$0) { ($0.pairID, $0.peerInode, $0.messages) = (0, 0, []) } }
        try assertRejected("\(field).inode") { socket(&$0) { $0.inode = 0 } }
        try assertRejected("\(field).type") { socket(&$0) { $0.type = 3 } }
        try assertRejected("\(field).pair_id") { socket(&$0) { $0.pairID = 12 } }
        try assertRejected("\(field).pair_id") { socket(&$0) { ($0.pairID, $0.peerInode) = (12, 12) } }
        try assertRejected("\(field).pair_id") { socket(&$0) { $0.pairID = 0 } }
        try assertRejected("\(field).messages") { socket(&$0) { ($0.pairID, $0.peerInode) = (0, 0) } }
        try assertRejected("\(field).messages") { socket(&$0) { $0.messages = [Data([1]), Data([2])] } }
        try assertRejected("\(field).shutdown") { socket(&$0) { $0.shutdown = 4 } }
        try assertRejected("\(field).peek_offset") { socket(&$0) { $0.peekOffset = -2 } }
        func option(_ name: Int32, _ value: [UInt8]) -> Amber_SocketOption {
            var option = Amber_SocketOption()
            (option.name, option.value) = (name, Data(value))
            return option
        }
        try assertAccepted {
            socket(&$0) { $0.options = [option(9, [1, 0, 0, 0]), option(13, [1, 0, 0, 0, 5, 0, 0, 0])] }
        }
        // SO_MARK needs CAP_NET_ADMIN; SO_KEEPALIVE twice; an int of 3 bytes; SO_PRIORITY 7.
        try assertRejected("\(field).options[0].name") { socket(&$0) { $0.options = [option(36, [1, 0, 0, 0])] } }
        try assertRejected("\(field).options[1].name") {
            socket(&$0) { $0.options = [option(9, [1, 0, 0, 0]), option(9, [0, 0, 0, 0])] }
        }
        try assertRejected("\(field).options[0].value") { socket(&$0) { $0.options = [option(9, [1, 0, 0])] } }
        try assertRejected("\(field).options[0].value") { socket(&$0) { $0.options = [option(12, [7, 0, 0, 0])] } }
        try assertAccepted { socket(&$0) { $0.peerCredentials.groups = [1000] } }
        try assertRejected("\(field).peer_credentials.groups") {
            socket(&$0) { $0.peerCredentials.groups = Array(repeating: 1, count: 65537) }
        }
        try assertRejected(field) {
            socket(&$0)
            $0.files.descriptions[1].flags = 0
        }
        func bound(_ task: inout Amber_Task, _ change: (inout Amber_UnixSocket) -> Void = { _ in }) {
            socket(&task) {
                ($0.pairID, $0.peerInode, $0.messages) = (0, 0, [])
                ($0.address, $0.fileInode, $0.fileMode) = (Data("/tmp/a.sock".utf8), 7, 0o755)
                ($0.listening, $0.backlog, $0.pendingConnections) = (true, 5, [20, 21])
                change(&$0)
            }
        }
        try assertAccepted { bound(&$0) }
        try assertAccepted { bound(&$0) { ($0.address, $0.fileInode, $0.fileMode) = (Data([0, 65]), 0, 0) } }
        try assertAccepted {
            bound(&$0) { ($0.type, $0.listening, $0.backlog, $0.pendingConnections) = (2, false, 0, []) }
        }
        try assertRejected("\(field).address") { bound(&$0) { $0.address = Data("tmp/a.sock".utf8) } }
        try assertRejected("\(field).address") { bound(&$0) { $0.address = Data("/tmp/../a.sock".utf8) } }
        try assertRejected("\(field).address") { bound(&$0) { $0.address = Data("/tmp//a.sock".utf8) } }
        try assertRejected("\(field).address") { bound(&$0) { $0.address = Data("/tmp/a\0b".utf8) } }
        try assertRejected("\(field).address") { bound(&$0) { $0.address = Data(repeating: 65, count: 109) } }
        try assertRejected("\(field).file_mode") { bound(&$0) { $0.fileMode = 0o10755 } }
        try assertRejected("\(field).file_inode") { bound(&$0) { $0.address = Data([0, 65]) } }
        try assertRejected("\(field).listening") { bound(&$0) { $0.type = 2 } }
        try assertRejected("\(field).pending_connections") { bound(&$0) { $0.pendingConnections = [20, 20] } }
        try assertRejected("\(field).pending_connections") { bound(&$0) { $0.listening = false } }
        try assertRejected("\(field).listener_inode") { socket(&$0) { $0.listenerInode = 3 } }
    }

    /// A memfd and a deleted file: ids, a name memfd_create takes, seal and mode bits the kernel
    /// has, a path ending in a name, and data only in a contents file the inventory lists.
    func testUnnamedFiles() throws {
        func memfd(_ task: inout Amber_Task, _ change: (inout Amber_Memfd) -> Void = { _ in }) {
            var memfd = Amber_Memfd()
            (memfd.memfdID, memfd.name, memfd.seals, memfd.mode) = (7, "amber memfd", 0x6, 0o640)
            memfd.contents.size = 3 << 20
            change(&memfd)
            task.files.descriptions[1].memfd = memfd
        }
        func deleted(_ task: inout Amber_Task, _ change: (inout Amber_DeletedFile) -> Void = { _ in }) {
            var file = Amber_DeletedFile()
            (file.fileID, file.path, file.mode) = (8, "/tmp/gone", 0o600)
            change(&file)
            task.files.descriptions[1].deletedFile = file
        }
        let memfdField = "files.descriptions[1].memfd"
        let deletedField = "files.descriptions[1].deleted_file"
        try assertAccepted { memfd(&$0) }
        try assertAccepted { deleted(&$0) }
        try assertRejected("\(memfdField).memfd_id") { memfd(&$0) { $0.memfdID = 0 } }
        try assertRejected("\(memfdField).name") { memfd(&$0) { $0.name = String(repeating: "n", count: 250) } }
        try assertRejected("\(memfdField).seals") { memfd(&$0) { $0.seals = 0x40 } }
        try assertRejected("\(memfdField).mode") { memfd(&$0) { $0.mode = 0o100640 } }
        try assertRejected("\(memfdField).contents.size") { memfd(&$0) { $0.contents.size = UInt64.max } }
        try assertRejected("\(memfdField).contents.image_file") {
            memfd(&$0) {
                var extent = Amber_FileExtent()
                extent.length = 4096
                $0.contents.extents = [extent]
                $0.contents.imageFile = "contents-1.img"
            }
        }
        try assertRejected("\(deletedField).file_id") { deleted(&$0) { $0.fileID = 0 } }
        try assertRejected("\(deletedField).path") { deleted(&$0) { $0.path = "gone" } }
        try assertRejected("\(deletedField).path") { deleted(&$0) { $0.path = "/tmp/../gone" } }
        try assertRejected("\(deletedField).path") { deleted(&$0) { $0.path = "/tmp/" } }
        try assertRejected("\(deletedField).mode") { deleted(&$0) { $0.mode = 0o10000 } }
        // O_TMPFILE in the flags only of the description that made an O_TMPFILE file.
        let temporaryFlags: UInt32 = 0o20300002
        try assertAccepted {
            deleted(&$0) { $0.temporary = true }
            $0.files.descriptions[1].flags = temporaryFlags
        }
        try assertRejected("files.descriptions[1].flags") {
            deleted(&$0)
            $0.files.descriptions[1].flags = temporaryFlags
        }
        func deletedCwd(_ task: inout Amber_Task, _ path: String, id: UInt64 = 9) {
            task.environment.cwd = path
            task.environment.deletedCwd.directoryID = id
            task.environment.deletedCwd.mode = 0o750
        }
        try assertAccepted { deletedCwd(&$0, "/tmp/removed (deleted)") }
        try assertRejected("environment.deleted_cwd.directory_id") { deletedCwd(&$0, "/tmp/removed (deleted)", id: 0) }
        try assertRejected("environment.cwd") { deletedCwd(&$0, "/tmp/removed") }
        try assertRejected("environment.cwd") { deletedCwd(&$0, "/ (deleted)") }
    }

    /// A mapped memfd and deleted file: a file area names one file of the process's, each
    /// described once as an open one is, and mapped by an area.
    func testMappedUnnamedFiles() throws {
        func mapping(_ task: inout Amber_Task, memfd: Bool = true, _ change: (inout Amber_Memory) -> Void = { _ in }) {
            task.memory.areas[1].kind = .areaFile
            task.memory.areas[1].path = memfd ? "/memfd:mapped" : "/tmp/gone"
            task.memory.areas[1].fileOffset = 0
            if memfd {
                var record = Amber_Memfd()
                (record.memfdID, record.name, record.mode) = (7, "mapped", 0o600)
                task.memory.areas[1].memfdID = 7
                task.memory.memfds = [record]
            } else {
                var record = Amber_DeletedFile()
                (record.fileID, record.path, record.mode) = (8, "/tmp/gone", 0o600)
                task.memory.areas[1].deletedFileID = 8
                task.memory.deletedFiles = [record]
            }
            change(&task.memory)
        }
        try assertAccepted { mapping(&$0) }
        try assertAccepted { mapping(&$0, memfd: false) }
        try assertRejected("memory.areas[1].memfd_id") { mapping(&$0) { $0.areas[1].memfdID = 9 } }
        try assertRejected("memory.areas[1].deleted_file_id") {
            mapping(&$0, memfd: false) { $0.areas[1].deletedFileID = 9 }
        }
        try assertRejected("memory.areas[1]") { mapping(&$0) { $0.areas[1].deletedFileID = 8 } }
        try assertRejected("memory.areas[2]") { mapping(&$0) { $0.areas[2].memfdID = 7 } }
        try assertRejected("memory.memfds[1].memfd_id") { mapping(&$0) { $0.memfds.append($0.memfds[0]) } }
        try assertRejected("memory.memfds[0].memfd_id") { mapping(&$0) { $0.areas[1].memfdID = 0 } }
        try assertRejected("memory.memfds[0].name") { mapping(&$0) { $0.memfds[0].name = "a\0b" } }
        try assertRejected("memory.deleted_files[0].path") {
            mapping(&$0, memfd: false) { $0.deletedFiles[0].path = "gone" }
        }
        try assertRejected("memory.deleted_files[0].file_id") {
            mapping(&$0, memfd: false) { $0.areas[1].deletedFileID = 0 }
        }
    }

    /// An epoll instance, an inotify instance and a pidfd: their flags, and what each record holds.
    func testEpollInotifyAndPidfd() throws {
        func epoll(_ task: inout Amber_Task, _ change: (inout Amber_Epoll) -> Void = { _ in }) {
            var record = Amber_Epoll()
            record.watcherPid = Fixture.pid
            var watch = Amber_EpollWatch()
            (watch.fd, watch.events, watch.data) = (0, 0x8000_0019, 7)
            record.watches = [watch]
            change(&record)
            (task.files.descriptions[1].flags, task.files.descriptions[1].offset) = (2, 0)
            task.files.descriptions[1].epoll = record
        }
        let field = "files.descriptions[1]"
        try assertAccepted { epoll(&$0) }
        try assertAccepted { epoll(&$0) { $0.watches[0].reported = true } }
        try assertRejected("\(field).flags") {
            epoll(&$0)
            $0.files.descriptions[1].flags = 0o2002
        }
        try assertRejected("\(field).epoll.watcher_pid") { epoll(&$0) { $0.watcherPid = 0 } }
        try assertRejected("\(field).epoll.watches[1].fd") { epoll(&$0) { $0.watches.append($0.watches[0]) } }
        try assertRejected("\(field).epoll.watches[0].events") { epoll(&$0) { $0.watches[0].events = 1 << 29 | 1 } }
        try assertRejected("\(field).epoll.watches[0].events") { epoll(&$0) { $0.watches[0].events = 1 << 30 } }
        try assertRejected("\(field).epoll.watches[0].reported") {
            epoll(&$0) {
                $0.watches[0].events = 1
                $0.watches[0].reported = true
            }
        }

        func inotify(_ task: inout Amber_Task, _ change: (inout Amber_Inotify) -> Void = { _ in }) {
            var record = Amber_Inotify()
            record.watches = [(Int32(1), "/tmp", true), (Int32(3), "/tmp/sleeper.log", false)].map {
                wd, path, directory in
                var watch = Amber_InotifyWatch()
                (watch.wd, watch.path, watch.mask, watch.directory) = (wd, path, 0x100, directory)
                return watch
            }
            change(&record)
            (task.files.descriptions[1].flags, task.files.descriptions[1].offset) = (0o4000, 0)
            task.files.descriptions[1].inotify = record
        }
        try assertAccepted { inotify(&$0) }
        try assertRejected("\(field).flags") {
            inotify(&$0)
            $0.files.descriptions[1].flags = 2
        }
        try assertRejected("\(field).inotify.watches[1].wd") { inotify(&$0) { $0.watches[1].wd = 1 } }
        try assertRejected("\(field).inotify.watches[0].wd") { inotify(&$0) { $0.watches[0].wd = 0 } }
        try assertRejected("\(field).inotify.watches[0].mask") { inotify(&$0) { $0.watches[0].mask = 0x0400_0000 } }
        try assertRejected("\(field).inotify.watches[1].path") { inotify(&$0) { $0.watches[1].path = "tmp/x" } }

        func pidfd(_ task: inout Amber_Task, flags: UInt32 = 2, pid: Int32 = Fixture.pid) {
            var record = Amber_Pidfd()
            record.pid = pid
            (task.files.descriptions[1].flags, task.files.descriptions[1].offset) = (flags, 0)
            task.files.descriptions[1].pidfd = record
        }
        try assertAccepted { pidfd(&$0, flags: 0o4202) }
        try assertRejected("\(field).flags") { pidfd(&$0, flags: 0) }
        try assertRejected("\(field).flags") { pidfd(&$0, flags: 0o2002) }
        try assertRejected("\(field).pidfd.pid") { pidfd(&$0, pid: -1) }
        try assertRejected("\(field).flags") {
            $0.files.descriptions[1].flags = 0o202
        }
    }

    /// A connection accepted from a listener: an unbound stream or seqpacket socket of a pair,
    /// not the listener; only a listener lists accepted connections, distinct.
    func testAcceptedUnixSockets() throws {
        func socket(_ task: inout Amber_Task, _ change: (inout Amber_UnixSocket) -> Void = { _ in }) {
            var record = Amber_UnixSocket()
            (record.inode, record.type, record.pairID, record.peerInode, record.acceptedFrom) = (12, 1, 11, 11, 20)
            record.peekOffset = -1
            change(&record)
            (task.files.descriptions[1].flags, task.files.descriptions[1].offset) = (2, 0)
            task.files.descriptions[1].unixSocket = record
        }
        let field = "files.descriptions[1].unix_socket"
        try assertAccepted { socket(&$0) }
        try assertAccepted { socket(&$0) { $0.type = 5 } }
        try assertRejected("\(field).accepted_from") { socket(&$0) { $0.type = 2 } }
        try assertRejected("\(field).accepted_from") { socket(&$0) { ($0.pairID, $0.peerInode) = (12, 0) } }
        try assertRejected("\(field).accepted_from") { socket(&$0) { $0.acceptedFrom = 12 } }
        try assertRejected("\(field).accepted_from") { socket(&$0) { $0.acceptedFrom = 11 } }
        try assertRejected("\(field).address") { socket(&$0) { $0.address = Data([0, 65]) } }
        func listener(_ task: inout Amber_Task, _ change: (inout Amber_UnixSocket) -> Void = { _ in }) {
            socket(&task) {
                ($0.pairID, $0.peerInode, $0.acceptedFrom) = (0, 0, 0)
                ($0.address, $0.listening, $0.acceptedConnections) = (Data([0, 65]), true, [30, 31])
                change(&$0)
            }
        }
        try assertAccepted { listener(&$0) }
        try assertRejected("\(field).accepted_connections") { listener(&$0) { $0.acceptedConnections = [30, 30] } }
        try assertRejected("\(field).accepted_connections") { listener(&$0) { $0.acceptedConnections = [0] } }
        try assertRejected("\(field).pending_connections") { listener(&$0) { $0.listening = false } }
    }

    /// A shell job's terminal: shown, never opened by the image's path, so only sizes and a
    /// descriptor's access mode are checked.
    func testShellJob() throws {
        func job(_ task: inout Amber_Task, _ change: (inout Amber_ShellJob) -> Void = { _ in }) {
            var record = Amber_ShellJob()
            (record.terminal, record.rdev) = ("/dev/pts/3", 136 << 8 | 3)
            (record.settings.rows, record.settings.columns) = (30, 100)
            record.settings.controlCharacters = Data(repeating: 3, count: 32)
            change(&record)
            task.shellJob = record
        }
        try assertAccepted { job(&$0) }
        try assertRejected("shell_job.terminal") { job(&$0) { $0.terminal = "/dev/pts/\u{0}" } }
        try assertRejected("shell_job.settings") { job(&$0) { $0.settings.controlCharacters = Data(count: 33) } }
        try assertRejected("shell_job.settings") { job(&$0) { $0.settings.rows = 1 << 16 } }
        func terminal(_ task: inout Amber_Task, path: String, flags: UInt32 = 2) {
            var record = Amber_ShellJobTerminal()
            record.path = path
            task.files.descriptions[1].flags = flags
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].shellJobTerminal = record
        }
        try assertAccepted { terminal(&$0, path: "/dev/pts/3") }
        try assertRejected("files.descriptions[1].shell_job_terminal.path") { terminal(&$0, path: "pts/3") }
        try assertRejected("files.descriptions[1].shell_job_terminal") { terminal(&$0, path: "/dev/pts/3", flags: 3) }
    }

    /// A pty master: a path of ptmx, NCCS control characters, a window within 16 bits, a session
    /// and foreground group that are process IDs; a pty end has an access mode and no offset.
    func testPtys() throws {
        let field = "files.descriptions[1]"
        func master(_ task: inout Amber_Task, _ change: (inout Amber_PtyMaster) -> Void = { _ in }) {
            var master = Amber_PtyMaster()
            master.index = 3
            master.path = "/dev/ptmx"
            master.settings.controlCharacters = Data(repeating: 0, count: 19)
            master.settings.rows = 24
            master.settings.columns = 80
            change(&master)
            task.files.descriptions[1].flags = 0o2 | 0o100000
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].ptyMaster = master
        }
        try assertAccepted { master(&$0) }
        try assertAccepted { master(&$0) { ($0.session, $0.foregroundGroup) = (Fixture.pid, Fixture.pid) } }
        try assertRejected("\(field).pty_master.path") { master(&$0) { $0.path = "/dev/tty" } }
        try assertRejected("\(field).pty_master.settings.control_characters") {
            master(&$0) { $0.settings.controlCharacters = Data([3]) }
        }
        try assertRejected("\(field).pty_master.settings.rows") { master(&$0) { $0.settings.rows = 70000 } }
        try assertRejected("\(field).pty_master") { master(&$0) { $0.foregroundGroup = 7 } }
        try assertRejected("\(field).offset") {
            master(&$0)
            $0.files.descriptions[1].offset = 5
        }
        try assertRejected("\(field).flags") {
            master(&$0)
            $0.files.descriptions[1].flags = 0o3
        }
        func slave(_ task: inout Amber_Task, mode: UInt32) {
            task.files.descriptions[1].flags = 0o2
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].ptySlave.index = 3
            task.files.descriptions[1].ptySlave.mode = mode
        }
        try assertRejected("\(field).pty_slave.mode") { slave(&$0, mode: 0o20620) }
    }
}
