import SystemPackage

/// The parts of /proc/PID/status (or /proc/PID/task/TID/status) a dump needs,
/// plus every raw line.
public struct ProcessStatus: Sendable, Equatable {
    /// The command name, with the kernel's escapes ("\n", "\\") undone.
    public var name: String
    /// The state letter: R, S, D, T, t, X, Z, P, I.
    public var state: Character
    public var tgid: Int32
    public var pid: Int32
    public var ppid: Int32
    /// The pid of the task tracing this one, 0 when none.
    public var tracerPID: Int32
    public var threads: Int
    /// Absent on kernels before 4.7.
    public var umask: UInt32?
    /// SigBlk: the blocked mask (per thread).
    public var blockedSignals: UInt64
    /// SigIgn: signals whose disposition is SIG_IGN.
    public var ignoredSignals: UInt64
    /// SigCgt: signals with a handler.
    public var caughtSignals: UInt64
    /// SigPnd: signals pending for this thread.
    public var pendingThread: UInt64
    /// ShdPnd: signals pending for the whole process.
    public var pendingShared: UInt64
    /// NSpid: the pid in each pid namespace, outermost (the reader's) first.
    /// Empty when the kernel does not print the line.
    public var namespacePIDs: [Int32]
    /// NStgid, NSsid, NSpgid: as `namespacePIDs`, for tgid, session and group.
    public var namespaceTGIDs: [Int32]
    public var namespaceSIDs: [Int32]
    public var namespacePGIDs: [Int32]
    /// Seccomp: 0 disabled, 1 strict, 2 filter; nil when the kernel lacks it.
    public var seccompMode: Int?
    /// Uid and Gid (of this thread, for a task/TID/status file); nil when the line is missing.
    public var userIDs: CredentialIDs?
    public var groupIDs: CredentialIDs?
    /// Groups: the supplementary groups; nil when the line is missing.
    public var supplementaryGroups: [UInt32]?
    /// CapInh, CapPrm, CapEff, CapBnd and CapAmb; nil unless all five lines are there.
    public var capabilities: CapabilitySets?
    /// NoNewPrivs; nil when the kernel lacks the line.
    public var noNewPrivileges: Bool?
    /// The text it was parsed from.
    var text: ArraySlice<UInt8>

    /// Every "Key:\tvalue" line, value trimmed of surrounding blanks (Name's
    /// value is kept exactly, escaped as the kernel wrote it); the first line with a key wins.
    public var fields: [String: String] {
        var fields: [String: String] = [:]
        for line in ProcText.lines(text) {
            guard let (key, value) = ProcText.keyValue(line) else { continue }
            let name = ProcText.string(key)
            if fields[name] == nil {
                fields[name] = ProcText.string(name == "Name" ? Self.nameValue(value) : ProcText.trimmed(value))
            }
        }
        return fields
    }

    /// A name may begin or end with blanks: only the separating tab is dropped.
    static func nameValue(_ value: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        value.first == ProcText.tab ? value.dropFirst() : value
    }
}

/// The lines of /proc/PID/status a dump reads.
enum StatusKey: Int, CaseIterable {
    case name, state, tgid, pid, ppid, tracerPid, threads, umask
    case sigBlk, sigIgn, sigCgt, sigPnd, shdPnd
    case nsPid, nsTgid, nsSid, nsPgid
    case seccomp, uid, gid, groups
    case capInh, capPrm, capEff, capBnd, capAmb
    case noNewPrivs

    /// Each key's label, in case order.
    private static let labels = [
        "Name", "State", "Tgid", "Pid", "PPid", "TracerPid", "Threads", "Umask",
        "SigBlk", "SigIgn", "SigCgt", "SigPnd", "ShdPnd",
        "NSpid", "NStgid", "NSsid", "NSpgid",
        "Seccomp", "Uid", "Gid", "Groups",
        "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
        "NoNewPrivs",
    ]

    var label: String { Self.labels[rawValue] }
    static let count = labels.count

    /// The keys by the length of their label, so that a line's key is matched byte by byte:
    /// a dump parses several status files per process, and making a String of every key of
    /// their 60 lines to compare was most of the parse.
    private static let byLength: [[(label: [UInt8], key: StatusKey)]] = {
        var table = [[(label: [UInt8], key: StatusKey)]](repeating: [], count: labels.map(\.utf8.count).max()! + 1)
        for key in allCases {
            table[key.label.utf8.count].append((Array(key.label.utf8), key))
        }
        return table
    }()

    init?(label: ArraySlice<UInt8>) {
        guard label.count < Self.byLength.count,
            let entry = Self.byLength[label.count].first(where: { $0.label.elementsEqual(label) })
        else { return nil }
        self = entry.key
    }
}

/// A Uid or Gid line of /proc/PID/status.
public struct CredentialIDs: Sendable, Equatable {
    public var real: UInt32
    public var effective: UInt32
    public var saved: UInt32
    public var filesystem: UInt32

    public init(real: UInt32, effective: UInt32, saved: UInt32, filesystem: UInt32) {
        self.real = real
        self.effective = effective
        self.saved = saved
        self.filesystem = filesystem
    }
}

/// The capability sets of a thread, CAP_CHOWN in bit 0.
public struct CapabilitySets: Sendable, Equatable {
    public var inheritable: UInt64
    public var permitted: UInt64
    public var effective: UInt64
    public var bounding: UInt64
    public var ambient: UInt64

