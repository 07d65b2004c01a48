import AmberImage
import Glibc
import LinuxKit
import SystemPackage

/// Places a process's descriptors in batches: the restorer sends its copies of up to 253 open
/// file descriptions in one SCM_RIGHTS message, and one recvmsg injected into the task installs
/// them all, each at the lowest number free there, so in number order they land at their own
/// numbers. One injected call places a run of descriptors where one by one each took a
/// `pidfd_getfd`, a `dup3` and a `close`: 2,003 descriptors took about 6,000 calls.
///
/// A number the image leaves free inside the run gets a placeholder (the restorer's
/// /dev/null), closed afterwards with one `close_range` per gap; a description the tree
/// inherited from the root's helper gets one too, replaced by a `dup3` from the inherited copy.
/// Runs are cut where close-on-exec changes: recvmsg sets it on a whole message or on none.
struct DescriptorBatch {
    private enum Slot {
        /// A description the restorer sends its copy of.
        case sent(Int32)
        /// A description every process inherited from the root's helper, at that number.
        case inherited(Int32)
        /// A number no descriptor of the image has.
        case gap
    }

    private let slots: [(slot: Slot, closeOnExec: Bool)]

    /// Descriptors to install below which placing them one by one costs no more calls than a
    /// batch's set-up (the task's end of the socket in, up and out again).
    private static let minimumInstalls = 8

    /// The batch for `descriptors` (sorted by number, each with its description), or nil when
    /// placing them one by one is cheaper: few of them, or numbers so sparse that the gaps
    /// would outnumber the descriptors.
    static func plan(
        _ descriptors: [(descriptor: Amber_FileDescriptor, description: Amber_OpenFileDescription)],
        _ session: RestoreSession
    ) throws -> DescriptorBatch? {
        guard let last = descriptors.last?.descriptor.fd, last >= 0 else { return nil }
        let sentDescriptions = Set(
            descriptors.lazy.filter { session.treeFiles?.descriptions[$0.description.id] == nil }.map(\.description.id))
        let gaps = Int(last) + 1 - descriptors.count
        guard sentDescriptions.count >= minimumInstalls, gaps <= max(64, descriptors.count) else { return nil }
        var slots: [(slot: Slot, closeOnExec: Bool)] = []
        slots.reserveCapacity(Int(last) + 1)
        for (descriptor, description) in descriptors {
            while slots.count < Int(descriptor.fd) { slots.append((.gap, slots.last?.closeOnExec ?? false)) }
            if let inherited = session.treeFiles?.descriptions[description.id] {
                slots.append((.inherited(inherited), descriptor.closeOnExec))
            } else {
                slots.append(
                    (.sent(try session.openFiles.descriptor(for: description, in: session)), descriptor.closeOnExec))
            }
        }
        return DescriptorBatch(slots: slots)
    }

    /// Installs every descriptor at its number in the task; each number below the last must
    /// be free there (the restorer's pidfd is moved above them first).
    func place(_ session: RestoreSession) throws {
        _ = try session.movedRestorerPidfd()
        let passing = try session.openFiles.descriptorPassing()
        let socket = try session.install(passing.theirs.rawValue)
        let taskSocket = try session.injector.call(
            "fcntl F_DUPFD_CLOEXEC", SyscallNumber.fcntl, UInt64(socket), UInt64(F_DUPFD_CLOEXEC),
            UInt64(session.firstFreeDescriptor))
        try session.injector.call("close", SyscallNumber.close, UInt64(socket))
        var start = 0
        while start < slots.count {
            let closeOnExec = slots[start].closeOnExec
            var end = start + 1
            while end < slots.count, end - start < DescriptorPassing.maximumPerMessage,
                slots[end].closeOnExec == closeOnExec
            {
                end += 1
            }
            let descriptors = slots[start..<end].map { entry -> Int32 in
                if case .sent(let fd) = entry.slot { return fd }
                return passing.placeholder.rawValue
            }
            try DescriptorPassing.send(descriptors, over: passing.ours)
            var arguments = session.arguments()
            let receive = DescriptorPassing.RemoteReceive(
                count: descriptors.count,
                base: try arguments.reserve(DescriptorPassing.RemoteReceive.size(count: descriptors.count)))
            _ = try receive.bytes.withUnsafeBytes { bytes throws(LinuxError) in
                try session.memory.write(bytes, to: [(receive.base, bytes.count)])
            }
            try session.injector.call(
                "recvmsg of \(descriptors.count) descriptors", SyscallNumber.recvmsg, taskSocket,
                receive.messageAddress,
                closeOnExec ? DescriptorPassing.closeOnExecFlag : 0)
            let received = receive.received(
                from: try arguments.read(
                    receive.base, count: DescriptorPassing.RemoteReceive.size(count: descriptors.count)))
            guard received == (start..<end).map({ Int32($0) }) else {
                throw AmberError(
                    .restoreFailed,
                    "process \(session.pid): descriptors \(start) to \(end - 1) did not land at their numbers (received \(received.map { "\($0)" } ?? "a cut message")): a number was taken"
                )
            }
            start = end
        }
        try session.injector.call("close", SyscallNumber.close, taskSocket)
        var gapStart: Int?
        for (number, entry) in slots.enumerated() {
            if case .inherited(let inherited) = entry.slot {
                try session.injector.call(
                    "dup3 to fd \(number)", SyscallNumber.dup3, UInt64(inherited), UInt64(number),
                    entry.closeOnExec ? UInt64(O_CLOEXEC) : 0)
            }
            if case .gap = entry.slot {
                if gapStart == nil { gapStart = number }
            } else if let first = gapStart {
                try session.injector.call(
                    "close_range \(first) to \(number - 1)", SyscallNumber.closeRange, UInt64(first),
                    UInt64(number - 1), 0)
                gapStart = nil
            }
        }
    }
}

/// The restorer's ends for passing descriptors to tasks, made once per restore.
final class DescriptorPassingEnds {
    let ours: FileDescriptor
    let theirs: FileDescriptor
    /// What a number the image leaves free gets until it is closed again.
    let placeholder: FileDescriptor

    init() throws {
        (ours, theirs) = try DescriptorPassing.socketPair()
        do {
            placeholder = try FileDescriptor.open("/dev/null", .readOnly, options: .closeOnExec)
        } catch {
            try? ours.close()
            try? theirs.close()
            throw AmberError(.restoreFailed, "cannot open /dev/null for the restore: \(error)")
        }
    }

    func close() {
        try? ours.close()
        try? theirs.close()
        try? placeholder.close()
    }
}
