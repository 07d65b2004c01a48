import Amber
import Glibc
import LinuxKit

extension SwrkSession {
    /// The pipes at the tree root's fds 0, 1 and 2 whose other end a process outside the tree
    /// holds, by name (pipe:[INODE]): a container's standard streams, which its manager (podman's
    /// conmon) reads. runc lists them in descriptors.json without naming them external, and
    /// gives a pipe of its own in their place at restore (inherit_fd), as CRIU expects: so
    /// swrk's DUMP leaves them outside the tree. The CLI still refuses them unless `--external`
    /// names them; a restore without an inherit_fd for one is refused, as for any external end.
    func standardStreamPipesHeldOutside() -> [String] {
        let root = options.pid
        let names = (0...2).compactMap { fd -> String? in
            guard let link = try? ProcFS.link("/proc/\(root)/fd/\(fd)"), link.hasPrefix("pipe:[") else { return nil }
            return link
        }
        guard !names.isEmpty, let held = try? Checkpoint.linksHeldOutside(tree: root, Set(names)) else { return [] }
        return names.filter(held.contains)
    }
}

extension SwrkSession {
    /// An empty `inventory.img` beside amber's image: podman takes a checkpoint for complete
    /// when CRIU's inventory file is there (it looks for the name alone, reading nothing).
    func markComplete() throws(SwrkServer.Failure) {
        let mark = open(imagesPath + "/inventory.img", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard mark >= 0 else {
            throw SwrkServer.Failure(message: "inventory.img: \(LinuxError.current("open").errno.name)")
        }
        close(mark)
    }
}
