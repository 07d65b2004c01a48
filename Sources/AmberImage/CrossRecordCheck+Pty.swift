extension CrossRecordCheck {
    /// Each pty has one master description, and every slave names a master of the image (one
    /// opened as /dev/tty, a master whose slave is a session's controlling terminal); the
    /// session a master's slave is the controlling terminal of is led by a live task of the
    /// image, and its foreground group is the group of a task of that session.
    static func checkPtys(_ tasks: [Amber_Task]) throws(ImageError) {
        var masters: [UInt32: (record: Amber_PtyMaster, description: UInt32)] = [:]
        for task in tasks {
            for description in task.files.descriptions {
                guard case .ptyMaster(let master) = description.file else { continue }
                if let other = masters[master.index], other.description != description.id {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail:
                            "the pty \(master.index) has two master descriptions, \(other.description) and \(description.id)"
                    )
                }
                masters[master.index] = (master, description.id)
            }
        }
        for task in tasks {
            for description in task.files.descriptions {
                guard case .ptySlave(let slave) = description.file else { continue }
                guard let master = masters[slave.index] else {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail:
                            "open file \(description.id) is the slave of the pty \(slave.index), which has no master")
                }
                guard !slave.controllingTerminal || master.record.session != 0 else {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail:
                            "open file \(description.id) is /dev/tty on the pty \(slave.index), which is no session's controlling terminal"
                    )
                }
            }
        }
        let byPID = Dictionary(tasks.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
        var sessions: Set<Int32> = []
        for (index, master) in masters.sorted(by: { $0.key < $1.key }) where master.record.session != 0 {
            let session = master.record.session
            guard let leader = byPID[session], leader.sid == session, !leader.zombie,
                sessions.insert(session).inserted
            else {
                throw ImageError(
                    .invalid, file: ImageFormat.taskRecordName(pid: session),
                    detail:
                        "the pty \(index) is the controlling terminal of session \(session), which no live task of the image leads, or which has another"
                )
            }
            let foreground = master.record.foregroundGroup
            guard foreground == 0 || tasks.contains(where: { $0.pgid == foreground && $0.sid == session }) else {
                throw ImageError(
                    .invalid, file: ImageFormat.taskRecordName(pid: session),
                    detail: "the foreground group \(foreground) of the pty \(index) has no task in session \(session)")
            }
        }
    }
}
