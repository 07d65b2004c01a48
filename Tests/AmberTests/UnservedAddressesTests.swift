// The addresses a lazy restore writes first and a copy-on-write dump leaves writable: taken
// from an untrusted image, so bounded by what a process can have.

import AmberImage
import LinuxKit
import Testing

@testable import Amber

@Suite struct UnservedAddressesTests {
    private func task(argStart: UInt64, argEnd: UInt64) -> Amber_Task {
        var task = Amber_Task()
        task.memory.mm.argStart = argStart
        task.memory.mm.argEnd = argEnd
        task.memory.mm.envStart = argEnd
        task.memory.mm.envEnd = argEnd &+ 4096
        var thread = Amber_Thread()
        thread.threadControl.childTidAddress = 0x7000_0010
        thread.threadControl.exitAddresses = [0x7000_1000, 0x7000_2008]
        thread.registers.origRax = UInt64(SyscallNumber.futex)
        thread.registers.rsi = 6 | 128  // FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG
        thread.registers.rdi = 0x7000_3000
        task.threads = [thread]
        return task
    }

    @Test func everyArgumentPageTheExitWordsAndThePIFutex() {
        let addresses = Set(ThreadControlState.unservedAddresses(of: task(argStart: 0x10_0000, argEnd: 0x10_2800)))
        #expect(addresses.isSuperset(of: [0x10_0000, 0x10_1000, 0x10_2000, 0x10_27ff]))
        #expect(addresses.isSuperset(of: [0x7000_0010, 0x7000_1000, 0x7000_2008, 0x7000_3000]))
    }

    @Test func aHugeArgumentRangeIsBounded() {
        let addresses = ThreadControlState.unservedAddresses(of: task(argStart: 0x1000, argEnd: 0x7fff_ffff_0000))
        #expect(addresses.count < 20_000)
    }
}
