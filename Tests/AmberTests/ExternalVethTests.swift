import Testing

@testable import Amber

/// `restore --external veth[INSIDE]:OUTSIDE[@BRIDGE]`, CRIU's syntax: each name a link name.
@Suite struct ExternalVethTests {
    @Test func parsesInsideOutsideAndBridge() {
        let veth = ExternalVeth(argument: "veth[eth0]:host-a@br0")
        #expect(veth?.inside == "eth0")
        #expect(veth?.outside == "host-a")
        #expect(veth?.bridge == "br0")
        #expect(veth?.argument == "veth[eth0]:host-a@br0")
        let alone = ExternalVeth(argument: "veth[eth0]:host-a")
        #expect(alone?.outside == "host-a")
        #expect(alone?.bridge == nil)
    }

    @Test func refusesWhatIsNotOne() {
        for argument in [
            "veth[eth0]", "veth[]:x", "veth[eth0]:", "veth[eth0]:x@", "pipe:[1]", "veth[eth0]:-help",
            "veth[eth0]:../x", "veth[eth0]:a-name-too-long-x", "veth[eth0]:x@br 0", "veth[eth0]x",
        ] {
            #expect(ExternalVeth(argument: argument) == nil, "\(argument)")
        }
    }
}
