internal import CLinux
import Dispatch
import Glibc
import SystemPackage

/// A thread of amber's that makes mounts for process `pid` as that process's own calls would
/// make them: a new thread, so that the caller keeps its own root, working directory and
/// namespaces, which enters `pid`'s mount namespace (unshare(CLONE_FS) first: setns into a
/// mount namespace wants a thread with its own root and working directory), and its network
/// and IPC namespaces (a sysfs mount is of its caller's network namespace, an mqueue mount of
/// its IPC namespace), then takes `pid`'s root directory and working directory, so that every
/// path resolves as in `pid`. It has the credentials of the thread that starts it. The PID
/// namespace a proc mount shows is its caller's, which no thread can change: a proc mount for
/// a process of another PID namespace is not made here (`onStarter`).
public final class MountNamespaceThread: @unchecked Sendable {
    private let toStarter = DispatchSemaphore(value: 0)
    private let toThread = DispatchSemaphore(value: 0)
    /// What the thread hands the starter to run, set before it signals `toStarter`; nil when
    /// it signals that it is done.
    private var handed: (() -> Void)?

    private init() {}

    /// Runs `body` on a new thread in `pid`'s namespaces, with its root and working
    /// directories, while the calling thread runs what `body` hands it (`onStarter`); returns
    /// what `body` returns once the thread has ended. Throws when the thread cannot be made or
    /// cannot enter them.
    public static func run<T>(for pid: Int32, _ body: (MountNamespaceThread) throws -> T) throws -> T {
        let thread = MountNamespaceThread()
        let files = try TargetFiles(pid: pid)
        return try withoutActuallyEscaping(body) { body in
            var result: Result<T, any Error>?
            let job = Job {
                result = Result {
                    try files.enter()
                    return try body(thread)
                }
                thread.handed = nil
                thread.toStarter.signal()
            }
            var handle = pthread_t()
            let created = pthread_create(
                &handle, nil,
                {
                    Unmanaged<Job>.fromOpaque($0!).takeUnretainedValue().run()
                    return nil
                },
                Unmanaged.passUnretained(job).toOpaque())
            guard created == 0 else {
                throw LinuxError(Errno(rawValue: created), "pthread_create a thread for the mount namespace of \(pid)")
            }
            while true {
                thread.toStarter.wait()
                guard thread.runHanded() else { break }
                thread.toThread.signal()
            }
            pthread_join(handle, nil)
            withExtendedLifetime(job) {}
            return try result!.get()
        }
    }

    /// Runs `work` on the thread that started this one, which waits for it meanwhile: what
    /// only that thread may do, such as calls injected into a task it traces.
    public func onStarter<T>(_ work: () throws -> T) throws -> T {
        try withoutActuallyEscaping(work) { work in
            var result: Result<T, any Error>?
            handed = { result = Result { try work() } }
            toStarter.signal()
            toThread.wait()
            return try result!.get()
        }
    }

    /// Runs what the thread handed, if anything: false when it is done. The closure is let go
    /// before the thread is told, which then returns from `onStarter`.
    private func runHanded() -> Bool {
        guard let work = handed else { return false }
        handed = nil
        work()
        return true
    }

    /// The closure a new thread runs.
    private final class Job {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// `pid`'s namespaces, root and working directory, opened by the starter.
    private final class TargetFiles: @unchecked Sendable {
        let pid: Int32
        let mountNamespace: Int32
        let network: NetworkNamespace
        let ipc: ThreadNamespace
        let root: Int32
        let workingDirectory: Int32

        init(pid: Int32) throws(LinuxError) {
            self.pid = pid
            network = try NetworkNamespace.of(pid: pid)
            ipc = try ThreadNamespace.of(pid: pid, .ipc)
            var opened: [Int32] = []
            do throws(LinuxError) {
                let directory = OpenFileFlags.pathOnly.openFlags | O_DIRECTORY
                for (name, flags) in [("ns/mnt", O_RDONLY), ("root", directory), ("cwd", directory)] {
                    let path = "/proc/\(pid)/\(name)"
                    opened.append(try libcResult("open \(path)") { open(path, flags | O_CLOEXEC) }.get())
                }
            } catch {
                for fd in opened { close(fd) }
                throw error
            }
            mountNamespace = opened[0]
            root = opened[1]
            workingDirectory = opened[2]
        }

        deinit {
            close(mountNamespace)
            close(root)
            close(workingDirectory)
        }

        /// Moves the calling thread into them: its own root and working directory first.
        func enter() throws(LinuxError) {
            _ = try kernelResult(amber_unshare(Int32(CloneFlags.fs)), "unshare(CLONE_FS)").get()
            _ = try kernelResult(
                amber_setns(mountNamespace, Int32(CloneFlags.newMountNamespace)),
                "setns into the mount namespace of \(pid)"
            ).get()
            try network.enter()
            try ipc.enter()
            _ = try libcResult("fchdir /proc/\(pid)/root") { fchdir(root) }.get()
            _ = try libcResult("chroot /proc/\(pid)/root") { chroot(".") }.get()
            _ = try libcResult("fchdir /proc/\(pid)/cwd") { fchdir(workingDirectory) }.get()
        }
    }
}

/// mount(2), umount2(2), chdir(2) and pivot_root(2) of the calling thread: in its mount
/// namespace, paths resolved from its root and working directories. `what` names the call
/// in errors.
public enum MountCalls {
    public static func mount(
        _ what: @autoclosure () -> String, source: String?, target: String, type: String?, flags: UInt64,
        data: String?
    ) throws(LinuxError) {
        _ = try libcResult(what()) { Glibc.mount(source, target, type, UInt(flags), data) }.get()
    }

    public static func unmount(_ what: @autoclosure () -> String, _ target: String, flags: UInt64)
        throws(LinuxError)
    {
        _ = try libcResult(what()) { umount2(target, Int32(flags)) }.get()
    }

    public static func changeDirectory(_ what: @autoclosure () -> String, _ path: String) throws(LinuxError) {
        _ = try libcResult(what()) { chdir(path) }.get()
    }

    public static func pivotRoot(_ what: @autoclosure () -> String, newRoot: String, putOld: String)
        throws(LinuxError)
    {
        _ = try kernelResult(amber_pivot_root(newRoot, putOld), what()).get()
    }
}
