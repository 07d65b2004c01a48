import Foundation
import XCTest

@testable import AmberImage

/// `inventory.mac`: written with a key, and an image is authenticated only under that key,
/// with the MAC present and every record and the inventory unchanged.
final class ImageAuthenticationTests: ImageTestCase {
    let key = ImageKey(bytes: Array(repeating: 7, count: ImageKey.size))!
    let otherKey = ImageKey(bytes: Array(repeating: 8, count: ImageKey.size))!

    func testAuthenticity() throws {
        let directory = path("image")
        let tasks = [Fixture.task(pid: 4243), Fixture.task()]
        try Fixture.writeImage(at: directory, tasks: tasks, key: key)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + ImageFormat.macName)).count, 32)
        let reader = try ImageReader(directory: directory, key: key)
        XCTAssertEqual(reader.authenticity, .authenticated)
        XCTAssertEqual(
            reader.inventory.files.map(\.name), ["pages-4242.img", "pages-4243.img", "task-4242.pb", "task-4243.pb"],
            "the MAC is not listed")
        for task in tasks { XCTAssertEqual(try reader.task(pid: task.pid), task) }
        XCTAssertEqual(try ImageReader(directory: directory, key: otherKey).authenticity, .mismatch)
        XCTAssertEqual(try ImageReader(directory: directory).authenticity, .noKey)

        // A record changed and its checksum recomputed, as anyone who can write the files can.
        let record = URL(fileURLWithPath: directory + "/task-4243.pb")
        var changed = Fixture.task(pid: 4243)
        changed.comm = "changed"
        changed.threads[0].comm = "changed"
        let bytes: [UInt8] = try changed.serializedBytes()
        try Data(bytes).write(to: record)
        try Fixture.rewriteInventory(at: directory) { inventory in
            let index = inventory.files.firstIndex { $0.name == "task-4243.pb" }!
            inventory.files[index].size = UInt64(bytes.count)
            inventory.files[index].xxh64 = bytes.withUnsafeBytes { XXH64.hash($0) }
        }
        let tampered = try ImageReader(directory: directory, key: key)
        XCTAssertEqual(tampered.authenticity, .mismatch)
        XCTAssertEqual(try tampered.task(pid: 4243).comm, "changed", "an unauthenticated image still reads")

        try FileManager.default.removeItem(atPath: directory + "/" + ImageFormat.macName)
        XCTAssertEqual(try ImageReader(directory: directory, key: key).authenticity, .noCode)
    }

    func testUnauthenticatedWithoutKey() throws {
        let directory = path("image")
        try Fixture.writeImage(at: directory)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/" + ImageFormat.macName))
        XCTAssertEqual(try ImageReader(directory: directory, key: key).authenticity, .noCode)
    }

    /// The same code the writer wrote, from the files alone (as the fuzz target seals inputs).
    func testCodeFromFiles() throws {
        let directory = path("image")
        try Fixture.writeImage(at: directory, key: key)
        var files: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
        }
        XCTAssertEqual(key.authenticationCode(forImage: files), files[ImageFormat.macName])
        XCTAssertEqual(try ImageReader(files: files, key: key).authenticity, .authenticated)
    }
}
