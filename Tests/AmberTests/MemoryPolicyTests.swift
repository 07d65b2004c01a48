import Glibc
import LinuxKit
import Testing

@testable import Amber

/// The NUMA policy refusal asked of a frozen process (get_mempolicy injected) rather than read
/// from numa_maps.
@Suite struct MemoryPolicyTests {
    private let gigabyte = MemoryMapping(
        start: 0x7f00_0000_0000, end: 0x7f00_4000_0000, readable: true, writable: true, executable: false,
        shared: false, offset: 0, device: 0, inode: 0, path: "")
    private let vsyscall = MemoryMapping(
        start: 0xffff_ffff_ff60_0000, end: 0xffff_ffff_ff60_1000, readable: false, writable: false, executable: true,
        shared: false, offset: 0, device: 0, inode: 0, path: "[vsyscall]")

    /// Answers get_mempolicy with `mode` for the thread (no address) and `areaMode` at an address.
    private func respond(_ task: FakeTask, mode: Int32 = 0, areaMode: Int32 = 0) {
        let memory = task.memory
        task.log.respond = { call in
            guard call.number == SyscallNumber.getMempolicy else { return -Int64(ENOSYS) }
            memory.store(call.arguments[4] == MemoryPolicyFlags.address ? areaMode : mode, at: call.arguments[0])
            return 0
        }
    }

    @Test func largeAreasAreAskedAndSmallOnesRead() {
        #expect(MemoryPolicyState.asksProcess([gigabyte, vsyscall]))
        var small = gigabyte
        small.end = small.start + 4096 * 100
        #expect(!MemoryPolicyState.asksProcess([small, vsyscall]))
    }

    @Test func defaultPoliciesPassWithOneCallPerArea() throws {
        let task = FakeTask()
        respond(task)
        let session = try task.dumpSession()
        try MemoryPolicyState.ask(
            session, areas: [gigabyte, vsyscall], process: ProcessName(pid: fakePID, comm: "fake"),
            tree: ProcessName(pid: fakePID, comm: "fake"))
        #expect(task.calls.map(\.arguments[3]) == [0, gigabyte.start])
        #expect(task.calls.map(\.arguments[4]) == [0, MemoryPolicyFlags.address])
    }

    @Test func anAreaPolicyIsRefusedInNumaMapsWords() throws {
        let task = FakeTask()
        respond(task, areaMode: 2)
        task.proc[file: "/proc/\(fakePID)/numa_maps"] =
            "7f0000000000 bind:0 anon=262144 dirty=262144 N0=262144 kernelpagesize_kB=4\n"
        let session = try task.dumpSession()
        let error = amberError(.unsupported) {
            try MemoryPolicyState.ask(
                session, areas: [gigabyte], process: ProcessName(pid: fakePID, comm: "fake"),
                tree: ProcessName(pid: fakePID, comm: "fake"))
        }
        #expect(error?.description.contains("NUMA memory policy bind:0 at 0x7f0000000000") == true)
    }

    @Test func theThreadPolicyIsRefusedWithoutAskingTheAreas() throws {
        let task = FakeTask()
        respond(task, mode: 1)
        let session = try task.dumpSession()
        let error = amberError(.unsupported) {
            try MemoryPolicyState.ask(
                session, areas: [gigabyte], process: ProcessName(pid: fakePID, comm: "fake"),
                tree: ProcessName(pid: fakePID, comm: "fake"))
        }
        #expect(task.calls.count == 1)
        #expect(error?.description.contains("get_mempolicy mode 1) for the process") == true)
    }
}
