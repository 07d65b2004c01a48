import AmberImage
import Glibc
import LinuxKit

/// Who the process is: PID, parent, session and group, and its name.
enum IdentityState {
    static func dump(_ session: DumpSession, into task: inout Amber_Task) throws {
        task.pid = session.pid
        task.ppid = session.stat.ppid
        task.pgid = session.stat.pgrp
        task.sid = session.stat.session
        task.comm = try ProcFS.comm(pid: session.pid)
    }

    /// The PID comes from clone3; a process that led its own session or group leads a new one.
    static func restore(_ task: Amber_Task, _ session: RestoreSession) throws {
        if task.sid == task.pid {
            try session.injector.call("setsid", SyscallNumber.setsid)
        } else if task.pgid == task.pid {
            try session.injector.call("setpgid", SyscallNumber.setpgid, 0, 0)
        }
        var name = [UInt8](task.comm.utf8.prefix(15))
        name.append(0)
        let address = try name.withUnsafeBytes { try session.writeScratch($0) }
        try session.injector.call("prctl(PR_SET_NAME)", SyscallNumber.prctl, 15 /* PR_SET_NAME */, address)
    }
}
