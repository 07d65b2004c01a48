import AmberImage
import Glibc
import LinuxKit

/// Open files: the fd table, each descriptor on an open file description of one of the kinds
/// of `OpenFileKinds.all` (Sources/Amber/Files), which dumps it and makes it again at restore
/// with its flags and offset; descriptors sharing one open file description stay shared.
enum FileState {
    /// Refuses descriptors Amber cannot reopen, before the target is stopped.
    static func check(_ process: CheckedProcess) throws {
        let probes = try process.probes()
        for probe in probes {
            _ = try OpenFileKinds.classify(probe)
        }
        try checkRoomForTemporaries(probes, process)
    }

    /// Refuses a descriptor at the last number our hard RLIMIT_NOFILE allows: a restore here
    /// could open none of its temporaries above the image's descriptors, and raising the hard
    /// limit needs CAP_SYS_RESOURCE.
    private static func checkRoomForTemporaries(_ probes: [DescriptorProbe], _ process: CheckedProcess) throws {
        var limit = rlimit()
        guard let highest = probes.last?.fd,
            getrlimit(__rlimit_resource_t(ResourceLimit.openFiles), &limit) == 0,
            UInt64(highest) + 1 >= UInt64(limit.rlim_max)
        else { return }
        throw AmberError.unsupported(
            process.name,
            "has fd \(highest), the last the hard RLIMIT_NOFILE of \(limit.rlim_max) a restore here has allows: the restore opens descriptors above the process's own",
            tree: process.tree)
    }

    /// From the probes the frozen checks made: the process cannot have changed its descriptors since.
    static func dump(
        _ target: DumpTarget, table: inout DescriptionTable, externalFiles: Set<String>, contents: FileContentsDump
    ) throws -> Amber_Files {
        var record = Amber_Files()
        // The frozen checks classified every descriptor already: classifying all of them
        // before any is dumped throws no refusal they did not.
        let classified = try target.snapshot.descriptors.probes(process: target.name, tree: nil).map { probe in
            probe.contents = contents
            return (probe: probe, file: try OpenFileKinds.classify(probe))
        }
        let prepared = ConcurrentFileRecords(classified, externalFiles: externalFiles, table: table)
        for (probe, file) in classified {
            let fd = probe.fd
            let info = try probe.info()
            let flags = OpenFileFlags(rawValue: info.flags)
            var descriptor = Amber_FileDescriptor()
            descriptor.fd = fd
            descriptor.closeOnExec = flags.contains(.closeOnExec)
            let (description, isNew) = try table.description(pid: target.pid, fd: fd, identity: file.identity) { id in
                // open(2) does not start signal-driven I/O, and the owner (F_SETOWN) cannot be read from outside.
                if flags.contains(.asynchronous) {
                    throw AmberError.unsupported(
                        target.name,
                        "has fd \(fd) on \(probe.link) with signal-driven I/O (O_ASYNC, F_SETOWN): not restored yet")
                }
                // Without O_ASYNC, an owner or a signal waits for a later F_SETFL O_ASYNC. An
                // O_PATH descriptor has neither (fcntl answers it EBADF).
                if !flags.contains(.pathOnly), try Self.hasOwner(probe) {
                    throw AmberError.unsupported(
                        target.name,
                        "has fd \(fd) on \(probe.link) with an owner or a signal for its notices (F_SETOWN, F_SETOWN_EX, F_SETSIG): not restored yet"
                    )
                }
                // After those checks: a TCP connection's dump puts it in repair mode.
                let kindRecord =
                    try ExternalFiles.record(of: file, named: externalFiles) ?? prepared.record(for: fd)
                    ?? file.dump(probe)
                var description = Amber_OpenFileDescription()
                description.id = id
                description.flags = flags.subtracting(.closeOnExec).rawValue
                description.offset = info.position
                description.file = kindRecord
                return description
            }
            descriptor.descriptionID = description.id
            record.descriptors.append(descriptor)
            if isNew || !record.descriptions.contains(where: { $0.id == description.id }) {
                record.descriptions.append(description)
            }
        }
        return record
    }

