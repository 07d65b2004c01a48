extension TaskValidator {
    /// The paths a pty master is opened by at restore.
    static let ptyMasterPaths: Set<String> = ["/dev/ptmx", "/dev/pts/ptmx"]
    /// The kernel's NCCS.
    static let terminalControlCharacters = 19
    /// A pty end's status flags: the access mode, O_NONBLOCK, O_APPEND and O_LARGEFILE.
    static let ptyFlags: UInt32 = 0o3 | 0o4000 | 0o2000 | 0o100000

    func validatePtyMaster(_ master: Amber_PtyMaster, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        try validatePtyFlags(description, field: field)
        guard Self.ptyMasterPaths.contains(master.path) else {
            throw invalid("\(field).pty_master.path", "\"\(master.path)\" is neither /dev/ptmx nor /dev/pts/ptmx")
        }
        let settings = master.settings
        guard settings.controlCharacters.count == Self.terminalControlCharacters else {
            throw invalid(
                "\(field).pty_master.settings.control_characters",
                "has \(settings.controlCharacters.count) bytes, not \(Self.terminalControlCharacters)")
        }
        for (name, value) in [
            ("line", settings.line), ("rows", settings.rows), ("columns", settings.columns),
            ("x_pixels", settings.xPixels), ("y_pixels", settings.yPixels),
        ] where value > (name == "line" ? 0xff : 0xffff) {
            throw invalid("\(field).pty_master.settings.\(name)", "\(value) is out of range")
        }
        guard master.session == 0 || ImageFormat.pidRange.contains(master.session),
            master.foregroundGroup == 0
                || (master.session != 0 && ImageFormat.pidRange.contains(master.foregroundGroup))
        else {
            throw invalid(
                "\(field).pty_master",
                "session \(master.session) and foreground group \(master.foregroundGroup) are not process IDs of a session"
            )
        }
    }

    func validatePtySlave(_ slave: Amber_PtySlave, description: Amber_OpenFileDescription, field: String)
        throws(ImageError)
    {
        try validatePtyFlags(description, field: field)
        guard slave.mode & ~0o7777 == 0 else {
            throw invalid("\(field).pty_slave.mode", "0o\(String(slave.mode, radix: 8)) has more than permission bits")
        }
    }

    private func validatePtyFlags(_ description: Amber_OpenFileDescription, field: String) throws(ImageError) {
        guard description.flags & ~Self.ptyFlags == 0, description.flags & 0o3 != 0o3 else {
            throw invalid(
                "\(field).flags",
                "0o\(String(description.flags, radix: 8)) is not an access mode with O_NONBLOCK, O_APPEND or O_LARGEFILE"
            )
        }
        guard description.offset == 0 else {
            throw invalid("\(field).offset", "\(description.offset): a pty has no offset")
        }
    }
}
