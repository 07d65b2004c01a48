// Process trees, threads and PID namespaces, dumped (killing them), restored with --detach,
// then checked. These need amber's support for process trees, threads and PID namespaces;
// their plain runs are in PlainScenarioTests.

import XCTest

final class TreeScenarioTests: ScenarioTestCase {
    func testTree() throws { try runDumped(.tree) }
    func testZombies() throws { try runDumped(.zombies) }
    func testForker() throws { try runDumped(.forker) }
    func testThreads() throws { try runDumped(.threads) }
    func testFutexWait() throws { try runDumped(.futexWait) }
    func testPidNamespaces() throws { try runDumped(.pidns) }
    func testPidNamespaceReaper() throws { try runDumped(.pidnsReaper) }
}
