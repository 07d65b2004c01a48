import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// A tree's network namespace: what a restore without --join-ns hands to `ip` and writes
    /// under /proc/sys/net is a link name (not an option, no path), an address of its family's
    /// size with a prefix that fits, and a sysctl path under net.ipv4 or net.ipv6 with one line
    /// of printable text.
    func testNetworkNamespace() throws {
        let field = "network_namespace"
        func namespace(_ task: inout Amber_Task, _ change: (inout Amber_NetworkNamespace) -> Void) {
            var record = Amber_NetworkNamespace()
            record.inode = 4_026_532_174
            var loopback = Amber_NetworkLink()
            (loopback.name, loopback.kind, loopback.mtu, loopback.up) = ("lo", "loopback", 65536, true)
            var veth = Amber_NetworkLink()
            (veth.name, veth.kind, veth.mtu) = ("eth0", "veth", 1500)
            record.links = [loopback, veth]
            var address = Amber_NetworkAddress()
            (address.link, address.address, address.prefixLength) = ("lo", Data([127, 0, 0, 1]), 8)
            var address6 = Amber_NetworkAddress()
            (address6.link, address6.address, address6.prefixLength) = ("eth0", Data(count: 16), 64)
            record.addresses = [address, address6]
            var sysctl = Amber_NetworkSysctl()
            (sysctl.path, sysctl.value) = ("ipv4/ip_local_port_range", "32768\t60999")
            record.sysctls = [sysctl]
            record.unrestorable = ["the nftables table inet filter"]
            change(&record)
            task.networkNamespace = record
        }
        try assertAccepted { namespace(&$0) { _ in } }
        try assertRejected("\(field).links[1].name") { namespace(&$0) { $0.links[1].name = "lo" } }
        try assertRejected("\(field).links[1].name") { namespace(&$0) { $0.links[1].name = "-help" } }
        try assertRejected("\(field).links[1].name") { namespace(&$0) { $0.links[1].name = "../etc" } }
        try assertRejected("\(field).links[1].name") { namespace(&$0) { $0.links[1].name = "a-name-too-long-x" } }
        try assertRejected("\(field).links[1].kind") { namespace(&$0) { $0.links[1].kind = "veth peer" } }
        try assertRejected("\(field).links[0].mtu") { namespace(&$0) { $0.links[0].mtu = UInt32.max } }
        try assertRejected("\(field).addresses[0].link") { namespace(&$0) { $0.addresses[0].link = "eth1" } }
        try assertRejected("\(field).addresses[0].address") {
            namespace(&$0) { $0.addresses[0].address = Data(count: 5) }
        }
        try assertRejected("\(field).addresses[0].prefix_length") {
            namespace(&$0) { $0.addresses[0].prefixLength = 33 }
        }
        try assertRejected("\(field).addresses[1].prefix_length") {
            namespace(&$0) { $0.addresses[1].prefixLength = 129 }
        }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "core/somaxconn" } }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "ipv4/../../kernel/x" } }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "ipv4" } }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "ipv4//x" } }
        try assertRejected("\(field).sysctls[0].value") { namespace(&$0) { $0.sysctls[0].value = "1\n2" } }
        try assertRejected("\(field).unrestorable[0]") { namespace(&$0) { $0.unrestorable[0] = "" } }
    }
}

extension CrossRecordTests {
    /// Only the root's record says which network namespace the tree is in.
    func testNetworkNamespaceOfAChildIsRefused() throws {
        let root = Fixture.task()
        var child = Fixture.task(pid: 4243)
        child.ppid = 4242
        var loopback = Amber_NetworkLink()
        (loopback.name, loopback.kind, loopback.mtu) = ("lo", "loopback", 65536)
        child.networkNamespace.links = [loopback]
        let directory = path("image-network-namespace")
        try Fixture.writeImage(at: directory, tasks: [root, child], inventory: Fixture.inventory(rootPID: 4242))
        let reader = try ImageReader(directory: directory)
        XCTAssertNoThrow(try reader.task(pid: 4243))
        let error = imageError { _ = try reader.tasks() }
        XCTAssertEqual(error?.kind, .invalid)
        XCTAssertEqual(error?.file, "task-4243.pb")
        XCTAssertTrue(error?.detail.contains("only the root's record") == true, "\(String(describing: error))")
    }
}
