import Foundation
import XCTest

@testable import AmberImage

/// An image written through a `StreamSink` to an `ImageStreamReceiver` over a socketpair: the
/// same files as a directory writer makes, and the receiver's refusals of what a peer may send.
final class ImageStreamTests: ImageTestCase {
    /// Runs a receiver into `directory` on one end of a socketpair while `send` uses the other.
    private func receive(
        into directory: String, _ send: (CInt) throws -> Void
    ) throws -> Result<(files: Int, bytes: UInt64), ImageError> {
        var ends: [CInt] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends), 0)
        let sink = try DirectorySink(directory: directory, durable: false)
        nonisolated(unsafe) let receiver = ImageStreamReceiver(socket: ends[1], peer: "the test", sink: sink)
        nonisolated(unsafe) var result: Result<(files: Int, bytes: UInt64), ImageError>?
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            result = Result { () throws(ImageError) in try receiver.receive() }
            done.signal()
        }
        try send(ends[0])
        done.wait()
        return result!
    }

    func testStreamedImageIsTheImageWritten() throws {
        try Fixture.writeImage(at: path("local"), tasks: [Fixture.task(), Fixture.task(pid: 4243)])
        let received = try receive(into: path("received")) { socket in
            let writer = ImageWriter(sink: try StreamSink(socket: socket, destination: "the test"))
            for task in [Fixture.task(), Fixture.task(pid: 4243)] {
                let pageFile = try writer.makePageFile(name: ImageFormat.pageFileName(pid: task.pid))
                _ = try Fixture.pages(pid: task.pid).withUnsafeBytes { try pageFile.append($0) }
                try writer.writeRecord(task, name: ImageFormat.taskRecordName(pid: task.pid))
            }
            try writer.finish(inventory: Fixture.inventory())
        }
        XCTAssertEqual(try received.get().files, 6)
        let names = try FileManager.default.contentsOfDirectory(atPath: path("local")).sorted()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("received")).sorted(), names)
        for name in names {
            XCTAssertEqual(
                FileManager.default.contents(atPath: path("received") + "/" + name),
                FileManager.default.contents(atPath: path("local") + "/" + name), name)
        }
        XCTAssertNoThrow(try ImageReader(directory: path("received")))
    }

    private func frame(_ set: (inout Amber_StreamFrame) -> Void) -> Amber_StreamFrame {
        var frame = Amber_StreamFrame()
        set(&frame)
        return frame
    }

    /// A frame as it goes on the wire: its length, then its bytes.
    private func wire(_ frame: Amber_StreamFrame) throws -> [UInt8] {
        let body: [UInt8] = try frame.serializedBytes()
        return withUnsafeBytes(of: UInt32(body.count).littleEndian) { Array($0) } + body
    }

    /// Frames (and the bytes of data frames) sent by hand after a hello, then the end of the
    /// connection: what the receiver refused, the directory gone.
    private func refusal(_ frames: [Amber_StreamFrame]) throws -> ImageError? {
        try refusal(sending: frames.map(wire))
    }

    private func refusal(sending pieces: [[UInt8]]) throws -> ImageError? {
        let directory = path("refused-\(UUID().uuidString)")
        let result = try receive(into: directory) { socket in
            let connection = StreamConnection(fd: socket, peer: "the receiver")
            var hello = Amber_StreamHello()
            hello.protocol = StreamProtocol.name
            hello.version = StreamProtocol.version
            try? connection.send(frame { $0.hello = hello }, file: "")
            for piece in pieces { try? piece.withUnsafeBytes { try connection.send($0, file: "") } }
            shutdown(connection.fd, Int32(SHUT_WR))
            var reply = [UInt8](repeating: 0, count: 4096)
            _ = reply.withUnsafeMutableBytes { read(connection.fd, $0.baseAddress, $0.count) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory), "the receiver left \(directory)")
        guard case .failure(let error) = result else { return nil }
        return error
    }

    private func create(_ id: UInt32, _ name: String) -> Amber_StreamFrame {
        frame {
            $0.create.fileID = id
            $0.create.name = name
        }
    }

    private func data(_ id: UInt32, _ length: UInt32) -> Amber_StreamFrame {
        frame {
            $0.data.fileID = id
            $0.data.length = length
        }
    }

    private func closing(_ id: UInt32, size: UInt64) -> Amber_StreamFrame {
        frame {
            $0.close.fileID = id
            $0.close.size = size
        }
    }

    func testReceiverRefusesWhatNoWriterSends() throws {
        for name in ["../task-1.pb", "task-01.pb", "inventory.pb", "pages-1/x.img", "notes.txt", ""] {
            XCTAssertEqual(try refusal([create(1, name)])?.kind, .invalid, name)
        }
        XCTAssertTrue(
            try refusal([create(1, "task-1.pb"), create(2, "task-1.pb")])?.detail.contains("twice") ?? false)
        XCTAssertTrue(
            try refusal(sending: [
                wire(create(1, "task-1.pb")), wire(closing(1, size: 0)), wire(data(1, 4)), [1, 2, 3, 4],
            ])?
            .detail.contains("not open") ?? false)
        XCTAssertEqual(
            try refusal(sending: [wire(create(1, "task-1.pb")), wire(data(1, 2)), [1, 2], wire(closing(1, size: 3))])?
                .kind,
            .corrupt)
        XCTAssertEqual(try refusal([create(1, "task-1.pb"), data(1, 1 << 21)])?.kind, .invalid)
        XCTAssertEqual(try refusal([create(1, "task-1.pb"), frame { $0.commit.durable = false }])?.kind, .truncated)
        XCTAssertEqual(
            try refusal([create(1, "task-1.pb"), closing(1, size: 0), frame { $0.commit.durable = false }])?.kind,
            .missing)
        XCTAssertEqual(try refusal([])?.kind, .truncated)
    }
}
