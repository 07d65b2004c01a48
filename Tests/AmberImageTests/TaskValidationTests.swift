import AmberImage
import Foundation
import XCTest

/// Each rule of the task validation, broken once on an otherwise valid task
/// written through `ImageWriter` and read back through `ImageReader`.
final class TaskValidationTests: ImageTestCase {
    private var imageCount = 0

    /// Writes the fixture task changed by `change` and asserts that reading it
    /// fails with `.invalid`, naming task-4242.pb and `field`.
    private func assertRejected(
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
        XCTAssert(error.detail.hasPrefix(field), "\"\(error.detail)\" does not start with \(field)", file: file, line: line)
    }

    func testFixtureIsValid() throws {
        try Fixture.writeImage(at: path("image"))
        XCTAssertEqual(try ImageReader(directory: path("image")).task(pid: Fixture.pid), Fixture.task())
    }

    func testIdentity() throws {
        try assertRejected("pid") { $0.pid = 0 }
        try assertRejected("pid") { $0.pid = 4243 }
        try assertRejected("ppid") { $0.ppid = -1 }
        try assertRejected("pgid") { $0.pgid = -2 }
        try assertRejected("sid") { $0.sid = -3 }
        try assertRejected("comm") { $0.comm = "sixteen-bytes-xx" }
        try assertRejected("comm") { $0.comm = "nul\u{0}" }
    }

    func testRegisters() throws {
        try assertRejected("registers") { $0.clearRegisters() }
        try assertRejected("registers.xstate") { $0.registers.xstate = Data(count: 100) }
        try assertRejected("registers.xstate") { $0.registers.xstate = Data(count: 70000) }
        var inventory = Fixture.inventory()
        inventory.xstateSize = 1024
        try assertRejected("registers.xstate", inventory: inventory) { _ in }
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
        try assertRejected("memory.pages_file") { $0.memory.pagesFile = "pages-1.img" }
        try assertRejected("memory.areas[1].pages") { $0.memory.pagesFile = "" }
    }

    func testMmFields() throws {
        try assertRejected("memory.mm.brk") { $0.memory.mm.brk = ImageFormat.userAddressLimit + 1 }
        try assertRejected("memory.mm.env_end") { $0.memory.mm.envEnd = UInt64.max }
        try assertRejected("memory.mm.auxv") { $0.memory.mm.auxv = Data(count: 20) }
        try assertRejected("memory.mm.auxv") { $0.memory.mm.auxv = Data(count: 1040) }
        try assertRejected("memory.mm.exe_path") { $0.memory.mm.exePath = "sleeper" }
    }

    func testSignals() throws {
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 9 }
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 19 }
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 0 }
        try assertRejected("signals.actions[0].signal") { $0.signals.actions[0].signal = 65 }
        try assertRejected("signals.actions[1].signal") { $0.signals.actions.append($0.signals.actions[0]) }
        try assertRejected("signals.pending[0].signal") { $0.signals.pending[0].signal = 65 }
        try assertRejected("signals.pending[0].siginfo") { $0.signals.pending[0].siginfo = Data(count: 127) }
        try assertRejected("signals.alternate_stack.flags") { $0.signals.alternateStack.flags = 4 }
    }

    func testFiles() throws {
        try assertRejected("files.descriptions[1].id") { $0.files.descriptions[1].id = 1 }
        try assertRejected("files.descriptions[0].kind") { $0.files.descriptions[0].kind = .UNRECOGNIZED(9) }
        try assertRejected("files.descriptions[1].path") { $0.files.descriptions[1].path = "tmp/sleeper.log" }
        try assertRejected("files.descriptions[1].path") { $0.files.descriptions[1].path = "/tmp/../etc/shadow" }
        try assertRejected("files.descriptions[1].flags") { $0.files.descriptions[1].flags |= 0o100 }
        try assertRejected("files.descriptors[0].fd") { $0.files.descriptors[0].fd = -1 }
        try assertRejected("files.descriptors[0].fd") { $0.files.descriptors[0].fd = 1 << 20 }
        try assertRejected("files.descriptors[2].fd") { $0.files.descriptors[2].fd = 0 }
        try assertRejected("files.descriptors[2].description") { $0.files.descriptors[2].description_p = 3 }
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
        try assertRejected("thread_control.rseq_size") { $0.threadControl.rseqSize = 16 }
        try assertRejected("thread_control.rseq_size") { $0.threadControl.rseqSize = 8192 }
        try assertRejected("thread_control.rseq_size") { $0.threadControl.rseqAddress += 0x10 }
    }

    /// Sections a task may lack (a zombie has no memory, files or environment) are not required.
    func testMinimalTask() throws {
        var task = Amber_Task()
        task.pid = Fixture.pid
        task.registers = Amber_Registers()
        let writer = try ImageWriter(directory: path("image"))
        try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        XCTAssertEqual(try ImageReader(directory: path("image")).task(pid: Fixture.pid), task)
    }
}
