import AmberImage
import Glibc
import LinuxKit

/// The process's membarrier(2) registrations for private expedited commands. None can be read
/// from /proc: the dump issues each command in the process, which succeeds only once it is
/// registered (a barrier over a frozen process costs nothing). MEMBARRIER_CMD_GLOBAL_EXPEDITED
/// succeeds whether or not the process registered for it, so that registration cannot be
/// told and is not kept: a process relying on being a target of global expedited barriers
/// loses that at restore.
enum MembarrierState {
    private struct Registration {
        let command: UInt64
        let register: UInt64
        let field: WritableKeyPath<Amber_Membarrier, Bool>
        let name: String
    }

    private static var registrations: [Registration] { [
        Registration(command: MembarrierCommand.privateExpedited, register: MembarrierCommand.registerPrivateExpedited,
                     field: \.privateExpedited, name: "PRIVATE_EXPEDITED"),
        Registration(command: MembarrierCommand.privateExpeditedSyncCore, register: MembarrierCommand.registerPrivateExpeditedSyncCore,
                     field: \.privateExpeditedSyncCore, name: "PRIVATE_EXPEDITED_SYNC_CORE"),
        Registration(command: MembarrierCommand.privateExpeditedRseq, register: MembarrierCommand.registerPrivateExpeditedRseq,
                     field: \.privateExpeditedRseq, name: "PRIVATE_EXPEDITED_RSEQ"),
    ] }

    static func dump(_ session: DumpSession) throws -> Amber_Membarrier {
        var record = Amber_Membarrier()
        for registration in registrations {
            let result = try session.injector.raw(SyscallNumber.membarrier, registration.command, 0, 0)
            switch result {
            case 0: record[keyPath: registration.field] = true
            // Not registered, or a command this kernel does not have.
            case -Int64(EPERM), -Int64(EINVAL): break
            default: throw LinuxError(negated: Int(result), "membarrier(MEMBARRIER_CMD_\(registration.name)) in process \(session.pid)")
            }
        }
        return record
    }

    static func restore(_ record: Amber_Membarrier, _ session: RestoreSession) throws {
        for registration in registrations where record[keyPath: registration.field] {
            try session.injector.call("membarrier(MEMBARRIER_CMD_REGISTER_\(registration.name))", SyscallNumber.membarrier, registration.register, 0, 0)
        }
    }
}
