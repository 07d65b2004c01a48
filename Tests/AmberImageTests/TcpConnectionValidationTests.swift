import AmberImage
import Foundation
import XCTest

extension TaskValidationTests {
    /// Established TCP connections: addresses of the family's size, ports of a connection, no
    /// more unsent bytes than the send queue holds, window scales up to 14 (0 without scaling),
    /// an MSS, a timestamp only with timestamps, options amber sets again, each once, and a lock
    /// table of amber's own: a hostile image must not have the restore delete another table.
    func testTcpConnection() throws {
        let field = "files.descriptions[1].tcp_connection"
        func connection(
            _ task: inout Amber_Task, flags: UInt32 = 0o4002, _ change: (inout Amber_TcpConnection) -> Void
        ) {
            var record = Amber_TcpConnection()
            record.family = 2
            (record.localAddress, record.localPort) = (Data([127, 0, 0, 1]), 8000)
            (record.peerAddress, record.peerPort) = (Data([127, 0, 0, 1]), 40000)
            (record.sendQueue, record.unsentLength, record.receiveQueue) = (Data([1, 2, 3]), 2, Data([4]))
            (record.mss, record.windowScaling, record.sendWindowScale, record.receiveWindowScale) = (65483, true, 7, 7)
            (record.timestamps, record.timestamp, record.sack) = (true, 12345, true)
            record.lockTable = "amber-lock-4242"
            var option = Amber_InetSocketOption()
            (option.level, option.name, option.value) = (6, 1, Data([1, 0, 0, 0]))
            record.options = [option]
            change(&record)
            task.files.descriptions[1].flags = flags
            task.files.descriptions[1].offset = 0
            task.files.descriptions[1].tcpConnection = record
        }
        try assertAccepted { connection(&$0) { _ in } }
        try assertAccepted {
            connection(&$0) {
                $0.family = 10
                ($0.localAddress, $0.peerAddress, $0.scopeID) = (Data(count: 16), Data(count: 16), 2)
            }
        }
        try assertRejected("files.descriptions[1].flags") { connection(&$0, flags: 0o2002) { _ in } }
        try assertRejected("\(field).family") { connection(&$0) { $0.family = 1 } }
        try assertRejected("\(field).local_address") { connection(&$0) { $0.localAddress = Data(count: 16) } }
        try assertRejected("\(field).peer_address") { connection(&$0) { $0.peerAddress = Data() } }
        try assertRejected("\(field).local_port") { connection(&$0) { $0.localPort = 0 } }
        try assertRejected("\(field).peer_port") { connection(&$0) { $0.peerPort = 65536 } }
        try assertRejected("\(field).scope_id") { connection(&$0) { $0.scopeID = 1 } }
        try assertRejected("\(field).unsent_length") { connection(&$0) { $0.unsentLength = 4 } }
        try assertRejected("\(field).send_window_scale") { connection(&$0) { $0.sendWindowScale = 15 } }
        try assertRejected("\(field).send_window_scale") { connection(&$0) { $0.windowScaling = false } }
        try assertRejected("\(field).mss") { connection(&$0) { $0.mss = 0 } }
        try assertRejected("\(field).timestamp") { connection(&$0) { $0.timestamps = false } }
        try assertRejected("\(field).send_buffer") { connection(&$0) { $0.bufferLock = 4 } }
        for table in ["", "filter", "amber-lock-", "amber-lock-12a", "amber-lock-1; delete table inet filter"] {
            try assertRejected("\(field).lock_table") { connection(&$0) { $0.lockTable = table } }
        }
        try assertRejected("\(field).options[1]") { connection(&$0) { $0.options.append($0.options[0]) } }
        try assertRejected("\(field).options[0]") { connection(&$0) { $0.options[0].name = 19 } }
    }
}
