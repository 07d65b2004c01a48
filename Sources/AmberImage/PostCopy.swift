import Glibc
import Synchronization

/// Post-copy migration's wire (postcopy.proto): host B reads an image that stays on host A,
/// a file's bytes at a time, over one TCP connection. Every frame is a 4-byte little-endian
/// length and a PostCopyRequest or a PostCopyReply, a reply with data followed by its bytes.
/// docs/architecture.md, "Post-copy migration".
public enum PostCopyProtocol {
    static let name = "amber-post-copy"
    static let version: UInt32 = 1
    /// Most bytes one read asks for or one reply carries: the server's one buffer.
    static let maximumReadLength = 1 << 20
    /// Most files one connection opens: an image's files, each opened once or a few times.
    static let maximumOpenFiles = 1 << 18
}

/// An image read from the server on host A (`PostCopyImageServer`): what `ImageReader` opens
/// and reads goes over the connection, and everything it checks (sizes, checksums, records,
/// the MAC) it checks as for an image in a directory. Reads from several threads (the lazy
/// restore's event loop and fillers) take turns on the connection.
final class RemoteImageStore: ImageStore, @unchecked Sendable {
    /// Names the server in messages: "the page server at HOST:PORT".
    let source: String
    private let connection: StreamConnection
    /// The connection's right to send a request and read its answer.
    private let turn = Mutex<Bool>(false)

    /// Takes `socket`, connected to the server at `address`, and greets it.
    init(socket: CInt, address: String) throws(ImageError) {
        source = "the page server at \(address)"
        connection = StreamConnection(fd: socket, peer: source)
        var hello = Amber_PostCopyHello()
        hello.protocol = PostCopyProtocol.name
        hello.version = PostCopyProtocol.version
        var request = Amber_PostCopyRequest()
        request.hello = hello
        let reply = try exchange(request, file: ImageFormat.inventoryName)
        guard case .greeted(true) = reply.reply else {
            throw unexpected(reply, to: "the greeting", file: ImageFormat.inventoryName)
        }
    }

    func open(_ name: String) throws(ImageError) -> (any ImageStoreFile)? {
        var open = Amber_PostCopyOpen()
        open.name = name
        var request = Amber_PostCopyRequest()
        request.open = open
        let reply = try exchange(request, file: name)
        guard case .opened(let opened) = reply.reply else { throw unexpected(reply, to: "an open", file: name) }
        return opened.exists ? RemoteImageFile(name: name, id: opened.fileID, size: opened.size, store: self) : nil
    }

    /// Fills `buffer` from byte `offset` of the file `id`, a read of at most 1 MiB at a time;
    /// fewer bytes only at the end of the file, of `size` bytes.
    func read(_ id: UInt32, name: String, size: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64)
        throws(ImageError) -> Int
    {
        let wanted = Int(min(UInt64(buffer.count), size - min(size, offset)))
        var done = 0
        while done < wanted {
            let length = min(wanted - done, PostCopyProtocol.maximumReadLength)
            var read = Amber_PostCopyRead()
            read.fileID = id
            read.offset = offset + UInt64(done)
            read.length = UInt32(length)
            var request = Amber_PostCopyRequest()
            request.read = read
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + length])
            try turn.withLock { (_: inout Bool) throws(ImageError) in
                try connection.send(request, file: name)
                let reply = try receive(file: name)
                guard case .data(let count) = reply.reply, count == UInt32(length) else {
                    throw unexpected(reply, to: "a read of \(length) bytes at \(read.offset)", file: name)
                }
                guard try connection.receive(into: target, file: name) == length else {
                    throw ImageError(
                        .io, file: name, detail: "the connection with \(source) ended in the middle of a page")
                }
            }
            done += length
        }
        return wanted
    }

    /// Tells the server the restore has every page, and closes the connection.
    func finish() {
        var request = Amber_PostCopyRequest()
        request.done = true
        turn.withLock { (finished: inout Bool) in
            guard !finished else { return }
            finished = true
            try? connection.send(request, file: ImageFormat.inventoryName)
            shutdown(connection.fd, Int32(SHUT_RDWR))
        }
    }

    private func exchange(_ request: Amber_PostCopyRequest, file: String) throws(ImageError) -> Amber_PostCopyReply {
        try turn.withLock { (_: inout Bool) throws(ImageError) in
            try connection.send(request, file: file)
            return try receive(file: file)
        }
    }

    private func receive(file: String) throws(ImageError) -> Amber_PostCopyReply {
        guard let reply = try connection.receive(Amber_PostCopyReply.self, file: file) else {
            throw ImageError(.io, file: file, detail: "\(source) closed the connection")
        }
        if case .refused(let reason) = reply.reply {
            throw ImageError(.io, file: file, detail: "\(source) refused: \(reason)")
        }
        return reply
    }

    private func unexpected(_ reply: Amber_PostCopyReply, to what: String, file: String) -> ImageError {
        ImageError(.corrupt, file: file, detail: "\(source) answered \(what) with \(reply)")
    }
}

