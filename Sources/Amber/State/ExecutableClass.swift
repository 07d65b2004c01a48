import Glibc
import LinuxKit

/// The class of the program a process runs: a 32-bit one (its executable an ELFCLASS32 file)
/// is refused before anything is injected. Its threads run in compat mode, whose registers
/// ptrace sets in the 32-bit layout, and a call injected with the 64-bit one fails and
/// interrupts the thread's own.
enum ExecutableClassState: StateKind {
    /// The ELF header is read from the process's own mapping of its executable, not from the
    /// file: opening and reading it would be seen by an inotify or fanotify watch on it.
    static func check(_ process: CheckedProcess) throws {
        guard let exe = try? FileStatus.stat(path: "/proc/\(process.pid)/exe"),
            let header = process.maps.first(where: { $0.inode == exe.inode && $0.offset == 0 && $0.readable })
        else { return }
        var bytes = [UInt8](repeating: 0, count: 5)
        let read = bytes.withUnsafeMutableBytes {
            try? ProcessMemory(pid: process.pid).read(into: $0, from: [(header.start, 5)])
        }
        guard read == 5, bytes[0..<4] == [0x7f, 0x45, 0x4c, 0x46], bytes[4] == 1 else { return }
        throw AmberError.unsupported(
            process.name, "runs a 32-bit program (an ELFCLASS32 executable): not supported", tree: process.tree)
    }
}
