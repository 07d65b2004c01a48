extension CrossRecordCheck {
    /// A shell job is the whole tree's: only the root records it, and descriptors on its
    /// terminal are in an image that does.
    static func checkShellJob(_ tasks: [Amber_Task]) throws(ImageError) {
        if let other = tasks.dropFirst().first(where: \.hasShellJob) {
            throw ImageError(
                .invalid, file: ImageFormat.taskRecordName(pid: other.pid),
                detail: "shell_job: only the root's record has it")
        }
        guard !tasks[0].hasShellJob else { return }
        for task in tasks {
            for description in task.files.descriptions {
                guard case .shellJobTerminal = description.file else { continue }
                throw ImageError(
                    .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                    detail:
                        "open file \(description.id) is on the terminal of a shell job, and the root's record has no shell_job"
                )
            }
        }
    }
}
