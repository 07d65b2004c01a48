import Amber
import AmberImage
import ArgumentParser
import Glibc

struct PreDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pre-dump",
        abstract: "Copy a process tree's memory while it runs, and track its writes for a later dump.",
        discussion:
            "The tree is frozen only to read its memory areas and to start tracking writes (a userfaultfd per process, held by a memory tracker process outside the tree); it runs on while its memory is copied. `amber dump --prev-images-dir DIR` then copies only what was written since, and a further pre-dump with --prev-images-dir makes a chain. The tracker exits when the dump is done, when the tree is gone, or when killed (its PID is printed)."
    )

    @Option(name: [.customShort("t"), .customLong("tree")], help: "PID of the root of the process tree.")
    var pid: Int32

    @Option(
        name: [.customShort("D"), .customLong("images-dir")],
        help: "Directory for the pre-dump; created if missing, must be empty.")
    var directory: String

    @Option(
        name: .customLong("prev-images-dir"),
        help: "An earlier pre-dump, beside this one: only what was written since is copied.")
    var previous: String?

    @OptionGroup var global: GlobalOptions

    @Flag(
        name: .customLong("compress"), help: "Store the page files compressed (zstd), as `amber dump --compress` does.")
    var compress = false

    @OptionGroup var encryption: EncryptionOptions

    func run() throws {
        let logger = global.makeLogger()
        let clock = ContinuousClock()
        let start = clock.now
        do {
            let summary = try PreDump.run(
                pid: pid, directory: directory, previous: previous,
                storage: ImageStorage(compress: compress, encryptionKey: encryption.key()), logger: logger)
            let elapsed = clock.now - start
            logger.info(
                "pre-dumped process \(summary.pid) and its tree: \(summary.processes) processes, \(summary.pageBytes >> 20) MiB of pages copied, \(summary.referredBytes >> 20) MiB referred to the previous pre-dump, in \(elapsed), frozen for \(summary.frozenNanoseconds / 1_000_000) ms; memory tracker PID \(summary.trackerPID)"
            )
            if global.json {
                ResultOutput.emit(
                    [
                        "pid": .integer(Int64(summary.pid)), "pids": .array(summary.pids.map { .integer(Int64($0)) }),
                        "processes": .integer(Int64(summary.processes)),
                        "memoryBytes": .integer(Int64(summary.pageBytes)),
                        "referredBytes": .integer(Int64(summary.referredBytes)),
                        "imageBytes": .integer(Int64(ImageSize.of(directory: directory))),
                        "milliseconds": .milliseconds(elapsed),
                        "frozenMilliseconds": .milliseconds(nanoseconds: summary.frozenNanoseconds),
                        "trackerPID": .integer(Int64(summary.trackerPID)),
                    ])
            }
        } catch {
            fail(error)
        }
    }
}
