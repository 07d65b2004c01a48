import AmberImage
import Glibc
import LinuxKit

/// A regular file, reopened by its path and put at its offset.
struct RegularFileKind: ReopenedByPath {
    let path: String
    let status: FileStatus

    static func isKind(_ status: FileStatus, path: String) -> Bool { status.isRegular }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var file = Amber_RegularFile()
        file.path = path
        file.device = status.device
        file.inode = status.inode
        file.size = status.size
        file.changeTimeNs = status.changeTimeNs
        return .regularFile(file)
    }

    /// A regular file's open file description that a process outside the tree holds too is
    /// refused, unless it is only appended to and holds no lock: the two share its offset, and
    /// the tree's comes back a description of its own, so each would write over, or read past,
    /// what the other did (`cmd > log &` in a script whose own output is that log goes on
    /// writing to it); and a flock or OFD lock is the description's, which the process outside
    /// would go on holding after the dump's kill, against the restored tree (`exec 9>>lock;
    /// flock 9; prog &`).
    /// Asked before the freeze (a process outside gets a description of the tree's only by
    /// being handed it), and only of files the tree holds, by path: then kcmp tells whether the
    /// description is the same.
    static func check(tree processes: [CheckedProcess]) throws {
        guard processes.first?.beforeFreeze == true else { return }
        // A log opened with >> asks no outside process's descriptors.
        let held = try descriptorsByPath(in: processes) { probe in
            let info = try probe.info()
            let flags = OpenFileFlags(rawValue: info.flags)
            return flags.contains(.append) && flags.rawValue & UInt32(O_ACCMODE) == UInt32(O_WRONLY)
                && info.locks.isEmpty
        }
        try OutsideDescriptors.refuseShared(held: held, processes: processes) { treeFD, link, pid, fd in
            "has fd \(treeFD) on \(link), whose open file description (and so its offset) process \(ProcessName(pid: pid)) outside the tree holds too (its fd \(fd)): restored, the tree's would be one of its own, and each would write over or read past what the other did; only a description written with O_APPEND alone, holding no lock, may be shared"
        }
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_RegularFile? {
        guard case .regularFile(let file) = description.file else { return nil }
        return file
    }

    static func make(
        _ file: Amber_RegularFile, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let fd = try reopen(file, flags: description.flags, adding: O_NOCTTY, as: task, imageTrusted: imageTrusted)
        // Grown is as a log goes on; shrunk (truncated, or replaced by a shorter file), what the
        // process read or wrote there is gone from under it.
        if file.size != 0, let now = try? FileStatus.fstat(fd: fd), now.size < file.size {
            Glibc.close(fd)
            throw AmberError(
                .restoreFailed,
                "\(file.path) changed since the dump: it holds \(now.size) bytes, \(file.size) then, and process \(task.pid) had it open; restore it once it is as it was"
            )
        }
        try seek(fd, file, to: description.offset)
        return fd
    }
}

extension Amber_RegularFile: ReopenedByPathRecord {}
