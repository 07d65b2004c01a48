import Glibc
import LinuxKit

extension DescriptorProbe {
    /// The refusal of a descriptor that no kind of `OpenFileKinds.all` takes, naming what it
    /// is open on. A kind added for one of these takes it before it gets here, and its refusal goes.
    func unsupported() throws -> AmberError {
        if link.hasPrefix("socket:") { return refusal("\(try socketFamilyName()) socket (\(link))") }
        if link.hasPrefix("anon_inode:") { return refusal(anonymousFile(String(link.dropFirst("anon_inode:".count)))) }
        switch try linkPath() {
        case .notAPath:
            return refusal(link)
        case .deleted(let path):
            switch try FileSystemKind.of(path: "/proc/\(pid)/fd/\(fd)") {
            case .devpts: return refusal("the pty \(path), whose entry in /dev/pts is gone (its master was closed)")
            case .hugetlbfs: return refusal("hugetlb memory (\(path))")
            case .shmem where path == "/dev/zero" || path.hasPrefix("/SYSV"):
                return refusal("SysV/shmem shared memory (\(path))")
            default: return refusal("the deleted file \(path)")
            }
        case .messageQueue:
            return refusal("the POSIX message queue \(link)")
        case .elsewhere
        where try status().isRegular && link.hasSuffix(" (deleted)")
            && DeletedFileKind.isTemporaryFile(
                path: String(link.dropLast(" (deleted)".count)), inode: try status().inode):
            return refusal(
                "the O_TMPFILE file \(link), linked since under a name its link does not show (it cannot be reopened by it)"
            )
        case .elsewhere:
            return refusal("\(link), a file its path does not lead to")
        case .reopenable:
            if try status().isCharacterDevice { return refusal("the device \(link)") }
            return refusal(link)
        }
    }

    /// What an anonymous-inode file is, by the name its link shows ("[eventpoll]", "inotify"...):
    /// the name alone for one not known here.
    private func anonymousFile(_ name: String) -> String {
        let known: [String: String] = [
            "[eventpoll]": "an epoll instance", "inotify": "an inotify instance", "[fanotify]": "a fanotify group",
            "[pidfd]": "a pidfd", "[userfaultfd]": "a userfaultfd", "[io_uring]": "an io_uring",
            "[perf_event]": "a perf event", "seccomp notify": "a seccomp listener", "[signalfd]": "a signalfd",
            "[eventfd]": "an eventfd", "[timerfd]": "a timerfd", "bpf-map": "a BPF map", "bpf-prog": "a BPF program",
            "bpf_link": "a BPF link", "kvm-vm": "a KVM virtual machine",
        ]
        guard let what = known[name] ?? (name.hasPrefix("kvm-vcpu") ? "a KVM virtual CPU" : nil) else { return name }
        return "\(what) (\(name))"
    }

    /// "a unix", "an inet6"...: the socket's address family as `ss` names it.
    private func socketFamilyName() throws -> String {
        let family: Int32 = try socketFamily()
        switch family {
        case AF_UNIX: return "a unix"
        case AF_INET: return "an inet"
        case AF_INET6: return "an inet6"
        case AF_NETLINK: return "a netlink"
        case AF_PACKET: return "a packet"
        default: return "an address family \(family)"
        }
    }
}
