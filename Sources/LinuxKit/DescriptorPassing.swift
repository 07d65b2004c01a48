import Glibc
import SystemPackage

/// Descriptors passed over an AF_UNIX datagram socket in SCM_RIGHTS messages: the restorer
/// sends many of its descriptors at once, and one recvmsg injected into a task installs them
/// all, each at the lowest number free there, in the order sent (unix(7)).
public enum DescriptorPassing {
    /// The most descriptors one message carries (SCM_MAX_FD).
    public static let maximumPerMessage = 253
    /// recvmsg's flag that sets close-on-exec on every descriptor received.
    public static let closeOnExecFlag: UInt64 = 0x4000_0000  // MSG_CMSG_CLOEXEC

    private static let socketLevel: Int32 = 1  // SOL_SOCKET
    private static let rightsType: Int32 = 1  // SCM_RIGHTS
    /// struct cmsghdr on x86_64: cmsg_len (size_t), cmsg_level, cmsg_type (int).
    private static let controlHeaderSize = 16

    /// A connected pair of datagram sockets, close-on-exec: one end stays ours, the other is
    /// given to the task.
    public static func socketPair() throws(LinuxError) -> (ours: FileDescriptor, theirs: FileDescriptor) {
        var ends: [Int32] = [-1, -1]
        _ = try libcResult("socketpair(AF_UNIX, SOCK_DGRAM)") {
            socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends)
        }.get()
        return (FileDescriptor(rawValue: ends[0]), FileDescriptor(rawValue: ends[1]))
    }

    /// The size of the control message carrying `count` descriptors (CMSG_SPACE).
    public static func controlSize(count: Int) -> Int { (controlHeaderSize + 4 * count + 7) & ~7 }

    /// Sends one byte and `descriptors` (at most `maximumPerMessage`) over `socket`.
    public static func send(_ descriptors: [Int32], over socket: FileDescriptor) throws(LinuxError) {
        var control = [UInt8](repeating: 0, count: controlSize(count: descriptors.count))
        control.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: controlHeaderSize + 4 * descriptors.count, toByteOffset: 0, as: Int.self)
            bytes.storeBytes(of: socketLevel, toByteOffset: 8, as: Int32.self)
            bytes.storeBytes(of: rightsType, toByteOffset: 12, as: Int32.self)
            for (index, descriptor) in descriptors.enumerated() {
                bytes.storeBytes(of: descriptor, toByteOffset: controlHeaderSize + 4 * index, as: Int32.self)
            }
        }
        var byte: UInt8 = 0
        let sent = withUnsafeMutablePointer(to: &byte) { bytePointer in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: UnsafeMutableRawPointer(bytePointer), iov_len: 1)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var message = msghdr()
                    message.msg_iov = vectorPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    return sendmsg(socket.rawValue, &message, Int32(MSG_NOSIGNAL))
                }
            }
        }
        guard sent == 1 else { throw LinuxError.current("sendmsg of \(descriptors.count) descriptors") }
    }

    /// What recvmsg needs in the task's memory to take one message of up to `count`
    /// descriptors: a msghdr, one iovec, a byte and the control buffer, laid out from `base`.
    public struct RemoteReceive {
        public let count: Int
        public let base: UInt64
        public static func size(count: Int) -> Int { 56 + 16 + 8 + DescriptorPassing.controlSize(count: count) }
        public var messageAddress: UInt64 { base }
        private var vectorAddress: UInt64 { base + 56 }
        private var byteAddress: UInt64 { base + 72 }
        private var controlAddress: UInt64 { base + 80 }

        public init(count: Int, base: UInt64) {
            self.count = count
            self.base = base
        }

        /// The bytes to place at `base` before the call: struct msghdr (56 bytes on x86_64),
        /// struct iovec, the byte, an empty control buffer.
        public var bytes: [UInt8] {
            var bytes = [UInt8](repeating: 0, count: Self.size(count: count))
            bytes.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: vectorAddress, toByteOffset: 16, as: UInt64.self)  // msg_iov
                raw.storeBytes(of: UInt64(1), toByteOffset: 24, as: UInt64.self)  // msg_iovlen
                raw.storeBytes(of: controlAddress, toByteOffset: 32, as: UInt64.self)  // msg_control
                raw.storeBytes(
                    of: UInt64(DescriptorPassing.controlSize(count: count)), toByteOffset: 40, as: UInt64.self)
                raw.storeBytes(of: byteAddress, toByteOffset: 56, as: UInt64.self)  // iov_base
                raw.storeBytes(of: UInt64(1), toByteOffset: 64, as: UInt64.self)  // iov_len
            }
            return bytes
        }

        /// The descriptors the task received, from the bytes at `base` after the call: nil when
        /// the kernel cut the control message short (MSG_CTRUNC) or sent none.
        public func received(from bytes: [UInt8]) -> [Int32]? {
            guard bytes.count == Self.size(count: count) else { return nil }
            return bytes.withUnsafeBytes { raw -> [Int32]? in
                let flags = raw.loadUnaligned(fromByteOffset: 48, as: Int32.self)  // msg_flags
                let controlLength = raw.loadUnaligned(fromByteOffset: 40, as: UInt64.self)
                guard flags & Int32(MSG_CTRUNC) == 0, controlLength >= UInt64(controlHeaderSize) else { return nil }
                let header = 80
                let length = raw.loadUnaligned(fromByteOffset: header, as: UInt64.self)
                guard raw.loadUnaligned(fromByteOffset: header + 8, as: Int32.self) == socketLevel,
                    raw.loadUnaligned(fromByteOffset: header + 12, as: Int32.self) == rightsType,
                    length >= UInt64(controlHeaderSize), (Int(length) - controlHeaderSize) % 4 == 0,
                    header + Int(length) <= bytes.count
                else { return nil }
                return (0..<(Int(length) - controlHeaderSize) / 4).map {
                    raw.loadUnaligned(fromByteOffset: header + controlHeaderSize + 4 * $0, as: Int32.self)
                }
            }
        }
    }
}
