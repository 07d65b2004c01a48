import Glibc
import SwiftProtobuf
import Synchronization

/// The wire form of an image sent to a page server (stream.proto): every frame a 4-byte
/// little-endian length and a StreamFrame, a StreamData frame followed by its bytes. The
/// receiver's bounds, for whatever a peer sends.
public enum StreamProtocol {
    static let name = "amber-image-stream"
    static let version: UInt32 = 1
    /// Largest frame or reply, the bytes of a file excluded: a frame holds a name and a few numbers.
    static let maximumFrameSize: UInt32 = 4096
    /// Most bytes one StreamData frame carries: the receiver's one buffer.
    static let maximumDataLength = 1 << 20
    /// Most files one image has on a connection.
    static let maximumFiles = 1 << 18
    /// A peer that sends or reads nothing for this long has gone.
    public static let timeoutSeconds = 60

    /// The names an image's files have: task-N.pb, pages-N.img, pages-N-K.img, shmem-N.img,
    /// contents-N.img, and the inventory's companions (its temporary file, checksum and MAC).
    /// The inventory itself comes only by the rename a commit makes.
    static func isImageFileName(_ name: String) -> Bool {
        if ImageFormat.inventoryCompanionNames.contains(name) { return true }
        if ImageFormat.taskPID(recordName: name) != nil { return true }
        guard name.utf8.count <= 64, name.hasSuffix(".img") else { return false }
        let stem = name.dropLast(4)
        for prefix in ["pages-", "shmem-", "contents-"] where stem.hasPrefix(prefix) {
            let numbers = stem.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            return (numbers.count == 1 || (prefix == "pages-" && numbers.count == 2))
                && numbers.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { (0x30...0x39).contains($0) } }
        }
        return false
    }

    /// The largest file of this name a reader accepts: a record's bound, or a page file's
    /// (the user address space).
    static func maximumSize(of name: String) -> UInt64 {
        name.hasSuffix(".img") ? ImageFormat.userAddressLimit : ImageFormat.maximumRecordSize
    }
}

/// One end of the TCP connection an image travels on; errors name `file` and the peer.
final class StreamConnection {
    let fd: CInt
    let peer: String

    init(fd: CInt, peer: String) {
        self.fd = fd
        self.peer = peer
    }

    deinit {
        close(fd)
    }

    /// Sends `message` as one frame; `more`: bytes follow at once (MSG_MORE).
    func send(_ message: some SwiftProtobuf.Message, more: Bool = false, file: String) throws(ImageError) {
        let body: [UInt8]
        do {
            body = try message.serializedBytes()
        } catch {
            throw ImageError(.invalid, file: file, detail: "cannot encode a frame: \(error)")
        }
        let length = UInt32(body.count).littleEndian
        let frame = withUnsafeBytes(of: length) { Array($0) } + body
        try frame.withUnsafeBytes { buffer in
            Result { () throws(ImageError) in try send(buffer, more: more, file: file) }
        }.get()
    }

    /// Sends all of `bytes`.
    func send(_ bytes: UnsafeRawBufferPointer, more: Bool = false, file: String) throws(ImageError) {
        guard var next = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let sent = Glibc.send(fd, next, remaining, Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0))
            if sent < 0 {
                if errno == EINTR { continue }
                throw failure("sending to", file: file)
            }
            next += sent
            remaining -= sent
        }
    }

    /// The next frame, decoded as `type`; nil if the connection ended cleanly before it.
    func receive<Frame: SwiftProtobuf.Message>(_ type: Frame.Type, file: String) throws(ImageError) -> Frame? {
        var length: UInt32 = 0
        let got = try withUnsafeMutableBytes(of: &length) { buffer in
            Result { () throws(ImageError) in try receive(into: buffer, file: file) }
        }.get()
        if got == 0 { return nil }
        guard got == 4 else { throw ended(file: file) }
        let size = UInt32(littleEndian: length)
        guard size <= StreamProtocol.maximumFrameSize else {
            throw ImageError(
                .corrupt, file: file,
                detail: "\(peer) sent a frame of \(size) bytes; frames are at most \(StreamProtocol.maximumFrameSize)")
        }
        var body = [UInt8](repeating: 0, count: Int(size))
        try receiveExactly(&body, file: file)
        do {
            return try Frame(serializedBytes: body)
        } catch {
            throw ImageError(.corrupt, file: file, detail: "\(peer) sent a frame that does not decode: \(error)")
        }
    }

    func receiveExactly(_ bytes: inout [UInt8], file: String) throws(ImageError) {
        let got = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(ImageError) in try receive(into: buffer, file: file) }
        }.get()
        guard got == bytes.count else { throw ended(file: file) }
    }

    /// Fills `buffer`; fewer bytes only if the connection ended.
    func receive(into buffer: UnsafeMutableRawBufferPointer, file: String) throws(ImageError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var total = 0
        while total < buffer.count {
            let count = recv(fd, base + total, buffer.count - total, 0)
            if count < 0 {
                if errno == EINTR { continue }
                throw failure("receiving from", file: file)
            }
            if count == 0 { break }
            total += count
        }
        return total
    }

    private func ended(file: String) -> ImageError {
        ImageError(.truncated, file: file, detail: "the connection with \(peer) ended in the middle of a frame")
    }

    private func failure(_ operation: String, file: String) -> ImageError {
        let code = errno
        if code == EAGAIN {
            return ImageError(
                .io, file: file,
                detail: "\(operation) \(peer): nothing moved for \(StreamProtocol.timeoutSeconds) s, the peer is gone")
        }
        return .system("\(operation) \(peer)", file: file, errno: code)
    }
}

