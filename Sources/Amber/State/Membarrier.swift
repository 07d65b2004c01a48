import AmberImage
import Glibc
import LinuxKit

/// The process's membarrier(2) registrations: for the private expedited commands (plain,
/// SYNC_CORE, RSEQ) and as a target of global expedited barriers. None can be read from /proc:
/// the dump asks the process itself with MEMBARRIER_CMD_GET_REGISTRATIONS (one call). On a
/// kernel before 6.3 it issues each private command instead, which succeeds only once it is
/// registered (a barrier over a frozen process costs nothing); the global registration cannot
/// be told there, so an older kernel loses it.
enum MembarrierState {
    private struct Registration {
        let command: UInt64
        let register: UInt64
        let field: WritableKeyPath<Amber_Membarrier, Bool>
        let name: String
    }

    private static var registrations: [Registration] {
        [
            Registration(
                command: MembarrierCommand.privateExpedited, register: MembarrierCommand.registerPrivateExpedited,
                field: \.privateExpedited, name: "PRIVATE_EXPEDITED"),
            Registration(
                command: MembarrierCommand.privateExpeditedSyncCore,
                register: MembarrierCommand.registerPrivateExpeditedSyncCore,
                field: \.privateExpeditedSyncCore, name: "PRIVATE_EXPEDITED_SYNC_CORE"),
            Registration(
                command: MembarrierCommand.privateExpeditedRseq,
                register: MembarrierCommand.registerPrivateExpeditedRseq,
                field: \.privateExpeditedRseq, name: "PRIVATE_EXPEDITED_RSEQ"),
            Registration(
                command: 0, register: MembarrierCommand.registerGlobalExpedited,
                field: \.globalExpedited, name: "GLOBAL_EXPEDITED"),
        ]
    }

    static func dump(_ session: DumpSession) throws -> Amber_Membarrier {
        var record = Amber_Membarrier()
        let mask = try session.injector.raw(SyscallNumber.membarrier, MembarrierCommand.getRegistrations, 0, 0)
        if mask >= 0 {
            for registration in registrations where UInt64(mask) & registration.register != 0 {
                record[keyPath: registration.field] = true
            }
            return record
        }
        guard mask == -Int64(EINVAL) else {
            throw LinuxError(
                negated: Int(mask), "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) in process \(session.pid)")
        }
        for registration in registrations where registration.command != 0 {
            let result = try session.injector.raw(SyscallNumber.membarrier, registration.command, 0, 0)
            switch result {
            case 0: record[keyPath: registration.field] = true
            // Not registered, or a command this kernel does not have.
            case -Int64(EPERM), -Int64(EINVAL): break
            default:
                throw LinuxError(
                    negated: Int(result), "membarrier(MEMBARRIER_CMD_\(registration.name)) in process \(session.pid)")
            }
        }
        return record
    }

    static func restore(_ record: Amber_Membarrier, _ session: RestoreSession) throws {
        for registration in registrations where record[keyPath: registration.field] {
            try session.injector.call(
                "membarrier(MEMBARRIER_CMD_REGISTER_\(registration.name))", SyscallNumber.membarrier,
                registration.register, 0, 0)
        }
    }
}

extension MembarrierState: StateKind {
    static var dumpSteps: [DumpStep<Void>] {
        [
            DumpStep("membarrier", .traced) { process, _ in process.task.membarrier = try dump(process.session) }
        ]
    }

    /// With the mm fields: a registration belongs to the address space.
    static var restoreSteps: [RestoreStep] {
        [RestoreStep("membarrier", order: 510) { try restore($0.task.membarrier, $0) }]
    }
}
