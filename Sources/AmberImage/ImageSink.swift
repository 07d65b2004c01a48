import Glibc

/// Where an `ImageWriter` puts an image's bytes: a directory (`DirectorySink`), or a page
/// server on another host (`StreamSink`). A sink does the lowest-level operations only; what
/// is written, its checksums and the order of the files are the writer's.
public protocol ImageSink: AnyObject {
    /// Where the image goes, for messages: a directory's path, a page server's address.
    var destination: String { get }
    /// Creates the file `name`: new, unless `replacing` (the inventory's temporary file).
    func create(_ name: String, replacing: Bool) throws(ImageError) -> any ImageSinkFile
    /// Renames the inventory's temporary file to the inventory; the image is complete once
    /// this returns. `durable`: the directory is synced too (a sink may do it here).
    func commitInventory(durable: Bool) throws(ImageError)
    /// Removes every file the sink created and the directories it made, so that the
    /// destination is as it was; nothing once the inventory is committed.
    func discard()
    /// Like `discard`, but also once the inventory is committed, where the sink can: the
    /// inventory goes first, so what is left is never taken for an image.
    func withdraw()
}

/// One file of an image being written.
public protocol ImageSinkFile: AnyObject {
    /// Appends all of `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer) throws(ImageError)
    /// Makes what was written durable (fsync).
    func sync() throws(ImageError)
    /// The file is complete: nothing is written to it after this.
    func close() throws(ImageError)
}

/// An image directory on this host: created (with parents) or taken empty, never through a
/// symbolic link; its files 0600.
public final class DirectorySink: ImageSink {
    public let destination: String
    private let directoryFD: CInt
    /// The directories this sink created (the image directory and parents it lacked), each as
    /// its parent and name, outermost first.
    private let created: [(parentFD: CInt, name: String)]
    /// Every file created, for `discard`.
    private var names: Set<String> = []
    private var committed = false

    /// Creates the directory (with parents) or takes an existing empty one; a non-empty one is refused
    /// (.directoryNotEmpty). No component of `directory` may be a symbolic link (.invalid): amber
    /// runs as root, and a link a user planted would point root's writes at a directory of its choosing.
    /// `durable`: a directory made is synced into its parent. With `amongOtherFiles` an existing
    /// directory may hold files of others (a container runtime's log and descriptions, beside the
    /// image it asked for), but no image: every file the sink creates is new (O_EXCL).
    public init(directory: String, durable: Bool, amongOtherFiles: Bool = false) throws(ImageError) {
        destination = directory
        let (fd, created) = try Self.openDirectories(directory)
        do {
            if let made = created.last {
                // Make the new directory's entry durable, like the files that will go in it.
                if durable { try syncFile(made.parentFD, file: Self.parent(of: directory)) }
            } else if amongOtherFiles {
                try Self.checkNoImage(fd, path: directory)
            } else {
                try Self.checkEmpty(fd, path: directory)
            }
        } catch {
            close(fd)
            for made in created { close(made.parentFD) }
            throw error
        }
        directoryFD = fd
        self.created = created
    }

    deinit {
        close(directoryFD)
        for made in created { close(made.parentFD) }
    }

    public func create(_ name: String, replacing: Bool) throws(ImageError) -> any ImageSinkFile {
        let fd = openFile(in: directoryFD, name, O_WRONLY | O_CREAT | (replacing ? O_TRUNC : O_EXCL))
        guard fd >= 0 else { throw .system("create", file: name) }
        names.insert(name)
        return OpenFile(name: name, fd: fd)
    }

    public func commitInventory(durable: Bool) throws(ImageError) {
        let temporary = ImageFormat.inventoryTemporaryName
        guard renameat(directoryFD, temporary, directoryFD, ImageFormat.inventoryName) == 0 else {
            throw .system("rename \(temporary) to", file: ImageFormat.inventoryName)
        }
        committed = true
        if durable { try syncFile(directoryFD, file: destination) }
    }

    public func withdraw() {
        if committed {
            guard unlinkat(directoryFD, ImageFormat.inventoryName, 0) == 0 || errno == ENOENT else { return }
            committed = false
        }
        discard()
    }