    public init(inheritable: UInt64, permitted: UInt64, effective: UInt64, bounding: UInt64, ambient: UInt64) {
        self.inheritable = inheritable
        self.permitted = permitted
        self.effective = effective
        self.bounding = bounding
        self.ambient = ambient
    }
}

extension ProcFS {
    /// Parses the text of /proc/PID/status; unknown lines are kept in `fields` only.
    ///
    /// - Throws: `LinuxError(.invalidArgument, "parse /proc status field KEY")`
    ///   when a needed line is missing or malformed.
    public static func parseStatus(_ text: String) throws(LinuxError) -> ProcessStatus {
        try parseStatus(bytes: Array(text.utf8)[...])
    }

    static func parseStatus(bytes: ArraySlice<UInt8>) throws(LinuxError) -> ProcessStatus {
        // One pass, keeping the value of each needed key (the first line with it wins); the
        // other lines stay in the text, for `fields`. A process's dump reads several of these.
        var raw = [ArraySlice<UInt8>?](repeating: nil, count: StatusKey.count)
        for line in ProcText.lines(bytes) {
            guard let (keyBytes, valueBytes) = ProcText.keyValue(line), let key = StatusKey(label: keyBytes),
                raw[key.rawValue] == nil
            else { continue }
            raw[key.rawValue] = key == .name ? ProcessStatus.nameValue(valueBytes) : ProcText.trimmed(valueBytes)
        }

        func required<T>(_ key: StatusKey, _ parse: (ArraySlice<UInt8>) -> T?) throws(LinuxError) -> T {
            guard let text = raw[key.rawValue], let value = parse(text) else {
                throw ProcText.malformed("status field \(key.label)")
            }
            return value
        }
        func optional<T>(_ key: StatusKey, _ parse: (ArraySlice<UInt8>) -> T?) throws(LinuxError) -> T? {
            guard raw[key.rawValue] != nil else { return nil }
            return try required(key, parse)
        }
        func hex(_ text: ArraySlice<UInt8>) -> UInt64? { ProcText.unsigned(text, radix: 16) }
        func list(_ text: ArraySlice<UInt8>) -> [Int32]? {
            var result: [Int32] = []
            for word in ProcText.words(text) {
                guard let value = ProcText.int32(word) else { return nil }
                result.append(value)
            }
            return result
        }
        func ids(_ text: ArraySlice<UInt8>) -> CredentialIDs? {
            let values = ProcText.words(text).map { ProcText.unsigned($0).flatMap { UInt32(exactly: $0) } }
            guard values.count == 4, let real = values[0], let effective = values[1], let saved = values[2],
                let filesystem = values[3]
            else { return nil }
            return CredentialIDs(real: real, effective: effective, saved: saved, filesystem: filesystem)
        }
        func groups(_ text: ArraySlice<UInt8>) -> [UInt32]? {
            var result: [UInt32] = []
            for word in ProcText.words(text) {
                guard let value = ProcText.unsigned(word).flatMap({ UInt32(exactly: $0) }) else { return nil }
                result.append(value)
            }
            return result
        }
        let capabilityLines = try [StatusKey.capInh, .capPrm, .capEff, .capBnd, .capAmb].map { key throws(LinuxError) in
            try optional(key, hex)
        }
        let capabilities =
            capabilityLines.allSatisfy { $0 != nil }
            ? CapabilitySets(
                inheritable: capabilityLines[0]!, permitted: capabilityLines[1]!, effective: capabilityLines[2]!,
                bounding: capabilityLines[3]!, ambient: capabilityLines[4]!) : nil

        return ProcessStatus(
            name: try required(.name) { ProcText.string(ProcText.unescape($0)) },
            state: try required(.state) { text in
                text.first.flatMap { $0 < 0x80 && $0 > 0x20 ? Character(Unicode.Scalar($0)) : nil }
            },
            tgid: try required(.tgid, ProcText.int32),
            pid: try required(.pid, ProcText.int32),
            ppid: try required(.ppid, ProcText.int32),
            tracerPID: try required(.tracerPid, ProcText.int32),
            threads: try required(.threads, ProcText.int),
            umask: try optional(.umask) { ProcText.unsigned($0, radix: 8).flatMap { UInt32(exactly: $0) } },
            blockedSignals: try required(.sigBlk, hex),
            ignoredSignals: try required(.sigIgn, hex),
            caughtSignals: try required(.sigCgt, hex),
            pendingThread: try required(.sigPnd, hex),
            pendingShared: try required(.shdPnd, hex),
            namespacePIDs: try optional(.nsPid, list) ?? [],
            namespaceTGIDs: try optional(.nsTgid, list) ?? [],
            namespaceSIDs: try optional(.nsSid, list) ?? [],
            namespacePGIDs: try optional(.nsPgid, list) ?? [],
            seccompMode: try optional(.seccomp, ProcText.int),
            userIDs: try optional(.uid, ids),
            groupIDs: try optional(.gid, ids),
            supplementaryGroups: try optional(.groups, groups),
            capabilities: capabilities,
            noNewPrivileges: try optional(.noNewPrivs) { text in
                ProcText.int(text).flatMap { $0 == 0 || $0 == 1 ? $0 == 1 : nil }
            },
            text: bytes
        )
    }
}
