import Glibc
import SystemPackage

/// Ptys (pty(7), devpts): the ioctls that read and set a pty's state through a descriptor of
/// ours on its master or slave, and the request numbers injected into a task for what only a
/// process may do to itself (take a controlling terminal, set its foreground group).
public enum Terminals {
    /// The device number (as glibc's makedev encodes it) of /dev/ptmx and of devpts's ptmx.
    public static let multiplexerDevice: UInt64 = 5 << 8 | 2
    /// The device number of /dev/tty, which opens the caller's controlling terminal.
    public static let controllingTerminalDevice: UInt64 = 5 << 8 | 0
    /// The first major number of the slaves of Unix98 ptys (UNIX98_PTY_SLAVE_MAJOR); there are 8.
    public static let firstSlaveMajor: UInt64 = 136
    /// The kernel's NCCS: the control characters of its struct termios.
    public static let controlCharacterCount = 19
    /// N_TTY, the line discipline of a terminal unless TIOCSETD changed it.
    public static let ordinaryLineDiscipline: Int32 = 0
    /// ICANON in c_lflag: canonical (line by line) input.
    public static let canonical: UInt32 = 0o2

    private static let getAttributes: UInt = 0x5401  // TCGETS
    private static let setAttributes: UInt = 0x5402  // TCSETS
    private static let getWindowSize: UInt = 0x5413  // TIOCGWINSZ
    private static let setWindowSize: UInt = 0x5414  // TIOCSWINSZ
    private static let setPacketMode: UInt = 0x5420  // TIOCPKT
    private static let getPacketMode: UInt = 0x8004_5438  // TIOCGPKT
    private static let getNumber: UInt = 0x8004_5430  // TIOCGPTN
    private static let setLock: UInt = 0x4004_5431  // TIOCSPTLCK
    private static let getLock: UInt = 0x8004_5439  // TIOCGPTLCK
    private static let setExclusive: UInt = 0x540C  // TIOCEXCL
    private static let clearExclusive: UInt = 0x540D  // TIOCNXCL
    private static let getExclusive: UInt = 0x8004_5440  // TIOCGEXCL
    private static let openPeer: UInt = 0x5441  // TIOCGPTPEER
    private static let getSession: UInt = 0x5429  // TIOCGSID
    private static let getForegroundGroup: UInt = 0x540F  // TIOCGPGRP
    private static let getLineDiscipline: UInt = 0x5424  // TIOCGETD
    private static let getDevice: UInt = 0x8004_5432  // TIOCGDEV
    /// TIOCSCTTY: makes the terminal the caller's controlling terminal (a session leader's).
    public static let setControllingTerminal: UInt64 = 0x540E
    /// TIOCSPGRP: sets the foreground process group of the caller's controlling terminal.
    public static let setForegroundGroup: UInt64 = 0x5410

    /// The number of the slave devpts gives the pty of a master (TIOCGPTN).
    public static func number(master: FileDescriptor) throws(LinuxError) -> UInt32 {
        UInt32(bitPattern: try getInteger(master, getNumber, "TIOCGPTN"))
    }

    /// The pty number of a slave's device number, nil when it is no Unix98 pty slave.
    public static func slaveNumber(rdev: UInt64) -> UInt32? {
        let major = (rdev >> 8) & 0xfff | (rdev >> 32) & ~0xfff
        let minor = rdev & 0xff | (rdev >> 12) & ~0xff
        guard major >= firstSlaveMajor, major < firstSlaveMajor + 8, minor < 256 else { return nil }
        return UInt32((major - firstSlaveMajor) << 8 | minor)
    }

    /// The controlling-terminal number /proc/PID/stat shows (tty_nr) of pty slave `number`.
    public static func terminalNumber(ofSlave number: UInt32) -> Int32 {
        let major = Int32(firstSlaveMajor) + Int32(number >> 8)
        let minor = Int32(number & 0xff)
        return (minor & 0xff) | (major & 0xfff) << 8 | (minor & ~0xff) << 12
    }

    /// The slave of `master`, opened through it (TIOCGPTPEER) with `flags` and O_NOCTTY.
    public static func openSlave(master: FileDescriptor, flags: Int32) throws(LinuxError) -> FileDescriptor {
        let fd = try libcResult("ioctl TIOCGPTPEER") {
            ioctl(master.rawValue, openPeer, flags | O_NOCTTY | O_CLOEXEC)
        }.get()
        return FileDescriptor(rawValue: fd)
    }

