import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit

/// A shell job (`dump -j`, CRIU's `--shell-job`): a program run from a user's shell, whose
/// session and controlling terminal are the shell's, outside the tree. The dump records the
/// terminal on the root (`Amber_ShellJob`: its path and settings) and its descriptors on it
/// (`ShellJobTerminalKind`); a restore with -j makes the tree in amber's session, on the
/// terminal amber runs on, and the foreground job there (`ShellJobControl`). Without -j, a
/// process whose controlling terminal is outside the tree is refused, naming -j. A session
/// leader with a controlling terminal is `TreeState`'s refusal, and a pty whose master the
/// tree holds is no shell job's terminal (`ControllingTerminals`).
enum ShellJobState: StateKind {
    static func check(tree processes: [CheckedProcess]) throws {
        let terminalsOfTree = try ControllingTerminals.terminalsOfTree(processes)
        for process in processes where !process.shellJob {
            guard let stat = try? ProcFS.stat(pid: process.pid), stat.terminal != 0, stat.session != process.pid,
                !terminalsOfTree.contains(stat.terminal)
            else { continue }
            let terminal = Terminals.name(ofDevice: UInt64(UInt32(bitPattern: stat.terminal)))
            throw AmberError.unsupported(
                process.name,
                "has the controlling terminal \(terminal) of session \(stat.session), outside the tree: dump a program run from a shell as a shell job, with -j (`amber dump -j`), and restore it with -j on a terminal",
                tree: process.tree)
        }
    }

    /// The root's record of the job, made once for the dump: nil without -j, or when the tree
    /// has neither a controlling terminal nor a descriptor on one.
    final class DumpState {
        let record: Amber_ShellJob?

        init(_ dump: TreeDump) throws {
            guard dump.shellJob, let root = dump.processes.first else {
                record = nil
                return
            }
            var record = Amber_ShellJob()
            let controlling = UInt64(UInt32(bitPattern: root.snapshot.stat.terminal))
            record.rdev = controlling
            record.terminal = controlling == 0 ? "" : Terminals.name(ofDevice: controlling)
            for process in dump.processes where !process.zombie && !record.hasSettings {
                for probe in try process.snapshot.descriptors.probes(process: process.name, tree: nil) {
                    guard let terminal = (try? OpenFileKinds.classify(probe)) as? ShellJobTerminalKind else {
                        continue
                    }
                    if record.rdev == 0 {
                        record.rdev = terminal.device
                        record.terminal = terminal.path
                    }
                    let copy = try probe.duplicate()
                    defer { try? copy.close() }
                    record.settings = Self.record(of: try Terminals.settings(of: copy.rawValue))
                    break
                }
            }
            self.record = record.rdev == 0 ? nil : record
        }

        private static func record(of settings: TerminalSettings) -> Amber_ShellJobTerminalSettings {
            var record = Amber_ShellJobTerminalSettings()
            record.inputFlags = settings.inputFlags
            record.outputFlags = settings.outputFlags
            record.controlFlags = settings.controlFlags
            record.localFlags = settings.localFlags
            record.lineDiscipline = UInt32(settings.lineDiscipline)
            record.controlCharacters = Data(settings.controlCharacters)
            record.rows = UInt32(settings.rows)
            record.columns = UInt32(settings.columns)
            return record
        }
    }

    static func makeDumpState(_ dump: TreeDump) throws -> DumpState { try DumpState(dump) }

    static var dumpSteps: [DumpStep<DumpState>] {
        [
            DumpStep("shell-job", .frozen) { process, state in
                guard process.tree.pid == process.pid, let record = state.record else { return }
                process.task.shellJob = record
            }
        ]
    }
}