/// One file of an image on host A.
private final class RemoteImageFile: ImageStoreFile {
    let name: String
    let id: UInt32
    let size: UInt64
    private let store: RemoteImageStore
    private var position: UInt64 = 0

    init(name: String, id: UInt32, size: UInt64, store: RemoteImageStore) {
        self.name = name
        self.id = id
        self.size = size
        self.store = store
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        let count = try read(into: buffer, at: position)
        position += UInt64(count)
        return count
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ImageError) -> Int {
        try store.read(id, name: name, size: size, into: buffer, at: offset)
    }

    /// The whole file fetched into anonymous memory, as a mapping would show it: mapped
    /// rather than allocated, so that a size more than this host can hold is an error.
    func map(size: Int) throws(ImageError) -> MappedPageFile {
        guard
            let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            base != MAP_FAILED
        else { throw .system("mmap", file: name) }
        let copy = UnsafeMutableRawBufferPointer(start: base, count: size)
        do throws(ImageError) {
            guard try read(into: copy, at: 0) == size else {
                throw ImageError(.truncated, file: name, detail: "it has fewer than \(size) bytes on \(store.source)")
            }
        } catch {
            munmap(base, size)
            throw error
        }
        return MappedPageFile(name: name, bytes: UnsafeRawBufferPointer(copy), backing: .mapping)
    }
}

extension ImageReader {
    /// The image on host A, served by `amber dump --lazy-pages --port` or `amber page-server
    /// --lazy-pages` there, read over `socket` (connected to `address`) and checked as one in
    /// a directory. An incremental image is refused: its parents would be other directories
    /// on A. `finishReading()` tells the server when nothing more will be read.
    public convenience init(
        pageServer socket: CInt, address: String, key: ImageKey? = nil, checkPages: Bool = true,
        encryptionKey: ImageEncryptionKey? = nil
    ) throws(ImageError) {
        let store = try RemoteImageStore(socket: socket, address: address)
        try self.init(
            store: store, directory: store.source, key: key, checkPages: checkPages, encryptionKey: encryptionKey)
    }

    /// Tells the page server an image came from that every page is in; nothing for an image in a directory.
    public func finishReading() {
        (store as? RemoteImageStore)?.finish()
    }
}

/// Serves the image in a directory to one post-copy restore on another host
/// (`RemoteImageStore` is the other end): only the files the image's inventory lists, and the
/// inventory with its checksum and MAC, and only bytes within them, whatever the peer asks.
public final class PostCopyImageServer {
    /// What one restore read.
    public struct Served: Sendable {
        public let reads: Int
        public let bytes: UInt64
    }

    public let directory: String
    private let store: DirectoryStore
    private let names: Set<String>

