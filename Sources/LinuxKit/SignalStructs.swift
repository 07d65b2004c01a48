internal import CLinux

/// A thread's alternate signal stack (the kernel's stack_t, as sigaltstack(2) takes and gives it).
public struct SignalStack: Sendable, Equatable {
    public var base: UInt64
    public var flags: Int32
    public var size: UInt64

    public init(base: UInt64, flags: Int32, size: UInt64) {
        self.base = base
        self.flags = flags
        self.size = size
    }

    /// SS_ONSTACK, a state the kernel reports (the thread runs on the stack), not a flag one sets;
    /// SS_DISABLE, no stack.
    public static let onStack: Int32 = 1, disabled: Int32 = 2

    /// The size of stack_t.
    public static let byteCount = 24

    public init(bytes: [UInt8]) {
        precondition(bytes.count >= Self.byteCount)
        (base, flags, size) = bytes.withUnsafeBytes {
            (
                $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                $0.loadUnaligned(fromByteOffset: 8, as: Int32.self),
                $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            )
        }
    }

    public var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.byteCount)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: base, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: flags, toByteOffset: 8, as: Int32.self)
            $0.storeBytes(of: size, toByteOffset: 16, as: UInt64.self)
        }
        return bytes
    }
}

/// A signal's disposition as rt_sigaction(2) takes and gives it: the kernel's struct sigaction,
/// not glibc's.
public struct KernelSignalAction: Sendable, Equatable {
    public var handler: UInt64
    public var flags: UInt64
    public var restorer: UInt64
    public var mask: UInt64

    public init(handler: UInt64, flags: UInt64, restorer: UInt64, mask: UInt64) {
        self.handler = handler
        self.flags = flags
        self.restorer = restorer
        self.mask = mask
    }

    public static let byteCount = MemoryLayout<amber_kernel_sigaction>.size

    public init(bytes: [UInt8]) {
        precondition(bytes.count >= Self.byteCount)
        let raw = bytes.withUnsafeBytes { $0.loadUnaligned(as: amber_kernel_sigaction.self) }
        self.init(handler: raw.handler, flags: raw.flags, restorer: raw.restorer, mask: raw.mask)
    }

    public var bytes: [UInt8] {
        withUnsafeBytes(of: amber_kernel_sigaction(handler: handler, flags: flags, restorer: restorer, mask: mask)) {
            Array($0)
        }
    }
}

/// How a POSIX timer notifies its expiry: the kernel's struct sigevent, for timer_create(2).
public struct SignalEvent: Sendable, Equatable {
    /// sigev_value, handed to the handler in si_value.
    public var value: UInt64
    public var signal: Int32
    /// SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID (with `threadID`)...
    public var notify: Int32
    /// The thread SIGEV_THREAD_ID directs the signal to, as its own PID namespace numbers it.
    public var threadID: Int32

    public init(value: UInt64, signal: Int32, notify: Int32, threadID: Int32) {
        self.value = value
        self.signal = signal
        self.notify = notify
        self.threadID = threadID
    }

    /// SIGEV_THREAD_ID: the signal goes to one thread.
    public static let notifyThreadID: Int32 = 4

    /// The size of struct sigevent.
    public static let byteCount = 64

    public var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.byteCount)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: value, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: signal, toByteOffset: 8, as: Int32.self)
            $0.storeBytes(of: notify, toByteOffset: 12, as: Int32.self)
            $0.storeBytes(of: threadID, toByteOffset: 16, as: Int32.self)
        }
        return bytes
    }
}