    /// The kernel's struct termios of the slave, through either end.
    public static func attributes(_ fd: FileDescriptor) throws(LinuxError) -> TerminalAttributes {
        var bytes = [UInt8](repeating: 0, count: TerminalAttributes.byteCount)
        _ = try libcResult("ioctl TCGETS") {
            bytes.withUnsafeMutableBytes { ioctl(fd.rawValue, getAttributes, $0.baseAddress!) }
        }.get()
        return TerminalAttributes(bytes: bytes)
    }

    /// Sets the slave's termios at once (TCSETS), through either end.
    public static func setAttributes(_ fd: FileDescriptor, _ attributes: TerminalAttributes) throws(LinuxError) {
        var bytes = attributes.bytes
        _ = try libcResult("ioctl TCSETS") {
            bytes.withUnsafeMutableBytes { ioctl(fd.rawValue, setAttributes, $0.baseAddress!) }
        }.get()
    }

    /// The slave's window size, through either end.
    public static func windowSize(_ fd: FileDescriptor) throws(LinuxError) -> WindowSize {
        var size = winsize()
        _ = try libcResult("ioctl TIOCGWINSZ") { ioctl(fd.rawValue, getWindowSize, &size) }.get()
        return WindowSize(rows: size.ws_row, columns: size.ws_col, xPixels: size.ws_xpixel, yPixels: size.ws_ypixel)
    }

    public static func setWindowSize(_ fd: FileDescriptor, _ size: WindowSize) throws(LinuxError) {
        var value = winsize(ws_row: size.rows, ws_col: size.columns, ws_xpixel: size.xPixels, ws_ypixel: size.yPixels)
        _ = try libcResult("ioctl TIOCSWINSZ") { ioctl(fd.rawValue, setWindowSize, &value) }.get()
    }

    /// Whether the master is in packet mode (TIOCGPKT).
    public static func isPacketMode(master: FileDescriptor) throws(LinuxError) -> Bool {
        try getInteger(master, getPacketMode, "TIOCGPKT") != 0
    }

    public static func setPacketMode(master: FileDescriptor, _ on: Bool) throws(LinuxError) {
        var value: Int32 = on ? 1 : 0
        _ = try libcResult("ioctl TIOCPKT") { ioctl(master.rawValue, setPacketMode, &value) }.get()
    }

    /// Whether the slave may not be opened (TIOCGPTLCK).
    public static func isLocked(master: FileDescriptor) throws(LinuxError) -> Bool {
        try getInteger(master, getLock, "TIOCGPTLCK") != 0
    }

    public static func setLocked(master: FileDescriptor, _ locked: Bool) throws(LinuxError) {
        var value: Int32 = locked ? 1 : 0
        _ = try libcResult("ioctl TIOCSPTLCK") { ioctl(master.rawValue, setLock, &value) }.get()
    }

    /// Whether the end `fd` is on is in exclusive mode (TIOCGEXCL): each end has its own.
    public static func isExclusive(_ fd: FileDescriptor) throws(LinuxError) -> Bool {
        try getInteger(fd, getExclusive, "TIOCGEXCL") != 0
    }

    public static func setExclusive(_ fd: FileDescriptor, _ exclusive: Bool) throws(LinuxError) {
        _ = try libcResult(exclusive ? "ioctl TIOCEXCL" : "ioctl TIOCNXCL") {
            ioctl(fd.rawValue, exclusive ? setExclusive : clearExclusive)
        }.get()
    }

    /// The session whose controlling terminal the slave is, through the master (TIOCGSID, which
    /// on a master needs no controlling terminal of the caller's); nil for none.
    public static func session(master: FileDescriptor) throws(LinuxError) -> Int32? {
        var session: Int32 = 0
        guard ioctl(master.rawValue, getSession, &session) == 0 else {
            if Glibc.errno == ENOTTY { return nil }
            throw LinuxError.current("ioctl TIOCGSID")
        }
        return session
    }

    /// The slave's foreground process group, through the master (TIOCGPGRP); 0 for none.
    public static func foregroundGroup(master: FileDescriptor) throws(LinuxError) -> Int32 {
        try getInteger(master, getForegroundGroup, "TIOCGPGRP")
    }

    /// The device number (as glibc's makedev encodes it, for a pty's) of the terminal `fd` is
    /// on (TIOCGDEV): of a /dev/tty descriptor, the controlling terminal it was opened on.
    public static func device(_ fd: FileDescriptor) throws(LinuxError) -> UInt64 {
        UInt64(UInt32(bitPattern: try getInteger(fd, getDevice, "TIOCGDEV")))
    }