    /// Opens the image in `directory` and checks it (its page files' checksums are left to the
    /// reader, which checks every chunk it receives).
    public init(directory: String) throws(ImageError) {
        let image = try ImageReader(directory: directory, checkPages: false)
        guard image.parent == nil else {
            throw ImageError(
                .invalid, file: ImageFormat.inventoryName,
                detail:
                    "the image is incremental: its pages are also in the pre-dumps it refers to, which a post-copy restore cannot read"
            )
        }
        self.directory = directory
        store = try DirectoryStore(directory: directory)
        names = Set(image.files.keys).union([ImageFormat.inventoryName]).union(ImageFormat.inventoryCompanionNames)
            .subtracting([ImageFormat.inventoryTemporaryName])
    }

    /// Answers the restore on `socket` until it says it has every page; `reading` is told the
    /// name of each file before its bytes are read. Throws when the connection ends first, or
    /// the peer asks for anything out of the image (after telling it why).
    public func serve(socket: CInt, peer: String, reading: (String) -> Void) throws(ImageError) -> Served {
        let connection = StreamConnection(fd: socket, peer: peer)
        func refuse(_ reason: String, file: String = ImageFormat.inventoryName) throws(ImageError) -> Never {
            var reply = Amber_PostCopyReply()
            reply.refused = reason
            try? connection.send(reply, file: file)
            throw ImageError(.invalid, file: file, detail: "\(peer): \(reason)")
        }
        guard let first = try connection.receive(Amber_PostCopyRequest.self, file: ImageFormat.inventoryName),
            case .hello(let hello) = first.request, hello.protocol == PostCopyProtocol.name
        else { try refuse("the first request is not a greeting of \(PostCopyProtocol.name)") }
        guard hello.version == PostCopyProtocol.version else {
            try refuse("version \(hello.version) of the protocol; this server speaks \(PostCopyProtocol.version)")
        }
        var reply = Amber_PostCopyReply()
        reply.greeted = true
        try connection.send(reply, file: ImageFormat.inventoryName)
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: PostCopyProtocol.maximumReadLength, alignment: Int(ImageFormat.pageSize))
        defer { buffer.deallocate() }
        var files: [any ImageStoreFile] = []
        var reads = 0
        var bytes: UInt64 = 0
        while let request = try connection.receive(Amber_PostCopyRequest.self, file: ImageFormat.inventoryName) {
            switch request.request {
            case .open(let open):
                guard names.contains(open.name) else { try refuse("\(open.name) is no file of the image") }
                guard files.count < PostCopyProtocol.maximumOpenFiles else {
                    try refuse("more than \(PostCopyProtocol.maximumOpenFiles) opens")
                }
                var opened = Amber_PostCopyOpened()
                if let file = try store.open(open.name) {
                    files.append(file)
                    opened.exists = true
                    opened.fileID = UInt32(files.count - 1)
                    opened.size = file.size
                }
                var reply = Amber_PostCopyReply()
                reply.opened = opened
                try connection.send(reply, file: open.name)
            case .read(let read):
                guard read.fileID < files.count else { try refuse("file number \(read.fileID) was never opened") }
                let file = files[Int(read.fileID)]
                let length = Int(read.length)
                guard length <= PostCopyProtocol.maximumReadLength, read.offset <= file.size,
                    UInt64(length) <= file.size - read.offset
                else {
                    try refuse(
                        "a read of \(length) bytes at \(read.offset) is not within the file's \(file.size) bytes (or over 1 MiB)",
                        file: file.name)
                }
                reading(file.name)
                let target = UnsafeMutableRawBufferPointer(rebasing: buffer[..<length])
                guard try file.read(into: target, at: read.offset) == length else {
                    try refuse("the file ended early on this host", file: file.name)
                }
                var reply = Amber_PostCopyReply()
                reply.data = read.length
                try connection.send(reply, more: true, file: file.name)
                try connection.send(UnsafeRawBufferPointer(target), file: file.name)
                reads += 1
                bytes += UInt64(length)
            case .done(true):
                return Served(reads: reads, bytes: bytes)
            default:
                try refuse("an unexpected request: \(request)")
            }
        }
        throw ImageError(
            .io, file: ImageFormat.inventoryName, detail: "\(peer) closed the connection before it had every page")
    }
}
