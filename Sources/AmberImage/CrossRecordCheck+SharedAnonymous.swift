extension CrossRecordCheck {
    /// Every record that maps an object of shared anonymous memory describes it identically:
    /// a restore makes it once, as the first process to map it describes it, for every process.
    static func checkSharedAnonymousMemory(_ tasks: [Amber_Task]) throws(ImageError) {
        var described: [UInt64: (object: Amber_SharedAnonymousMemory, pid: Int32)] = [:]
        for task in tasks {
            for object in task.memory.sharedAnonymous {
                guard let first = described[object.id] else {
                    described[object.id] = (object, task.pid)
                    continue
                }
                guard first.object == object else {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail:
                            "memory.shared_anonymous: object \(object.id) differs from its description in \(ImageFormat.taskRecordName(pid: first.pid))"
                    )
                }
            }
        }
    }
}
