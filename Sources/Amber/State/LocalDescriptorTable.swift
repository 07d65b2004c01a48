import AmberImage
import Glibc
import LinuxKit

/// A local descriptor table (modify_ldt: Wine, 16- and 32-bit code, some old thread libraries),
/// refused: a restored process would have none, and a segment it loads from it would fault or
/// mean something else. Nothing in /proc shows one; the dump asks the process to read one entry
/// of its own (modify_ldt's read returns 0 bytes when it has none). One call a process: the
/// table belongs to the address space. A thread's own GDT TLS entries (set_thread_area) are
/// refused the same way, read with PTRACE_GET_THREAD_AREA.
enum LocalDescriptorTableState {
    static func check(_ session: DumpSession) throws {
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
    static var dumpSteps: [DumpStep<Void>] {
        [DumpStep("local-descriptor-table", .traced) { process, _ in try check(process.session) }]
    }
}
