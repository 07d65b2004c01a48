import Glibc
import LinuxKit

/// The owner a socket made again in the restorer must have: the one the dump read.
enum SocketOwnership {
    /// Gives the new socket `fd` the owner `uid`, `gid` unless it has it (`what` names it in errors).
    static func give(_ fd: Int32, uid: UInt32, gid: UInt32, what: String) throws {
        let status = try FileStatus.fstat(fd: fd)
        guard status.uid != uid || status.gid != gid else { return }
        guard fchown(fd, uid, gid) == 0 else {
            throw AmberError(
                .restoreFailed, "cannot give \(what) its owner uid \(uid), gid \(gid): \(LinuxError.current("fchown"))")
        }
    }
}
