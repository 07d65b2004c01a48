import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// What the files without a name of one dump hold (memfds, deleted files): each file's data is
/// written once, into an image file of its own made like a page file (whole pages, listed in
/// the inventory with their checksums, under the image's MAC), with its holes skipped; every
/// description of the file records the same `Amber_FileContents`.
final class FileContentsDump {
    private let writer: ImageWriter
    private var files = 0
    private var written: [OpenFileIdentity: Amber_FileContents] = [:]
    private var ids: [OpenFileIdentity: UInt64] = [:]

    init(writer: ImageWriter) { self.writer = writer }

    /// The id of the file `identity` in this image, from 1: inode numbers of files on different
    /// devices (two deleted files, one on tmpfs and one on disk) may be equal.
    func id(of identity: OpenFileIdentity) -> UInt64 {
        if let id = ids[identity] { return id }
        let id = UInt64(ids.count + 1)
        ids[identity] = id
        return id
    }

    /// The contents of the file `descriptor` is on, read through a description of our own opened
    /// on it through /proc/PID/fd: the task's offset is never moved, and nothing is consumed.
    func contents(of descriptor: DescriptorProbe, identity: OpenFileIdentity) throws -> Amber_FileContents {
        try contents(at: "/proc/\(descriptor.pid)/fd/\(descriptor.fd)", identity: identity) { error in
            AmberError.unsupported(
                descriptor.process,
                "has fd \(descriptor.fd) on \(descriptor.link), which amber cannot open to read what it holds: \(error)"
            )
        }
    }

    /// The contents of the file the magic link `path` leads to (/proc/PID/fd/FD or
    /// /proc/PID/map_files/START-END); `refusal` words a failure to open it.
    func contents(at path: String, identity: OpenFileIdentity, refusal: (LinuxError) -> AmberError) throws
        -> Amber_FileContents
    {
        if let contents = written[identity] { return contents }
        var reader = Glibc.open(path, O_RDONLY | FileData.noAccessTime | O_CLOEXEC)
        if reader < 0 && errno == EPERM { reader = Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        guard reader >= 0 else { throw refusal(LinuxError.current("open \(path)")) }
        let file = FileDescriptor(rawValue: reader)
        defer { try? file.close() }
        var contents = Amber_FileContents()
        contents.size = try FileStatus.fstat(fd: reader).size
        let extents = try FileData.extents(file, size: contents.size, unit: ImageFormat.pageSize)
        if !extents.isEmpty {
            files += 1
            let pages = try writer.makePageFile(name: "contents-\(files).img")
            contents.imageFile = pages.name
            let buffer = UnsafeMutableRawBufferPointer.allocate(
                byteCount: 1 << 20, alignment: Int(ImageFormat.pageSize))
            defer { buffer.deallocate() }
            for extent in extents {
                var record = Amber_FileExtent()
                record.offset = extent.lowerBound
                record.length = UInt64(extent.count)
                var offset = extent.lowerBound
                while offset < extent.upperBound {
                    let count = Int(min(extent.upperBound - offset, UInt64(buffer.count)))
                    let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[..<count])
                    let read = try file.read(fromAbsoluteOffset: Int64(offset), into: chunk)
                    // Past the end of the file (its last page), zeros.
                    if read < count { chunk[read...].initializeMemory(as: UInt8.self, repeating: 0) }
                    let at = try pages.append(UnsafeRawBufferPointer(chunk))
                    if offset == extent.lowerBound { record.imageOffset = at }
                    offset += UInt64(count)
                }
                contents.extents.append(record)
            }
        }
        written[identity] = contents
        return contents
    }
}

extension Amber_FileContents {
    /// Gives the new file our `fd` is on its size and its data, from the image.
    func write(into fd: Int32, image: ImageReader?, what: String, task: Amber_Task) throws {
        guard ftruncate(fd, off_t(size)) == 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot give \(what) of process \(task.pid) its size of \(size) bytes: \(LinuxError.current("ftruncate"))"
            )
        }
        guard !extents.isEmpty else { return }
        guard let image else {
            throw AmberError(.badImage, "\(what) of process \(task.pid) holds data but no image was given")
        }
        let pageFile = try image.pageFile(named: imageFile)
        try withExtendedLifetime(pageFile) {
            for extent in extents {
                let pages = try pageFile.pages(offset: extent.imageOffset, count: extent.length / ImageFormat.pageSize)
                // The last page may run past the file's size: only what is inside it is written.
                let count = Int(Swift.min(extent.length, size - extent.offset))
                var done = 0
                while done < count {
                    let written = pwrite(
                        fd, pages.baseAddress! + done, count - done, off_t(extent.offset) + off_t(done))
                    guard written > 0 else {
                        throw AmberError(
                            .restoreFailed,
                            "cannot write back \(count) bytes at \(extent.offset) of \(what) of process \(task.pid): \(LinuxError.current("pwrite"))"
                        )
                    }
                    done += written
                }
            }
        }
    }
}

