// restore --lazy-pages: the tree runs before its memory is in, and ends with the memory a
// plain restore gives; a page that cannot be delivered kills the tree.

import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class LazyPagesTests: ScenarioTestCase {
    /// Dump (killing it), restore with --lazy-pages --detach (which returns once every page is
    /// in), SIGTERM, PASS: the scenario acted on its memory as soon as it ran again.
    private func runLazily(_ scenario: Scenario, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        let image = try dumpExpectingSuccess(p, file: file, line: line)
        try restoreDetachedExpectingSuccess(p, from: image, options: ["--lazy-pages"], file: file, line: line)
        assertNoUserfaultfd(p.pid, file: file, line: line)
        try terminateAndExpectPass(p, "after a lazy restore", file: file, line: line)
    }

    /// Once every page is in, nothing of the userfaultfd is left: no descriptor, no area
    /// registered (smaps's VmFlags um, uw, ui).
    private func assertNoUserfaultfd(_ pid: pid_t, file: StaticString, line: UInt) {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        for fd in fds {
            let target = Sys.readlink("/proc/\(pid)/fd/\(fd)") ?? ""
            XCTAssertFalse(target.contains("userfaultfd"), "fd \(fd) is \(target)", file: file, line: line)
        }
        let smaps = String(decoding: Sys.readFile("/proc/\(pid)/smaps") ?? [], as: UTF8.self)
        for flags in smaps.split(separator: "\n") where flags.hasPrefix("VmFlags:") {
            let words = flags.split(separator: " ")
            XCTAssertFalse(
                words.contains("um") || words.contains("uw") || words.contains("ui"),
                "an area is still registered: \(flags)", file: file, line: line)
        }
    }

    func testProcessChecksItsMemoryAtOnce() throws { try runLazily(.lazyPages([])) }
    func testThreadsFaultAtOnce() throws { try runLazily(.lazyPages(["--threads"])) }
    func testTree() throws { try runLazily(.lazyPages(["--tree"])) }
    func testForkRightAfterRestore() throws { try runLazily(.lazyPages(["--fork"])) }
    func testDontNeedReadsZeros() throws { try runLazily(.lazyPages(["--dontneed"])) }
    /// An area split by mprotect while its pages are missing: each part gets its own pages.
    func testAreaSplitWhilePagesAreMissing() throws { try runLazily(.lazyPages(["--split"])) }
    func testKernelReadsAndWritesMissingPages() throws { try runLazily(.lazyPages(["--kernel-read"])) }
    /// A thread waits for a priority-inheritance mutex on a page not yet in: its futex word
    /// is written before the tree runs.
    func testPriorityInheritanceMutexWaiter() throws { try runLazily(.lazyPages(["--pi-waiter"])) }
    /// Every kind of private area (memory.c): the lazy ones and those filled before the tree runs.
    /// Threads exit holding robust mutexes soon after the restore: the pages the kernel walks
    /// and writes for them (owner-died, the cleared TID) were written before the tree ran.
    func testThreadsExitingHoldingRobustMutexes() throws { try runLazily(.cowWriterRobustExits) }
    func testEveryKindOfArea() throws { try runLazily(.memory) }
    func testThreadsScenario() throws { try runLazily(.threads) }
    func testTreeScenario() throws { try runLazily(.tree) }
    /// Shared anonymous memory and unnamed files' mapped contents: their page files, not served
    /// lazily, are checked whole before the tree runs.
    func testSharedMemoryScenario() throws { try runLazily(.sharedMemory) }
    func testMappedUnnamedScenario() throws { try runLazily(.mappedUnnamed) }

    /// A chunk of a page file changed after the dump: the tree is killed once the page is due,
    /// amber exits 7 naming the file, and nothing is left behind.
    func testCorruptedPageFileKillsTheTree() throws {
        _ = try requireAmber()
        let p = try start(.lazyPages([]))
        let image = try dumpExpectingSuccess(p)
        let pages = listing(image).filter { $0.hasPrefix("pages-") }
        func size(_ name: String) -> Int {
            var status = stat()
            return stat(image + "/" + name, &status) == 0 ? Int(status.st_size) : 0
        }
        let largest = try XCTUnwrap(pages.max { size($0) < size($1) })
        let fd = open(image + "/" + largest, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var byte: UInt8 = 0x5A
        XCTAssertEqual(pwrite(fd, &byte, 1, off_t(size(largest) / 2)), 1)
        close(fd)
        try expectRestoreRefused(
            image, pid: p.pid, exitCode: 7, mentions: [largest, "killed"], options: ["--lazy-pages"])
    }
}
