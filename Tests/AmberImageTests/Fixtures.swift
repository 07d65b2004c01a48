import AmberImage
import Foundation
import XCTest

/// A temporary directory per test, removed in tearDown.
class ImageTestCase: XCTestCase {
    private(set) var root = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/amber-image-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        root = try XCTUnwrap(created.map { String(cString: $0) })
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(atPath: root)
    }

    /// A path inside the test's temporary directory (not created).
    func path(_ name: String) -> String { root + "/" + name }

    /// Runs `body` and returns the `ImageError` it throws, failing the test if it throws none.
    func imageError(file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) -> ImageError? {
        do {
            try body()
            XCTFail("expected an ImageError", file: file, line: line)
        } catch let error as ImageError {
            return error
        } catch {
            XCTFail("expected an ImageError, got \(error)", file: file, line: line)
        }
        return nil
    }
}

/// A small, valid image: one or more tasks, each with every kind of state the
/// schema has, and a page file holding five recognisable pages per task.
enum Fixture {
    static let pid: Int32 = 4242
    static let xstateSize = 832
    static let pageCount = 5

    /// The bytes of page `index` of task `pid`: every byte tells which page it is.
    static func pages(pid: Int32) -> [UInt8] {
        (0..<pageCount).flatMap { index in [UInt8](repeating: UInt8(truncatingIfNeeded: Int(pid) + index), count: 4096)
        }
    }

    /// An XSAVE buffer in the standard format: legacy area, then a header naming x87, SSE and AVX.
    static var xstate: Data {
        var bytes = Data(repeating: 0xAB, count: xstateSize)
        bytes.replaceSubrange(512..<576, with: [7] + [UInt8](repeating: 0, count: 63))
        return bytes
    }

    static func inventory(rootPID: Int32 = pid) -> Amber_Inventory {
        var inventory = Amber_Inventory()
        inventory.amberVersion = "test"
        inventory.kernelRelease = "6.18.0"
        inventory.machine = "x86_64"
        inventory.xstateFeatures = 0x7
        inventory.xstateSize = UInt32(xstateSize)
        inventory.createdUnixMs = 1_700_000_000_000
        inventory.rootPid = rootPID
        return inventory
    }

    static func task(pid: Int32 = pid) -> Amber_Task {
        var task = Amber_Task()
        task.pid = pid
        task.ppid = 1
        task.pgid = pid
        task.sid = pid
        task.comm = "sleeper"
        task.threads = [thread(tid: pid, comm: task.comm)]

        func area(
            _ start: UInt64, _ end: UInt64, _ protection: UInt32, _ kind: Amber_AreaKind,
            pages: [(UInt64, UInt64, UInt64)] = []
        ) -> Amber_MemoryArea {
            var area = Amber_MemoryArea()
            area.start = start
            area.end = end
            area.protection = protection
            area.kind = kind
            area.pages = pages.map { address, count, offset in
                var run = Amber_PageRun()
                run.address = address
                run.count = count
                run.offset = offset
                return run
            }
            return area
        }
        var file = area(0x40_0000, 0x40_1000, 5, .areaFile)
        file.path = "/usr/bin/sleeper"
        file.device = 0x801
        file.inode = 1234
        task.memory.areas = [
            file,
            area(0x60_0000, 0x60_4000, 3, .areaAnonymous, pages: [(0x60_0000, 2, 0), (0x60_3000, 1, 8192)]),
            area(0x100_0000, 0x100_2000, 3, .areaHeap, pages: [(0x100_1000, 1, 12288)]),
            area(0x7ffd_0000_0000, 0x7ffd_0002_1000, 3, .areaStack, pages: [(0x7ffd_0002_0000, 1, 16384)]),
            area(0x7ffd_0010_0000, 0x7ffd_0010_4000, 1, .areaVvar),
            area(0x7ffd_0010_4000, 0x7ffd_0010_6000, 5, .areaVdso),
            area(0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000, 4, .areaVsyscall),
        ]
        task.memory.pageFiles = [ImageFormat.pageFileName(pid: pid)]
        task.memory.mm.startCode = 0x40_0000
        task.memory.mm.endCode = 0x40_1000
        task.memory.mm.startBrk = 0x100_0000
        task.memory.mm.brk = 0x100_2000
        task.memory.mm.startStack = 0x7ffd_0002_0f00
        task.memory.mm.auxv = Data(repeating: 0, count: 32)
        task.memory.mm.exePath = "/usr/bin/sleeper"

        var action = Amber_SignalAction()
        action.signal = 10
        action.handler = 0x40_1100
        task.signals.actions = [action]
        var pending = Amber_PendingSignal()
        pending.signal = 2
        pending.siginfo = Data([2, 0, 0, 0] + [UInt8](repeating: 0, count: 124))
        task.signals.pending = [pending]

        var null = Amber_OpenFileDescription()
        null.id = 1
        null.characterDevice.path = "/dev/null"
        null.characterDevice.rdev = 0x103
        null.flags = 0o2
        var log = Amber_OpenFileDescription()
        log.id = 2
        log.regularFile.path = "/tmp/sleeper.log"
        log.flags = 0o1 | 0o2000 | 0o100000
        log.offset = 100
        task.files.descriptions = [null, log]
        task.files.descriptors = [(0, 1), (1, 1), (2, 2)].map { (fd: Int32, description: UInt32) in
            var descriptor = Amber_FileDescriptor()
            descriptor.fd = fd
            descriptor.descriptionID = description
            return descriptor
        }

        task.environment.cwd = "/"
        task.environment.umask = 0o22
        var limit = Amber_ResourceLimit()
        limit.resource = 7
        limit.soft = 1024
        limit.hard = 4096
        task.environment.limits = [limit]
        return task
    }

