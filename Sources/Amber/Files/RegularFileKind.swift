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

    static func record(of description: Amber_OpenFileDescription) -> Amber_RegularFile? {
        guard case .regularFile(let file) = description.file else { return nil }
        return file
    }

    static func make(
        _ file: Amber_RegularFile, description: Amber_OpenFileDescription, as task: Amber_Task, imageTrusted: Bool,
        objects: OpenFileObjects
    ) throws -> Int32 {
        let fd = try reopen(file, flags: description.flags, adding: O_NOCTTY, as: task, imageTrusted: imageTrusted)
        try seek(fd, file, to: description.offset)
        return fd
    }
}

extension Amber_RegularFile: ReopenedByPathRecord {}
