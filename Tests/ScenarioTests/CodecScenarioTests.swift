// dump --compress and --encrypt-key: the memory scenario comes back bit for bit (it checks every
// kind of private area itself) from a compressed, an encrypted and a compressed and encrypted image.

import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class CodecScenarioTests: ScenarioTestCase {
    /// A key file of 32 random bytes, mode 0600.
    private func keyFile() throws -> String {
        let path = try newDirectory("key") + "/key"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw RunnerError("create \(path): \(Sys.errnoString())") }
        defer { close(fd) }
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255) }
        guard write(fd, bytes, 32) == 32 else {
            throw RunnerError("write \(path): \(Sys.errnoString())")
        }
        return path
    }

    /// Dump with `dumpOptions` (killing the scenario), verify, restore --detach with `readOptions`, SIGTERM, PASS.
    /// An image read with options (a key) is first refused by a restore without them, which names the key.
    private func runDumped(
        _ scenario: Scenario, dumpOptions: [String], readOptions: [String] = [], lazy: Bool = false,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        _ = try requireAmber()
        let p = try start(scenario, file: file, line: line)
        let image = try newDirectory("image")
        let dump = try amber(["dump", "-t", "\(p.pid)", "-D", image] + dumpOptions, reaping: [p])
        XCTAssertEqual(dump.status, .exited(0), "dump \(dumpOptions): \(dump.summary)", file: file, line: line)
        let verify = try amber(["verify", image] + readOptions)
        XCTAssertEqual(verify.status, .exited(0), "verify: \(verify.summary)", file: file, line: line)
        if !readOptions.isEmpty {
            try expectRestoreRefused(
                image, pid: p.pid, exitCode: 7, mentions: ["the image is encrypted: give --encrypt-key"])
        }
        try restoreDetachedExpectingSuccess(
            p, from: image, options: readOptions + (lazy ? ["--lazy-pages"] : []), file: file, line: line)
        try terminateAndExpectPass(p, "after a dump with \(dumpOptions) and restore", file: file, line: line)
    }

    func testMemoryCompressed() throws { try runDumped(.memory, dumpOptions: ["--compress"]) }

    func testMemoryEncrypted() throws {
        let key = try keyFile()
        try runDumped(.memory, dumpOptions: ["--encrypt-key", key], readOptions: ["--encrypt-key", key])
    }

    /// Both, restored lazily: pages come from compressed, sealed chunks on first touch.
    func testMemoryCompressedAndEncryptedLazily() throws {
        let key = try keyFile()
        try runDumped(
            .memory, dumpOptions: ["--compress", "--encrypt-key", key], readOptions: ["--encrypt-key", key], lazy: true)
    }
}
