import Amber
import ArgumentParser
import Glibc

struct PageServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "page-server",
        abstract:
            "Receive one image over TCP from `amber dump --page-server` on another host; with --lazy-pages, serve one to a post-copy restore.",
        discussion:
            "Runs on host B, the one the tree moves to; start it before `amber dump -t PID --page-server B:PORT` on host A. It accepts one connection, writes the image into DIR with the rules of `amber dump -D` (created if missing, must be empty, no symbolic link on the path, the inventory last), prints the address it listens on to standard output first, and exits 0 once the inventory is in place. If the connection drops, or the peer sends anything that is not a well-formed image, it exits non-zero and leaves DIR as it found it. Anyone who can connect to the port can offer an image, and nothing on the wire is encrypted: see docs/security.md. Check the image with `amber verify` before restoring it."
    )

    @Option(name: .long, help: "TCP port to listen on (0: one the kernel picks, printed).")
    var port: UInt16

    @Option(name: .long, help: "Listen on this address only (default: every address of this host).")
    var address: String?

    @Option(
        name: [.customShort("D"), .customLong("images-dir")],
        help: "Directory for the image; created if missing, must be empty.")
    var directory: String

    @OptionGroup var global: GlobalOptions

    @Flag(
        name: .customLong("lazy-pages"),
        help: ArgumentHelp(
            "Serve the image in DIR instead, to one `amber restore --lazy-pages --page-server` on another host (post-copy migration).",
            discussion:
                "Runs on host A, where the image is (written by `amber dump -D DIR`, or kept by a `dump --lazy-pages` whose restore lost its connection). The image is checked first; only its own files are served, and only bytes within them. Exits 0 once the restore has every page; non-zero if the connection drops first, the image left as it is."
        ))
    var lazyPages = false

    func run() throws {
        let logger = global.makeLogger()
        if lazyPages {
            let served = servePostCopy(
                directory: directory, address: address, port: port, verb: "page-server", logger: logger)
            if ResultOutput.json { ResultOutput.emit(["directory": .string(directory), "served": served.json]) }
            return
        }
        do {
            let received = try PageServer.receive(
                directory: directory, host: address, port: port,
                listening: { address in
                    // At once, unbuffered: whoever starts the dump waits for this line. Under --json
                    // standard output holds the result alone.
                    var line = Array("amber page-server: listening on \(address)\n".utf8)
                    _ = line.withUnsafeMutableBytes { write(ResultOutput.json ? 2 : 1, $0.baseAddress, $0.count) }
                }, logger: logger)
            logger.info(
                "received an image of \(received.files) files, \(received.bytes) bytes, from \(received.peer) into \(directory)"
            )
            if ResultOutput.json {
                ResultOutput.emit([
                    "directory": .string(directory), "peer": .string("\(received.peer)"),
                    "files": .integer(Int64(received.files)), "bytes": .integer(Int64(received.bytes)),
                ])
            }
        } catch {
            fail(error)
        }
    }
}
