/// The checks no single task record can pass alone: that the records form one tree under the
/// root, and that records sharing an open file description describe it alike.
enum CrossRecordCheck {
    /// Checks every task record of an image, each already validated, the root's first.
    static func check(_ tasks: [Amber_Task]) throws(ImageError) {
        try checkTree(tasks)
        try checkOpenFiles(tasks)
        try checkExternalFiles(tasks)
        try checkSharedAnonymousMemory(tasks)
        try checkUnixSockets(tasks)
        try checkProcessesOfFiles(tasks)
        try checkPtys(tasks)
        try checkShellJob(tasks)
        try checkNetworkNamespace(tasks)
        try checkMountNamespace(tasks)
        try checkUTSAndIPCNamespaces(tasks)
        try checkCgroups(tasks)
    }

    /// The TIDs of a task's threads, its leader's included (a zombie's: its PID).
    static func threadIDs(of task: Amber_Task) -> [Int32] {
        task.zombie ? [task.pid] : task.threads.map(\.tid)
    }

    /// One tree under the root: no TID in two tasks, every task but the root with its parent's
    /// record, every task reachable from the root (no cycle of parents), the root no zombie.
    private static func checkTree(_ tasks: [Amber_Task]) throws(ImageError) {
        let pids = Set(tasks.map(\.pid))
        var tids: Set<Int32> = []
        for task in tasks {
            let file = ImageFormat.taskRecordName(pid: task.pid)
            for tid in threadIDs(of: task) where !tids.insert(tid).inserted {
                throw ImageError(.invalid, file: file, detail: "TID \(tid) belongs to two tasks")
            }
            if task.pid != tasks[0].pid, !pids.contains(task.ppid) {
                throw ImageError(
                    .invalid, file: file, detail: "ppid \(task.ppid) has no task record: the tasks do not form one tree"
                )
            }
        }
        var reached: Set<Int32> = [tasks[0].pid]
        var frontier = [tasks[0].pid]
        let children = Dictionary(grouping: tasks.dropFirst(), by: \.ppid)
        while let pid = frontier.popLast() {
            for child in children[pid] ?? [] where reached.insert(child.pid).inserted { frontier.append(child.pid) }
        }
        if let stray = tasks.first(where: { !reached.contains($0.pid) }) {
            throw ImageError(
                .invalid, file: ImageFormat.taskRecordName(pid: stray.pid),
                detail: "not reachable from the root \(tasks[0].pid) through parents")
        }
        if tasks[0].zombie {
            throw ImageError(
                .invalid, file: ImageFormat.taskRecordName(pid: tasks[0].pid), detail: "the root cannot be a zombie")
        }
    }

