import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// A tree's network namespace: what a restore without --join-ns hands to rtnetlink and
    /// writes under /proc/sys/net is a link name (not an option, no path), a veth's unicast MAC
    /// and an MTU a veth takes, an address of its family's size with a prefix that fits, a
    /// scope and a broadcast address, routes of one family on links of the namespace, and a
    /// sysctl of the fixed list amber restores with one line of printable text.
    func testNetworkNamespace() throws {
        let field = "network_namespace"
        func namespace(_ task: inout Amber_Task, _ change: (inout Amber_NetworkNamespace) -> Void) {
            var record = Amber_NetworkNamespace()
            record.inode = 4_026_532_174
            var loopback = Amber_NetworkLink()
            (loopback.name, loopback.kind, loopback.mtu, loopback.up) = ("lo", "loopback", 65536, true)
            var veth = Amber_NetworkLink()
            (veth.name, veth.kind, veth.mtu) = ("eth0", "veth", 1500)
            veth.hardwareAddress = Data([2, 0, 0, 0, 0, 1])
            record.links = [loopback, veth]
            var address = Amber_NetworkAddress()
            (address.link, address.address, address.prefixLength) = ("lo", Data([127, 0, 0, 1]), 8)
            var address6 = Amber_NetworkAddress()
            (address6.link, address6.address, address6.prefixLength) = ("eth0", Data(count: 16), 64)
            record.addresses = [address, address6]
            var sysctl = Amber_NetworkSysctl()
            (sysctl.path, sysctl.value) = ("ipv4/ip_local_port_range", "32768\t60999")
            var linkSysctl = Amber_NetworkSysctl()
            (linkSysctl.path, linkSysctl.value) = ("ipv6/conf/eth0/forwarding", "1")
            record.sysctls = [sysctl, linkSysctl]
            var route = Amber_NetworkRoute()
            (route.family, route.destination, route.destinationLength) = (2, Data([10, 80, 0, 0]), 16)
            (route.gateway, route.link, route.protocol) = (Data([10, 79, 0, 1]), "eth0", 3)
            record.routes = [route]
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
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "core/wmem_max" } }
        try assertRejected("\(field).sysctls[0].path") {
            namespace(&$0) { $0.sysctls[0].path = "netfilter/nf_log_all_netns" }
        }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "ipv4/../../kernel/x" } }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "ipv4" } }
        try assertRejected("\(field).sysctls[0].path") { namespace(&$0) { $0.sysctls[0].path = "ipv4//x" } }
        try assertRejected("\(field).sysctls[0].value") { namespace(&$0) { $0.sysctls[0].value = "1\n2" } }
        try assertRejected("\(field).unrestorable[0]") { namespace(&$0) { $0.unrestorable[0] = "" } }
        try assertRejected("\(field).links[1].mtu") { namespace(&$0) { $0.links[1].mtu = 65536 } }
        try assertRejected("\(field).links[1].mtu") { namespace(&$0) { $0.links[1].mtu = 67 } }
        try assertRejected("\(field).links[1].hardware_address") {
            namespace(&$0) { $0.links[1].hardwareAddress = Data([1, 0, 0, 0, 0, 1]) }
        }
        try assertRejected("\(field).links[1].hardware_address") {
            namespace(&$0) { $0.links[1].hardwareAddress = Data(count: 6) }
        }
        try assertRejected("\(field).links[0].hardware_address") {
            namespace(&$0) { $0.links[0].hardwareAddress = Data([2, 0, 0, 0, 0, 1]) }
        }
        try assertRejected("\(field).addresses[0].scope") { namespace(&$0) { $0.addresses[0].scope = 100 } }
        try assertRejected("\(field).addresses[1].broadcast") {
            namespace(&$0) { $0.addresses[1].broadcast = Data([10, 0, 0, 255]) }
        }
        try assertRejected("\(field).sysctls[0].path") {
            namespace(&$0) { $0.sysctls[0].path = "ipv4/conf/all/disable_policy" }
        }
        try assertRejected("\(field).sysctls[1].path") {
            namespace(&$0) { $0.sysctls[1].path = "ipv6/conf/eth1/forwarding" }
        }
        try assertRejected("\(field).routes[0].family") { namespace(&$0) { $0.routes[0].family = 17 } }
        try assertRejected("\(field).routes[0].gateway") {
            namespace(&$0) { $0.routes[0].gateway = Data(count: 16) }
        }
        try assertRejected("\(field).routes[0].destination_length") {
            namespace(&$0) { $0.routes[0].destinationLength = 33 }
        }
        try assertRejected("\(field).routes[0].link") { namespace(&$0) { $0.routes[0].link = "eth1" } }
        try assertRejected("\(field).routes[0].protocol") { namespace(&$0) { $0.routes[0].protocol = 2 } }
        try assertRejected("\(field).routes[0].flags") { namespace(&$0) { $0.routes[0].flags = 1 } }
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
