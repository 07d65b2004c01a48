import Foundation
import XCTest

@testable import AmberImage

/// Compressed (`--compress`) and encrypted (`--encrypt-key`) images: what is written reads back
/// bit for bit, and every change to what is stored is refused naming the file.
final class ImageCodecTests: ImageTestCase {
    private let chunk = Int(ImageFormat.pageFileChunkSize)
    private let key = ImageEncryptionKey(bytes: Array(100..<132))!
    private let pageFileName = ImageFormat.pageFileName(pid: Fixture.pid)

    /// 2.5 chunks: one of text and zero runs (compressible), one of PRNG bytes (stored plain), half of zeros.
    private lazy var pages: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let random = (0..<chunk).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let text = Array(String(repeating: "amber checkpoints a process tree; ", count: chunk / 34 + 1).utf8)
        return Array(text.prefix(chunk / 2)) + [UInt8](repeating: 0, count: chunk / 2) + random
            + [UInt8](repeating: 0, count: chunk / 2)
    }()

    private func writeImage(_ storage: ImageStorage) throws -> String {
        let directory = path("image")
        let writer = try ImageWriter(directory: directory, storage: storage)
        let pageFile = try writer.makePageFile(name: pageFileName)
        var start = 0
        for count in [3, 300, 1, 17, 319] {
            let end = start + count * 4096
            _ = try pages.withUnsafeBytes { try pageFile.append(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
            start = end
        }
        var task = Fixture.task()
        task.memory.areas = []
        task.memory.pageFiles = [pageFileName]
        try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        return directory
    }

    private func entry(_ directory: String, key: ImageEncryptionKey? = nil) throws -> Amber_ImageFile {
        try XCTUnwrap(
            ImageReader(directory: directory, encryptionKey: key).inventory.files.first { $0.name == pageFileName })
    }

    private func readPages(_ reader: ImageReader) throws -> [UInt8] {
        let file = try reader.pageFile(named: pageFileName)
        return try withExtendedLifetime(file) {
            try Array(file.pages(offset: 0, count: UInt64(pages.count) / ImageFormat.pageSize))
        }
    }

    /// Changes the inventory as someone holding the key would (its code recomputed), to reach the chunk checks.
    private func rewriteSealedInventory(_ directory: String, _ change: (inout Amber_Inventory) -> Void) throws {
        try Fixture.rewriteInventory(at: directory) { inventory in
            change(&inventory)
            guard inventory.hasEncryption else { return }
            let sealing = ImageSealing(key: key, salt: Array(inventory.encryption.salt))
            inventory.encryption.inventoryCode = Data()
            inventory.encryption.inventoryCode = Data(sealing.inventoryCode(try! inventory.serializedBytes()))
        }
    }

    private func modify(_ directory: String, _ name: String, _ change: (inout Data) -> Void) throws {
        let url = URL(fileURLWithPath: directory + "/" + name)
        var bytes = try Data(contentsOf: url)
        change(&bytes)
        try bytes.write(to: url)
    }

    func testCompressedRoundTrip() throws {
        let directory = try writeImage(ImageStorage(compress: true))
        let entry = try entry(directory)
        XCTAssertTrue(entry.compressed)
        XCTAssertFalse(entry.encrypted)
        XCTAssertEqual(entry.size, UInt64(pages.count))
        XCTAssertEqual(entry.storedChunkSize.count, 3)
        XCTAssertLessThan(entry.storedChunkSize[0], UInt64(chunk) / 10)
        XCTAssertEqual(entry.storedChunkSize[1], UInt64(chunk), "an incompressible chunk is stored plain")
        let status = try FileManager.default.attributesOfItem(atPath: directory + "/" + pageFileName)
        XCTAssertEqual((status[.size] as? NSNumber)?.uint64Value, entry.storedSize)
        let reader = try ImageReader(directory: directory)
        XCTAssertEqual(try readPages(reader), pages)
        let lazy = try ImageReader(directory: directory, checkPages: false).lazyPageFile(named: pageFileName)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pages.count, alignment: 4096)
        defer { buffer.deallocate() }
        let range = lazy.chunks(around: UInt64(chunk + 4096)..<UInt64(pages.count), limit: UInt64(pages.count))
        XCTAssertEqual(Array(try lazy.read(range, into: buffer)), Array(pages[Int(range.lowerBound)...]))
        XCTAssertNoThrow(try reader.tasks())
    }

    /// Incompressible chunks written as they are, straight from what was appended, up to a last
    /// chunk cut short, after a compressed one: each chunk in its place, read back bit for bit.
    func testIncompressibleChunksWrittenAsTheyAreReadBack() throws {
        let directory = path("image")
        let writer = try ImageWriter(directory: directory, storage: ImageStorage(compress: true))
        let pageFile = try writer.makePageFile(name: pageFileName)
        let random = Array(pages[chunk...].prefix(chunk))
        let written = Array(pages[..<(chunk / 2)]) + random + random + random.prefix(chunk / 4)
        for range in [0..<(chunk / 2 + 4096), (chunk / 2 + 4096)..<written.count] {
            _ = try written.withUnsafeBytes { try pageFile.append(UnsafeRawBufferPointer(rebasing: $0[range])) }
        }
        var task = Fixture.task()
        task.memory.areas = []
        task.memory.pageFiles = [pageFileName]
        try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        let entry = try entry(directory)
        XCTAssertLessThan(entry.storedChunkSize[0], UInt64(chunk))
        XCTAssertEqual(Array(entry.storedChunkSize.dropFirst()), [UInt64(chunk), UInt64(chunk / 4 * 3)])
        let file = try ImageReader(directory: directory).pageFile(named: pageFileName)
        try withExtendedLifetime(file) {
            XCTAssertEqual(
                Array(try file.pages(offset: 0, count: UInt64(written.count) / ImageFormat.pageSize)), written)
        }
    }

    /// What a restore opens: the page file decoded once, when the image is checked, handed out once
    /// from there and decoded again if asked for again; a changed chunk is still refused at the check.
    func testPagesDecodedWhenCheckedReadBack() throws {
        let directory = try writeImage(ImageStorage(compress: true, encryptionKey: key))
        let reader = try ImageReader(directory: directory, encryptionKey: key, keepDecodedPages: true)
        XCTAssertEqual(try readPages(reader), pages)
        XCTAssertEqual(try readPages(reader), pages)
        try modify(directory, pageFileName) { $0[100] ^= 1 }
        let error = imageError {
            _ = try ImageReader(directory: directory, encryptionKey: key, keepDecodedPages: true)
        }
        XCTAssertEqual(error?.kind, .checksumMismatch)
        XCTAssertEqual(error?.file, pageFileName)
    }

    func testEncryptedRoundTripAndNothingReadableWithoutTheKey() throws {
        let directory = try writeImage(ImageStorage(compress: true, encryptionKey: key))
        let reader = try ImageReader(directory: directory, encryptionKey: key)
        XCTAssertEqual(try readPages(reader), pages)
        XCTAssertEqual(try reader.task(pid: Fixture.pid).pid, Fixture.pid)
        let entry = try entry(directory, key: key)
        XCTAssertTrue(entry.encrypted && entry.compressed)
        XCTAssertEqual(entry.storedChunkSize[1], UInt64(chunk + ImageSealing.tagSize))
        // The record's comm and the pages' text are nowhere in the files.
        let record = try Data(contentsOf: URL(fileURLWithPath: directory + "/task-\(Fixture.pid).pb"))
        let plainRecord = try Fixture.task().serializedBytes() as [UInt8]
        XCTAssertNotEqual(Array(record.prefix(16)), Array(plainRecord.prefix(16)))
        let stored = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + pageFileName))
        XCTAssertNil(stored.range(of: Data("amber checkpoints".utf8)))
        XCTAssertNil(stored.range(of: Data(pages[chunk..<(chunk + 64)])))

        let missing = imageError { _ = try ImageReader(directory: directory) }
        XCTAssertEqual(missing?.file, ImageFormat.inventoryName)
        XCTAssertTrue(missing?.detail.contains("the image is encrypted: give --encrypt-key") == true, "\(missing!)")
        let wrong = imageError {
            _ = try ImageReader(directory: directory, encryptionKey: ImageEncryptionKey(bytes: Array(0..<32))!)
        }
        XCTAssertTrue(wrong?.detail.contains("not the image's key") == true, "\(wrong!)")
        let plain = path("plain")
        try Fixture.writeImage(at: plain)
        let unexpected = imageError { _ = try ImageReader(directory: plain, encryptionKey: key) }
        XCTAssertTrue(unexpected?.detail.contains("not encrypted") == true, "\(unexpected!)")
    }

    func testFlippedByteIsRefusedNamingTheFile() throws {
        for storage in [ImageStorage(compress: true), ImageStorage(compress: true, encryptionKey: key)] {
            try? FileManager.default.removeItem(atPath: path("image"))
            let directory = try writeImage(storage)
            try modify(directory, pageFileName) { $0[100] ^= 1 }
            let error = imageError { _ = try ImageReader(directory: directory, encryptionKey: storage.encryptionKey) }
            XCTAssertEqual(error?.kind, .checksumMismatch)
            XCTAssertEqual(error?.file, pageFileName)
            XCTAssertEqual(error?.byteRange?.lowerBound, 0)
        }
        // With the checksum recomputed, as anyone can, the sealed chunk itself no longer opens.
        let directory = path("image")
        let inventory = try Amber_Inventory(
            serializedBytes: Data(contentsOf: URL(fileURLWithPath: directory + "/" + ImageFormat.inventoryName)))
        let entry = try XCTUnwrap(inventory.files.first { $0.name == pageFileName })
        try rewriteSealedInventory(directory) { inventory in
            let index = inventory.files.firstIndex { $0.name == self.pageFileName }!
            let bytes = try! Data(contentsOf: URL(fileURLWithPath: directory + "/" + self.pageFileName))
            inventory.files[index].chunkXxh64[0] = bytes[0..<Int(entry.storedChunkSize[0])].withUnsafeBytes {
                XXH64.hash($0)
            }
        }
        let deeper = imageError { _ = try ImageReader(directory: directory, encryptionKey: key) }
        XCTAssertEqual(deeper?.kind, .checksumMismatch)
        XCTAssertEqual(deeper?.file, pageFileName)
        XCTAssertTrue(deeper?.detail.contains("does not open") == true, "\(deeper!)")
    }

    func testSwappedChunksAreRefused() throws {
        let directory = try writeImage(ImageStorage(encryptionKey: key))
        let entry = try entry(directory, key: key)
        let size = Int(entry.storedChunkSize[0])
        XCTAssertEqual(entry.storedChunkSize[1], UInt64(size))
        try modify(directory, pageFileName) { bytes in
            let first = bytes[0..<size]
            bytes.replaceSubrange(0..<size, with: bytes[size..<(2 * size)])
            bytes.replaceSubrange(size..<(2 * size), with: first)
        }
        // Checksums swapped too, as one without the key can do: the inventory's code catches it.
        try Fixture.rewriteInventory(at: directory) { inventory in
            let index = inventory.files.firstIndex { $0.name == self.pageFileName }!
            inventory.files[index].chunkXxh64.swapAt(0, 1)
        }
        let unsealed = imageError { _ = try ImageReader(directory: directory, encryptionKey: key) }
        XCTAssertEqual(unsealed?.kind, .checksumMismatch)
        XCTAssertEqual(unsealed?.file, ImageFormat.inventoryName)
        // And with the inventory's code recomputed, the chunks themselves do not open in their new places.
        try rewriteSealedInventory(directory) { _ in }
        let error = imageError { _ = try ImageReader(directory: directory, encryptionKey: key) }
        XCTAssertEqual(error?.kind, .checksumMismatch)
        XCTAssertEqual(error?.file, pageFileName)
        XCTAssertTrue(error?.detail.contains("does not open") == true, "\(error!)")
    }

    func testTruncatedFileIsRefused() throws {
        let directory = try writeImage(ImageStorage(compress: true, encryptionKey: key))
        let entry = try entry(directory, key: key)
        let kept = Int(entry.storedChunkSize[0] + entry.storedChunkSize[1])
        try modify(directory, pageFileName) { $0 = $0.prefix(kept) }
        let error = imageError { _ = try ImageReader(directory: directory, encryptionKey: key) }
        XCTAssertEqual(error?.kind, .truncated)
        XCTAssertEqual(error?.file, pageFileName)
        // Cut after a whole chunk, the inventory cut to match: the new last chunk was not sealed as the last.
        try rewriteSealedInventory(directory) { inventory in
            let index = inventory.files.firstIndex { $0.name == self.pageFileName }!
            inventory.files[index].size = UInt64(2 * self.chunk)
            inventory.files[index].storedChunkSize.removeLast()
            inventory.files[index].chunkXxh64.removeLast()
        }
        let cut = imageError { _ = try ImageReader(directory: directory, encryptionKey: key) }
        XCTAssertEqual(cut?.kind, .checksumMismatch)
        XCTAssertEqual(cut?.file, pageFileName)
    }

    func testImpossibleStoredSizesAreRefused() throws {
        let directory = try writeImage(ImageStorage(compress: true))
        try Fixture.rewriteInventory(at: directory) { inventory in
            let index = inventory.files.firstIndex { $0.name == self.pageFileName }!
            inventory.files[index].storedChunkSize[1] = UInt64(self.chunk + 1)
        }
        let error = imageError { _ = try ImageReader(directory: directory) }
        XCTAssertEqual(error?.kind, .invalid)
        XCTAssertTrue(error?.detail.contains("stored_chunk_size[1]") == true, "\(error!)")
    }

    func testKeyFileMustBe32BytesOfItsOwnersOnly() throws {
        let file = path("key")
        FileManager.default.createFile(atPath: file, contents: Data(Array(0..<32)))
        chmod(file, 0o600)
        XCTAssertNoThrow(try ImageEncryptionKey(file: file))
        chmod(file, 0o644)
        XCTAssertTrue(imageError { _ = try ImageEncryptionKey(file: file) }?.detail.contains("other users") == true)
        FileManager.default.createFile(atPath: file, contents: Data(Array(0..<31)))
        chmod(file, 0o600)
        XCTAssertTrue(imageError { _ = try ImageEncryptionKey(file: file) }?.detail.contains("31 bytes") == true)
    }

    func testRecodedMemoryImageReadsBack() throws {
        let directory = path("plain")
        try Fixture.writeImage(at: directory)
        var files: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
        }
        let coded = try XCTUnwrap(recodedImage(files, storage: ImageStorage(compress: true, encryptionKey: key)))
        let reader = try ImageReader(files: coded, encryptionKey: key)
        XCTAssertEqual(try reader.tasks().map(\.pid), [Fixture.pid])
        let file = try reader.pageFile(named: pageFileName)
        try withExtendedLifetime(file) {
            XCTAssertEqual(
                Array(try file.pages(offset: 0, count: UInt64(Fixture.pageCount))), Fixture.pages(pid: Fixture.pid))
        }
    }
}
