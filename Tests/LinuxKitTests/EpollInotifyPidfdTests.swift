import Testing

@testable import LinuxKit

/// The fdinfo of epoll instances, inotify instances and pidfds, as kernel 6.18 writes it.
@Suite struct EpollInotifyPidfdTests {
    @Test func epollWatches() throws {
        let info = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n"
                + "tfd:        3 events: 80000019 data:             1234  pos:0 ino:3f18e9 sdev:f\n"
                + "tfd:       12 events: 40000000 data: ffffffffffffffff  pos:0 ino:40e sdev:10\n")
        let watches = try EpollWatch.watches(in: info)
        #expect(
            watches == [
                EpollWatch(fd: 3, events: 0x8000_0019, data: 0x1234, inode: 0x3f18e9, device: 0xf),
                EpollWatch(fd: 12, events: 0x4000_0000, data: UInt64.max, inode: 0x40e, device: 0x10),
            ])
        let empty = try ProcFS.parseFileDescriptorInfo("pos:\t0\nflags:\t02\nmnt_id:\t17\n")
        #expect(try EpollWatch.watches(in: empty) == [])
        let broken = try ProcFS.parseFileDescriptorInfo("pos:\t0\nflags:\t02\nmnt_id:\t17\ntfd: x events: 1\n")
        #expect(throws: LinuxError.self) { try EpollWatch.watches(in: broken) }
        #expect(Epoll.event(events: 0x8000_0001, data: 0x0102) == [1, 0, 0, 0x80, 2, 1, 0, 0, 0, 0, 0, 0])
    }

    @Test func inotifyWatches() throws {
        let info = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t04000\nmnt_id:\t17\nino:\t1038\n"
                + "inotify wd:2 ino:2e1 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:e102000000000000\n"
                + "inotify wd:1a ino:3df9d sdev:fe00001 mask:84000100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:9ddf030000000000\n"
        )
        let watches = try InotifyWatch.watches(in: info)
        #expect(
            watches == [
                InotifyWatch(
                    wd: 2, inode: 0x2e1, device: 0xfe00000, mask: 2, ignoredMask: 0, handleType: 1,
                    handle: [0xe1, 2, 0, 0, 0, 0, 0, 0]),
                InotifyWatch(
                    wd: 0x1a, inode: 0x3df9d, device: 0xfe00001, mask: 0x8400_0100, ignoredMask: 0, handleType: 1,
                    handle: [0x9d, 0xdf, 3, 0, 0, 0, 0, 0]),
            ])
        let short = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t0\nmnt_id:\t17\ninotify wd:1 ino:2 sdev:3 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:e1\n"
        )
        #expect(throws: LinuxError.self) { try InotifyWatch.watches(in: short) }
    }

    @Test func pidfd() throws {
        let info = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t645628\nPid:\t6663\nNSpid:\t6663\t12\n")
        #expect(try PidfdFile.pid(info) == 6663)
        #expect(PidfdFile.namespacePIDs(info) == [6663, 12])
        let reaped = try ProcFS.parseFileDescriptorInfo("pos:\t0\nflags:\t02\nmnt_id:\t4\nPid:\t-1\n")
        #expect(try PidfdFile.pid(reaped) == -1)
        #expect(PidfdFile.namespacePIDs(reaped) == [])
    }
}
