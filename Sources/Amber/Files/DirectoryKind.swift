import AmberImage
import Glibc
import LinuxKit

/// A directory, reopened by its path and put at its offset (where getdents goes on).
struct DirectoryKind: ReopenedByPath {
    let path: String
    let status: FileStatus

    static func isKind(_ status: FileStatus, path: String) -> Bool { status.isDirectory }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var directory = Amber_Directory()
        directory.path = path
        directory.device = status.device
        directory.inode = status.inode
        directory.changeTimeNs = status.changeTimeNs
        return .directory(directory)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_Directory? {
        guard case .directory(let directory) = description.file else { return nil }
        return directory
    }

    static func make(
        _ directory: Amber_Directory, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let fd = try reopen(directory, flags: description.flags, adding: O_NOCTTY, as: task, imageTrusted: imageTrusted)
        try seek(fd, directory, to: description.offset)
        return fd
    }
}

extension Amber_Directory: ReopenedByPathRecord {}
