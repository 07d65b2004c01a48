// Netlink sockets of NETLINK_ROUTE and NETLINK_SOCK_DIAG, dumped and restored, and a restore
// that finds a port id taken.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

extension Scenario {
    /// NETLINK_ROUTE sockets bound by the kernel and to a port id of their own, in groups, and a
    /// NETLINK_SOCK_DIAG socket not bound yet.
    static let netlinkSockets = Scenario(name: "netlink_sockets")
    /// The same in a network namespace of its own.
    static let netlinkSocketsOwnNamespace = Scenario(name: "netlink_sockets", args: ["--own-namespace"])
    /// A netlink socket amber does not restore: an answer queued, connected, another protocol.
    static func unsupportedNetlink(_ flag: String) -> Scenario { Scenario(name: "unsupported_netlink", args: [flag]) }
}

final class NetlinkSocketTests: ScenarioTestCase {
    /// The restore binds each netlink socket to its port id again: while another NETLINK_ROUTE
    /// socket has it, the restore fails naming it, leaves no process and no change to the image;
    /// once it is free it succeeds.
    func testRestoreFailsWhileThePortIDIsTaken() throws {
        _ = try requireAmber()
        let p = try start(.netlinkSockets)
        let image = try dumpExpectingSuccess(p)
        do {
            let taker = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            XCTAssertGreaterThanOrEqual(taker, 0)
            defer { close(taker) }
            // struct sockaddr_nl: family, pad, port id, groups.
            var address: (UInt16, UInt16, UInt32, UInt32) = (UInt16(AF_NETLINK), 0, UInt32(p.pid), 0)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(taker, $0, 12) }
            }
            guard bound == 0 else { throw RunnerError("cannot take netlink port id \(p.pid)") }
            try expectRestoreRefused(
                image, pid: p.pid, exitCode: AmberExit.restoreFailed, mentions: ["port id \(p.pid)", "NETLINK_ROUTE"])
        }
        try restoreDetachedExpectingSuccess(p, from: image)
        try terminateAndExpectPass(p, "after the restore with the port id free")
    }
}