    /// A thread with registers, an rseq area and no alternate stack: the fixture task's leader
    /// with its PID and name, or another thread.
    static func thread(tid: Int32, comm: String = "") -> Amber_Thread {
        var thread = Amber_Thread()
        thread.tid = tid
        thread.comm = comm
        thread.registers.rip = 0x401000
        thread.registers.rsp = 0x7ffd_0002_0f00
        thread.registers.xstate = xstate
        thread.alternateStack.flags = 2
        thread.threadControl.rseqAddress = 0x7ffd_0000_1020
        thread.threadControl.rseqSize = 32
        thread.threadControl.rseqSignature = 0x5305_3053
        return thread
    }

    /// Writes an image of `tasks` (each with its page file) into `directory`.
    /// Files are named after each task's PID, or after `pid` if given. Each object of shared
    /// anonymous memory gets a page file of two pages under its own name.
    static func writeImage(
        at directory: String, tasks: [Amber_Task] = [task()], pid: Int32? = nil,
        inventory: Amber_Inventory = inventory(), key: ImageKey? = nil
    ) throws {
        let writer = try ImageWriter(directory: directory, key: key)
        var sharedPageFiles: Set<String> = []
        for task in tasks {
            let pid = pid ?? task.pid
            let pageFile = try writer.makePageFile(name: ImageFormat.pageFileName(pid: pid))
            let offset = try pages(pid: pid).withUnsafeBytes { try pageFile.append($0) }
            XCTAssertEqual(offset, 0)
            try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: pid))
            for object in task.memory.sharedAnonymous
            where object.pageFile == ImageFormat.sharedAnonymousFileName(id: object.id)
                && sharedPageFiles.insert(object.pageFile).inserted
            {
                let pageFile = try writer.makePageFile(name: object.pageFile)
                _ = try [UInt8](repeating: 0x5a, count: 8192).withUnsafeBytes { try pageFile.append($0) }
            }
        }
        try writer.finish(inventory: inventory)
    }

    /// Replaces the inventory of a finished image, bypassing the writer, and its checksum.
    static func rewriteInventory(at directory: String, _ change: (inout Amber_Inventory) -> Void) throws {
        let url = URL(fileURLWithPath: directory + "/" + ImageFormat.inventoryName)
        var inventory = try Amber_Inventory(serializedBytes: Data(contentsOf: url))
        change(&inventory)
        try writeInventory(at: directory, inventory.serializedBytes())
    }

    /// Replaces the inventory of a finished image with `bytes`, and its checksum with theirs.
    static func writeInventory(at directory: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + ImageFormat.inventoryName))
        try Data(InventoryChecksum.file(forInventory: bytes)).write(
            to: URL(fileURLWithPath: directory + "/" + ImageFormat.inventoryChecksumName))
    }
}
