import AmberImage
import Glibc
import LinuxKit

/// Refusals shared by the files without a name (memfds, deleted files): one that a process
/// outside the tree holds open or maps would come back as a file of the tree's own, and the
/// two would silently stop seeing each other's writes.
enum UnnamedFileSharing {
    /// Refuses a memfd or deleted file the tree has open or maps which a process outside the
    /// tree has open or maps. Looks outside only when the tree has one; one scan of the tree's
    /// descriptors for both kinds.
    static func refuseHeldOutside(_ processes: [CheckedProcess]) throws {
        var held: [OpenFileIdentity: (process: CheckedProcess, how: String)] = [:]
        for process in processes {
            for probe in try process.probes() where probe.link.hasSuffix(" (deleted)") {
                let fd = probe.fd
                let identity: OpenFileIdentity
                let what: String
                if let memfd = try? MemfdKind.classify(probe) {
                    (identity, what) = (memfd.identity, "the memfd \(probe.link)")
                } else if let file = try? DeletedFileKind.classify(probe) {
                    (identity, what) = (file.identity, "the deleted file \(probe.link)")
                } else {
                    continue
                }
                if held[identity] == nil { held[identity] = (process, "has fd \(fd) on \(what)") }
            }
            for mapping in process.maps where mapping.deleted {
                guard (try? MemoryState.kind(of: mapping, process: process.name)) == .areaFile else { continue }
                let identity = OpenFileIdentity(device: mapping.device, inode: mapping.inode)
                let what = MappedUnnamedFiles.isMemfd(mapping) ? "the memfd" : "the deleted file"
                if held[identity] == nil {
                    held[identity] = (
                        process, "maps \(what) \(mapping.path) (deleted) at 0x\(String(mapping.start, radix: 16))"
                    )
                }
            }
        }
        guard !held.isEmpty else { return }
        func refuse(_ identity: OpenFileIdentity, pid: Int32, how: String) throws {
            guard let holder = held[identity] else { return }
            throw AmberError.unsupported(
                holder.process.name,
                "\(holder.how), which process \(ProcessName(pid: pid)) outside the tree \(how): it is restored only when no process outside the tree has it",
                tree: holder.process.tree)
        }
        try OutsideDescriptors.forEach(outside: processes) { pid, fd, link in
            guard link.hasSuffix(" (deleted)"), let status = try? FileStatus.stat(procFD: pid, fd: fd) else { return }
            try refuse(
                OpenFileIdentity(device: status.device, inode: status.inode), pid: pid,
                how: "has open too (its fd \(fd))")
        }
        let tree = Set(processes.map(\.pid))
        for pid in try ProcFS.processIDs() where !tree.contains(pid) && pid != getpid() {
            for mapping in (try? ProcFS.maps(pid: pid)) ?? [] where mapping.deleted {
                try refuse(
                    OpenFileIdentity(device: mapping.device, inode: mapping.inode), pid: pid,
                    how: "maps too (at 0x\(String(mapping.start, radix: 16)))")
            }
        }
    }
}

extension MemfdKind {
    /// Both kinds' refusal, in one scan (`DeletedFileKind` has none of its own).
    static func check(tree processes: [CheckedProcess]) throws {
        try UnnamedFileSharing.refuseHeldOutside(processes)
    }
}