    /// Every record that lists an open file description describes it identically, whatever its
    /// fields: a restore opens it once, as the first record describes it, for every task.
    private static func checkOpenFiles(_ tasks: [Amber_Task]) throws(ImageError) {
        var described: [UInt32: (description: Amber_OpenFileDescription, pid: Int32)] = [:]
        for task in tasks {
            for description in task.files.descriptions {
                guard let first = described[description.id] else {
                    described[description.id] = (description, task.pid)
                    continue
                }
                guard first.description == description else {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail:
                            "open file \(description.id) differs from the one \(ImageFormat.taskRecordName(pid: first.pid)) describes"
                    )
                }
            }
        }
    }

    /// Each object outside the tree is on one open file description: one `--inherit-fd`
    /// descriptor takes its place, and two descriptions would become one.
    private static func checkExternalFiles(_ tasks: [Amber_Task]) throws(ImageError) {
        var descriptions: [String: UInt32] = [:]
        for task in tasks {
            for description in task.files.descriptions {
                guard case .externalFile(let external) = description.file else { continue }
                if let other = descriptions[external.name], other != description.id {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail:
                            "the object outside the tree \(external.name) is on open files \(other) and \(description.id)"
                    )
                }
                descriptions[external.name] = description.id
            }
        }
    }

    /// Unix sockets made together agree: each socket is one description; a pair's two sockets
    /// name each other, with one type and pair id; a listener lists exactly the sockets that wait
    /// on it, and the accepted sockets of its connections.
    private static func checkUnixSockets(_ tasks: [Amber_Task]) throws(ImageError) {
        var sockets: [UInt64: (socket: Amber_UnixSocket, id: UInt32, pid: Int32)] = [:]
        // Checked in the order of the records, so that the first disagreement is reported.
        var order: [UInt64] = []
        for task in tasks {
            for description in task.files.descriptions {
                guard case .unixSocket(let socket) = description.file else { continue }
                if let seen = sockets[socket.inode], seen.id != description.id {
                    throw ImageError(
                        .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                        detail: "unix socket \(socket.inode) is open file \(seen.id) and \(description.id)")
                }
                if sockets[socket.inode] == nil { order.append(socket.inode) }
                sockets[socket.inode] = (socket, description.id, task.pid)
            }
        }
        for inode in order {
            let (socket, _, pid) = sockets[inode]!
            let file = ImageFormat.taskRecordName(pid: pid)
            if socket.peerInode != 0 {
                guard let peer = sockets[socket.peerInode]?.socket, peer.peerInode == inode, peer.type == socket.type,
                    peer.pairID == socket.pairID
                else {
                    throw ImageError(
                        .invalid, file: file,
                        detail:
                            "unix socket \(inode)'s peer \(socket.peerInode) is not a socket of the image connected back to it"
                    )
                }
            }
            for pending in socket.pendingConnections where sockets[pending]?.socket.listenerInode != inode {
                throw ImageError(
                    .invalid, file: file,
                    detail:
                        "unix socket \(pending), waiting on listener \(inode), is not a socket of the image that waits on it"
                )
            }
            if socket.listenerInode != 0,
                sockets[socket.listenerInode]?.socket.pendingConnections.contains(inode) != true
            {
                throw ImageError(
                    .invalid, file: file,
                    detail: "unix socket \(inode) waits on listener \(socket.listenerInode), which does not list it")
            }
            for accepted in socket.acceptedConnections
            where sockets[accepted]?.socket.acceptedFrom != inode || socket.pendingConnections.contains(accepted) {
                throw ImageError(
                    .invalid, file: file,
                    detail:
                        "unix socket \(accepted), accepted from listener \(inode), is not a socket of the image accepted from it"
                )
            }
            if socket.acceptedFrom != 0 {
                let listener = sockets[socket.acceptedFrom]?.socket
                let peer = sockets[socket.peerInode]?.socket
                let listed = listener?.acceptedConnections.contains(inode) == true
                guard let listener, listener.listening, listener.type == socket.type,
                    peer?.acceptedFrom == socket.acceptedFrom,
                    listed != listener.acceptedConnections.contains(socket.peerInode)
                else {
                    throw ImageError(
                        .invalid, file: file,
                        detail:
                            "unix socket \(inode) was accepted from listener \(socket.acceptedFrom), which does not list exactly one of it and its peer"
                    )
                }
            }
        }
    }

    /// An epoll instance's watches are added by the process it names, which holds it and has
    /// every fd they name; a pidfd is of a live process of the tree.
    private static func checkProcessesOfFiles(_ tasks: [Amber_Task]) throws(ImageError) {
        let byPID = Dictionary(tasks.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
        for task in tasks {
            for description in task.files.descriptions {
                let file = ImageFormat.taskRecordName(pid: task.pid)
                switch description.file {
                case .epoll(let epoll):
                    guard let watcher = byPID[epoll.watcherPid],
                        watcher.files.descriptors.contains(where: { $0.descriptionID == description.id })
                    else {
                        throw ImageError(
                            .invalid, file: file,
                            detail:
                                "the epoll instance of open file \(description.id) names process \(epoll.watcherPid), which does not hold it"
                        )
                    }
                    let fds = Set(watcher.files.descriptors.map(\.fd))
                    if let watch = epoll.watches.first(where: { !fds.contains($0.fd) }) {
                        throw ImageError(
                            .invalid, file: file,
                            detail:
                                "the epoll instance of open file \(description.id) watches fd \(watch.fd), which process \(epoll.watcherPid) does not have"
                        )
                    }
                case .pidfd(let pidfd):
                    guard let target = byPID[pidfd.pid], !target.zombie else {
                        throw ImageError(
                            .invalid, file: file,
                            detail:
                                "the pidfd of open file \(description.id) is of \(pidfd.pid), no live process of the image"
                        )
                    }
                default:
                    continue
                }
            }
        }
    }
}
