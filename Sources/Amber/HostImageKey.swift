import AmberImage
import Glibc
import LinuxKit

/// This host's image key (docs/security.md, "Authenticated images"): 32 random bytes in
/// /var/lib/amber/image-key, a root-owned 0600 file in a root-owned 0700 directory, made by
/// the first dump as root. Only root reads it, so only root's dumps carry a valid MAC.
public enum HostImageKey {
    public static let defaultPath = "/var/lib/amber/image-key"
    /// Names another key file (tests use one per run). Honored only for a caller whose real
    /// and effective uid are 0 and that is no set-ID or file-capability program
    /// (`secure_getenv`), and the file must pass the same checks as the default one: it can
    /// only name a key that root alone can read.
    public static let pathVariable = "AMBER_IMAGE_KEY"

    /// The initial user namespace has a fixed inode (PROC_USER_INIT_INO).
    private static let initialUserNamespace = "user:[4026531837]"

    /// The key file in force for this caller, or nil when it is not root of this host (root
    /// of a user namespace of its own is a user here).
    public static var path: String? {
        guard getuid() == 0, geteuid() == 0, (try? ProcFS.link("/proc/self/ns/user")) == initialUserNamespace else {
            return nil
        }
        if let named = SecureEnvironment.value(of: pathVariable), !named.isEmpty { return named }
        return defaultPath
    }

    /// The key for a dump: read, or made if this host has none yet. nil when the caller is not root.
    public static func forDump() throws(AmberError) -> ImageKey? {
        guard let path else { return nil }
        if path == defaultPath {
            try makeDirectory("/var/lib", mode: 0o755)
            try makeDirectory("/var/lib/amber", mode: 0o700)
        }
        let (directory, name) = split(path)
        let directoryFD = try openDirectory(directory)
        defer { close(directoryFD) }
        if let key = try read(name, in: directoryFD, path: path) { return key }
        try create(name, in: directoryFD, path: path)
        guard let key = try read(name, in: directoryFD, path: path) else {
            throw AmberError(.failure, "the image key \(path) vanished right after it was made")
        }
        return key
    }

    /// The key to check an image with: nil when the caller is not root or this host has none.
    public static func forCheck() throws(AmberError) -> ImageKey? {
        guard let path else { return nil }
        let (directory, name) = split(path)
        guard access(directory, F_OK) == 0 else { return nil }
        let directoryFD = try openDirectory(directory)
        defer { close(directoryFD) }
        return try read(name, in: directoryFD, path: path)
    }

    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    private static func makeDirectory(_ path: String, mode: mode_t) throws(AmberError) {
        guard mkdir(path, mode) == 0 || errno == EEXIST else {
            throw AmberError(.failure, "cannot make the image key's directory \(path): \(LinuxError.current("mkdir"))")
        }
    }

    /// Opens the key's directory, which must be root's and writable by root alone.
    private static func openDirectory(_ path: String) throws(AmberError) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw AmberError(.failure, "cannot open the image key's directory \(path): \(LinuxError.current("open"))")
        }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_uid == 0, status.st_mode & 0o022 == 0 else {
            close(fd)
            throw AmberError(
                .failure,
                "the image key's directory \(path) must be root's and writable by root alone (chown root \(path); chmod go-w \(path))"
            )
        }
        return fd
    }

    /// The key, or nil if there is no file; a file anyone but root could read or write, or
    /// of another size, is refused.
    private static func read(_ name: String, in directoryFD: Int32, path: String) throws(AmberError) -> ImageKey? {
        let fd = openat(directoryFD, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw AmberError(.failure, "cannot open the image key \(path): \(LinuxError.current("open"))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_uid == 0,
            status.st_mode & 0o077 == 0
        else {
            throw AmberError(.failure, "the image key \(path) must be a regular file of root's, mode 0600")
        }
        var bytes = [UInt8](repeating: 0, count: ImageKey.size + 1)
        let count = Glibc.read(fd, &bytes, bytes.count)
        guard count == ImageKey.size, let key = ImageKey(bytes: Array(bytes.prefix(ImageKey.size))) else {
            throw AmberError(.failure, "the image key \(path) must hold exactly \(ImageKey.size) bytes")
        }
        return key
    }

    /// Writes a new key under a temporary name (O_CREAT | O_EXCL, 0600) and links it into
    /// place: a reader never sees a partial key, and of two dumps making one at once, the
    /// first link wins and the other reads it.
    private static func create(_ name: String, in directoryFD: Int32, path: String) throws(AmberError) {
        let temporary = "\(name).\(getpid()).tmp"
        unlinkat(directoryFD, temporary, 0)
        let fd = openat(directoryFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AmberError(.failure, "cannot create the image key \(path): \(LinuxError.current("open"))")
        }
        defer { unlinkat(directoryFD, temporary, 0) }
        let bytes = ImageKey.random()
        let written = Glibc.write(fd, bytes, bytes.count)
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            throw AmberError(.failure, "cannot write the image key \(path): \(LinuxError.current("write"))")
        }
        guard linkat(directoryFD, temporary, directoryFD, name, 0) == 0 || errno == EEXIST else {
            throw AmberError(.failure, "cannot link the image key into \(path): \(LinuxError.current("link"))")
        }
    }
}
