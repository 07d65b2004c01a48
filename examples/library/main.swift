// Amber as a library: dump a process tree, check its image, restore it. CI builds this file
// (the LibraryExample target), so the README's copy of it keeps compiling.
import Amber
import Glibc
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 3, let pid = Int32(arguments[1]) else {
    print("usage: LibraryExample PID DIRECTORY")
    exit(64)
}
let directory = arguments[2]
let logger = Logger(label: "example")
do {
    // The tree is killed once its image is complete (leaveRunning: true would let it run on).
    let dumped = try Checkpoint.run(pid: pid, directory: directory, leaveRunning: false, logger: logger)
    print("dumped \(dumped.processes) processes, \(dumped.pageBytes) bytes of memory")
    let image = try Verification.run(directory: directory)
    print("image intact: \(image.files) files; \(image.authenticity)")
    let restored = try Restore.run(directory: directory, logger: logger)
    print("restored: process \(restored.rootPID) runs again")
} catch {
    print("amber: \(error)")
    exit(error.code.rawValue)
}
