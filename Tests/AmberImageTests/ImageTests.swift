import Foundation
import XCTest

@testable import AmberImage

final class ImageTests: ImageTestCase {
    func testRoundTrip() throws {
        let directory = path("image")
        let tasks = [Fixture.task(pid: 4243), Fixture.task()]
        try Fixture.writeImage(at: directory, tasks: tasks)

        let reader = try ImageReader(directory: directory)
        XCTAssertEqual(reader.inventory.formatVersion, ImageFormat.version)
        XCTAssertEqual(reader.inventory.rootPid, Fixture.pid)
        XCTAssertEqual(reader.taskPIDs, [4242, 4243])
        XCTAssertEqual(
            reader.inventory.files.map(\.name), ["pages-4242.img", "pages-4243.img", "task-4242.pb", "task-4243.pb"])
        for file in reader.inventory.files {
            let contents = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file.name))
            XCTAssertEqual(file.size, UInt64(contents.count), file.name)
            if file.name.hasSuffix(".img") {
                XCTAssertEqual(file.chunkXxh64, [contents.withUnsafeBytes { XXH64.hash($0) }], file.name)
            } else {
                XCTAssertEqual(file.xxh64, contents.withUnsafeBytes { XXH64.hash($0) }, file.name)
            }
        }
        for task in tasks {
            XCTAssertEqual(try reader.task(pid: task.pid), task)
            let pageFile = try reader.pageFile(named: task.memory.pageFiles[0])
            XCTAssertEqual(Array(pageFile.bytes), Fixture.pages(pid: task.pid))
            XCTAssertEqual(
                Array(try pageFile.pages(offset: 8192, count: 1)), Array(Fixture.pages(pid: task.pid)[8192..<12288]))
            XCTAssertEqual(imageError { _ = try pageFile.pages(offset: 16384, count: 2) }?.kind, .invalid)
            XCTAssertEqual(imageError { _ = try pageFile.pages(offset: 100, count: 1) }?.kind, .invalid)
        }
        XCTAssertEqual(imageError { _ = try reader.task(pid: 1) }?.kind, .missing)
        XCTAssertEqual(imageError { _ = try reader.pageFile(named: "pages-1.img") }?.kind, .missing)
    }

    func testPageFileOffsetsAndEmptyPageFile() throws {
        let directory = path("image")
        let writer = try ImageWriter(directory: directory)
        let pageFile = try writer.makePageFile(name: ImageFormat.pageFileName(pid: Fixture.pid))
        let empty = try writer.makePageFile(name: "empty.img")
        let pages = Fixture.pages(pid: 1)
        XCTAssertEqual(try pages.withUnsafeBytes { try pageFile.append($0) }, 0)
        XCTAssertEqual(
            try pages.withUnsafeBytes { try pageFile.append(UnsafeRawBufferPointer(rebasing: $0[..<4096])) }, 20480)
        XCTAssertEqual(pageFile.size, 24576)
        let partial = imageError {
            _ = try pages.withUnsafeBytes { try pageFile.append(UnsafeRawBufferPointer(rebasing: $0[..<100])) }
        }
        XCTAssertEqual(partial?.kind, .invalid)
        XCTAssertEqual(pageFile.size, 24576)
        try writer.writeRecord(Fixture.task(), name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())

        XCTAssertEqual(imageError { _ = try pages.withUnsafeBytes { try pageFile.append($0) } }?.kind, .invalid)
        XCTAssertEqual(imageError { try writer.writeRecord(Fixture.task(), name: "late.pb") }?.kind, .invalid)
        let reader = try ImageReader(directory: directory)
        let mapped = try reader.pageFile(named: pageFile.name)
        XCTAssertEqual(Array(mapped.bytes), pages + pages[..<4096])
        XCTAssertEqual(try reader.pageFile(named: "empty.img").bytes.count, 0)
        XCTAssertEqual(empty.size, 0)
    }

    func testWriterCreatesParentsAndTakesEmptyDirectory() throws {
        try Fixture.writeImage(at: path("a/b/c"))
        XCTAssertNoThrow(try ImageReader(directory: path("a/b/c")))
        try FileManager.default.createDirectory(atPath: path("empty"), withIntermediateDirectories: false)
        try Fixture.writeImage(at: path("empty"))
        XCTAssertNoThrow(try ImageReader(directory: path("empty")))
    }

    func testWriterRefusesNonEmptyDirectory() throws {
        try FileManager.default.createDirectory(atPath: path("used"), withIntermediateDirectories: false)
        try Data().write(to: URL(fileURLWithPath: path("used/notes.txt")))
        let error = imageError { _ = try ImageWriter(directory: path("used")) }
        XCTAssertEqual(error?.kind, .directoryNotEmpty)
        XCTAssertEqual(error?.file, path("used"))
        XCTAssert(error?.description.contains("notes.txt") == true, "\(String(describing: error))")
    }

    func testWriterRefusesBadNames() throws {
        let writer = try ImageWriter(directory: path("image"))
        try writer.writeRecord(Fixture.task(), name: "task-4242.pb")
        for name in [
            "", "../escape.pb", "sub/dir.pb", "/abs.pb", "..", ".", "inventory.pb", "inventory.pb.tmp", "inventory.mac",
            "task-4242.pb",
        ] {
            XCTAssertEqual(imageError { try writer.writeRecord(Fixture.task(), name: name) }?.kind, .invalid, name)
            XCTAssertEqual(imageError { _ = try writer.makePageFile(name: name) }?.kind, .invalid, name)
        }
    }

    func testFinishNeedsTheRootRecord() throws {
        let writer = try ImageWriter(directory: path("image"))
        try writer.writeRecord(Fixture.task(), name: ImageFormat.taskRecordName(pid: Fixture.pid))
        let error = imageError { try writer.finish(inventory: Fixture.inventory(rootPID: 1)) }
        XCTAssertEqual(error?.kind, .invalid)
        XCTAssertEqual(error?.file, "inventory.pb")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("image/inventory.pb")))
    }

    func testUnfinishedImageHasNoInventory() throws {
        let writer = try ImageWriter(directory: path("image"))
        try writer.writeRecord(Fixture.task(), name: ImageFormat.taskRecordName(pid: Fixture.pid))
        let error = imageError { _ = try ImageReader(directory: path("image")) }
        XCTAssertEqual(error?.kind, .missing)
        XCTAssertEqual(error?.file, "inventory.pb")
        XCTAssert(error?.detail.contains("did not finish") == true)

        let absent = imageError { _ = try ImageReader(directory: path("nowhere")) }
        XCTAssertEqual(absent?.kind, .missing)
        XCTAssertEqual(absent?.file, "inventory.pb")
    }

    func testUndecodableInventory() throws {
        try Fixture.writeImage(at: path("image"))
        try Fixture.writeInventory(at: path("image"), [0xff, 0xff, 0xff])
        let error = imageError { _ = try ImageReader(directory: path("image")) }
        XCTAssertEqual(error?.kind, .corrupt)
        XCTAssertEqual(error?.file, "inventory.pb")
    }

    /// An image of the previous format version, or of a later one, is refused naming both versions.
    func testWrongVersion() throws {
        try Fixture.writeImage(at: path("image"))
        for version in [ImageFormat.version - 1, ImageFormat.version + 1] {
            try Fixture.rewriteInventory(at: path("image")) { $0.formatVersion = version }
            let error = imageError { _ = try ImageReader(directory: path("image")) }
            XCTAssertEqual(error?.kind, .unsupportedVersion)
            XCTAssertEqual(error?.file, "inventory.pb")
            XCTAssertEqual(
                error?.detail,
                "the image has format version \(version), this amber reads version \(ImageFormat.version)")
        }
    }

    /// An image of the previous format, whose records a reader of this one would misread, is
    /// refused with both versions named.
    func testPreviousVersion() throws {
        try Fixture.writeImage(at: path("image"))
        try Fixture.rewriteInventory(at: path("image")) { $0.formatVersion = ImageFormat.version - 1 }
        let error = imageError { _ = try ImageReader(directory: path("image")) }
        XCTAssertEqual(error?.kind, .unsupportedVersion)
        XCTAssertEqual(
            error?.description,
            "image file inventory.pb has an unsupported format version: the image has format version \(ImageFormat.version - 1), this amber reads version \(ImageFormat.version)"
        )
    }

    func testTruncatedFile() throws {
        try Fixture.writeImage(at: path("image"))
        XCTAssertEqual(truncate(path("image/pages-4242.img"), 4096), 0)
        let error = imageError { _ = try ImageReader(directory: path("image")) }
        XCTAssertEqual(error?.kind, .truncated)
        XCTAssertEqual(error?.file, "pages-4242.img")
    }

    func testGrownFile() throws {
        try Fixture.writeImage(at: path("image"))
        XCTAssertEqual(truncate(path("image/pages-4242.img"), 8 * 4096), 0)
        XCTAssertEqual(imageError { _ = try ImageReader(directory: path("image")) }?.kind, .corrupt)
    }

    func testFlippedByte() throws {
        for name in ["task-4242.pb", "pages-4242.img"] {
            let directory = path(name + ".image")
            try Fixture.writeImage(at: directory)
            let url = URL(fileURLWithPath: directory + "/" + name)
            var contents = try Data(contentsOf: url)
            contents[contents.count / 2] ^= 0x01
            try contents.write(to: url)
            let error = imageError { _ = try ImageReader(directory: directory) }
            XCTAssertEqual(error?.kind, .checksumMismatch)
            XCTAssertEqual(error?.file, name)
        }
    }

    /// A page file from `ImageReader.twoThreadVerifySize` on is checked in two halves at once:
    /// a mismatch in either is found, the first half's is the one reported, and the last,
    /// shorter chunk is checked too.
    func testLargePageFileCheckedInHalves() throws {
        let directory = path("image")
        let writer = try ImageWriter(directory: directory)
        let pageFile = try writer.makePageFile(name: ImageFormat.pageFileName(pid: Fixture.pid))
        let chunk = Int(ImageFormat.pageFileChunkSize)
        let size = Int(ImageReader.twoThreadVerifySize) + chunk + 4096
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let pages = (0..<size / 8).flatMap { _ -> [UInt8] in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return withUnsafeBytes(of: state) { Array($0) }
        }
        _ = try pages.withUnsafeBytes { try pageFile.append($0) }
        try writer.writeRecord(Fixture.task(), name: ImageFormat.taskRecordName(pid: Fixture.pid))
        try writer.finish(inventory: Fixture.inventory())
        XCTAssertNoThrow(try ImageReader(directory: directory))

        let url = URL(fileURLWithPath: directory + "/" + pageFile.name)
        let chunks = (size + chunk - 1) / chunk
        func mismatch(flipping offsets: [Int]) throws -> ImageError? {
            var contents = pages
            for offset in offsets { contents[offset] ^= 0x01 }
            try Data(contents).write(to: url)
            return imageError { _ = try ImageReader(directory: directory) }
        }
        let secondHalf = try mismatch(flipping: [(chunks - 3) * chunk + 7])
        XCTAssertEqual(secondHalf?.kind, .checksumMismatch)
        XCTAssertEqual(secondHalf?.byteRange, UInt64((chunks - 3) * chunk)..<UInt64((chunks - 2) * chunk))
        let both = try mismatch(flipping: [2 * chunk + 5, (chunks - 2) * chunk])
        XCTAssertEqual(both?.byteRange, UInt64(2 * chunk)..<UInt64(3 * chunk))
        let lastChunk = try mismatch(flipping: [size - 1])
        XCTAssertEqual(lastChunk?.byteRange, UInt64((chunks - 1) * chunk)..<UInt64(size))
        try Data(pages).write(to: url)
        XCTAssertNoThrow(try ImageReader(directory: directory))
    }

    func testMissingListedFile() throws {
        try Fixture.writeImage(at: path("image"))
        try FileManager.default.removeItem(atPath: path("image/pages-4242.img"))
        let error = imageError { _ = try ImageReader(directory: path("image")) }
        XCTAssertEqual(error?.kind, .missing)
        XCTAssertEqual(error?.file, "pages-4242.img")
    }

    func testSymbolicLinkIsRefused() throws {
        try Fixture.writeImage(at: path("image"))
        try FileManager.default.moveItem(atPath: path("image/pages-4242.img"), toPath: path("pages"))
        try FileManager.default.createSymbolicLink(
            atPath: path("image/pages-4242.img"), withDestinationPath: path("pages"))
        XCTAssertEqual(imageError { _ = try ImageReader(directory: path("image")) }?.kind, .invalid)
    }

    /// A FIFO in place of a file is refused at once: opening it must not wait for a writer.
    func testNonRegularFileIsRefused() throws {
        for (label, make) in [
            ("fifo", { (path: String) in XCTAssertEqual(mkfifo(path, 0o600), 0) }),
            ("directory", { (path: String) in XCTAssertEqual(mkdir(path, 0o700), 0) }),
        ] {
            let directory = path(label)
            try Fixture.writeImage(at: directory)
            try FileManager.default.removeItem(atPath: directory + "/pages-4242.img")
            make(directory + "/pages-4242.img")
            let error = imageError { _ = try ImageReader(directory: directory) }
            XCTAssertEqual(error?.kind, .invalid, label)
            XCTAssertEqual(error?.file, "pages-4242.img", label)
        }
    }

    func testInventoryFileNames() throws {
        let cases: [(String, (inout Amber_Inventory) -> Void)] = [
            ("absolute", { $0.files[0].name = "/etc/passwd" }),
            ("slash", { $0.files[0].name = "sub/pages.img" }),
            ("dot-dot", { $0.files[0].name = ".." }),
            ("empty", { $0.files[0].name = "" }),
            ("self", { $0.files[0].name = "inventory.pb" }),
            ("MAC", { $0.files[0].name = "inventory.mac" }),
            ("duplicate", { $0.files.append($0.files[0]) }),
            ("non-canonical task name", { $0.files[1].name = "task-04242.pb" }),
            ("root without record", { $0.rootPid = 99 }),
        ]
        for (label, change) in cases {
            let directory = path(label)
            try Fixture.writeImage(at: directory)
            try Fixture.rewriteInventory(at: directory, change)
            let error = imageError { _ = try ImageReader(directory: directory) }
            XCTAssertEqual(error?.kind, .invalid, label)
            XCTAssertEqual(error?.file, "inventory.pb", label)
        }
    }

    func testInventoryXStateSize() throws {
        for size: UInt32 in [100, 70000] {
            var inventory = Fixture.inventory()
            inventory.xstateSize = size
            let directory = path("image-\(size)")
            try Fixture.writeImage(at: directory, inventory: inventory)
            let error = imageError { _ = try ImageReader(directory: directory) }
            XCTAssertEqual(error?.kind, .invalid)
            XCTAssertEqual(error?.file, "inventory.pb")
            XCTAssert(error?.detail.hasPrefix("xstate_size") == true, "\(String(describing: error))")
        }
    }

    func testErrorDescription() {
        let error = ImageError(.corrupt, file: "task-123.pb", detail: "memory area 3 ends before it starts")
        XCTAssertEqual(error.description, "image file task-123.pb is corrupt: memory area 3 ends before it starts")
    }

    func testJSON() throws {
        var child = Fixture.task(pid: 4243)
        child.ppid = Fixture.pid
        try Fixture.writeImage(at: path("image"), tasks: [Fixture.task(), child])
        let json = try imageJSON(directory: path("image"))
        for key in [
            "\"inventory\": {", "\"tasks\": [", "\"format_version\": \(ImageFormat.version)", "\"files\": [",
            "\"xxh64\": \"",
            "\"root_pid\": 4242", "\"pid\": 4243", "\"memory\": {", "\"areas\": [", "\"page_files\": [",
            "\"pages-4242.img\"",
            "\"kind\": \"AREA_VSYSCALL\"", "\"signals\": {", "\"files\": {", "\"environment\": {",
            "\"thread_control\": {",
        ] {
            XCTAssert(json.contains(key), "missing \(key)")
        }
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["inventory", "tasks"])
        XCTAssertEqual((object["tasks"] as? [Any])?.count, 2)
    }

    func testIndentationLeavesStringsAlone() throws {
        let compact = #"{"a":"{[,:]} \"q\" \\","b":[],"c":{},"d":[1,{"e":null}]}"#
        let indented = indentedJSON(compact)
        XCTAssertEqual(
            indented,
            """
            {
              "a": "{[,:]} \\"q\\" \\\\",
              "b": [],
              "c": {},
              "d": [
                1,
                {
                  "e": null
                }
              ]
            }
            """)
        let reparsed = try JSONSerialization.jsonObject(with: Data(indented.utf8)) as? [String: Any]
        XCTAssertEqual(reparsed?["a"] as? String, #"{[,:]} "q" \"#)
    }
}
