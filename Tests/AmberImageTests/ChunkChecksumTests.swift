import Foundation
import XCTest

@testable import AmberImage

/// Page files are checksummed per chunk: a flipped byte is reported with
/// the byte range of the chunk that holds it.
final class ChunkChecksumTests: ImageTestCase {
    private let chunk = Int(ImageFormat.pageFileChunkSize)

    /// 2.5 chunks of distinct bytes, appended in pieces that straddle chunk boundaries.
    private func writeImage(at directory: String) throws -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let bytes = (0..<(chunk * 5 / 2)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let writer = try ImageWriter(directory: directory)
        let pageFile = try writer.makePageFile(name: ImageFormat.pageFileName(pid: Fixture.pid))
        var start = 0
        for pages in [3, 300, 1, 17, 319] {
            let end = start + pages * 4096
            let offset = try bytes.withUnsafeBytes {
                try pageFile.append(UnsafeRawBufferPointer(rebasing: $0[start..<end]))
            }
            XCTAssertEqual(offset, UInt64(start))
            start = end
        }
        XCTAssertEqual(start, bytes.count)
        try writer.writeRecord(Fixture.task(), name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        return bytes
    }

    private func pageEntry(_ directory: String) throws -> Amber_ImageFile {
        let reader = try ImageReader(directory: directory)
        return try XCTUnwrap(reader.inventory.files.first { $0.name == ImageFormat.pageFileName(pid: Fixture.pid) })
    }

    func testPageFileHasOneChecksumPerChunk() throws {
        let directory = path("image")
        let bytes = try writeImage(at: directory)
        let entry = try pageEntry(directory)
        XCTAssertEqual(entry.size, UInt64(bytes.count))
        XCTAssertEqual(entry.chunkSize, ImageFormat.pageFileChunkSize)
        XCTAssertEqual(entry.xxh64, 0)
        let expected = stride(from: 0, to: bytes.count, by: chunk).map { start in
            bytes.withUnsafeBytes {
                XXH64.hash(UnsafeRawBufferPointer(rebasing: $0[start..<min(start + chunk, bytes.count)]))
            }
        }
        XCTAssertEqual(entry.chunkXxh64, expected)
        let record = try XCTUnwrap(
            try ImageReader(directory: directory).inventory.files.first { $0.name.hasSuffix(".pb") })
        XCTAssertEqual(record.chunkSize, 0)
        XCTAssertTrue(record.chunkXxh64.isEmpty)
    }

    func testFlippedByteNamesItsChunk() throws {
        let size = chunk * 5 / 2
        for offset in [0, 4097, chunk - 1, chunk, chunk + 12_345, 2 * chunk + 7, size - 1] {
            let directory = path("image-\(offset)")
            _ = try writeImage(at: directory)
            let name = ImageFormat.pageFileName(pid: Fixture.pid)
            let url = URL(fileURLWithPath: directory + "/" + name)
            var contents = try Data(contentsOf: url)
            contents[offset] ^= 0x20
            try contents.write(to: url)
            let error = imageError { _ = try ImageReader(directory: directory) }
            let start = UInt64(offset / chunk * chunk)
            let end = min(start + UInt64(chunk), UInt64(size))
            XCTAssertEqual(error?.kind, .checksumMismatch, "offset \(offset)")
            XCTAssertEqual(error?.file, name, "offset \(offset)")
            XCTAssertEqual(error?.byteRange, start..<end, "offset \(offset)")
            let bytes = "bytes 0x\(String(start, radix: 16))-0x\(String(end, radix: 16)) "
            XCTAssertTrue(error?.description.contains(bytes) ?? false, error?.description ?? "")
        }
    }

    func testFlippedRecordByteNamesTheWholeFile() throws {
        let directory = path("image")
        try Fixture.writeImage(at: directory)
        let url = URL(fileURLWithPath: directory + "/" + ImageFormat.taskRecordName(pid: Fixture.pid))
        var contents = try Data(contentsOf: url)
        contents[contents.count / 2] ^= 0x01
        try contents.write(to: url)
        let error = imageError { _ = try ImageReader(directory: directory) }
        XCTAssertEqual(error?.kind, .checksumMismatch)
        XCTAssertEqual(error?.byteRange, 0..<UInt64(contents.count))
    }

    func testInconsistentChunkFieldsAreRefused() throws {
        let cases: [(String, (inout Amber_ImageFile) -> Void)] = [
            ("one checksum too few", { $0.chunkXxh64.removeLast() }),
            ("one checksum too many", { $0.chunkXxh64.append(0) }),
            ("chunk size not a whole number of pages", { $0.chunkSize = 4096 * 256 + 1 }),
            ("chunk size above the limit", { $0.chunkSize = ImageFormat.maximumChunkSize * 2 }),
            ("whole-file checksum as well", { $0.xxh64 = 1 }),
            ("chunk checksums without a chunk size", { $0.chunkSize = 0 }),
        ]
        for (label, change) in cases {
            let directory = path(label)
            _ = try writeImage(at: directory)
            try Fixture.rewriteInventory(at: directory) { inventory in
                let index = inventory.files.firstIndex { $0.name.hasSuffix(".img") }!
                change(&inventory.files[index])
            }
            let error = imageError { _ = try ImageReader(directory: directory) }
            XCTAssertEqual(error?.kind, .invalid, label)
            XCTAssertEqual(error?.file, ImageFormat.inventoryName, label)
        }
    }

    func testEmptyPageFileHasNoChunks() throws {
        let directory = path("image")
        let writer = try ImageWriter(directory: directory)
        _ = try writer.makePageFile(name: "empty.img")
        try writer.writeRecord(Fixture.task(), name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        let entry = try XCTUnwrap(
            try ImageReader(directory: directory).inventory.files.first { $0.name == "empty.img" })
        XCTAssertEqual(entry.chunkSize, ImageFormat.pageFileChunkSize)
        XCTAssertEqual(entry.chunkXxh64, [])
    }
}
