import Glibc

/// A terminal's termios and window size, as TCGETS and TIOCGWINSZ report them.
public struct TerminalSettings: Sendable, Equatable {
    public var inputFlags: UInt32
    public var outputFlags: UInt32
    public var controlFlags: UInt32
    public var localFlags: UInt32
    public var lineDiscipline: UInt8
    /// c_cc, NCCS bytes.
    public var controlCharacters: [UInt8]
    public var rows: UInt16
    public var columns: UInt16

    public init(
        inputFlags: UInt32, outputFlags: UInt32, controlFlags: UInt32, localFlags: UInt32, lineDiscipline: UInt8,
        controlCharacters: [UInt8], rows: UInt16, columns: UInt16
    ) {
        self.inputFlags = inputFlags
        self.outputFlags = outputFlags
        self.controlFlags = controlFlags
        self.localFlags = localFlags
        self.lineDiscipline = lineDiscipline
        self.controlCharacters = controlCharacters
        self.rows = rows
        self.columns = columns
    }

    /// NCCS: the most control characters a termios has.
    public static let controlCharacterCount = 32
}

/// Terminals through a descriptor of ours on one: what it is, its settings, its foreground
/// process group. Reading changes nothing of the terminal.
public enum Terminals {
    /// TIOCGDEV, _IOR('T', 0x32, unsigned int), which Glibc's module does not export.
    private static let getDevice: UInt = 0x8004_5432

    /// The device number of the terminal `fd` is on (as glibc's makedev encodes it; /proc's
    /// tty_nr the same), also when `fd` was opened as /dev/tty; nil when it is no terminal.
    public static func device(of fd: Int32) throws(LinuxError) -> UInt64? {
        var device: UInt32 = 0
        guard ioctl(fd, getDevice, &device) == 0 else {
            if errno == ENOTTY || errno == EINVAL { return nil }
            throw LinuxError.current("ioctl TIOCGDEV of fd \(fd)")
        }
        return UInt64(device)
    }

    /// Its termios and window size.
    public static func settings(of fd: Int32) throws(LinuxError) -> TerminalSettings {
        var modes = termios()
        _ = try libcResult("tcgetattr of fd \(fd)") { tcgetattr(fd, &modes) }.get()
        var size = winsize()
        _ = try libcResult("ioctl TIOCGWINSZ of fd \(fd)") { ioctl(fd, UInt(TIOCGWINSZ), &size) }.get()
        let characters = withUnsafeBytes(of: modes.c_cc) { Array($0) }
        return TerminalSettings(
            inputFlags: modes.c_iflag, outputFlags: modes.c_oflag, controlFlags: modes.c_cflag,
            localFlags: modes.c_lflag, lineDiscipline: modes.c_line, controlCharacters: characters,
            rows: size.ws_row, columns: size.ws_col)
    }

    /// Makes `group` the foreground process group of the terminal `fd` is on, which must be the
    /// caller's controlling terminal. SIGTTOU is blocked meanwhile: a caller in a background
    /// group would be stopped by it.
    public static func setForegroundGroup(_ fd: Int32, _ group: pid_t) throws(LinuxError) {
        var ttou = sigset_t()
        sigemptyset(&ttou)
        sigaddset(&ttou, SIGTTOU)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &ttou, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        _ = try libcResult("tcsetpgrp(\(fd), \(group))") { tcsetpgrp(fd, group) }.get()
    }

    /// The terminal's path for a device number: /dev/pts/N for a pty's, else "the terminal MAJOR:MINOR".
    public static func name(ofDevice device: UInt64) -> String {
        let (major, minor) = split(device)
        // Unix98 pty slaves: major 136, the pty's index the minor.
        return major == 136 ? "/dev/pts/\(minor)" : "the terminal \(major):\(minor)"
    }

    /// Whether a character device is a terminal other than a pty master or the ptmx, by the tty
    /// drivers the kernel lists (/proc/tty/drivers): asked before any ioctl is sent to a device,
    /// which another driver could take for a request of its own.
    public static func isTerminal(device: UInt64) -> Bool {
        let (major, minor) = split(device)
        return drivers.contains { $0.major == major && $0.minors.contains(minor) }
    }

    /// The tty drivers' majors and minors, but pty masters' ("pty:master") and the ptmx's ("system").
    private static let drivers: [(major: UInt64, minors: ClosedRange<UInt64>)] = {
        guard let text = try? ProcFS.readText("/proc/tty/drivers") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5, fields[4] != "pty:master", fields[4] != "system", let major = UInt64(fields[2])
            else { return nil }
            let bounds = fields[3].split(separator: "-").compactMap { UInt64($0) }
            guard let first = bounds.first, let last = bounds.last, first <= last else { return nil }
            return (major, first...last)
        }
    }()

    /// Major and minor of a device number as glibc's makedev encodes it.
    private static func split(_ device: UInt64) -> (major: UInt64, minor: UInt64) {
        (device >> 8 & 0xfff, device & 0xff | device >> 12 & 0xfff00)
    }
}
