import SystemPackage

/// What the engine injects system calls through: a `SyscallInjector` in a live task, or a
/// fake that records the calls and answers them, in the engine's unit tests.
public protocol SyscallInjecting {
    /// The thread the calls run in.
    var tracee: Tracee { get }
    /// Address of a `syscall` instruction (0f 05) in the task, which injectors into its other threads use too.
    var instruction: UInt64 { get set }
    /// The registers the thread had when injection began.
    var savedRegisters: UserRegisters { get }
    /// The signal mask the thread had when injection began.
    var savedSignalMask: UInt64 { get }

    /// Performs the syscall with up to six arguments and returns the kernel's raw result (negative is -errno).
    func raw(_ number: Int, arguments: [UInt64]) throws(LinuxError) -> Int64
    /// Performs `calls` in turn, each once the one before returned, and returns their raw
    /// results; stops after the first that fails (its result the last).
    func raw(_ calls: [Syscall]) throws(LinuxError) -> [Int64]
    /// Performs a clone3 with the clone_args at `cloneArguments`; returns the new task, traced and stopped.
    func createTask(_ name: @autoclosure () -> String, cloneArguments: UInt64, size: UInt64) throws(LinuxError)
        -> Tracee
    /// Starts a syscall that does not return (exit_group) and lets the task run into it.
    func start(_ number: Int, arguments: [UInt64]) throws(LinuxError)
    /// Puts back the registers and signal mask the thread had before injection.
    func finish() throws(LinuxError)
    /// Makes every call stop entering and leaving it, not single-stepped, from now on.
    mutating func stopSteppingOverCalls() throws(LinuxError)
}

/// One system call to inject: its number and arguments, and what to call it in an error.
public struct Syscall {
    public let name: String
    public let number: Int
    public let arguments: [UInt64]

    public init(_ name: String, _ number: Int, _ arguments: UInt64...) {
        (self.name, self.number, self.arguments) = (name, number, arguments)
    }
}

extension SyscallInjecting {
    /// One call after another, as `raw(_:arguments:)` runs each.
    public func raw(_ calls: [Syscall]) throws(LinuxError) -> [Int64] {
        var results: [Int64] = []
        for call in calls {
            let result = try raw(call.number, arguments: call.arguments)
            results.append(result)
            if result < 0 && result > -4096 { break }
        }
        return results
    }

    /// Performs `calls` in turn and throws, naming the call, at the first the kernel fails.
    public func call(_ calls: [Syscall]) throws(LinuxError) {
        let results = try raw(calls)
        if let result = results.last, result < 0 && result > -4096 {
            throw LinuxError(Errno(rawValue: CInt(-result)), "\(calls[results.count - 1].name) in task \(tracee.pid)")
        }
    }

    /// Performs the syscall and returns the kernel's raw result (negative is -errno).
    public func raw(_ number: Int, _ args: UInt64...) throws(LinuxError) -> Int64 {
        try raw(number, arguments: args)
    }

    /// Starts a syscall that does not return (exit_group) and lets the task run into it.
    public func start(_ number: Int, _ args: UInt64...) throws(LinuxError) {
        try start(number, arguments: args)
    }

    /// Performs the syscall and throws, naming it, if the kernel returns an error.
    @discardableResult
    public func call(_ name: @autoclosure () -> String, _ number: Int, _ args: UInt64...) throws(LinuxError) -> UInt64 {
        let result = try raw(number, arguments: args)
        if result < 0 && result > -4096 {
            throw LinuxError(Errno(rawValue: CInt(-result)), "\(name()) in task \(tracee.pid)")
        }
        return UInt64(bitPattern: result)
    }
}
