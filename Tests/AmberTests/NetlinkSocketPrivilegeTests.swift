import AmberImage
import Foundation
import XCTest

@testable import Amber

/// What making a netlink socket again asks of the restorer beyond what its task could do.
final class NetlinkSocketPrivilegeTests: XCTestCase {
    private let restorer = ImagePrivileges.Baseline(
        credentials: Amber_Credentials(), limits: [:], nice: 0, oomScoreAdj: 0, pipeMaximumCapacity: 1 << 20)

    private func asks(_ change: (inout Amber_NetlinkSocket) -> Void) -> [String] {
        var record = Amber_NetlinkSocket()
        (record.type, record.protocol, record.portID) = (3, 0, 4242)
        change(&record)
        return NetlinkSocketKind.privilegedAsks(record, owner: Amber_Credentials(), restorer: restorer).map(\.what)
    }

    func testRouteGroupsAskOnlyForMulticastRouting() {
        XCTAssertEqual(asks { $0.groups = [1, 5, 33] }, [])
        XCTAssertEqual(
            asks { $0.groups = [1, 30, 31] }, ["a netlink socket of NETLINK_ROUTE (0) in the multicast groups [30, 31]"]
        )
    }

    func testSockDiagGroupsAsk() {
        XCTAssertEqual(
            asks { ($0.protocol, $0.groups) = (4, [1]) },
            ["a netlink socket of NETLINK_SOCK_DIAG (4) in the multicast groups [1]"])
    }

    func testPriorityBufferAndOwnerAsk() {
        var priority = Amber_InetSocketOption()
        (priority.level, priority.name, priority.value) = (1, 12, withUnsafeBytes(of: Int32(7)) { Data($0) })
        var buffer = Amber_InetSocketOption()
        (buffer.level, buffer.name, buffer.value) = (1, 8, withUnsafeBytes(of: Int32.max) { Data($0) })
        let found = asks {
            $0.options = [buffer, priority]
            $0.ownerUid = 1000
        }
        XCTAssertEqual(found.count, 3, "\(found)")
        XCTAssertTrue(found[0].contains("SO_RCVBUF"), found[0])
        XCTAssertTrue(found[1].contains("SO_PRIORITY 7"), found[1])
        XCTAssertTrue(found[2].contains("owned by uid 1000"), found[2])
    }
}
