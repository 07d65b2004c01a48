import Glibc
import SystemPackage

/// One netlink request and its answer (linux/netlink.h), on a socket of the caller's.
enum NetlinkExchange {
    /// NLM_F_REQUEST, which every request carries.
    private static let request: UInt16 = 0x1
    /// NLMSG_ERROR (an acknowledgement when its code is 0), NLMSG_DONE.
    private static let error: UInt16 = 2, done: UInt16 = 3

    /// Sends a request of `type` and `flags` with `payload`, as message `sequence`, on `fd`,
    /// and hands `each` the type and payload of every answer to it until NLMSG_DONE, an
    /// acknowledgement, or `each` returning false (a request for one object has one answer and
    /// no NLMSG_DONE). An error in the answer is thrown, named by `what`.
    static func run(
        fd: Int32, type: UInt16, flags: UInt16, sequence: UInt32, payload: [UInt8], what: String,
        _ each: (UInt16, ArraySlice<UInt8>) -> Bool
    ) throws(LinuxError) {
        var message = [UInt8]()
        message.append(le: UInt32(16 + payload.count))
        message.append(le: type)
        message.append(le: request | flags)
        message.append(le: sequence)
        message.append(le: UInt32(0))
        message += payload
        _ = try libcResult("send \(what)") { message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } }
            .get()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try libcResult("recv \(what)") {
                buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            }.get()
            var offset = 0
            while offset + 16 <= count {
                let length = Int(buffer.le(UInt32.self, at: offset))
                guard length >= 16, offset + length <= count else {
                    throw LinuxError(.ioError, "answer to \(what) with a message of \(length) bytes")
                }
                let kind = buffer.le(UInt16.self, at: offset + 4)
                let answered = buffer.le(UInt32.self, at: offset + 8)
                let body = buffer[(offset + 16)..<(offset + length)]
                offset += (length + 3) & ~3
                guard answered == sequence else { continue }
                switch kind {
                case error:
                    let code = Int32(bitPattern: body.le(UInt32.self, at: body.startIndex))
                    if code != 0 { throw LinuxError(Errno(rawValue: -code), what) }
                    return
                case done: return
                default: guard each(kind, body) else { return }
                }
            }
        }
    }
}

extension [UInt8] {
    mutating func append<T: FixedWidthInteger>(le value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension Collection where Element == UInt8, Index == Int {
    /// The little-endian integer at `offset`.
    func le<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for byte in (0..<MemoryLayout<T>.size).reversed() { value = value << 8 | T(self[offset + byte]) }
        return value
    }
}
