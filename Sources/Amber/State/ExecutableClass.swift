import Glibc

/// The class of the program a process runs: a 32-bit one (its executable an ELFCLASS32 file)
/// is refused before anything is injected. Its threads run in compat mode, whose registers
/// ptrace sets in the 32-bit layout, and a call injected with the 64-bit one fails and
/// interrupts the thread's own.
enum ExecutableClassState: StateKind {
    static func check(_ process: CheckedProcess) throws {
        let exe = open("/proc/\(process.pid)/exe", O_RDONLY | O_CLOEXEC)
        guard exe >= 0 else { return }
        defer { close(exe) }
        var header = [UInt8](repeating: 0, count: 5)
        guard pread(exe, &header, 5, 0) == 5, header[0..<4] == [0x7f, 0x45, 0x4c, 0x46], header[4] == 1 else {
            return
        }
        throw AmberError.unsupported(
            process.name, "runs a 32-bit program (an ELFCLASS32 executable): not supported", tree: process.tree)
    }
}
