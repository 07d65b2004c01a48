import Glibc
import SystemPackage
import Testing

@testable import LinuxKit

@Suite struct PipeBufferTests {
    @Test func queuedBytesAndCapacity() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer {
            close(ends[0])
            close(ends[1])
        }
        #expect(try PipeBuffer.queuedBytes(FileDescriptor(rawValue: ends[0])) == 0)
        #expect(write(ends[1], "abc", 3) == 3)
        #expect(try PipeBuffer.queuedBytes(FileDescriptor(rawValue: ends[0])) == 3)
        #expect(try PipeBuffer.capacity(FileDescriptor(rawValue: ends[0])) == PipeBuffer.defaultCapacity)
    }

    /// Each end tells whether the other is open anywhere, also with bytes still queued.
    @Test func otherEndIsOpen() throws {
        for closing in [0, 1] {
            var ends: [Int32] = [0, 0]
            #expect(pipe(&ends) == 0)
            #expect(write(ends[1], "abc", 3) == 3)
            let kept = FileDescriptor(rawValue: ends[1 - closing])
            defer { close(kept.rawValue) }
            #expect(try PipeBuffer.otherEndIsOpen(kept, isWriteEnd: closing == 0))
            close(ends[closing])
            #expect(try !PipeBuffer.otherEndIsOpen(kept, isWriteEnd: closing == 0))
        }
    }

    @Test func flagsAsFdinfoShowsThem() throws {
        let fd = open("/", O_RDONLY | O_CLOEXEC | OpenFileFlags.pathOnly.openFlags)
        #expect(fd >= 0)
        defer { close(fd) }
        let info = try ProcFS.fileDescriptorInfo(pid: getpid(), fd: fd)
        let flags = OpenFileFlags(rawValue: info.flags)
        #expect(flags.isSuperset(of: [.closeOnExec, .pathOnly]))
        #expect(!flags.contains(.asynchronous))
    }
}
