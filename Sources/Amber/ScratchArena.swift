import LinuxKit

/// Room in a stopped task's memory for the arguments of one injected call and for what the call
/// writes back: it hands out aligned slots that do not overlap and refuses (throws) a slot that
/// would run past its end. Made afresh for each call, so that no call's slots outlive it.
struct ScratchArena {
    let pid: Int32
    /// The task's memory, where the slots are written and read.
    let memory: any RemoteMemory
    /// Where the room starts in the task.
    let base: UInt64
    let size: Int
    private var used = 0

    /// Every slot starts on a 16-byte boundary: enough for any struct a call takes.
    private static let alignment = 16

    init(pid: Int32, memory: any RemoteMemory, base: UInt64, size: Int) {
        self.pid = pid
        self.memory = memory
        self.base = base
        self.size = size
    }

    /// A slot of `count` bytes for the call to fill; returns its address in the task.
    mutating func reserve(_ count: Int) throws(LinuxError) -> UInt64 {
        let start = (used + Self.alignment - 1) & ~(Self.alignment - 1)
        guard count >= 0, start + count <= size else {
            throw LinuxError(
                .noSpace,
                "find \(count) bytes for the arguments of a call injected into task \(pid) (its scratch area has \(size) bytes, \(used) of them taken)"
            )
        }
        used = start + count
        return base + UInt64(start)
    }

    /// A slot holding `bytes`; returns its address in the task.
    mutating func place(_ bytes: [UInt8]) throws(LinuxError) -> UInt64 {
        let address = try reserve(bytes.count)
        _ = try bytes.withUnsafeBytes { buffer in
            Result { () throws(LinuxError) in try memory.write(buffer, to: [(address, buffer.count)]) }
        }.get()
        return address
    }

    /// A slot holding a plain value (an integer, or a tuple of them), in memory order.
    mutating func place<Value: BitwiseCopyable>(_ value: Value) throws(LinuxError) -> UInt64 {
        try place(withUnsafeBytes(of: value) { Array($0) })
    }

    /// `count` bytes of a slot, as the call left them.
    func read(_ address: UInt64, count: Int) throws(LinuxError) -> [UInt8] {
        guard address >= base, count >= 0, address - base + UInt64(count) <= UInt64(used) else {
            throw LinuxError(
                .invalidArgument,
                "read \(count) bytes at 0x\(String(address, radix: 16)) of task \(pid): not in a slot of its scratch area"
            )
        }
        var bytes = [UInt8](repeating: 0, count: count)
        _ = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(LinuxError) in try memory.read(into: buffer, from: [(address, count)]) }
        }.get()
        return bytes
    }

    /// A plain value at the start of a slot (or `offset` bytes into it), as the call left it.
    func read<Value: BitwiseCopyable>(_ address: UInt64, offset: Int = 0, as type: Value.Type) throws(LinuxError)
        -> Value
    {
        try read(address + UInt64(offset), count: MemoryLayout<Value>.size).withUnsafeBytes {
            $0.loadUnaligned(as: Value.self)
        }
    }

    /// An arena below the 128-byte red zone of the stack of the stopped task `injector` runs in,
    /// which the ABI leaves free (a signal frame may land there at any time), for a task whose
    /// memory holds nothing of amber's: the bytes there are put back once `body` returns.
    static func belowRedZone<Value>(
        of injector: any SyscallInjecting, size: Int, _ body: (inout ScratchArena) throws -> Value
    ) throws -> Value {
        let pid = injector.tracee.pid
        let memory = ProcessMemory(pid: pid)
        var arena = ScratchArena(
            pid: pid, memory: memory, base: (injector.savedRegisters.rsp - 128 - UInt64(size)) & ~UInt64(alignment - 1),
            size: size)
        var saved = [UInt8](repeating: 0, count: size)
        _ = try saved.withUnsafeMutableBytes { bytes throws(LinuxError) in
            try memory.read(into: bytes, from: [(arena.base, size)])
        }
        let outcome = Result { try body(&arena) }
        _ = try saved.withUnsafeBytes { bytes throws(LinuxError) in try memory.write(bytes, to: [(arena.base, size)]) }
        return try outcome.get()
    }
}
