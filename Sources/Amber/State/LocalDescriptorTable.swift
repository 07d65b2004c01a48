import AmberImage
import Glibc
import LinuxKit

/// A local descriptor table (modify_ldt: Wine, 16- and 32-bit code, some old thread libraries),
/// refused: a restored process would have none, and a segment it loads from it would fault or
/// mean something else. Nothing in /proc shows one; the dump asks the process to read one entry
/// of its own (modify_ldt's read returns 0 bytes when it has none). One call a process: the
/// table belongs to the address space.
enum LocalDescriptorTableState {
    static func check(_ session: DumpSession) throws {
        // Nor a GDT TLS entry of its own (set_thread_area): a restored thread has none.
        for thread in session.threads {
            if let entry = try thread.threadAreaEntries().first {
                throw AmberError.unsupported(
                    session.name,
                    "has thread \(thread.pid) with the GDT TLS entry \(entry) set (set_thread_area): not restored")
            }
        }
        var arguments = session.arguments()
        let entry = try arguments.reserve(8)
        let read = try session.injector.call(
            "modify_ldt(read)", SyscallNumber.modifyLDT, LocalDescriptorTable.read, entry, 8)
        if read > 0 {
            throw AmberError.unsupported(
                session.name,
                "has a local descriptor table (modify_ldt): not restored; a restored process would have none")
        }
    }
}

extension LocalDescriptorTableState: StateKind {
    /// A 32-bit program (its executable an ELFCLASS32 file) is refused before anything is
    /// injected: its threads run in compat mode, whose registers ptrace sets in the 32-bit
    /// layout, and a call injected with the 64-bit one fails and interrupts the thread's own.
    static func check(_ process: CheckedProcess) throws {
        let exe = Glibc.open("/proc/\(process.pid)/exe", O_RDONLY | O_CLOEXEC)
        guard exe >= 0 else { return }
        defer { Glibc.close(exe) }
        var header = [UInt8](repeating: 0, count: 5)
        guard pread(exe, &header, 5, 0) == 5, header[0..<4] == [0x7f, 0x45, 0x4c, 0x46], header[4] == 1 else {
            return
        }
        throw AmberError.unsupported(
            process.name, "runs a 32-bit program (an ELFCLASS32 executable): not supported", tree: process.tree)
    }

    static var dumpSteps: [DumpStep<Void>] {
        [DumpStep("local-descriptor-table", .traced) { process, _ in try check(process.session) }]
    }
}