/// A file without a name made again for the tree (a memfd, a deleted file): the restorer's
/// descriptor of it, on which each description of the image is opened through /proc/self/fd,
/// but the one it was made with, if it is one of the image's (its flags kept: a description
/// opened through /proc/self/fd cannot have O_NOFOLLOW, which the magic link refuses).
class RestoredUnnamedFile: SharedOpenFileObject {
    let fd: Int32
    /// The flags of `fd`'s own description while no description of the image has taken it.
    private var untakenFlags: Int32?

    init(fd: Int32, flags: Int32? = nil) {
        self.fd = fd
        untakenFlags = flags
    }

    /// The flags a description of the image is made with.
    static func openFlags(_ description: Amber_OpenFileDescription) -> Int32 {
        Int32(bitPattern: description.flags) & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)
    }

    /// A new description of the file with the description's flags, at its offset, for the caller.
    func open(_ description: Amber_OpenFileDescription, what: String, task: Amber_Task) throws -> Int32 {
        let flags = Self.openFlags(description)
        let opened: Int32
        if let untakenFlags, untakenFlags == flags {
            self.untakenFlags = nil
            opened = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        } else {
            guard flags & O_NOFOLLOW == 0 else {
                throw AmberError(
                    .restoreFailed,
                    "cannot open a second description of \(what) with O_NOFOLLOW for process \(task.pid): only the one it is made with can have it"
                )
            }
            opened = Glibc.open("/proc/self/fd/\(fd)", OpenFileFlags.reopening(flags) | O_CLOEXEC)
        }
        guard opened >= 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot open a description of \(what) for process \(task.pid): \(LinuxError.current("open"))")
        }
        guard description.offset == 0 || lseek(opened, off_t(Int64(bitPattern: description.offset)), SEEK_SET) >= 0
        else {
            let error = LinuxError.current("lseek")
            Glibc.close(opened)
            throw AmberError(
                .restoreFailed, "cannot seek \(what) of process \(task.pid) to \(description.offset): \(error)")
        }
        return opened
    }

    /// Gives the file our `fd` is on its owner and permission bits, in that order (fchown clears set-user-ID).
    static func setOwnerAndMode(_ fd: Int32, uid: UInt32, gid: UInt32, mode: UInt32, what: String, task: Amber_Task)
        throws
    {
        guard fchown(fd, uid, gid) == 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot give \(what) of process \(task.pid) its owner uid \(uid), gid \(gid): \(LinuxError.current("fchown"))"
            )
        }
        guard fchmod(fd, mode_t(mode)) == 0 else {
            throw AmberError(
                .restoreFailed,
                "cannot give \(what) of process \(task.pid) its mode 0o\(String(mode, radix: 8)): \(LinuxError.current("fchmod"))"
            )
        }
    }

    /// The file's owner is the restorer's doing: one other than the task's own asks for CAP_CHOWN.
    static func ownerAsks(uid: UInt32, gid: UInt32, of what: String, owner: Amber_Credentials) -> [PrivilegedAsk] {
        guard uid != owner.fsuid || gid != owner.fsgid else { return [] }
        return [
            PrivilegedAsk(
                what: "\(what) owned by uid \(uid), gid \(gid), other than its own \(owner.fsuid), \(owner.fsgid)",
                capabilities: [Capability.chown])
        ]
    }

    func close() { Glibc.close(fd) }
}

/// A memfd made again: its own type, so that `OpenFileObjects` keeps memfds apart from deleted
/// files whatever their ids.
final class RestoredMemfd: RestoredUnnamedFile {}

/// A deleted file made again.
final class RestoredDeletedFile: RestoredUnnamedFile {}