/// An image sent over a TCP connection to `amber page-server` on another host, as it is
/// made: nothing of it is kept here. The image is complete once the page server has answered
/// the commit: it checked the files against the inventory and renamed it into place.
///
/// Page files are written by the dump's outside-reads thread while the tracer writes records:
/// each frame, with the bytes that follow it, goes out whole under `sending`.
public final class StreamSink: ImageSink, @unchecked Sendable {
    public let destination: String
    private let connection: StreamConnection
    /// The last file number handed out, and the connection's right to send.
    private let sending = Mutex<UInt32>(0)
    private var committed = false

    /// Takes `socket`, connected to the page server at `destination`, and greets it.
    public init(socket: CInt, destination: String) throws(ImageError) {
        self.destination = destination
        connection = StreamConnection(fd: socket, peer: "the page server at \(destination)")
        var hello = Amber_StreamHello()
        hello.protocol = StreamProtocol.name
        hello.version = StreamProtocol.version
        var frame = Amber_StreamFrame()
        frame.hello = hello
        try connection.send(frame, file: ImageFormat.inventoryName)
    }

    public func create(_ name: String, replacing: Bool) throws(ImageError) -> any ImageSinkFile {
        let id = try sending.withLock { (last: inout UInt32) throws(ImageError) -> UInt32 in
            last += 1
            var create = Amber_StreamCreate()
            create.fileID = last
            create.name = name
            var frame = Amber_StreamFrame()
            frame.create = create
            try send(frame, file: name)
            return last
        }
        return StreamFile(name: name, id: id, sink: self)
    }

    public func commitInventory(durable: Bool) throws(ImageError) {
        let file = ImageFormat.inventoryName
        var commit = Amber_StreamCommit()
        commit.durable = durable
        var frame = Amber_StreamFrame()
        frame.commit = commit
        try send(frame, payload: nil, file: file)
        guard let reply = try connection.receive(Amber_StreamReply.self, file: file) else {
            throw ImageError(
                .io, file: file,
                detail: "\(connection.peer) closed the connection before it confirmed the inventory was in place")
        }
        switch reply.reply {
        case .committed(true):
            committed = true
        case .refused(let reason):
            throw refusal(reason, file: file)
        default:
            throw ImageError(.corrupt, file: file, detail: "\(connection.peer) answered the commit with \(reply)")
        }
    }

    /// A page server's committed image stays: the stream has no way to take it back.
    public func withdraw() { discard() }

    /// Closes the connection: a page server that has no commit removes what it received.
    public func discard() {
        guard !committed else { return }
        shutdown(connection.fd, Int32(SHUT_RDWR))
    }

    /// Sends `frame`, and `payload` right after it, with no other frame in between.
    fileprivate func send(_ frame: Amber_StreamFrame, payload: UnsafeRawBufferPointer?, file: String)
        throws(ImageError)
    {
        try sending.withLock { (_: inout UInt32) throws(ImageError) in
            try send(frame, more: payload != nil, file: file)
            if let payload {
                do throws(ImageError) {
                    try connection.send(payload, file: file)
                } catch {
                    throw explained(error, file: file)
                }
            }
        }
    }

    /// Under `sending`.
    private func send(_ frame: Amber_StreamFrame, more: Bool = false, file: String) throws(ImageError) {
        do {
            try connection.send(frame, more: more, file: file)
        } catch {
            throw explained(error, file: file)
        }
    }

    /// A page server that refused what it was sent said why before it closed: that reason
    /// rather than the broken pipe, when it is there to read.
    private func explained(_ error: ImageError, file: String) -> ImageError {
        var length: UInt32 = 0
        guard recv(connection.fd, &length, 4, Int32(MSG_DONTWAIT) | Int32(MSG_PEEK)) == 4,
            UInt32(littleEndian: length) <= StreamProtocol.maximumFrameSize,
            let reply = try? connection.receive(Amber_StreamReply.self, file: file),
            case .refused(let reason) = reply.reply
        else { return error }
        return refusal(reason, file: file)
    }

    private func refusal(_ reason: String, file: String) -> ImageError {
        ImageError(.io, file: file, detail: "\(connection.peer) refused the image: \(reason)")
    }
}

/// One file on its way to the page server.
private final class StreamFile: ImageSinkFile {
    let name: String
    let id: UInt32
    let sink: StreamSink
    private var size: UInt64 = 0

    init(name: String, id: UInt32, sink: StreamSink) {
        self.name = name
        self.id = id
        self.sink = sink
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(ImageError) {
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + StreamProtocol.maximumDataLength)
            var data = Amber_StreamData()
            data.fileID = id
            data.length = UInt32(end - start)
            var frame = Amber_StreamFrame()
            frame.data = data
            try sink.send(frame, payload: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), file: name)
            start = end
        }
        size += UInt64(bytes.count)
    }

    func sync() throws(ImageError) {
        var sync = Amber_StreamSync()
        sync.fileID = id
        var frame = Amber_StreamFrame()
        frame.sync = sync
        try sink.send(frame, payload: nil, file: name)
    }

    func close() throws(ImageError) {
        var close = Amber_StreamClose()
        close.fileID = id
        close.size = size
        var frame = Amber_StreamFrame()
        frame.close = close
        try sink.send(frame, payload: nil, file: name)
    }
}
