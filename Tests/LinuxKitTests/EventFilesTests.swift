import Glibc
import SystemPackage
import Testing

@testable import LinuxKit

/// The fdinfo of eventfds, signalfds and timerfds as kernel 6.18 writes it, and the files made
/// from what it says, read back.
@Suite struct EventFilesTests {
    @Test func eventFDInfo() throws {
        let info = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\neventfd-count:      10000000005\neventfd-id: 18\neventfd-semaphore: 1\n"
        )
        #expect(try EventFDState(info) == EventFDState(count: 0x100_0000_0005, semaphore: true))
        let older = try ProcFS.parseFileDescriptorInfo("pos:\t0\nflags:\t02\nmnt_id:\t17\neventfd-count:\t3\n")
        #expect(throws: LinuxError.self) { try EventFDState(older) }
    }

    @Test func signalFDInfo() throws {
        let info = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000000000a00\n")
        #expect(try SignalFDState(info).mask == 0xa00)
    }

    @Test func timerFDInfo() throws {
        let info = try ProcFS.parseFileDescriptorInfo(
            "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nclockid: 0\nticks: 5\nsettime flags: 03\nit_value: (99, 143649161)\nit_interval: (0, 50000000)\n"
        )
        #expect(
            try TimerFDState(info)
                == TimerFDState(
                    clock: 0, ticks: 5, settimeFlags: 3, remainingNs: 99_143_649_161, intervalNs: 50_000_000))
        #expect(TimerFDState.nanoseconds("(1, 1000000000)") == nil)
        #expect(TimerFDState.nanoseconds("(-1, 0)") == nil)
        #expect(TimerFDState.nanoseconds("(9223372037, 0)") == nil)
    }

    /// A counter above what eventfd2 takes comes back whole.
    @Test func eventFDLargeCount() throws {
        let fd = try EventFDState(count: EventFDState.largestCount, semaphore: false).make(nonBlocking: true)
        defer { try? fd.close() }
        let state = try EventFDState(ProcFS.fileDescriptorInfo(pid: getpid(), fd: fd.rawValue))
        #expect(state == EventFDState(count: EventFDState.largestCount, semaphore: false))
        #expect(fcntl(fd.rawValue, F_GETFL) & O_NONBLOCK != 0)
    }

    /// An expired periodic timer not read since shows one tick in fdinfo; `read` counts them all
    /// and the time to the next; `addTicks` puts them on a new one.
    @Test func timerFDTicks() throws {
        let fd = try TimerFDState.create(clock: TimerFDState.monotonicClock, nonBlocking: true)
        defer { try? fd.close() }
        try TimerFDState.set(fd, flags: 0, valueNs: 1_000_000, intervalNs: 10_000_000)
        usleep(55_000)
        let state = try TimerFDState.read(fd, ownerPID: getpid(), ownerFD: fd.rawValue)
        #expect(
            state.ticks >= 5 && state.remainingNs > 0 && state.remainingNs <= 10_000_000
                && state.intervalNs == 10_000_000)
        let copy = try TimerFDState.create(clock: TimerFDState.monotonicClock, nonBlocking: true)
        defer { try? copy.close() }
        try TimerFDState.set(copy, flags: 0, valueNs: 0, intervalNs: 0)
        try TimerFDState.addTicks(copy, 7)
        var ticks: UInt64 = 0
        #expect(Glibc.read(copy.rawValue, &ticks, 8) == 8 && ticks == 7)
    }
}
