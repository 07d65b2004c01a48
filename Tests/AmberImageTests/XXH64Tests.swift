import CChecksum
import XCTest

/// Vectors computed with Debian's libxxhash 0.8.1 (XXH64, seed 0).
final class XXH64Tests: XCTestCase {
    private func xxh64(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { amber_xxh64($0.baseAddress, $0.count) }
    }

    /// 1 MiB from a 64-bit LCG, the top byte of each state.
    private func lcgBytes(count: Int) -> [UInt8] {
        var state: UInt64 = 0x12345
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(state >> 56)
        }
    }

    func testKnownVectors() {
        let vectors: [(String, UInt64)] = [
            ("", 0xef46_db37_51d8_e999),
            ("a", 0xd24e_c4f1_a98c_6e5b),
            ("abc", 0x44bc_2cf5_ad77_0999),
            ("message digest", 0x066e_d728_fcee_b3be),
            ("abcdefghijklmnopqrstuvwxyz", 0xcfe1_f278_fa89_835c),
            ("The quick brown fox jumps over the lazy dog", 0x0b24_2d36_1fda_71bc),
            (String(repeating: "1234567890", count: 8), 0xe04a_477f_19ee_145d),
        ]
        for (input, expected) in vectors {
            XCTAssertEqual(xxh64(Array(input.utf8)), expected, "\"\(input)\"")
        }
        XCTAssertEqual(xxh64(lcgBytes(count: 1 << 20)), 0x9203_597e_cbb9_656a)
    }

    /// Any split of the input into updates gives the one-shot hash, including
    /// splits that leave 1 to 31 bytes buffered between calls.
    func testStreamingMatchesOneShot() {
        let bytes = lcgBytes(count: 4099)
        for chunk in [1, 3, 7, 31, 32, 33, 64, 100, 4096] {
            var state = amber_xxh64_state()
            amber_xxh64_reset(&state)
            bytes.withUnsafeBytes { buffer in
                var start = 0
                while start < buffer.count {
                    let end = min(start + chunk, buffer.count)
                    amber_xxh64_update(&state, buffer.baseAddress! + start, end - start)
                    start = end
                }
            }
            XCTAssertEqual(amber_xxh64_digest(&state), xxh64(bytes), "chunks of \(chunk)")
        }
        for length in 0..<70 {
            var state = amber_xxh64_state()
            amber_xxh64_reset(&state)
            bytes.withUnsafeBytes { amber_xxh64_update(&state, $0.baseAddress, length) }
            XCTAssertEqual(amber_xxh64_digest(&state), xxh64(Array(bytes[..<length])), "length \(length)")
        }
    }
}
