import Foundation
import XCTest

@testable import AmberImage

/// `amber show`'s JSON, and the inventory's own checksum (`inventory.xxh64`).
final class ShowFormatTests: ImageTestCase {
    /// Integers are numbers up to 2^53 - 1 and strings beyond; checksums are hex as errors print
    /// them; an address range is one string; SHA-256 digests are hex as sha256sum prints them.
    func testReadableJSON() throws {
        let compact = """
            {"a":9007199254740991,"b":9007199254740992,"c":-9007199254740993,"name":"12","xxh64":255,\
            "chunk_xxh64":[1,18446744073709551615],"start":4096,"end":8192,"protection":3,\
            "m":{"start_code":4194304,"end_code":4198400,"arg_end":16},"lock":{"start":5,"length":7},\
            "inventory_sha256":"AAH/"}
            """
        XCTAssertEqual(
            readableJSON(compact),
            """
            {"a":9007199254740991,"b":"9007199254740992","c":"-9007199254740993","name":"12","xxh64":"0xff",\
            "chunk_xxh64":["0x1","0xffffffffffffffff"],"range":"0x1000-0x2000","protection":3,\
            "m":{"code_range":"0x400000-0x401000","arg_range":"0x0-0x10"},"lock":{"start":5,"length":7},\
            "inventory_sha256":"0001ff"}
            """)
        XCTAssertNil(readableJSON("{\"a\":1"))
    }

    /// The image as `amber show` prints it, read back as JSON.
    func testImageJSONIsReadable() throws {
        try Fixture.writeImage(at: path("image"))
        let reader = try ImageReader(directory: path("image"))
        let json = try imageJSON(reader)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let inventory = try XCTUnwrap(object["inventory"] as? [String: Any])
        XCTAssertEqual(inventory["created_unix_ms"] as? Int, 1_700_000_000_000)
        let files = try XCTUnwrap(inventory["files"] as? [[String: Any]])
        for (shown, entry) in zip(files, reader.inventory.files) {
            XCTAssertEqual(shown["size"] as? Int, Int(entry.size))
            if entry.chunkSize == 0 {
                XCTAssertEqual(shown["xxh64"] as? String, "0x" + String(entry.xxh64, radix: 16))
            } else {
                XCTAssertEqual(shown["chunk_xxh64"] as? [String], entry.chunkXxh64.map { "0x" + String($0, radix: 16) })
            }
        }
        let task = try XCTUnwrap((object["tasks"] as? [[String: Any]])?.first)
        let memory = try XCTUnwrap(task["memory"] as? [String: Any])
        let areas = try XCTUnwrap(memory["areas"] as? [[String: Any]])
        XCTAssertEqual(areas.first?["range"] as? String, "0x400000-0x401000")
        XCTAssertEqual(areas.last?["range"] as? String, "0xffffffffff600000-0xffffffffff601000")
        XCTAssertNil(areas.first?["start"])
        XCTAssertEqual(areas.first?["inode"] as? Int, 1234)
        XCTAssertEqual((memory["mm"] as? [String: Any])?["code_range"] as? String, "0x400000-0x401000")
        XCTAssertFalse(json.contains("..<"))
    }

    /// Every image has `inventory.xxh64`, as `xxhsum -H1` prints the inventory's XXH64.
    func testWriterWritesTheInventoryChecksum() throws {
        try Fixture.writeImage(at: path("image"))
        let inventory = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path("image/inventory.pb"))))
        let checksum = try String(contentsOfFile: path("image/inventory.xxh64"), encoding: .utf8)
        let digits = String(inventory.withUnsafeBytes { XXH64.hash($0) }, radix: 16)
        XCTAssertEqual(checksum, String(repeating: "0", count: 16 - digits.count) + digits + "  inventory.pb\n")
    }

    /// A byte flipped in a field no reader uses (an unknown field, kept by the decoder) or at the
    /// end of the inventory is a checksum mismatch naming inventory.pb.
    func testFlippedInventoryByteNamesTheInventory() throws {
        try Fixture.writeImage(at: path("image"))
        let url = URL(fileURLWithPath: path("image/inventory.pb"))
        let original = try [UInt8](Data(contentsOf: url))
        // Field 239 (unknown to the schema), varint 1: an image that reads, its checksum resealed.
        let unknownField: [UInt8] = [0xf8, 0x0e, 0x01]
        try Fixture.writeInventory(at: path("image"), original + unknownField)
        XCTAssertNoThrow(try ImageReader(directory: path("image")))
        for flipped in [original + [0xf8, 0x0e, 0x03], original.dropLast() + [original.last! ^ 1]] {
            try Data(flipped).write(to: url)
            let error = imageError { _ = try ImageReader(directory: path("image")) }
            XCTAssertEqual(error?.kind, .checksumMismatch)
            XCTAssertEqual(error?.file, "inventory.pb")
            XCTAssert(error?.detail.contains("inventory.xxh64 lists 0x") == true, "\(String(describing: error))")
        }
    }

    /// Without its checksum file, or with one that is not one line of the format, an image is refused
    /// naming inventory.xxh64; the name is reserved for it.
    func testMissingOrMalformedChecksumIsRefused() throws {
        try Fixture.writeImage(at: path("image"))
        let checksum = path("image/inventory.xxh64")
        let line = try Data(contentsOf: URL(fileURLWithPath: checksum))
        try FileManager.default.removeItem(atPath: checksum)
        let missing = imageError { _ = try ImageReader(directory: path("image")) }
        XCTAssertEqual(missing?.kind, .missing)
        XCTAssertEqual(missing?.file, "inventory.xxh64")
        for malformed in [Data("00  inventory.pb\n".utf8), Data(line.map { $0 == UInt8(ascii: "\n") ? 0x20 : $0 })] {
            try malformed.write(to: URL(fileURLWithPath: checksum))
            let error = imageError { _ = try ImageReader(directory: path("image")) }
            XCTAssertEqual(error?.kind, .corrupt)
            XCTAssertEqual(error?.file, "inventory.xxh64")
        }

        let writer = try ImageWriter(directory: path("other"))
        let reserved = imageError { try writer.writeRecord(Fixture.task(), name: "inventory.xxh64") }
        XCTAssertEqual(reserved?.kind, .invalid)
    }
}
