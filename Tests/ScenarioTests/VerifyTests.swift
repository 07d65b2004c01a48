// Integrity: `amber verify DIR` (also `amber show --verify DIR`) checks every
// file against its checksums and every record; a flipped byte in a page file is reported in
// one line naming the file and the byte range of the 1 MiB chunk that holds it, exit 7.

import AmberImage
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class VerifyTests: ScenarioTestCase {
    private let chunk = Int(ImageFormat.pageFileChunkSize)

    func testVerifyAcceptsIntactImage() throws {
        let (image, _) = try dumpedImage()
        for arguments in [["verify", image], ["show", "--verify", image]] {
            let r = try amber(arguments)
            XCTAssertEqual(r.status, .exited(0), r.summary)
            XCTAssertTrue(r.stdout.contains("intact"), r.summary)
        }
    }

    func testVerifyNamesFileAndChunkOfFlippedByte() throws {
        _ = try requireAmber()
        // The memory scenario holds over 256 MiB: its pages are split over two page files of
        // many chunks each. The byte is flipped in the second, which the dump wrote on a thread of its own.
        let p = try start(.memory)
        let image = try dumpExpectingSuccess(p)
        let record = try Amber_Task(serializedBytes: Data(try XCTUnwrap(Sys.readFile("\(image)/task-\(p.pid).pb"))))
        XCTAssertEqual(
            record.memory.pageFiles.count, 2, "the memory scenario's pages were not split over two page files")
        let pages = try XCTUnwrap(record.memory.pageFiles.last)
        let path = image + "/" + pages
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        let offset = 5 * chunk + 12_345
        XCTAssertGreaterThan(Int(st.st_size), 6 * chunk, "the page file \(pages) is too small for this test")
        try flipByte(path, at: offset)

        let chunkBytes = "bytes 0x\(String(5 * chunk, radix: 16))-0x\(String(6 * chunk, radix: 16)) "
        for arguments in [["verify", image], ["show", "--verify", image]] {
            let r = try amber(arguments)
            assertRefusal(r, exitCode: AmberExit.badImage, mentions: [pages, chunkBytes])
        }
        let restore = try amber(["restore", "-D", image, "--detach"])
        track(p.pid)
        assertRefusal(restore, exitCode: AmberExit.badImage, mentions: [pages, chunkBytes])
        XCTAssertFalse(Proc.pidInUse(p.pid), "a refused restore left PID \(p.pid) in use")
    }

    /// The inventory has a checksum of its own: its last byte flipped, or `inventory.xxh64` gone,
    /// and verify and restore refuse the image naming the file.
    func testVerifyNamesFlippedInventoryByteAndMissingChecksum() throws {
        let (image, pid) = try dumpedImage()
        track(pid)
        var st = stat()
        XCTAssertEqual(stat(image + "/inventory.pb", &st), 0)
        try flipByte(image + "/inventory.pb", at: Int(st.st_size) - 1)
        for arguments in [["verify", image], ["restore", "-D", image, "--detach"]] {
            let r = try amber(arguments)
            assertRefusal(r, exitCode: AmberExit.badImage, mentions: ["inventory.pb", "inventory.xxh64 lists 0x"])
        }
        try flipByte(image + "/inventory.pb", at: Int(st.st_size) - 1)
        XCTAssertEqual(unlink(image + "/" + ImageFormat.inventoryChecksumName), 0)
        for arguments in [["verify", image], ["restore", "-D", image, "--detach"]] {
            let r = try amber(arguments)
            assertRefusal(r, exitCode: AmberExit.badImage, mentions: [ImageFormat.inventoryChecksumName])
        }
        XCTAssertFalse(Proc.pidInUse(pid), "a refused restore left PID \(pid) in use")
    }

    private func flipByte(_ path: String, at offset: Int) throws {
        let fd = open(path, O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0, "open \(path)")
        defer { close(fd) }
        var byte: UInt8 = 0
        XCTAssertEqual(pread(fd, &byte, 1, off_t(offset)), 1)
        byte ^= 0x01
        XCTAssertEqual(pwrite(fd, &byte, 1, off_t(offset)), 1)
    }
}
