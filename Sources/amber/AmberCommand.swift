import Amber
import AmberImage
import ArgumentParser
import Glibc
import LinuxKit
import Logging

/// Prints "amber: <message>" (and with --json the error as the result) and exits with the error's code.
func fail(_ error: AmberError) -> Never {
    FileHandleOutput.standardError("amber: \(error.message)\n")
    LogFile.write("amber[\(getpid())] error: \(error.message)\n")
    ResultOutput.emit(error: error.code.rawValue, name: "\(error.code)", message: error.message)
    Glibc.exit(error.code.rawValue)
}

enum FileHandleOutput {
    static func standardError(_ text: String) {
        ProgressLine.standardError(text)
    }
}

@main
struct AmberCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amber",
        abstract: "Checkpoint and restore Linux processes.",
        discussion: """
            amber freezes a running process, writes everything it needs into an image directory, and \
            later brings the same process back to life with the same PID, memory, registers, open files \
            and signal state.

            Exit status: 0 success; 1 other failure; 3 no such process; 4 permission denied (may not \
            ptrace; restore: credentials the caller lacks, or an unauthenticated image asking for what its \
            tasks' credentials do not allow); 5 state amber cannot restore yet (refused at dump, target left running); 6 image \
            directory not empty; 7 bad image (missing, truncated, corrupt or another format version); \
            8 this host cannot run the image (CPU features, kernel layout); 9 PID taken at restore; \
            10 restore failed; 11 dump interrupted (SIGINT, SIGTERM or SIGHUP to `amber dump`: the tree was let go \
            untouched and the files written removed; SIGKILL gives 137, and the dump's worker does the same); 64 usage. `restore` without --detach exits with the restored process's \
            own status (128+N if a signal N killed it).
            """,
        version: AmberVersion.current,
        subcommands: [
            DumpCommand.self, RestoreCommand.self, ShowCommand.self, VerifyCommand.self, CheckCommand.self,
            PreDumpCommand.self, PageServerCommand.self, SwrkCommand.self,
        ]
    )

    /// A dump worker (started by `amber dump`) reads its arguments itself, from `amber dump`,
    /// which starts it before its own command line is parsed; everything else goes through
    /// ArgumentParser.
    static func main() {
        let arguments = CommandLine.arguments
        DumpWorker.runIfWorker(arguments)
        MemoryTracker.runIfTracker(arguments)
        SwrkCommand.serveIfPlain(arguments)
        if arguments.count > 1 && arguments[1] == DumpCommand.configuration.commandName { DumpWorker.startEarly() }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // A command line that does not parse is an error too: under --json it is the result.
            if !(error is ExitCode) && exitCode(for: error) != .success && arguments.contains("--json") {
                ResultOutput.json = true
                ResultOutput.emit(
                    error: exitCode(for: error).rawValue, name: "usage", message: message(for: error))
            }
            exit(withError: error)
        }
    }
}

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Dump a process and all its descendants into an image directory.",
        discussion:
            "Every process and thread of the tree is frozen at one instant. The tree is killed once the image is complete (its PIDs are free when the command returns), unless --leave-running is given. State amber cannot restore is refused before the tree is touched. SIGINT, SIGTERM or SIGHUP stops the dump at its next step: the tree is let go untouched, the files written are removed (a directory made, too), and amber exits 11. On a terminal the dump shows its progress on standard error."
    )

    @Option(name: [.customShort("t"), .customLong("tree")], help: "PID of the root of the process tree to dump.")
    var pid: Int32

    @Option(
        name: [.customShort("D"), .customLong("images-dir")],
        help: "Directory for the image; created if missing, must be empty. Not with --page-server.")
    var directory: String?

    @Flag(name: [.customShort("R"), .long], help: "Let the process run on after the dump.")
    var leaveRunning = false

    @Flag(name: .long, help: "fsync the image before the process is killed (slower: waits for the disk).")
    var sync = false

    @Option(
        name: .customLong("external"),
        help: ArgumentHelp(
            "Leave an object outside the tree: a pipe one of whose ends a process outside the tree holds (a shell's pipe, a logger), or a unix socket whose peer it holds. Repeatable.",
            discussion:
                "Without it such a pipe or socket is refused, naming the outside process; INODE is in that message and in /proc/PID/fd (pipe:[INODE]; a socket's socket:[INODE] is named unix:[INODE]). The image records only that the tree's fds were on it: restore it with --inherit-fd fd[N]:pipe:[INODE] or fd[N]:unix:[INODE]. Refused when the tree holds both ends of it, or when it holds bytes the tree has not read. For a tree in a mount namespace of its own, mnt[MOUNT_POINT]:KEY records the bind mount at MOUNT_POINT (as the tree sees it) as the host's, by KEY alone: restore binds the PATH of --external mnt[KEY]:PATH there (CRIU's syntax); a bind mount not named so is refused.",
            valueName: "pipe:[INODE]|unix:[INODE]|mnt[MOUNT_POINT]:KEY"))
    var externalFiles: [String] = []

    @Flag(
        name: [.customShort("j"), .customLong("shell-job")],
        help: ArgumentHelp(
            "Dump a program run from a shell, whose terminal is outside the tree, as a shell job.",
            discussion:
                "Without it a process whose controlling terminal, or a descriptor on a terminal, is outside the tree is refused. The image records the terminal as the job's; restore it with `amber restore -j` from a shell on a terminal."
        ))
    var shellJob = false

    @Flag(
        name: .customLong("tcp-established"),
        help: ArgumentHelp(
            "Dump established TCP connections (TCP_REPAIR, as root), their packets blocked by an nftables table until the restore.",
            discussion:
                "Without it a tree holding an established TCP connection is refused. The table, inet amber-lock-PID, drops the connections' packets from before their queues are read; with --leave-running or a failed dump it goes when the tree is let go; otherwise it stays until `amber restore` has made the connections again (the restore needs no flag: it reads them from the image). To give the connections up instead: nft delete table inet amber-lock-PID."
        ))
    var tcpEstablished = false

    @Flag(
        name: .customLong("cow"),
        help: ArgumentHelp(
            "Copy-on-write dump: the tree is frozen only while everything but its memory's contents is read and its memory write-protected; it runs on while the pages are copied.",
            discussion:
                "A page the tree writes before amber copied it is saved first (userfaultfd write protection: the writing thread waits a moment), so the image is the tree at the freeze. Without --leave-running the tree is killed once the copy is complete: what it did in between to anything outside itself (files, pipes and sockets to other processes) is not undone, and the restored copy starts from the freeze. Needs CAP_SYS_PTRACE in each process or vm.unprivileged_userfaultfd=1. Refused with --tcp-established and with --prev-images-dir. A process that unmaps, drops (MADV_DONTNEED) or moves memory not yet copied makes the dump fail, leaving it running unharmed. Shared memory and the pages of private file mappings are copied while the tree is frozen."
        ))
    var copyOnWrite = false

    @Option(
        name: .customLong("prev-images-dir"),
        help: ArgumentHelp(
            "Refer to this pre-dump (`amber pre-dump`) for the pages not written since: only those written are copied while the tree is frozen.",
            discussion:
                "The pre-dump's directory must be beside the image directory: the image names it by its directory name and the SHA-256 of its inventory, and a restore or `amber verify` follows the chain. The dump ends the pre-dump's tracking (its memory tracker exits).",
            valueName: "DIR"))
    var previous: String?

    @Option(
        name: .customLong("page-server"),
        help: ArgumentHelp(
            "Send the image to `amber page-server` on another host (run there first) instead of into a directory.",
            discussion:
                "Runs on host A, where the tree is; the page server runs on host B and writes the image into its own directory. The records and pages go over one TCP connection as they are made, with nothing kept on this host. The tree is killed (or let go with --leave-running) only once the page server has confirmed that the inventory is in place: if the connection drops before, the dump fails, the tree runs on untouched and the page server keeps no image. Not with -D, --cow or --prev-images-dir. The connection is neither encrypted nor authenticated (docs/security.md).",
            valueName: "HOST:PORT"))
    var pageServer: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let pageServer {
            guard directory == nil else {
                throw ValidationError("--page-server sends the image to another host: not with -D")
            }
            guard TcpEndpoint.split(pageServer) != nil else {
                throw ValidationError("--page-server \(pageServer): expected HOST:PORT or [IPV6]:PORT")
            }
        } else if directory == nil {
            throw ValidationError("an image directory (-D DIR) or a page server (--page-server HOST:PORT) is needed")
        }
        if lazyPages {
            guard directory != nil, port != nil else {
                throw ValidationError("--lazy-pages serves the image in -D DIR on --port PORT: both are needed")
            }
            guard previous == nil else {
                throw ValidationError(
                    "--lazy-pages: a post-copy restore reads the image's own page files only, not a pre-dump's (--prev-images-dir)"
                )
            }
        } else if port != nil || address != nil {
            throw ValidationError(
                "--port and --address serve the image for a post-copy restore: only with --lazy-pages")
        }
    }

    @Flag(
        name: .customLong("compress"),
        help:
            "Store page files compressed (zstd, in 1 MiB chunks, on every CPU while memory is read); a chunk that does not shrink is stored as it is."
    )
    var compress = false

    @OptionGroup var encryption: EncryptionOptions

    @Flag(
        name: .customLong("lazy-pages"),
        help: ArgumentHelp(
            "Post-copy migration: once the image is complete in -D DIR, serve it on --port to one `amber restore --lazy-pages --page-server` on another host.",
            discussion:
                "The image is written as any dump writes it, and the tree is killed (or let go with --leave-running) once it is complete, before anyone connects: the tree's state is then in DIR, on this host. amber then serves DIR's files to the first restore that connects: its records at once, its pages as the restored tree touches them and in the background; it exits 0 once the restore has every page. If the connection drops first, amber exits non-zero and DIR is left as it is: `amber page-server --lazy-pages -D DIR` serves it again, or it can be copied and restored. Not with --page-server or --prev-images-dir. The connection is neither encrypted nor authenticated (docs/security.md)."
        ))
    var lazyPages = false

    @Option(
        name: .long, help: "With --lazy-pages: the TCP port to serve the image on (0: one the kernel picks, printed).")
    var port: UInt16?

    @Option(name: .long, help: "With --lazy-pages: serve on this address only (default: every address of this host).")
    var address: String?

    func run() throws {
        DumpWorker.start(self, arguments: Array(CommandLine.arguments.dropFirst(2)))
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a process from an image directory.",
        discussion:
            "Restores the whole tree the image holds, every task with its PID (and its PIDs in nested PID namespaces). Without --detach, amber stays the restored root's parent and exits with its status. Every file and record of the image is checked before anything is created, and the image is never modified. An image that is not authenticated (root's dump on this host, unchanged: see `amber verify`) gets nothing from amber's privileges beyond what its tasks' own credentials allow, unless --trust-image. On a terminal the restore shows the progress of filling memory on standard error."
    )

    @Option(
        name: [.customShort("D"), .customLong("images-dir")],
        help: "Directory holding the image. Not with --page-server.")
    var directory: String?

    @Flag(name: [.customShort("d"), .long], help: "Return as soon as the process runs.")
    var detach = false

    @Flag(
        name: .customLong("new-pidns"),
        help:
            "Restore into a new PID namespace, under an init made by amber: every task keeps its PID inside, and none can clash with a PID of this host."
    )
    var newPIDNamespace = false

    @Flag(
        name: .customLong("trust-image"),
        help:
            "Treat the image as authenticated although it is not (e.g. root's dump on another host): let amber open files the tasks opened before giving up privilege, and grant privileged settings (seccomp without no_new_privs, limits, scheduling) with its own rights. Only for an image you trust; see `amber verify --needs`."
    )
    var trustImage = false

    @Option(
        name: .customLong("inherit-fd"),
        help: ArgumentHelp(
            "Put amber's own fd N in the place of an object the dump left outside the tree (--external). Repeatable.",
            discussion:
                "Every process and fd of the image that had the object gets fd N's open file description, with the image's close-on-exec flags and fd N's status flags; fd N must allow the image's access mode (a pipe's write end: open for writing); for unix:[INODE], fd N is the caller's socket (one end of a socketpair, say). Every object outside the tree needs one (see `amber verify --needs`). amber closes its own fd N once the tree is restored.",
            valueName: "fd[N]:pipe:[INODE]"))
    var inheritFDs: [String] = []

    @Flag(
        name: [.customShort("j"), .customLong("shell-job")],
        help: ArgumentHelp(
            "Restore a shell job (dumped with -j) on the terminal amber runs on, as its foreground job.",
            discussion:
                "The tree is made in amber's session, with the terminal amber runs on as its controlling terminal in place of the job's; that terminal keeps its own settings (-v logs the image's). Amber stays the root's parent and exits with its status: ^Z stops the job and amber with it, `fg` and `bg` continue both, ^C reaches the job. Not with --detach or --new-pidns."
        ))
    var shellJob = false

    @Option(
        name: .customLong("join-ns"),
        help: ArgumentHelp(
            "Restore the tree into the existing namespace at PATH (/run/netns/NAME, /proc/PID/ns/KIND), as it is: KIND is net, uts or ipc. Once per kind.",
            discussion:
                "Every process of the tree and every socket made for it is in that namespace; its links, addresses, routes and sysctls are the namespace's own, none of the image's. Without it, a tree dumped in a network namespace other than amber's comes back in a new one made with the recorded configuration: a loopback link and veth ends (see --external), their addresses, routes and sysctls. Likewise uts:PATH and ipc:PATH: without them, a tree dumped in a UTS namespace of its own comes back in a new one with its host and domain names, and one dumped in an IPC namespace of its own (which held no object) in a new, empty one with its sysctls.",
            valueName: "KIND:PATH"))
    var joinNamespaces: [String] = []

    @Option(
        name: .customLong("external"),
        help: ArgumentHelp(
            "Make the image's veth end INSIDE in the tree's new network namespace, its other end OUTSIDE in amber's, attached to the bridge BRIDGE when given, and up. Repeatable.",
            discussion:
                "A tree dumped in a network namespace of its own is restored into a new one made as it was: its loopback link, its veth ends (MAC, MTU, up or down), their addresses and routes, and the sysctls amber restores. The other end of a veth was outside the namespace, so the image does not say where it goes: each veth of the image needs this flag (CRIU's syntax). OUTSIDE must be free in amber's namespace; BRIDGE must be a bridge there. Not with --join-ns.",
            valueName: "veth[INSIDE]:OUTSIDE[@BRIDGE]|mnt[KEY]:PATH"))
    var externals: [String] = []

    @Option(
        name: .customLong("root"),
        help: ArgumentHelp(
            "The directory the root mount of a tree dumped in a mount namespace of its own becomes.",
            discussion:
                "Such a tree comes back in a new mount namespace: PATH bound as its root directory (entered with pivot_root), its tmpfs mounts with their files, proc, sysfs and mqueue made again, and each bind mount of the host the dump named with --external mnt[MOUNT_POINT]:KEY bound from the PATH of --external mnt[KEY]:PATH (CRIU's syntax).",
            valueName: "PATH"))
    var root: String?

    @Flag(
        name: .customLong("lazy-pages"),
        help: ArgumentHelp(
            "Let the tree run before its memory is in: pages arrive on first touch and in the background.",
            discussion:
                "The pages of private anonymous areas (heap, stacks, anonymous mappings) are served through a userfaultfd: a thread that touches a missing page waits while amber copies it in, and amber fills all the others meanwhile; the other areas are filled before the tree runs. Amber stays until every process holds all of its pages (with --detach it returns then), and prints when the tree ran and when the last page was in; then no trace of the userfaultfd is left in the tree. Each page is checked against the image's checksums before it is served: a page that cannot be delivered (page file gone or changed, a read error) kills the whole tree, and amber exits 7 naming the file. Needs the right to make a userfaultfd that serves the kernel's own accesses (root, or vm.unprivileged_userfaultfd = 1)."
        ))
    var lazyPages = false

    @Option(
        name: .customLong("manage-cgroups"),
        help: ArgumentHelp(
            "What to do with the image's cgroups (CRIU's modes): soft (the default), full, strict, props, none or ignore.",
            discussion:
                "Each process goes back into its recorded cgroup on every hierarchy (cgroup v1 controllers, named hierarchies, cgroup v2) before it runs. soft: missing cgroups are made and given the recorded properties (limits); cgroups that exist keep theirs. full: missing cgroups are made, and every cgroup gets the recorded properties. strict: no cgroup of the tree's own (below the dumper's cgroup at the dump) may exist; each is made with its properties. props: every cgroup must exist, and gets the recorded properties. none: every cgroup must exist; no property is written. ignore: the tree stays in amber's own cgroups (its membership is lost).",
            valueName: "MODE"))
    var manageCgroups: CgroupMode = .soft

    @Option(
        name: .customLong("cgroup-root"),
        help: ArgumentHelp(
            "Put the image's root cgroup of the hierarchy of CONTROLLER (of every hierarchy no other --cgroup-root names, without CONTROLLER) at PATH. Repeatable.",
            discussion:
                "The tree's root cgroup on a hierarchy is its root process's (or its cgroup namespace's root); the cgroups below it keep their places below PATH. Without it, the image's own paths.",
            valueName: "[CONTROLLER:]/PATH"))
    var cgroupRoots: [String] = []

    @OptionGroup var global: GlobalOptions

    @OptionGroup var encryption: EncryptionOptions

    @Option(
        name: .customLong("page-server"),
        help: ArgumentHelp(
            "Post-copy migration: read the image from host A, where `amber dump --lazy-pages --port PORT` serves it, instead of from a directory. With --lazy-pages.",
            discussion:
                "The records come over first and are checked as any image's; the tree runs before its memory is in, and each page comes over TCP when the tree first touches it, or from the background fill, checked against the image's checksums before it is served. amber stays until every process holds all of its pages, then tells A, which exits. A connection that drops or a page that is wrong before then kills the whole restored tree (amber exits non-zero, nothing is left running); the image stays on A, which can serve it again. An image is authenticated only by this host's key, as any image.",
            valueName: "HOST:PORT"))
    var pageServer: String?

    func validate() throws {
        if let pageServer {
            guard directory == nil else {
                throw ValidationError("--page-server reads the image from another host: not with -D")
            }
            guard lazyPages else {
                throw ValidationError("--page-server is post-copy migration: with --lazy-pages")
            }
            guard TcpEndpoint.split(pageServer) != nil else {
                throw ValidationError("--page-server \(pageServer): expected HOST:PORT or [IPV6]:PORT")
            }
        } else if directory == nil {
            throw ValidationError("an image directory (-D DIR) or a page server (--page-server HOST:PORT) is needed")
        }
        for argument in inheritFDs where InheritedFile(argument: argument) == nil {
            throw ValidationError("--inherit-fd \(argument): expected fd[N]:pipe:[INODE]")
        }
        if shellJob && detach {
            throw ValidationError(
                "--shell-job runs the job in the foreground of amber's terminal, as long as amber waits for it: not with --detach"
            )
        }
        if shellJob && newPIDNamespace {
            throw ValidationError(
                "--shell-job: amber passes job control on to the root, its child, which the init of --new-pidns would be instead"
            )
        }
        for argument in joinNamespaces
        where !["net:", "uts:", "ipc:"].contains(where: { argument.hasPrefix($0) }) || argument.count == 4 {
            throw ValidationError(
                "--join-ns \(argument): expected KIND:PATH, KIND net, uts or ipc (only these namespaces are joined)")
        }
        let joinedKinds = joinNamespaces.map { $0.prefix(3) }
        guard Set(joinedKinds).count == joinedKinds.count else {
            throw ValidationError("--join-ns: one namespace of each kind only")
        }
        for argument in externals
        where ExternalVeth(argument: argument) == nil && ExternalMount(argument: argument) == nil {
            throw ValidationError(
                "--external \(argument): expected veth[INSIDE]:OUTSIDE[@BRIDGE], each a link name, or mnt[KEY]:PATH")
        }
        if externals.contains(where: { ExternalVeth(argument: $0) != nil }) && joinedKinds.contains("net") {
            throw ValidationError(
                "--external veth[...] makes veths for a new network namespace: not with --join-ns, whose namespace is used as it is"
            )
        }
        let insides = externals.compactMap(ExternalVeth.init(argument:)).map(\.inside)
        guard Set(insides).count == insides.count else {
            throw ValidationError("--external: a veth of the image is named twice")
        }
        let controllers = try cgroupRoots.map { argument in
            guard let root = CgroupRestoreOptions.root(argument) else {
                throw ValidationError(
                    "--cgroup-root \(argument): expected [CONTROLLER:]/PATH, PATH absolute without \".\" or \"..\"")
            }
            return root.controller
        }
        guard Set(controllers).count == controllers.count else {
            throw ValidationError("--cgroup-root: one root per controller (and one without)")
        }
    }

    func run() throws {
        let logger = global.makeLogger()
        let restored: Restore.Restored
        ProgressLine.start("restore")
        let inheritedFiles = inheritFDs.compactMap(InheritedFile.init(argument:))
        do {
            restored = try Restore.run(
                directory: directory ?? "", newPIDNamespace: newPIDNamespace, trustImage: trustImage,
                inheritedFiles: inheritedFiles, shellJob: shellJob,
                joinNetwork: joinNamespaces.first { $0.hasPrefix("net:") }.map { String($0.dropFirst(4)) },
                externalVeths: externals.compactMap(ExternalVeth.init(argument:)), lazyPages: lazyPages,
                encryptionKey: encryption.key(), logger: logger,
                mounts: MountNamespaceRestore(
                    root: root, externals: externals.compactMap(ExternalMount.init(argument:))),
                joinNamespaces: Dictionary(
                    joinNamespaces.filter { !$0.hasPrefix("net:") }.map {
                        (String($0.prefix(3)), String($0.dropFirst(4)))
                    },
                    uniquingKeysWith: { first, _ in first }), pageServer: pageServer,
                cgroups: CgroupRestoreOptions(
                    mode: manageCgroups,
                    roots: Dictionary(
                        cgroupRoots.compactMap(CgroupRestoreOptions.root).map { ($0.controller, $0.path) },
                        uniquingKeysWith: { first, _ in first })))
        } catch {
            fail(error)
        }
        ProgressLine.finish()
        // The tree has its copies: ours would keep a pipe's end open while we wait (its reader
        // would never see the end of the file).
        for file in inheritedFiles { close(file.fd) }
        if restored.childPID != restored.rootPID {
            logger.notice(
                "restored process tree in a new PID namespace: its root is PID \(restored.rootPID) here, its init \(restored.childPID)"
            )
        }
        logger.info("restored process \(restored.rootPID)")
        var result: [(String, JSONValue)] = [("rootPID", .integer(Int64(restored.rootPID)))]
        if restored.childPID != restored.rootPID { result.append(("initPID", .integer(Int64(restored.childPID)))) }
        if let server = restored.lazyPages {
            do {
                let done = try server.wait()
                logger.notice(
                    "lazy pages: the tree ran \(milliseconds(done.running)) ms after the restore began; all \(done.pages) pages were in after \(milliseconds(done.complete)) ms (\(done.faults) first touches served)"
                )
                result.append(
                    (
                        "lazyPages",
                        [
                            "runningMilliseconds": .number(milliseconds(done.running)),
                            "completeMilliseconds": .number(milliseconds(done.complete)),
                            "pages": .integer(Int64(done.pages)), "faults": .integer(Int64(done.faults)),
                        ]
                    ))
            } catch {
                fail(error)
            }
        }
        let pid = restored.childPID
        if detach {
            if ResultOutput.json { ResultOutput.emit(.object(result + [("detached", true)])) }
            return
        }
        var status: Int32 = 0
        if let job = restored.shellJob {
            do { status = try job.wait(for: pid) } catch { fail(error) }
        } else {
            // __WALL: a root cloned with another exit signal than SIGCHLD is a "clone" child.
            while waitpid(pid, &status, __WALL) < 0 {
                guard errno == EINTR else { fail(AmberError(.failure, "waiting for process \(pid): errno \(errno)")) }
            }
        }
        let low = status & 0x7f
        let code = low == 0 ? (status >> 8) & 0xff : 128 + low
        if ResultOutput.json {
            result += [("detached", false), ("exitStatus", .integer(Int64(code)))]
            if low != 0 { result.append(("signal", .integer(Int64(low)))) }
            ResultOutput.emit(.object(result))
        }
        Glibc.exit(code)
    }
}

