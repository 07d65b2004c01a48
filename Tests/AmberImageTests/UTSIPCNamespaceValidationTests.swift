import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// A tree's UTS and IPC namespaces: names sethostname takes (64 bytes, no NUL), and IPC
    /// sysctls of the fixed list amber restores, once each, with numbers for values.
    func testUTSAndIPCNamespaces() throws {
        func namespaces(
            _ task: inout Amber_Task, _ change: (inout Amber_UtsNamespace, inout Amber_IpcNamespace) -> Void
        ) {
            var uts = Amber_UtsNamespace()
            (uts.inode, uts.hostname, uts.domainname) = (4_026_532_174, "box", "example")
            var ipc = Amber_IpcNamespace()
            var sysctl = Amber_IpcSysctl()
            (sysctl.path, sysctl.value) = ("kernel/sem", "32000\t1024000000\t500\t32000")
            var nextID = Amber_IpcSysctl()
            (nextID.path, nextID.value) = ("kernel/msg_next_id", "-1")
            ipc.sysctls = [sysctl, nextID]
            change(&uts, &ipc)
            (task.utsNamespace, task.ipcNamespace) = (uts, ipc)
        }
        try assertAccepted { namespaces(&$0) { _, _ in } }
        try assertRejected("uts_namespace.hostname") {
            namespaces(&$0) { uts, _ in uts.hostname = String(repeating: "h", count: 65) }
        }
        try assertRejected("uts_namespace.domainname") { namespaces(&$0) { uts, _ in uts.domainname = "a\0b" } }
        try assertRejected("ipc_namespace.sysctls[0].path") {
            namespaces(&$0) { _, ipc in ipc.sysctls[0].path = "kernel/../../etc/passwd" }
        }
        try assertRejected("ipc_namespace.sysctls[1].path") {
            namespaces(&$0) { _, ipc in ipc.sysctls[1].path = "kernel/sem" }
        }
        try assertRejected("ipc_namespace.sysctls[0].value") {
            namespaces(&$0) { _, ipc in ipc.sysctls[0].value = "1\n2" }
        }
        try assertRejected("ipc_namespace.sysctls[0].value") { namespaces(&$0) { _, ipc in ipc.sysctls[0].value = "" } }
    }
}

extension CrossRecordTests {
    /// Only the root's record says which UTS and IPC namespaces the tree is in.
    func testUTSNamespaceOfAChildIsRefused() throws {
        let root = Fixture.task()
        var child = Fixture.task(pid: 4243)
        child.ppid = 4242
        child.utsNamespace.hostname = "box"
        let directory = path("image-uts-namespace")
        try Fixture.writeImage(at: directory, tasks: [root, child], inventory: Fixture.inventory(rootPID: 4242))
        let reader = try ImageReader(directory: directory)
        let error = imageError { _ = try reader.tasks() }
        XCTAssertEqual(error?.kind, .invalid)
        XCTAssertEqual(error?.file, "task-4243.pb")
        XCTAssertTrue(error?.detail.contains("only the root's record") == true, "\(String(describing: error))")
    }
}
