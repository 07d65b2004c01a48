import Foundation
import XCTest

@testable import AmberImage

/// `ImageReader(files:)` reads an image given as bytes with the same checks as
/// one in a directory.
final class MemoryImageTests: ImageTestCase {
    /// Every file of the image in `directory`, by name.
    private func files(of directory: String) throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
        }
        return files
    }

    private func memoryError(_ files: [String: [UInt8]], file: StaticString = #filePath, line: UInt = #line)
        -> ImageError?
    {
        imageError(file: file, line: line) {
            let reader = try ImageReader(files: files)
            for pid in reader.taskPIDs { _ = try reader.task(pid: pid) }
        }
    }

    func testSameImageAsFromTheDirectory() throws {
        let directory = path("image")
        var child = Fixture.task(pid: 4243)
        child.ppid = Fixture.pid
        try Fixture.writeImage(at: directory, tasks: [Fixture.task(), child])
        let fromDirectory = try ImageReader(directory: directory)
        let fromMemory = try ImageReader(files: files(of: directory))
        XCTAssertEqual(fromMemory.directory, "(memory)")
        XCTAssertEqual(fromMemory.inventory, fromDirectory.inventory)
        XCTAssertEqual(fromMemory.taskPIDs, [4242, 4243])
        for pid in fromMemory.taskPIDs {
            let task = try fromMemory.task(pid: pid)
            XCTAssertEqual(task, try fromDirectory.task(pid: pid))
            let pages = try fromMemory.pageFile(named: task.memory.pageFiles[0])
            XCTAssertEqual(Array(pages.bytes), Fixture.pages(pid: pid))
            XCTAssertEqual(Int(bitPattern: pages.bytes.baseAddress) % 4096, 0)
            XCTAssertEqual(Array(try pages.pages(offset: 4096, count: 2)), Array(Fixture.pages(pid: pid)[4096..<12288]))
        }
        XCTAssertEqual(try imageJSON(fromMemory), try imageJSON(directory: directory))
    }

    func testSameErrorsAsFromTheDirectory() throws {
        try Fixture.writeImage(at: path("image"))
        let image = try files(of: path("image"))

        var noInventory = image
        noInventory["inventory.pb"] = nil
        XCTAssertEqual(memoryError(noInventory)?.kind, .missing)
        XCTAssertEqual(memoryError(noInventory)?.file, "inventory.pb")

        var noPages = image
        noPages["pages-4242.img"] = nil
        XCTAssertEqual(memoryError(noPages)?.kind, .missing)
        XCTAssertEqual(memoryError(noPages)?.file, "pages-4242.img")

        var short = image
        short["pages-4242.img"]?.removeLast()
        XCTAssertEqual(memoryError(short)?.kind, .truncated)

        var long = image
        long["task-4242.pb"]?.append(0)
        XCTAssertEqual(memoryError(long)?.kind, .corrupt)
        XCTAssertEqual(memoryError(long)?.file, "task-4242.pb")

        var flipped = image
        flipped["pages-4242.img"]?[100] ^= 1
        XCTAssertEqual(memoryError(flipped)?.kind, .checksumMismatch)
        XCTAssertEqual(memoryError(flipped)?.file, "pages-4242.img")

        var undecodable = image
        undecodable["inventory.pb"] = [0xff, 0xff, 0xff]
        undecodable["inventory.xxh64"] = InventoryChecksum.file(forInventory: [0xff, 0xff, 0xff])
        XCTAssertEqual(memoryError(undecodable)?.kind, .corrupt)

        var unlisted = image
        unlisted["notes.txt"] = [1, 2, 3]
        XCTAssertEqual(try ImageReader(files: unlisted).task(pid: Fixture.pid), Fixture.task())
    }

    /// Records are read whole into memory: one larger than 64 MiB is refused before it is read.
    func testRecordSizeLimit() throws {
        XCTAssertEqual(memoryError(["inventory.pb": [UInt8](repeating: 0, count: 64 << 20 + 1)])?.kind, .corrupt)

        try Fixture.writeImage(at: path("image"))
        var image = try files(of: path("image"))
        let record = image["task-4242.pb"]! + [UInt8](repeating: 0, count: 64 << 20)
        image["task-4242.pb"] = record
        var inventory = try Amber_Inventory(serializedBytes: image["inventory.pb"]!)
        let index = try XCTUnwrap(inventory.files.firstIndex { $0.name == "task-4242.pb" })
        inventory.files[index].size = UInt64(record.count)
        inventory.files[index].xxh64 = record.withUnsafeBytes { XXH64.hash($0) }
        image["inventory.pb"] = try inventory.serializedBytes()
        image["inventory.xxh64"] = InventoryChecksum.file(forInventory: image["inventory.pb"]!)
        let reader = try ImageReader(files: image)
        let error = imageError { _ = try reader.task(pid: Fixture.pid) }
        XCTAssertEqual(error?.kind, .corrupt)
        XCTAssertEqual(error?.file, "task-4242.pb")
        XCTAssert(error?.detail.contains("64 MiB") == true, "\(String(describing: error))")
    }

    func testPageFileMustHoldWholePages() throws {
        try Fixture.writeImage(at: path("image"))
        let reader = try ImageReader(files: files(of: path("image")))
        let error = imageError { _ = try reader.pageFile(named: "task-4242.pb") }
        XCTAssertEqual(error?.kind, .corrupt)
        XCTAssertEqual(error?.file, "task-4242.pb")
    }
}
