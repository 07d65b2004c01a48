import AmberImage
import Glibc
import LinuxKit
import Logging
import SystemPackage

/// The restore of a shell job (`restore -j`): the tree is made in amber's session, so it has
/// the terminal amber runs on as its controlling terminal; its descriptors on the job's
/// terminal are opened on this one (`ShellJobTerminal`), which takes the job's modes (the
/// termios flags and control characters a full-screen or line-editing program set: raw, no
/// echo), not its size, which stays the terminal's; and its root's process group becomes the
/// terminal's foreground group. The shell puts its own modes back when the job ends or stops. Amber stays the root's parent,
/// in the process group its shell made it the job of, and passes job control on: when the
/// restored group stops (^Z), amber takes the terminal back and stops likewise, so the shell
/// sees its job stopped; continued in the foreground (`fg`), it gives the terminal to the
/// group again and continues it. ^C and ^\ reach the restored group alone, the foreground one.
public struct ShellJobControl: Sendable {
    /// Amber's descriptor on its terminal, and the restored root's process group.
    let terminal: Int32
    let group: pid_t

    /// The terminal amber runs on, for an image of a shell job restored with `requested` (-j);
    /// nil for another image without -j. Refuses an image of a shell job without -j, -j for
    /// another image, and -j where amber has no terminal or is not its foreground job.
    static func terminal(for tasks: [Amber_Task], requested: Bool, logger: Logger) throws(AmberError)
        -> ShellJobTerminal?
    {
        let root = tasks[0]
        let onTerminal = tasks.contains {
            $0.files.descriptions.contains { ShellJobTerminalKind.record(of: $0) != nil }
        }
        guard root.hasShellJob || onTerminal else {
            guard !requested else {
                throw AmberError(
                    .restoreFailed,
                    "restore -j: the image of process \(root.pid) (\(root.comm)) is not a shell job (it was dumped without -j): restore it without -j"
                )
            }
            return nil
        }
        let job = root.shellJob
        guard requested else {
            throw AmberError(
                .restoreFailed,
                "the image of process \(root.pid) (\(root.comm)) is a shell job, dumped with -j on the terminal \(job.terminal): restore it with -j (`amber restore -j`), from a shell on a terminal, which it then runs on"
            )
        }
        let controlling = (try? ProcFS.stat(pid: getpid()).terminal).map { UInt64(UInt32(bitPattern: $0)) } ?? 0
        guard controlling != 0 else {
            throw AmberError(
                .restoreFailed,
                "restore -j: amber has no controlling terminal to run the shell job of process \(root.pid) (\(root.comm)) on: run it from a shell on a terminal"
            )
        }
        let name = Terminals.name(ofDevice: controlling)
        guard let descriptor = (0...2).first(where: { (try? Terminals.device(of: $0)) == controlling }) else {
            throw AmberError(
                .restoreFailed,
                "restore -j: none of amber's standard input, output and error is on its controlling terminal \(name)")
        }
        guard tcgetpgrp(descriptor) == getpgrp() else {
            throw AmberError(
                .restoreFailed,
                "restore -j: amber is not the foreground job of its terminal \(name): run it in the foreground, where the shell job it restores then runs"
            )
        }
        logger.debug(
            "shell job: on \(job.terminal) at the dump\(describe(job.settings, if: job.hasSettings)); it runs on \(name), amber's terminal\(describe(try? Terminals.settings(of: descriptor))), which takes the job's modes but keeps its size"
        )
        return ShellJobTerminal(descriptor: descriptor, device: controlling)
    }

    /// The job's terminal, for `amber verify --needs`: the caller's terminal takes its place.
    static func needs(of tasks: [Amber_Task]) -> [String] {
        guard let root = tasks.first, root.hasShellJob else { return [] }
        return [
            "the terminal \(root.shellJob.terminal) of the shell job of process \(root.pid) (\(root.comm)): restore with -j from a shell on a terminal, which takes its place"
        ]
    }

    private static func describe(_ settings: Amber_ShellJobTerminalSettings, if present: Bool) -> String {
        guard present else { return "" }
        let characters = settings.controlCharacters.map { String($0, radix: 16) }.joined(separator: " ")
        return
            ", \(settings.rows) rows and \(settings.columns) columns, termios iflag 0x\(String(settings.inputFlags, radix: 16)) oflag 0x\(String(settings.outputFlags, radix: 16)) cflag 0x\(String(settings.controlFlags, radix: 16)) lflag 0x\(String(settings.localFlags, radix: 16)) line \(settings.lineDiscipline) cc \(characters)"
    }

