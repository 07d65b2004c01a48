import AmberImage
import Glibc
import LinuxKit

/// A character device of `ImageFormat.reopenableDevices` (/dev/null, /dev/zero...), the same
/// device on every host, reopened by its path; any other device is refused.
struct CharacterDeviceKind: ReopenedByPath {
    let path: String
    let status: FileStatus

    static func isKind(_ status: FileStatus, path: String) -> Bool {
        status.isCharacterDevice && ImageFormat.reopenableDevices[path] == status.rdev
    }

    static var dumpedFile: String { "the device" }

    func dump(_ descriptor: DescriptorProbe) throws -> Amber_OpenFileDescription.OneOf_File {
        var device = Amber_CharacterDevice()
        device.path = path
        device.rdev = status.rdev
        device.device = status.device
        device.inode = status.inode
        device.changeTimeNs = status.changeTimeNs
        return .characterDevice(device)
    }

    static func record(of description: Amber_OpenFileDescription) -> Amber_CharacterDevice? {
        guard case .characterDevice(let device) = description.file else { return nil }
        return device
    }

    static func make(
        _ device: Amber_CharacterDevice, description: Amber_OpenFileDescription, as task: Amber_Task,
        imageTrusted: Bool, objects: OpenFileObjects
    ) throws -> Int32 {
        try reopen(device, flags: description.flags, adding: O_NOCTTY, as: task, imageTrusted: imageTrusted)
    }
}

extension Amber_CharacterDevice: ReopenedByPathRecord {}
