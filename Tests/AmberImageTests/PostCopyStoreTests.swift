import Foundation
import XCTest

@testable import AmberImage

/// An image read over a socketpair from a `PostCopyImageServer`: the same records and pages
/// as from its directory, and the end of the conversation the server waits for.
final class PostCopyStoreTests: ImageTestCase {
    /// Serves the image in `directory` on one end of a socketpair while `read` uses the other.
    private func serve(_ directory: String, _ read: (CInt) throws -> Void) throws -> Result<
        PostCopyImageServer.Served, ImageError
    > {
        var ends: [CInt] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends), 0)
        nonisolated(unsafe) let server = try PostCopyImageServer(directory: directory)
        nonisolated(unsafe) var result: Result<PostCopyImageServer.Served, ImageError>?
        let done = DispatchSemaphore(value: 0)
        let socket = ends[1]
        Thread.detachNewThread {
            result = Result { () throws(ImageError) in try server.serve(socket: socket, peer: "the test") { _ in } }
            done.signal()
        }
        try read(ends[0])
        done.wait()
        return result!
    }

    func testImageReadFromTheServerIsTheImage() throws {
        let tasks = [Fixture.task(), Fixture.task(pid: 4243)]
        try Fixture.writeImage(at: path("a"), tasks: tasks)
        let local = try ImageReader(directory: path("a"))
        let served = try serve(path("a")) { socket in
            let remote = try ImageReader(pageServer: socket, address: "the test", checkPages: false)
            XCTAssertEqual(remote.inventory, local.inventory)
            for task in tasks {
                XCTAssertEqual(try remote.task(pid: task.pid), try local.task(pid: task.pid))
            }
            let name = ImageFormat.pageFileName(pid: tasks[1].pid)
            let file = try remote.lazyPageFile(named: name)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(file.size), alignment: 4096)
            defer { buffer.deallocate() }
            let pages = try file.read(file.chunks(around: 0..<file.size, limit: file.size), into: buffer)
            XCTAssertEqual(Array(pages), Fixture.pages(pid: tasks[1].pid))
            remote.finishReading()
        }
        XCTAssertGreaterThan(try served.get().bytes, 0)
    }

    /// A reader that goes away before it says it has every page: the server says so.
    func testServerReportsAReaderGoneEarly() throws {
        try Fixture.writeImage(at: path("a"))
        let served = try serve(path("a")) { socket in
            _ = try ImageReader(pageServer: socket, address: "the test", checkPages: false)
        }
        guard case .failure(let error) = served else { return XCTFail("the server did not notice") }
        XCTAssertTrue(error.description.contains("before it had every page"), error.description)
    }
}
