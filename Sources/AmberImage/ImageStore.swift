import Glibc

/// Where the reader gets an image's files from: a directory, or their bytes in
/// memory (so that the reader can be fuzzed without touching the file system).
///
/// A store only opens and reads. Every check on what is read (sizes, checksums,
/// decoding, validation) is `ImageReader`'s, the same for every store.
protocol ImageStore: Sendable {
    /// The file `name` opened for reading from its start, or nil if there is no
    /// such file; a symbolic link or anything but a regular file is `.invalid`.
    func open(_ name: String) throws(ImageError) -> (any ImageStoreFile)?
}

/// One file of an image, open for reading; closed when released.
protocol ImageStoreFile: AnyObject {
    var name: String { get }
    /// Its size when it was opened.
    var size: UInt64 { get }
    /// Fills `buffer` from the current position; returns fewer bytes only at end of file.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int
    /// Fills `buffer` from byte `offset`, leaving the position alone; returns fewer bytes only
    /// at end of file. Safe to call from several threads at once.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ImageError) -> Int
    /// Its first `size` bytes, read-only, for as long as the result lives (`size` > 0).
    func map(size: Int) throws(ImageError) -> MappedPageFile
}

/// An image directory, opened once: files are opened relative to it with O_NOFOLLOW.
final class DirectoryStore: ImageStore {
    private let directoryFD: CInt

    init(directory: String) throws(ImageError) {
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR {
                throw ImageError(
                    .missing, file: ImageFormat.inventoryName, detail: "there is no image directory at \(directory)")
            }
            throw .system("open", file: directory)
        }
        directoryFD = fd
    }

    /// An image directory opened already: the store takes `fd`.
    init(descriptor fd: CInt) {
        directoryFD = fd
    }

    deinit {
        close(directoryFD)
    }

    func open(_ name: String) throws(ImageError) -> (any ImageStoreFile)? {
        // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it is refused below instead.
        let fd = openFile(in: directoryFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else {
            switch errno {
            case ENOENT: return nil
            case ELOOP: throw ImageError(.invalid, file: name, detail: "it is a symbolic link")
            default: throw .system("open", file: name)
            }
        }
        let file = DirectoryFile(name: name, fd: fd)
        let status = try fileStatus(fd, file: name)
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw ImageError(.invalid, file: name, detail: "it is not a regular file")
        }
        file.size = UInt64(status.st_size)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        return file
    }
}

private final class DirectoryFile: ImageStoreFile {
    let name: String
    let fd: CInt
    var size: UInt64 = 0

    init(name: String, fd: CInt) {
        self.name = name
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        try readFully(fd, into: buffer, file: name)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ImageError) -> Int {
        try readFully(fd, into: buffer, at: offset, file: name)
    }

    func map(size: Int) throws(ImageError) -> MappedPageFile {
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw .system("mmap", file: name)
        }
        return MappedPageFile(name: name, bytes: UnsafeRawBufferPointer(start: base, count: size), backing: .mapping)
    }
}

/// An image given as its files' bytes by name.
struct MemoryStore: ImageStore {
    let files: [String: [UInt8]]

    func open(_ name: String) -> (any ImageStoreFile)? {
        files[name].map { MemoryFile(name: name, bytes: $0) }
    }
}

private final class MemoryFile: ImageStoreFile {
    let name: String
    let bytes: [UInt8]
    private var position = 0

    init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }

    var size: UInt64 { UInt64(bytes.count) }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = min(buffer.count, bytes.count - position)
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[position..<(position + count)]))
        }
        position += count
        return count
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Int {
        let start = Int(min(offset, UInt64(bytes.count)))
        let count = min(buffer.count, bytes.count - start)
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + count)]))
        }
        return count
    }

    /// A page-aligned copy, like the mapping a directory gives.
    func map(size: Int) -> MappedPageFile {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: Int(ImageFormat.pageSize))
        bytes.withUnsafeBytes { copy.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<size])) }
        return MappedPageFile(name: name, bytes: UnsafeRawBufferPointer(copy), backing: .allocation)
    }
}
