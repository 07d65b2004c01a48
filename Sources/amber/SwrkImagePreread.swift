import Amber
import AmberImage
import Dispatch
import Glibc
import LinuxKit

/// The image a RESTORE is about to name, read and checked while the runtime still gets ready
/// to send it. runc opens the image directory before it starts `amber swrk`, then moves the
/// new process into the container's cgroups (its first cgroup.procs write alone waits for an
/// RCU grace period, about 5 ms) and only then sends the request: the directory is found
/// among the runtime's descriptors by its inventory, and read on another thread meanwhile, the
/// tree's new network namespace made too (`Restore.CheckedImage.readInAdvance`).
/// The request takes the read only for the very directory it names (the same path, device
/// and inode); otherwise, or when the read failed, the restore reads the image itself as it
/// always does. Reading changes nothing, so a read nobody takes is simply dropped.
final class SwrkImagePreread: @unchecked Sendable {
    /// A directory by its device and inode.
    private struct Identity: Equatable {
        let device: UInt64
        let inode: UInt64
    }

    private struct Directory: Equatable {
        let path: String
        let identity: Identity
    }

    private let scanned = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    // Each written by the reading thread before it signals `scanned` or `finished`; read only
    // after waiting for that.
    private var directory: Directory?
    private var checked: Restore.CheckedImage?

    /// Starts looking among the descriptors of `peer` (the runtime) for an image directory,
    /// unless a request comes on `socket` within a millisecond: runc sends its VERSION and DUMP
    /// requests as soon as the process runs, and a RESTORE only after the cgroups.
    static func start(peer: Int32, unlessRequestOn socket: Int32) -> SwrkImagePreread? {
        var ready = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 1) == 0 else { return nil }
        let preread = SwrkImagePreread()
        DispatchQueue.global().async { preread.read(peer: peer) }
        return preread
    }

    /// The image read in advance, if it was read from the directory at `path` whose device and
    /// inode `images` has; waits until that read is over (not for a read of another directory).
    func take(path: String, images: Int32) -> Restore.CheckedImage? {
        scanned.wait()
        scanned.signal()
        guard let directory, let named = Self.identity(of: images), directory == Directory(path: path, identity: named)
        else { return nil }
        finished.wait()
        return checked
    }

    private func read(peer: Int32) {
        defer { finished.signal() }
        directory = Self.imageDirectory(amongDescriptorsOf: peer)
        scanned.signal()
        guard let found = directory else { return }
        // The path leads to the directory found before and after the read, or the read is not used.
        guard Self.identity(atPath: found.path) == found.identity else { return }
        let read = try? Restore.CheckedImage.readInAdvance(directory: found.path)
        guard Self.identity(atPath: found.path) == found.identity else { return }
        checked = read
    }

    /// The one directory holding an image's inventory that `peer` has open; nil if none or several.
    private static func imageDirectory(amongDescriptorsOf peer: Int32) -> Directory? {
        guard let listing = opendir("/proc/\(peer)/fd") else { return nil }
        defer { closedir(listing) }
        var found: Directory?
        while let entry = readdir(listing) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard Int32(name) != nil, let path = link("/proc/\(peer)/fd/\(name)"), path.hasPrefix("/") else {
                continue
            }
            // O_PATH: nothing of the file is opened (no device, FIFO or socket is touched).
            let fd = open("/proc/\(peer)/fd/\(name)", OpenFileFlags.pathOnly.openFlags | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var inventory = stat()
            guard fstatat(fd, ImageFormat.inventoryName, &inventory, AT_SYMLINK_NOFOLLOW) == 0,
                inventory.st_mode & S_IFMT == S_IFREG, let identity = identity(of: fd)
            else { continue }
            let directory = Directory(path: path, identity: identity)
            if let found, found != directory { return nil }
            found = directory
        }
        return found
    }

    private static func link(_ path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let length = readlink(path, &buffer, buffer.count)
        guard length > 0, length < buffer.count else { return nil }
        return String(decoding: buffer[..<length], as: UTF8.self)
    }

    private static func identity(of fd: Int32) -> Identity? {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return nil }
        return Identity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }

    private static func identity(atPath path: String) -> Identity? {
        let fd = open(path, OpenFileFlags.pathOnly.openFlags | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return identity(of: fd)
    }
}
