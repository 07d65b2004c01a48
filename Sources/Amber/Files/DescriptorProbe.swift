import Glibc
import LinuxKit
import SystemPackage

/// One descriptor of a process, as the kinds of open file are asked about it
/// (`OpenFileKinds.classify`): its fdinfo and /proc link, read at once, and its status, read
/// once when first asked for. The link of a pipe or socket comes from its fdinfo
/// (`AnonymousFileMounts`), the status through a copy of the descriptor when it has an owner:
/// no path under /proc is walked for them.
final class DescriptorProbe {
    let pid: Int32
    let fd: Int32
    let process: ProcessName
    /// The root of the tree, named in refusals before the tree is frozen.
    let tree: ProcessName?
    /// The /proc/PID/fd link: the file's path (unescaped), or "socket:[INODE]", "pipe:[INODE]",
    /// "anon_inode:NAME"...
    let link: String

    /// The process's descriptors this probe is one of, whose pidfd duplicates it.
    private let owner: ProcessDescriptors?
    /// Where the dump writes what files without a name hold (memfds, deleted files); nil
    /// before the freeze, where only classifying is asked.
    var contents: FileContentsDump?

    private var statusRead: FileStatus?
    private var socketFamilyRead: Int32?
    private var infoRead: FileDescriptorInfo?
    private var linkPathRead: LinkPath?

    /// `fdinfoDirectory`: the process's /proc/PID/fdinfo, open, to read this descriptor's through.
    /// `throughCopy`: a pipe or socket is probed through a copy of the descriptor instead
    /// (`AnonymousFileMounts.info(ofCopy:)`), which tells all a refusal before the freeze
    /// depends on but not the descriptor's close-on-exec flag nor a flock lock on it: for the
    /// running checks only, which record neither. (Every lock on a pipe or socket that is
    /// refused is a POSIX one, which the copy's F_GETLK finds, and then the fdinfo is read.)
    init(
        pid: Int32, fd: Int32, process: ProcessName, tree: ProcessName? = nil, owner: ProcessDescriptors? = nil,
        fdinfoDirectory: Int32? = nil, throughCopy: Bool = false
    ) throws(LinuxError) {
        self.pid = pid
        self.owner = owner
        self.fd = fd
        self.process = process
        self.tree = tree
        if throughCopy, let owner, let (info, status) = try? owner.anonymousInfo(fd),
            let anonymous = AnonymousFileMounts.link(of: info)
        {
            infoRead = info
            statusRead = status
            link = anonymous
            return
        }
        let info =
            if let directory = fdinfoDirectory {
                try ProcFS.fileDescriptorInfo(pid: pid, fd: fd, in: directory)
            } else {
                try ProcFS.fileDescriptorInfo(pid: pid, fd: fd)
            }
        infoRead = info
        if let anonymous = AnonymousFileMounts.link(of: info) {
            link = anonymous
        } else {
            link = try ProcFS.fileDescriptorPath(pid: pid, fd: fd)
        }
    }

    /// The status of the open file itself: of a copy of the descriptor (a socket's family read
    /// through the same copy), or through /proc/PID/fd/FD.
    func status() throws(LinuxError) -> FileStatus {
        if let statusRead { return statusRead }
        let status: FileStatus
        if let owner {
            let copy = try owner.duplicate(fd)
            defer { try? copy.close() }
            status = try FileStatus.fstat(fd: copy.rawValue)
            // An O_PATH descriptor of a socket file (a path, not "socket:[...]") has no socket.
            if status.isSocket, socketFamilyRead == nil, link.hasPrefix("socket:") {
                socketFamilyRead = try Pidfd.socketFamily(of: copy)
            }
        } else {
            status = try FileStatus.stat(procFD: pid, fd: fd)
        }
        statusRead = status
        return status
    }

