import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// The mounts a container runtime makes: a devpts takes only devpts's own options, and an
    /// internal bind mount binds a normal relative path of a tmpfs, proc, sysfs or devpts mount
    /// of its type before it; no other mount names a source.
    func testContainerMounts() throws {
        let field = "mount_namespace"
        func namespace(_ task: inout Amber_Task, _ change: (inout Amber_MountNamespace) -> Void) {
            var root = Amber_MountNamespaceMount()
            (root.kind, root.id, root.parentID, root.mountPoint, root.fsType) = (.root, 70, 47, "/", "ext4")
            (root.source, root.options) = ("/dev/vda", "rw")
            var proc = Amber_MountNamespaceMount()
            (proc.kind, proc.id, proc.parentID, proc.mountPoint, proc.fsType) = (.proc, 71, 70, "/proc", "proc")
            (proc.source, proc.options) = ("proc", "rw")
            var devpts = Amber_MountNamespaceMount()
            (devpts.kind, devpts.id, devpts.parentID, devpts.mountPoint) = (.devpts, 72, 70, "/dev/pts")
            (devpts.fsType, devpts.source, devpts.options) = ("devpts", "devpts", "rw,gid=5,mode=620,ptmxmode=666")
            var bind = Amber_MountNamespaceMount()
            (bind.kind, bind.id, bind.parentID, bind.mountPoint, bind.fsType) = (
                .internalBind, 73, 71, "/proc/sys", "proc"
            )
            (bind.source, bind.options, bind.flags, bind.bindOf, bind.bindPath) = ("proc", "rw", 0x1, 71, "sys")
            var record = Amber_MountNamespace()
            record.mounts = [root, proc, devpts, bind]
            change(&record)
            task.mountNamespace = record
        }
        try assertAccepted { namespace(&$0) { _ in } }
        try assertRejected("\(field).mounts[2].fs_type") { namespace(&$0) { $0.mounts[2].fsType = "tmpfs" } }
        try assertRejected("\(field).mounts[2].options") {
            namespace(&$0) { $0.mounts[2].options = "rw,newinstance,size=1g" }
        }
        try assertRejected("\(field).mounts[3].bind_of") { namespace(&$0) { $0.mounts[3].bindOf = 70 } }
        try assertRejected("\(field).mounts[3].bind_of") { namespace(&$0) { $0.mounts[3].bindOf = 99 } }
        try assertRejected("\(field).mounts[3].bind_of") { namespace(&$0) { $0.mounts[3].fsType = "sysfs" } }
        try assertRejected("\(field).mounts[3].bind_path") { namespace(&$0) { $0.mounts[3].bindPath = "../etc" } }
        try assertRejected("\(field).mounts[3].bind_path") { namespace(&$0) { $0.mounts[3].bindPath = "/sys" } }
        try assertRejected("\(field).mounts[1].bind_of") { namespace(&$0) { $0.mounts[1].bindPath = "sys" } }
    }
}
