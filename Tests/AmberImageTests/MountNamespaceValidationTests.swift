import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// A tree's mount namespace: what the restore hands to mount(2) and makes in a tmpfs is the
    /// root mount first, each mount after its parent, normal absolute mount points once each,
    /// the type of its kind, known flags, options of printable characters, and files of a tmpfs
    /// with normal relative paths after their directory, of the types made again.
    func testMountNamespace() throws {
        let field = "mount_namespace"
        func namespace(_ task: inout Amber_Task, _ change: (inout Amber_MountNamespace) -> Void) {
            var root = Amber_MountNamespaceMount()
            (root.kind, root.id, root.parentID, root.mountPoint, root.fsType) = (.root, 70, 47, "/", "ext4")
            (root.source, root.options, root.flags) = ("/dev/vda", "rw,discard", 0x200000)
            var tmpfs = Amber_MountNamespaceMount()
            (tmpfs.kind, tmpfs.id, tmpfs.parentID, tmpfs.mountPoint, tmpfs.fsType) = (.tmpfs, 71, 70, "/tmp", "tmpfs")
            (tmpfs.source, tmpfs.options, tmpfs.flags) = ("tmpfs", "rw,size=8192k", 0x200000)
            tmpfs.root.mode = 0o041777
            var directory = Amber_MountNamespaceFile()
            (directory.path, directory.mode) = ("work", 0o040755)
            var file = Amber_MountNamespaceFile()
            (file.path, file.mode, file.contents) = ("work/notes", 0o100640, Data("notes".utf8))
            var link = Amber_MountNamespaceFile()
            (link.path, link.mode, link.target) = ("work/link", 0o120777, "notes")
            var null = Amber_MountNamespaceFile()
            (null.path, null.mode, null.device) = ("null", 0o020666, 0x103)
            tmpfs.files = [directory, file, link, null]
            var external = Amber_MountNamespaceMount()
            (external.kind, external.id, external.parentID, external.mountPoint) = (.external, 72, 71, "/tmp/data")
            (external.fsType, external.source, external.externalKey) = ("ext4", "/dev/vda", "data")
            var proc = Amber_MountNamespaceMount()
            (proc.kind, proc.id, proc.parentID, proc.mountPoint, proc.fsType) = (.proc, 73, 70, "/proc", "proc")
            (proc.source, proc.options, proc.flags) = ("proc", "rw", 0x20000e)
            var record = Amber_MountNamespace()
            record.mounts = [root, tmpfs, external, proc]
            change(&record)
            task.mountNamespace = record
        }
        try assertAccepted { namespace(&$0) { _ in } }
        try assertRejected("\(field).mounts[0]") { namespace(&$0) { $0.mounts.removeFirst() } }
        try assertRejected("\(field).mounts[1].kind") { namespace(&$0) { $0.mounts[1].kind = .root } }
        try assertRejected("\(field).mounts[3].id") { namespace(&$0) { $0.mounts[3].parentID = 99 } }
        try assertRejected("\(field).mounts[3].mount_point") { namespace(&$0) { $0.mounts[3].mountPoint = "proc" } }
        try assertRejected("\(field).mounts[3].mount_point") {
            namespace(&$0) { $0.mounts[3].mountPoint = "/tmp/../etc" }
        }
        try assertRejected("\(field).mounts[3].mount_point") { namespace(&$0) { $0.mounts[3].mountPoint = "/tmp" } }
        try assertRejected("\(field).mounts[3].fs_type") { namespace(&$0) { $0.mounts[3].fsType = "overlay" } }
        try assertRejected("\(field).mounts[3].flags") { namespace(&$0) { $0.mounts[3].flags = 0x1000 } }
        try assertRejected("\(field).mounts[3].options") { namespace(&$0) { $0.mounts[3].options = "rw hidepid=2" } }
        try assertRejected("\(field).mounts[2].external_key") { namespace(&$0) { $0.mounts[2].externalKey = "" } }
        try assertRejected("\(field).mounts[3].files") { namespace(&$0) { $0.mounts[3].files = $0.mounts[1].files } }
        try assertRejected("\(field).mounts[1].root") { namespace(&$0) { $0.mounts[1].root.mode = 0o100644 } }
        try assertRejected("\(field).mounts[1].files[1].path") {
            namespace(&$0) { $0.mounts[1].files[1].path = "work/../../etc/passwd" }
        }
        try assertRejected("\(field).mounts[1].files[1].path") {
            namespace(&$0) { $0.mounts[1].files[1].path = "other/notes" }
        }
        try assertRejected("\(field).mounts[1].files[0].path") {
            namespace(&$0) { $0.mounts[1].files.swapAt(0, 1) }
        }
        try assertRejected("\(field).mounts[1].files[2].path") {
            namespace(&$0) { $0.mounts[1].files[2].path = "work/notes" }
        }
        try assertRejected("\(field).mounts[1].files[3].device") {
            namespace(&$0) { $0.mounts[1].files[3].device = 0x101 }
        }
        try assertRejected("\(field).mounts[1].files[3].mode") {
            namespace(&$0) { $0.mounts[1].files[3].mode = 0o060600 }
        }
        try assertRejected("\(field).mounts[1].files[2]") { namespace(&$0) { $0.mounts[1].files[2].target = "" } }
    }
}