    public func discard() {
        guard !committed else { return }
        for name in names { unlinkat(directoryFD, name, 0) }
        names = []
        for made in created.reversed() {
            guard unlinkat(made.parentFD, made.name, AT_REMOVEDIR) == 0 else { return }
        }
    }

    private final class OpenFile: ImageSinkFile {
        let name: String
        private var fd: CInt

        init(name: String, fd: CInt) {
            self.name = name
            self.fd = fd
        }

        deinit {
            if fd >= 0 { Glibc.close(fd) }
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws(ImageError) { try writeAll(fd, bytes, file: name) }

        func sync() throws(ImageError) { try syncFile(fd, file: name) }

        func close() throws(ImageError) {
            let closing = fd
            fd = -1
            guard Glibc.close(closing) == 0 || errno == EINTR else { throw .system("close", file: name) }
        }
    }

    /// `mkdir -p`, the image directory itself 0700, each component opened relative to the one
    /// before with O_NOFOLLOW, so that no symbolic link is followed anywhere on the path. Returns
    /// the image directory and the directories created, outermost first, each with its parent
    /// kept open (the last one, if any, is the image directory, known to be empty).
    private static func openDirectories(_ path: String) throws(ImageError) -> (
        fd: CInt, created: [(parentFD: CInt, name: String)]
    ) {
        var components = path.split(separator: "/").map(String.init)
        if components.isEmpty { components = ["."] }
        var prefix = path.hasPrefix("/") ? "/" : ""
        var fd = openFile(in: AT_FDCWD, prefix.isEmpty ? "." : prefix, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw .system("open", file: prefix.isEmpty ? "." : prefix) }
        var created: [(parentFD: CInt, name: String)] = []
        for (index, component) in components.enumerated() {
            prefix += component
            func undo(_ error: ImageError) -> ImageError {
                close(fd)
                for made in created.reversed() {
                    unlinkat(made.parentFD, made.name, AT_REMOVEDIR)
                    close(made.parentFD)
                }
                return error
            }
            let made = mkdirat(fd, component, index == components.count - 1 ? 0o700 : 0o755) == 0
            guard made || errno == EEXIST else { throw undo(.system("mkdir", file: prefix)) }
            let next = openFile(in: fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            guard next >= 0 else {
                // O_DIRECTORY | O_NOFOLLOW fails on a symbolic link with ENOTDIR.
                throw undo(
                    errno == ENOTDIR && isSymbolicLink(in: fd, component)
                        ? ImageError(
                            .invalid, file: path,
                            detail: "\(prefix) is a symbolic link, which amber does not follow for an image directory")
                        : .system("open", file: prefix))
            }
            if made { created.append((fd, component)) } else { close(fd) }
            fd = next
            prefix += "/"
        }
        return (fd, created)
    }

    private static func isSymbolicLink(in directoryFD: CInt, _ name: String) -> Bool {
        var status = stat()
        return fstatat(directoryFD, name, &status, AT_SYMLINK_NOFOLLOW) == 0 && status.st_mode & S_IFMT == S_IFLNK
    }

    private static func checkEmpty(_ fd: CInt, path: String) throws(ImageError) {
        let copy = dup(fd)
        guard copy >= 0, let stream = fdopendir(copy) else {
            let error = ImageError.system("open", file: path)
            if copy >= 0 { close(copy) }
            throw error
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." {
                throw ImageError(
                    .directoryNotEmpty, file: path,
                    detail: "it holds \(name); an image is written only into a new or empty directory")
            }
        }
    }

    /// The inventory, its temporary file and the MAC may not be there, whoever wrote them.
    private static func checkNoImage(_ fd: CInt, path: String) throws(ImageError) {
        for name in [ImageFormat.inventoryName, ImageFormat.inventoryTemporaryName, ImageFormat.macName] {
            var status = stat()
            if fstatat(fd, name, &status, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT {
                throw ImageError(
                    .directoryNotEmpty, file: path,
                    detail: "it holds \(name): an image is written only where there is none")
            }
        }
    }

    private static func parent(of path: String) -> String {
        let trimmed = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        let joined = trimmed.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }
}
