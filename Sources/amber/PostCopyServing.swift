import Amber
import Glibc
import Logging

/// Serves the image in `directory` to one post-copy restore (`amber dump --lazy-pages --port`,
/// `amber page-server --lazy-pages`): says where it listens, unbuffered, on standard output
/// (standard error under --json, whose standard output holds the result alone), as `amber
/// page-server` does; exits through `fail` if the restore did not get every page.
func servePostCopy(directory: String, address: String?, port: UInt16, verb: String, logger: Logger)
    -> PostCopy.Served
{
    do {
        let served = try PostCopy.serve(
            directory: directory, host: address, port: port,
            listening: { address in
                var line = Array(
                    "amber \(verb): serving \(directory) for a post-copy restore, listening on \(address)\n".utf8)
                _ = line.withUnsafeMutableBytes { write(ResultOutput.json ? 2 : 1, $0.baseAddress, $0.count) }
            }, logger: logger)
        logger.info("\(served.peer) has every page: \(served.reads) reads, \(served.bytes) bytes served")
        return served
    } catch {
        fail(error)
    }
}

extension PostCopy.Served {
    var json: JSONValue {
        ["peer": .string(peer), "reads": .integer(Int64(reads)), "bytes": .integer(Int64(bytes))]
    }
}
