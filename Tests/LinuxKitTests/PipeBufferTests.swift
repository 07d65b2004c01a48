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
