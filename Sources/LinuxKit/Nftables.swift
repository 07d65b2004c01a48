internal import CLinux

/// nftables through Debian's libnftables, in this process: a `nft` run costs a process and
/// the library's loading each time, and the TCP lock is taken and dropped while the tree is frozen.
/// The library's context stays open between runs in one namespace (`amber_nft_run`).
public enum Nftables {
    public enum Failure: Error, Sendable {
        /// libnftables.so.1 could not be loaded.
        case libraryMissing
        /// nft refused the commands; its first error line.
        case refused(String)
    }

    /// Runs `commands` (nft syntax, `;`-separated) as one transaction in the calling thread's
    /// network namespace.
    public static func run(_ commands: String) throws(Failure) {
        var error = [CChar](repeating: 0, count: 512)
        let status = error.withUnsafeMutableBufferPointer { buffer in
            amber_nft_run(commands, buffer.baseAddress, buffer.count)
        }
        switch status {
        case 0: return
        case 1: throw .refused(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default: throw .libraryMissing
        }
    }
}