/// A duration in milliseconds, to a tenth.
private func milliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    // A tenth of a millisecond is 10^14 attoseconds; rounded to the nearest.
    let tenths = seconds * 10_000 + (attoseconds + 50_000_000_000_000) / 100_000_000_000_000
    return "\(tenths / 10).\(tenths % 10)"
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Print an image as JSON, after checking it.")

    @Argument(help: "Directory holding the image.")
    var directory: String

    @Flag(name: .long, help: "Only check the image, as `amber verify` does.")
    var verify = false

    @OptionGroup var global: GlobalOptions

    @OptionGroup var encryption: EncryptionOptions

    func run() throws {
        if verify { return VerifyCommand.verify(directory, encryptionKey: encryption.key()) }
        do {
            print(try imageJSON(ImageReader(directory: directory, encryptionKey: encryption.key())))
        } catch {
            fail(AmberError(.badImage, error.description))
        }
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every file of an image against its checksums, and every record.",
        discussion:
            "On the first problem, prints one line naming the file (and for a checksum mismatch the byte range of the bad chunk) and exits with 7. Says whether the image is authenticated (written by root's dump on this host, unchanged: only root can tell). With --needs, lists everything the image asks for that needs privilege, to read before restoring it as root."
    )

    @Argument(help: "Directory holding the image.")
    var directory: String

    @Flag(
        name: .long,
        help:
            "List what the image asks for that needs privilege: credentials, files the tasks could not open themselves, seccomp without no_new_privs, limits, scheduling."
    )
    var needs = false

    @OptionGroup var global: GlobalOptions

    @OptionGroup var encryption: EncryptionOptions

    func run() throws {
        let key = encryption.key()
        guard !ResultOutput.json else {
            var result = Self.result(directory, encryptionKey: key)
            if needs { result.append(("needs", Self.needsResult(directory, encryptionKey: key))) }
            return ResultOutput.emit(.object(result))
        }
        Self.verify(directory, encryptionKey: key)
        if needs { Self.printNeeds(directory, encryptionKey: key) }
    }

    static func verify(_ directory: String, encryptionKey: ImageEncryptionKey? = nil) {
        guard !ResultOutput.json else {
            return ResultOutput.emit(.object(result(directory, encryptionKey: encryptionKey)))
        }
        let report = check(directory, encryptionKey: encryptionKey)
        print("image \(directory) is intact: \(report.files) files, \(report.bytes) bytes checked")
        print("image \(directory) is \(report.authenticity)")
    }

    private static func check(_ directory: String, encryptionKey: ImageEncryptionKey?) -> Verification.Report {
        do {
            return try Verification.run(directory: directory, encryptionKey: encryptionKey)
        } catch {
            fail(error)
        }
    }

    /// --json: what `verify` prints, as members of one object.
    private static func result(_ directory: String, encryptionKey: ImageEncryptionKey?) -> [(String, JSONValue)] {
        let report = check(directory, encryptionKey: encryptionKey)
        return [
            ("directory", .string(directory)), ("intact", true), ("files", .integer(Int64(report.files))),
            ("bytes", .integer(Int64(report.bytes))), ("authenticated", .bool(report.isAuthenticated)),
            ("authenticity", .string(report.authenticity)),
        ]
    }

    /// --json --needs: each section of `printNeeds` as a list (files null where not checked).
    private static func needsResult(_ directory: String, encryptionKey: ImageEncryptionKey?) -> JSONValue {
        let needs: ImageNeeds
        do {
            needs = try ImageNeeds.of(directory: directory, encryptionKey: encryptionKey)
        } catch {
            fail(error)
        }
        func list(_ lines: [String]) -> JSONValue { .array(lines.map(JSONValue.string)) }
        return [
            "processes": .integer(Int64(needs.processes)), "threads": .integer(Int64(needs.threads)),
            "credentials": list(needs.credentials), "files": needs.files.map(list) ?? .null,
            "privilegedSettings": list(needs.requests.map(\.description)), "externalFiles": list(needs.externalFiles),
        ]
    }

    /// One section per kind of ask, each line naming the process or thread.
    static func printNeeds(_ directory: String, encryptionKey: ImageEncryptionKey? = nil) {
        let needs: ImageNeeds
        do {
            needs = try ImageNeeds.of(directory: directory, encryptionKey: encryptionKey)
        } catch {
            fail(error)
        }
        func section(_ title: String, _ lines: [String]) {
            print("\n\(title):" + (lines.isEmpty ? " none" : ""))
            for line in lines { print("  \(line)") }
        }
        print("\nwhat the image asks for that needs privilege (\(needs.processes) processes, \(needs.threads) threads)")
        print(
            needs.authenticity.isAuthenticated
                ? "authenticated: restore grants all of it, within the restorer's own rights"
                : "not authenticated: restore refuses what the tasks' own credentials lack (\"lack\" below), unless --trust-image"
        )
        section("credentials other than an ordinary user's (the tasks run as these)", needs.credentials)
        if let files = needs.files {
            section(
                "open files the tasks' credentials may not open now (opened with the restorer's rights only if authenticated or trusted)",
                files)
        } else {
            print(
                "\nopen files the tasks' credentials may not open now: not checked (only root can open files as another user)"
            )
        }
        section("privileged settings", needs.requests.map(\.description))
        section(
            "objects outside the tree (each needs a descriptor of the caller in its place: restore --inherit-fd)",
            needs.externalFiles)
    }
}

extension CgroupMode: ExpressibleByArgument {}
