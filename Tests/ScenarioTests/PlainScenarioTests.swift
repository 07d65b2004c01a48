// Every scenario must pass without dump and restore: this catches scenarios that would
// pass for the wrong reason. These tests do not need amber.

import XCTest

final class PlainScenarioTests: ScenarioTestCase {
    func testCounter() throws { try runPlain(.counter) }
    func testMemory() throws { try runPlain(.memory) }
    func testFPU() throws { try runPlain(.fpu) }
    func testSignals() throws { try runPlain(.signals) }
    func testRestartSleep() throws { try runPlain(.restartSleep) }
    func testRestartSleepAbsoluteFirst() throws { try runPlain(.restartSleepAbsoluteFirst) }
    func testRestartRead() throws { try runPlain(.restartRead) }
    func testFiles() throws { try runPlain(.files) }
    func testEnvironment() throws { try runPlain(.environment) }
    func testUnsupportedSocket() throws { try runPlain(.unsupportedSocket) }
    func testUnsupportedSharedMemory() throws { try runPlain(.unsupportedSharedMemory) }
    func testSecondThread() throws { try runPlain(.secondThread) }
    func testChildPause() throws { try runPlain(.childPause) }

    /// The verdict really depends on the checks: a scenario run without what it needs fails.
    func testEnvironmentFailsWithoutItsArguments() throws {
        var bare = Scenario.environment
        bare.args = []
        bare.env = [:]
        let p = try start(bare)
        kill(p.pid, SIGTERM)
        XCTAssertTrue(waitForEnd(p, timeout: Self.verdictTimeout), "no verdict; \(p.diagnostics)")
        XCTAssertEqual(p.exitStatus, .exited(1))
        XCTAssertTrue(p.verdict?.hasPrefix("FAIL: ") ?? false, "verdict: \(p.verdict ?? "none")")
    }
}
