import SystemPackage

/// The fields of /proc/PID/stat a dump needs, numbered as in proc_pid_stat(5).
///
/// The kernel shows the code, stack, data and argument addresses (and the
/// exit code) only to a reader allowed to ptrace the process; others read 0.
public struct ProcessStat: Sendable, Equatable {
    /// (1) pid
    public var pid: Int32
    /// (2) comm: the command name exactly as stored, without the parentheses.
    public var comm: String
    /// (3) state
    public var state: Character
    /// (4) ppid, (5) pgrp, (6) session
    public var ppid: Int32
    public var pgrp: Int32
    public var session: Int32
    /// (26) startcode, (27) endcode, (28) startstack
    public var startCode: UInt64
    public var endCode: UInt64
    public var startStack: UInt64
    /// (45) start_data, (46) end_data, (47) start_brk
    public var startData: UInt64
    public var endData: UInt64
    public var startBrk: UInt64
    /// (48) arg_start, (49) arg_end, (50) env_start, (51) env_end
    public var argStart: UInt64
    public var argEnd: UInt64
    public var envStart: UInt64
    public var envEnd: UInt64
    /// (52) exit_code, as waitpid would report it.
    public var exitCode: Int32
    /// (20) num_threads
    public var numThreads: Int
    /// (22) starttime, in clock ticks after boot: with the pid, it names one process.
    public var startTime: UInt64
    /// (39) processor: the CPU the task last ran on.
    public var processor: Int32
    /// (7) tty_nr: the controlling terminal's device number, 0 for none.
    public var terminal: Int32
    /// (38) exit_signal: the signal its parent gets when it ends (SIGCHLD unless clone chose another; 0 none).
    public var exitSignal: Int32
    /// (9) flags: the kernel's PF_* flags of the task.
    public var flags: UInt32 = 0
    /// PF_EXITING: the task is on its way out (do_exit), its cgroups already left.
    public static let exiting: UInt32 = 0x4
}

extension ProcFS {
    /// Parses the text of /proc/PID/stat.
    ///
    /// The comm is taken between the first "(" and the last ")", since it may
    /// itself hold spaces, parentheses and even newlines. Fields after (52) are ignored.
    ///
    /// - Throws: `LinuxError(.invalidArgument, "parse /proc stat …")` for malformed text.
    public static func parseStat(_ text: String) throws(LinuxError) -> ProcessStat {
        try parseStat(bytes: Array(text.utf8)[...])
    }

    static func parseStat(bytes: ArraySlice<UInt8>) throws(LinuxError) -> ProcessStat {
        guard let open = bytes.firstIndex(of: 0x28), let close = bytes.lastIndex(of: 0x29), open < close,
            let pid = ProcText.int32(ProcText.trimmed(bytes[..<open]))
        else { throw ProcText.malformed("stat") }
        let comm = ProcText.string(bytes[(open + 1)..<close])
        // The words after the comm, so that fields[n - 3] is field (n).
        let after = bytes[(close + 1)...]
        let fields = ProcText.words(after.last == ProcText.newline ? after.dropLast() : after)
        guard fields.count >= 50 else { throw ProcText.malformed("stat: \(fields.count + 2) fields, need 52") }

        func field<T>(_ number: Int, _ parse: (ArraySlice<UInt8>) -> T?) throws(LinuxError) -> T {
            guard let value = parse(fields[number - 3]) else { throw ProcText.malformed("stat field \(number)") }
            return value
        }
        func address(_ number: Int) throws(LinuxError) -> UInt64 {
            try field(number) { ProcText.unsigned($0) }
        }

        var stat = ProcessStat(
            pid: pid,
            comm: comm,
            state: try field(3) { $0.count == 1 ? Character(Unicode.Scalar($0[$0.startIndex])) : nil },
            ppid: try field(4, ProcText.int32),
            pgrp: try field(5, ProcText.int32),
            session: try field(6, ProcText.int32),
            startCode: try address(26),
            endCode: try address(27),
            startStack: try address(28),
            startData: try address(45),
            endData: try address(46),
            startBrk: try address(47),
            argStart: try address(48),
            argEnd: try address(49),
            envStart: try address(50),
            envEnd: try address(51),
            exitCode: try field(52, ProcText.int32),
            numThreads: try field(20, ProcText.int),
            startTime: try address(22),
            processor: try field(39, ProcText.int32),
            terminal: try field(7, ProcText.int32),
            exitSignal: try field(38, ProcText.int32)
        )
        stat.flags = try field(9) { ProcText.unsigned($0).flatMap { UInt32(exactly: $0) } }
        return stat
    }
}
