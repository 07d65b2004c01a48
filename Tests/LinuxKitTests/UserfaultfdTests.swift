import Glibc
import Testing

@testable import LinuxKit

/// The userfaultfd and PAGEMAP_SCAN wrappers on this process's own memory.
@Suite struct UserfaultfdTests {
    private static let page = 4096

    private static func makeUserfaultfd() throws -> Userfaultfd {
        try Userfaultfd(flags: UInt64(O_CLOEXEC | O_NONBLOCK) | UserfaultfdFlags.userModeOnly)
    }

    private static func mapPages(_ count: Int) throws -> (UnsafeMutableRawPointer, Range<UInt64>) {
        let base = try #require(
            mmap(nil, count * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(base != MAP_FAILED)
        let start = UInt64(UInt(bitPattern: base))
        return (base, start..<start + UInt64(count * page))
    }

    @Test func asynchronousWriteProtectionTellsThePagesWrittenSince() throws {
        let uffd = try Self.makeUserfaultfd()
        try uffd.negotiate([.writeProtectAsync, .writeProtectUnpopulated])
        let (base, range) = try Self.mapPages(16)
        defer { munmap(base, 16 * Self.page) }
        for index in 0..<8 { base.storeBytes(of: UInt8(index + 1), toByteOffset: index * Self.page, as: UInt8.self) }
        try uffd.register(range, .writeProtect)
        let pageMap = try PageMap(pid: getpid())
        _ = try pageMap.scan(
            start: range.lowerBound, end: range.upperBound, required: [.writeProtectAllowed],
            flags: [.writeProtectMatching, .checkWriteProtectAsync])
        base.storeBytes(of: 0xAA, toByteOffset: 3 * Self.page, as: UInt8.self)
        base.storeBytes(of: 0xBB, toByteOffset: 12 * Self.page, as: UInt8.self)
        let written = try pageMap.scan(
            start: range.lowerBound, end: range.upperBound, required: [.written], flags: [.checkWriteProtectAsync])
        let third = range.lowerBound + UInt64(3 * Self.page)
        let twelfth = range.lowerBound + UInt64(12 * Self.page)
        #expect(written == [third..<third + UInt64(Self.page), twelfth..<twelfth + UInt64(Self.page)])
        #expect(base.load(fromByteOffset: 3 * Self.page, as: UInt8.self) == 0xAA)
    }

    @Test func missingPagesAreFilledByCopy() throws {
        let uffd = try Self.makeUserfaultfd()
        try uffd.negotiate([])
        let (base, range) = try Self.mapPages(4)
        defer { munmap(base, 4 * Self.page) }
        try uffd.register(range, .missing)
        let source = [UInt8](repeating: 0x5A, count: Self.page)
        let placed = try source.withUnsafeBytes { try uffd.copy($0, to: range.lowerBound + UInt64(Self.page)) }
        #expect(placed == Self.page)
        #expect(base.load(fromByteOffset: Self.page + 100, as: UInt8.self) == 0x5A)
        #expect(throws: LinuxError.self) {
            try source.withUnsafeBytes { _ = try uffd.copy($0, to: range.lowerBound + UInt64(Self.page)) }
        }
        #expect(try uffd.events().isEmpty)
        try uffd.unregister(range)
    }
}
