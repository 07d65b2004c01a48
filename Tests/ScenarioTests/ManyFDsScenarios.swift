extension Scenario {
    /// 24 pipes and 24 unix socket pairs holding data in one process, shared with a child: a
    /// dump reads their records on every CPU at once (see many_fds.c).
    static let manyFDs = Scenario(name: "many_fds")
    /// The same, two pairs queueing credentials (SO_PASSCRED): refused at the lowest fd, 61.
    static let unsupportedManyFDsPassingCredentials = Scenario(name: "many_fds", args: ["--passcred-queued"])
}