    private static func describe(_ settings: TerminalSettings?) -> String {
        guard let settings else { return "" }
        return ", \(settings.rows) rows and \(settings.columns) columns"
    }

    /// Gives amber's terminal the job's modes (`settings`, when the image has them) and makes
    /// `group` its foreground group, before the tree runs: a restored process that reads it
    /// while in the background would be stopped (SIGTTIN).
    init(terminal: ShellJobTerminal, group: pid_t, settings: Amber_ShellJobTerminalSettings?) throws(AmberError) {
        self.terminal = terminal.descriptor
        self.group = group
        if let settings {
            let descriptor = FileDescriptor(rawValue: terminal.descriptor)
            do {
                var modes = try Terminals.attributes(descriptor)
                modes.inputFlags = settings.inputFlags
                modes.outputFlags = settings.outputFlags
                modes.localFlags = settings.localFlags
                let characters = [UInt8](settings.controlCharacters.prefix(Terminals.controlCharacterCount))
                modes.controlCharacters =
                    characters
                    + modes.controlCharacters.dropFirst(characters.count).prefix(
                        Terminals.controlCharacterCount - characters.count)
                try Terminals.setAttributes(descriptor, modes)
            } catch {
                throw AmberError(.restoreFailed, "restore -j: cannot give the terminal the job's modes: \(error)")
            }
        }
        do {
            try Terminals.setForegroundGroup(self.terminal, group)
        } catch {
            throw AmberError(.restoreFailed, "restore -j: cannot make the restored tree the foreground job: \(error)")
        }
    }

    /// Gives the terminal back to amber's own group, if the job's group has it: a job continued
    /// in the background (`bg`) does not, and the shell's terminal is not amber's to take.
    func takeBack() {
        guard tcgetpgrp(terminal) == group else { return }
        try? Terminals.setForegroundGroup(terminal, getpgrp())
    }

    /// Tells the restored group that its terminal may have another size than at the dump, as
    /// the kernel does on a resize (SIGWINCH): a full-screen program draws itself again.
    func announceWindowSize() {
        _ = Glibc.kill(-group, SIGWINCH)
    }

    /// Waits for `pid`, the restored root (amber's child), to end, passing job control on
    /// meanwhile; returns its wait status with the terminal back in amber's group.
    public func wait(for pid: pid_t) throws(AmberError) -> Int32 {
        // They reach the foreground group, the restored one: amber only passes stops on.
        for signal in [SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU] { Glibc.signal(signal, SIG_IGN) }
        while true {
            // Continued in the background (`bg`), the job runs without the terminal, and a shell's
            // `fg` of a job that runs gives amber's group the terminal without a signal: amber
            // looks, every 50 ms, until then.
            let inBackground = group != getpgrp() && tcgetpgrp(terminal) != group
            var status: Int32 = 0
            // __WALL: a root cloned with another exit signal than SIGCHLD is a "clone" child.
            let waited = waitpid(pid, &status, __WALL | WUNTRACED | (inBackground ? WNOHANG : 0))
            guard waited >= 0 else {
                guard errno == EINTR else { throw AmberError(.failure, "waiting for process \(pid): errno \(errno)") }
                continue
            }
            if waited == 0 {
                if tcgetpgrp(terminal) == getpgrp() { resume() } else { usleep(50_000) }
                continue
            }
            guard status & 0xff == 0x7f else {
                takeBack()
                return status
            }
            // Stopped reading or writing the terminal just after `fg` gave it to amber's group.
            if tcgetpgrp(terminal) == getpgrp() && group != getpgrp() {
                resume()
                continue
            }
            takeBack()
            stop(like: status >> 8 & 0xff)
            resume()
        }
    }

    /// Continues the job, with the terminal if amber's group has it (`fg`), else without (`bg`).
    private func resume() {
        if tcgetpgrp(terminal) == getpgrp() { try? Terminals.setForegroundGroup(terminal, group) }
        _ = Glibc.kill(-group, SIGCONT)
    }

    /// Stops amber by the signal that stopped the job (SIGTSTP for ^Z), so that the shell
    /// waiting for amber sees its job stopped as it was; returns once amber is continued.
    private func stop(like signal: Int32) {
        let stopping = [SIGTSTP, SIGTTIN, SIGTTOU].contains(signal) ? signal : SIGSTOP
        if stopping != SIGSTOP { Glibc.signal(stopping, SIG_DFL) }
        _ = Glibc.kill(getpid(), stopping)
        if stopping != SIGSTOP { Glibc.signal(stopping, SIG_IGN) }
    }
}