    /// The device and inode of the open file, as `status` has them: of a pipe or a socket from
    /// its fdinfo alone (`AnonymousFileMounts`), which tells them without a copy of the
    /// descriptor; of any other file from its status.
    func identity() throws(LinuxError) -> OpenFileIdentity {
        if let infoRead, let anonymous = AnonymousFileMounts.identity(of: infoRead) {
            return OpenFileIdentity(device: anonymous.device, inode: anonymous.inode)
        }
        let status = try status()
        return OpenFileIdentity(device: status.device, inode: status.inode)
    }

    /// /proc/PID/fdinfo/FD: the description's flags and offset, and what its kind adds.
    func info() throws(LinuxError) -> FileDescriptorInfo {
        if let infoRead { return infoRead }
        let info = try ProcFS.fileDescriptorInfo(pid: pid, fd: fd)
        infoRead = info
        return info
    }

    /// The address family of the socket it is on, read once: AF_UNIX for a socket sock_diag
    /// showed as a unix socket in this pass's reading (`UnixSocketTable`: a socket's inode is
    /// its own while it lives), else SO_DOMAIN of a copy.
    func socketFamily() throws(LinuxError) -> Int32 {
        if let socketFamilyRead { return socketFamilyRead }
        if let inode = UnixSocketKind.socketInode(link), UnixSocketTable.shared.snapshot().sockets[inode] != nil {
            socketFamilyRead = AF_UNIX
            return AF_UNIX
        }
        let copy = try duplicate()
        defer { try? copy.close() }
        let family = try Pidfd.socketFamily(of: copy)
        socketFamilyRead = family
        return family
    }

    /// A descriptor of ours on the same open file description (pidfd_getfd), for the caller to close.
    func duplicate() throws(LinuxError) -> FileDescriptor {
        try duplicate(fd)
    }

    /// A descriptor of ours on the open file description of `fd` of this probe's process.
    func duplicate(_ fd: Int32) throws(LinuxError) -> FileDescriptor {
        if let owner { return try owner.duplicate(fd) }
        return try Pidfd(pid: pid).duplicate(fd)
    }

    /// The dump's writer of what files without a name hold.
    func contentsDump() throws -> FileContentsDump {
        guard let contents else { preconditionFailure("fd \(fd) of process \(pid) was dumped outside a dump") }
        return contents
    }

    /// The refusal of this descriptor, open on `what`.
    func refusal(_ what: String) -> AmberError {
        .unsupported(process, "has fd \(fd) open on \(what): not supported yet", tree: tree)
    }

    /// What the link says of the file's path.
    enum LinkPath: Equatable {
        /// A path that leads to this very file, which a restore reopens.
        case reopenable(String)
        /// No path: "socket:[INODE]", "anon_inode:NAME"...
        case notAPath
        /// The file was unlinked; `path` is the link without the " (deleted)" it then ends in.
        case deleted(path: String)
        /// A POSIX message queue: its descriptor shows the queue's name.
        case messageQueue
        /// A path that leads elsewhere now, or nowhere; or a path of another mount namespace.
        case elsewhere
    }

    /// The path that reopens this very file, or nil when none does (`linkPath` says why).
    func reopenablePath() throws -> String? {
        if case .reopenable(let path) = try linkPath() { return path }
        return nil
    }

    /// The link names a path; the file's link count, not the " (deleted)" the link then ends
    /// in, tells a deleted file from one named so.
    func linkPath() throws -> LinkPath {
        if let linkPathRead { return linkPathRead }
        let linkPath = try readLinkPath()
        linkPathRead = linkPath
        return linkPath
    }

    private func readLinkPath() throws -> LinkPath {
        guard link.hasPrefix("/") else { return .notAPath }
        let status = try status()
        if status.isDeleted {
            return .deleted(path: link.hasSuffix(" (deleted)") ? String(link.dropLast(" (deleted)".count)) : link)
        }
        if (try? FileSystemKind.of(path: "/proc/\(pid)/fd/\(fd)")) == .mqueue { return .messageQueue }
        guard let atPath = try? FileStatus.stat(path: MountNamespaceState.hostPath(link, of: pid)),
            atPath.device == status.device,
            atPath.inode == status.inode
        else {
            return .elsewhere
        }
        return .reopenable(link)
    }
}
