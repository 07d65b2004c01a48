import Glibc
import SwiftProtobuf

/// The page server's side of a stream (`amber page-server`): receives one image from an
/// untrusted peer and writes it into a `DirectorySink`. Every frame is checked (a file name
/// of the image's own forms, created once, bytes only to a file open and within its bound,
/// sizes as announced), memory stays within one frame's buffer and the inventory's bound,
/// and the inventory is renamed into place only after every file it lists arrived whole, of
/// its size. On any failure the sink is discarded: the directory is as it was found.
public final class ImageStreamReceiver {
    private let connection: StreamConnection
    private let sink: DirectorySink

    private struct Receiving {
        let name: String
        var file: (any ImageSinkFile)?
        var size: UInt64 = 0
    }
    private var files: [UInt32: Receiving] = [:]
    /// Files closed, by name, with their sizes.
    private var complete: [String: UInt64] = [:]
    private var names: Set<String> = []
    /// The inventory's bytes as they arrive (at most `ImageFormat.maximumRecordSize`).
    private var inventory: [UInt8] = []

    /// Takes `socket`, connected to `peer`.
    public init(socket: CInt, peer: String, sink: DirectorySink) {
        connection = StreamConnection(fd: socket, peer: peer)
        self.sink = sink
    }

    /// Receives the image and commits it; returns its number of files and bytes. After an
    /// error the sink is discarded, and the peer told why when it was its fault.
    public func receive() throws(ImageError) -> (files: Int, bytes: UInt64) {
        do {
            try receiveFrames()
            return (complete.count, complete.values.reduce(0, +))
        } catch {
            sink.discard()
            if error.kind != .io {
                var reply = Amber_StreamReply()
                reply.refused = error.description
                try? connection.send(reply, file: error.file)
            }
            throw error
        }
    }

    private func receiveFrames() throws(ImageError) {
        let directory = sink.destination
        guard let first = try connection.receive(Amber_StreamFrame.self, file: directory) else {
            throw ImageError(.truncated, file: directory, detail: "\(connection.peer) closed the connection at once")
        }
        guard case .hello(let hello) = first.frame, hello.protocol == StreamProtocol.name else {
            throw ImageError(
                .corrupt, file: directory, detail: "\(connection.peer) does not speak amber's image stream")
        }
        guard hello.version == StreamProtocol.version else {
            throw ImageError(
                .unsupportedVersion, file: directory,
                detail:
                    "\(connection.peer) speaks version \(hello.version) of the image stream; this amber speaks \(StreamProtocol.version)"
            )
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: StreamProtocol.maximumDataLength, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            guard let frame = try connection.receive(Amber_StreamFrame.self, file: directory) else {
                throw ImageError(
                    .truncated, file: directory,
                    detail: "\(connection.peer) closed the connection before the image was complete")
            }
            switch frame.frame {
            case .create(let create): try self.create(create)
            case .data(let data): try receive(data, into: buffer)
            case .sync(let sync): try open(sync.fileID).file?.sync()
            case .close(let close): try self.close(close)
            case .commit(let commit):
                try self.commit(commit)
                return
            case .hello, nil:
                throw ImageError(
                    .corrupt, file: directory, detail: "\(connection.peer) sent a frame out of place: \(frame)")
            }
        }
    }

    private func create(_ create: Amber_StreamCreate) throws(ImageError) {
        let name = create.name
        guard StreamProtocol.isImageFileName(name) else {
            throw ImageError(
                .invalid, file: sink.destination,
                detail: "\(connection.peer) named a file \(name.debugDescription), which is no name of an image's file")
        }
        guard names.count < StreamProtocol.maximumFiles else {
            throw ImageError(
                .invalid, file: name, detail: "an image has at most \(StreamProtocol.maximumFiles) files")
        }
        guard files[create.fileID] == nil, names.insert(name).inserted else {
            throw ImageError(.invalid, file: name, detail: "\(connection.peer) sent this file or its number twice")
        }
        files[create.fileID] = Receiving(name: name, file: try sink.create(name, replacing: false))
    }

    private func open(_ id: UInt32) throws(ImageError) -> Receiving {
        guard let receiving = files[id], receiving.file != nil else {
            throw ImageError(
                .invalid, file: sink.destination,
                detail: "\(connection.peer) sent to file number \(id), which is not open")
        }
        return receiving
    }

    private func receive(_ data: Amber_StreamData, into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) {
        var receiving = try open(data.fileID)
        let name = receiving.name
        let length = Int(data.length)
        guard length <= StreamProtocol.maximumDataLength else {
            throw ImageError(
                .invalid, file: name,
                detail:
                    "\(connection.peer) announced \(length) bytes in one frame; at most \(StreamProtocol.maximumDataLength)"
            )
        }
        let bound = StreamProtocol.maximumSize(of: name)
        guard UInt64(length) <= bound - receiving.size else {
            throw ImageError(.invalid, file: name, detail: "it would grow beyond \(bound) bytes")
        }
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[..<length])
        guard try connection.receive(into: target, file: name) == length else {
            throw ImageError(
                .truncated, file: name, detail: "the connection with \(connection.peer) ended within its bytes")
        }
        try receiving.file?.write(UnsafeRawBufferPointer(target))
        if name == ImageFormat.inventoryTemporaryName { inventory += target }
        receiving.size += UInt64(length)
        files[data.fileID] = receiving
    }

    private func close(_ close: Amber_StreamClose) throws(ImageError) {
        var receiving = try open(close.fileID)
        guard close.size == receiving.size else {
            throw ImageError(
                .corrupt, file: receiving.name,
                detail: "\(connection.peer) announced \(close.size) bytes and sent \(receiving.size)")
        }
        try receiving.file?.close()
        receiving.file = nil
        files[close.fileID] = receiving
        complete[receiving.name] = receiving.size
    }

    /// Every file closed, each one the inventory lists of its size and nothing else: then the
    /// rename, and the answer.
    private func commit(_ commit: Amber_StreamCommit) throws(ImageError) {
        let file = ImageFormat.inventoryName
        if let open = files.values.first(where: { $0.file != nil }) {
            throw ImageError(.truncated, file: open.name, detail: "\(connection.peer) committed before closing it")
        }
        guard complete[ImageFormat.inventoryTemporaryName] != nil else {
            throw ImageError(.missing, file: file, detail: "\(connection.peer) committed an image without one")
        }
        let decoded: Amber_Inventory
        do {
            decoded = try Amber_Inventory(serializedBytes: inventory)
        } catch {
            throw ImageError(.corrupt, file: file, detail: "it does not decode: \(error)")
        }
        var unlisted = Set(complete.keys).subtracting(ImageFormat.inventoryCompanionNames)
        for entry in decoded.files {
            guard let size = complete[entry.name], unlisted.remove(entry.name) != nil else {
                throw ImageError(
                    .missing, file: entry.name, detail: "the inventory lists it but \(connection.peer) did not send it")
            }
            // A compressed or encrypted file's size on disk is the sum of its stored chunks.
            guard let stored = entry.storedSize, size == stored else {
                throw ImageError(
                    .corrupt, file: entry.name,
                    detail:
                        "the inventory says \(entry.storedSize.map(String.init) ?? "an overflowing number of") bytes are stored; \(size) arrived"
                )
            }
        }
        if let extra = unlisted.min() {
            throw ImageError(
                .invalid, file: extra, detail: "\(connection.peer) sent it but the inventory does not list it")
        }
        try sink.commitInventory(durable: commit.durable)
        var reply = Amber_StreamReply()
        reply.committed = true
        try? connection.send(reply, file: file)
    }
}