    /// The line discipline of the end `fd` is on (TIOCGETD).
    public static func lineDiscipline(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        try getInteger(fd, getLineDiscipline, "TIOCGETD")
    }

    /// The bytes the end `fd` is on has received and not handed to a read (FIONREAD), after
    /// polling it, which hands the line discipline what the kernel still buffered before it
    /// (tty_buffer_flush_work) and reads nothing. In canonical mode only ended lines count.
    public static func queuedInput(_ fd: FileDescriptor) throws(LinuxError) -> Int32 {
        _ = try readiness(fd)
        var queued: Int32 = 0
        _ = try libcResult("ioctl FIONREAD") { ioctl(fd.rawValue, UInt(FIONREAD), &queued) }.get()
        return queued
    }

    /// What poll(2) reports of `fd` now, without waiting: POLLIN, POLLPRI (a packet-mode status
    /// byte waiting on a master), POLLOUT, POLLHUP (a master whose slave every process closed).
    public static func readiness(_ fd: FileDescriptor) throws(LinuxError) -> Int16 {
        var entry = pollfd(fd: fd.rawValue, events: Int16(POLLIN | POLLPRI | POLLOUT), revents: 0)
        _ = try libcResult("poll") { poll(&entry, 1, 0) }.get()
        return entry.revents
    }

    private static func getInteger(_ fd: FileDescriptor, _ request: UInt, _ name: String) throws(LinuxError) -> Int32 {
        var value: Int32 = 0
        _ = try libcResult("ioctl \(name)") { ioctl(fd.rawValue, request, &value) }.get()
        return value
    }
}

/// The kernel's struct termios (TCGETS): four flag words, the line discipline and NCCS control
/// characters, 36 bytes.
public struct TerminalAttributes: Sendable, Equatable {
    public static let byteCount = 36

    public var inputFlags: UInt32
    public var outputFlags: UInt32
    public var controlFlags: UInt32
    public var localFlags: UInt32
    public var line: UInt8
    /// `Terminals.controlCharacterCount` bytes.
    public var controlCharacters: [UInt8]

    public init(
        inputFlags: UInt32, outputFlags: UInt32, controlFlags: UInt32, localFlags: UInt32, line: UInt8,
        controlCharacters: [UInt8]
    ) {
        self.inputFlags = inputFlags
        self.outputFlags = outputFlags
        self.controlFlags = controlFlags
        self.localFlags = localFlags
        self.line = line
        self.controlCharacters = controlCharacters
    }

    init(bytes: [UInt8]) {
        func word(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        inputFlags = word(0)
        outputFlags = word(4)
        controlFlags = word(8)
        localFlags = word(12)
        line = bytes[16]
        controlCharacters = Array(bytes[17..<(17 + Terminals.controlCharacterCount)])
    }

    var bytes: [UInt8] {
        var bytes: [UInt8] = []
        for word in [inputFlags, outputFlags, controlFlags, localFlags] {
            bytes += [UInt8(word & 0xff), UInt8(word >> 8 & 0xff), UInt8(word >> 16 & 0xff), UInt8(word >> 24)]
        }
        bytes.append(line)
        bytes += controlCharacters.prefix(Terminals.controlCharacterCount)
        bytes += [UInt8](repeating: 0, count: Self.byteCount - bytes.count)
        return bytes
    }
}

/// struct winsize.
public struct WindowSize: Sendable, Equatable {
    public var rows: UInt16
    public var columns: UInt16
    public var xPixels: UInt16
    public var yPixels: UInt16

    public init(rows: UInt16, columns: UInt16, xPixels: UInt16, yPixels: UInt16) {
        self.rows = rows
        self.columns = columns
        self.xPixels = xPixels
        self.yPixels = yPixels
    }
}

extension SyscallNumber {
    /// ioctl(2), injected for TIOCSCTTY and TIOCSPGRP, which act on the calling process.
    public static let ioctl = 16
}

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

/// Any terminal (a shell job's) through a descriptor of ours on it: what it is, its settings, its
/// foreground process group. Reading changes nothing of the terminal.
extension Terminals {
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

    /// The terminal's path for a device number: /dev/pts/N for a pty's, else "device MAJOR:MINOR" (after "the terminal").
    public static func name(ofDevice device: UInt64) -> String {
        let (major, minor) = split(device)
        // Unix98 pty slaves: major 136, the pty's index the minor.
        return major == 136 ? "/dev/pts/\(minor)" : "device \(major):\(minor)"
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