    /// Whether the description has an owner or a signal set (read through a copy of it).
    private static func hasOwner(_ probe: DescriptorProbe) throws -> Bool {
        let copy = try probe.duplicate()
        defer { try? copy.close() }
        return try OpenFileOwner.isSet(copy)
    }

    /// Makes every description here, hands it to the task and places it at each of its numbers.
    static func restore(_ record: Amber_Files, _ session: RestoreSession) throws {
        let descriptions = Dictionary(record.descriptions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var installed: [UInt32: Int32] = [:]
        // A process whose descriptions all come from the root's helper installs nothing, which
        // would leave the restorer's pidfd where one of them goes (and its clean-up close it).
        if record.descriptors.contains(where: { $0.fd == session.inheritedPidfd }) {
            _ = try session.movedRestorerPidfd()
        }
        let placed = try record.descriptors.map { descriptor in
            guard let description = descriptions[descriptor.descriptionID] else {
                throw AmberError(
                    .badImage,
                    "image file \(ImageFormat.taskRecordName(pid: session.task.pid)): fd \(descriptor.fd) refers to a missing open file"
                )
            }
            return (descriptor: descriptor, description: description)
        }.sorted { $0.descriptor.fd < $1.descriptor.fd }
        for (_, description) in placed
        where OpenFileKinds.isMadeFirst(description) && session.treeFiles?.descriptions[description.id] == nil {
            _ = try session.openFiles.descriptor(for: description, in: session)
        }
        if let batch = try DescriptorBatch.plan(placed, session) {
            try batch.place(session)
            return
        }
        for (descriptor, description) in placed {
            let source: Int32
            var temporary = false
            if let existing = installed[description.id] {
                source = existing
            } else if let inherited = session.treeFiles?.descriptions[description.id] {
                source = inherited
            } else {
                source = try session.install(try session.openFiles.descriptor(for: description, in: session))
                temporary = source != descriptor.fd
            }
            if source == descriptor.fd {
                try session.injector.call(
                    "fcntl F_SETFD", SyscallNumber.fcntl, UInt64(source), UInt64(F_SETFD),
                    descriptor.closeOnExec ? UInt64(FD_CLOEXEC) : 0)
            } else {
                try session.injector.call(
                    "dup3 to fd \(descriptor.fd)", SyscallNumber.dup3, UInt64(source), UInt64(descriptor.fd),
                    descriptor.closeOnExec ? UInt64(O_CLOEXEC) : 0)
                if temporary {
                    try session.injector.call("close", SyscallNumber.close, UInt64(source))
                }
            }
            installed[description.id] = descriptor.fd
        }
    }
}

extension FileState: StateKind {
    static func check(tree processes: [CheckedProcess]) throws {
        try ExternalFiles.check(tree: processes)
        for kind in OpenFileKinds.all {
            try kind.check(tree: processes)
        }
    }

    /// The open file descriptions seen so far in the tree.
    final class DumpState {
        var descriptions = DescriptionTable()
        let externalFiles: Set<String>
        let contents: FileContentsDump

        init(externalFiles: Set<String>, contents: FileContentsDump) {
            self.externalFiles = externalFiles
            self.contents = contents
        }
    }

    static func makeDumpState(_ dump: TreeDump) -> DumpState {
        DumpState(externalFiles: dump.externalFiles, contents: dump.fileContents)
    }

    static var dumpSteps: [DumpStep<DumpState>] {
        [
            DumpStep("files", .outside) { process, state in
                process.task.files = try dump(
                    process.target, table: &state.descriptions, externalFiles: state.externalFiles,
                    contents: state.contents)
            }
        ]
    }

    /// Right after memory: the steps after it may need a file by descriptor.
    static var restoreSteps: [RestoreStep] { [RestoreStep("files", order: 200) { try restore($0.task.files, $0) }] }
}
