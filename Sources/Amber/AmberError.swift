import LinuxKit

/// The one error type of the engine: a code that tells the kind of failure (and becomes the
/// CLI's exit status) and a one-line message naming the process, object or file concerned.
public struct AmberError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure; its raw value is amber's exit status for it.
    public enum Code: Int32, Sendable {
        case failure = 1
        case noSuchProcess = 3
        case permissionDenied = 4
        case unsupported = 5
        case directoryNotEmpty = 6
        case badImage = 7
        case incompatibleHost = 8
        case pidTaken = 9
        case restoreFailed = 10
        case interrupted = 11
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// "process 12 (x) <what>", or "process 12 (x) in the tree of process 10 (r) <what>" for
    /// a descendant of the dumped root `tree`.
    static func unsupported(_ process: ProcessName, _ what: String, tree: ProcessName? = nil) -> AmberError {
        let within = tree.map { $0.pid == process.pid ? "" : " in the tree of process \($0)" } ?? ""
        return AmberError(.unsupported, "process \(process)\(within) \(what)")
    }
}

/// "1234 (comm)": how messages name a process.
struct ProcessName: CustomStringConvertible, Sendable {
    let pid: Int32
    let comm: String
    var description: String { "\(pid) (\(comm))" }

    init(pid: Int32) {
        self.pid = pid
        comm = (try? ProcFS.comm(pid: pid)) ?? "?"
    }
}
