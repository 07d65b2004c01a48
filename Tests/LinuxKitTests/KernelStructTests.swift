import Glibc
import Testing

@testable import LinuxKit

// MARK: - Kernel structs as the bytes a call injected into a task reads

@Suite struct KernelStructTests {
    @Test func signalStackRoundTrip() {
        let stack = SignalStack(base: 0x7f00_1234_5000, flags: SignalStack.disabled, size: 0x2000)
        #expect(stack.bytes.count == MemoryLayout<stack_t>.size)
        #expect(SignalStack(bytes: stack.bytes) == stack)
        var raw = stack_t()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: stack.bytes) }
        #expect(
            UInt64(UInt(bitPattern: raw.ss_sp)) == stack.base && raw.ss_flags == stack.flags
                && UInt64(raw.ss_size) == stack.size)
    }

    @Test func signalEventLayout() {
        let event = SignalEvent(
            value: 0x1122_3344_5566_7788, signal: 34, notify: SignalEvent.notifyThreadID, threadID: 4321)
        let bytes = event.bytes
        #expect(bytes.count == MemoryLayout<sigevent>.size)
        bytes.withUnsafeBytes {
            #expect($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == event.value)
            #expect($0.loadUnaligned(fromByteOffset: 8, as: Int32.self) == 34)
            #expect($0.loadUnaligned(fromByteOffset: 12, as: Int32.self) == 4)
            #expect($0.loadUnaligned(fromByteOffset: 16, as: Int32.self) == 4321)
        }
    }

    @Test func kernelSignalActionRoundTrip() {
        let action = KernelSignalAction(handler: 0x40_1000, flags: 0x0400_0004, restorer: 0x40_2000, mask: 1 << 9)
        #expect(action.bytes.count == 32)
        #expect(KernelSignalAction(bytes: action.bytes) == action)
    }

    @Test func cloneArgumentsLayout() {
        let arguments = CloneArguments(
            flags: CloneFlags.newPIDNamespace, exitSignal: UInt64(SIGCHLD), setTID: 0x1000, setTIDCount: 2,
            childTID: 0x2000)
        let words = arguments.bytes.withUnsafeBytes { bytes in
            (0..<(bytes.count / 8)).map { bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self) }
        }
        // CLONE_ARGS_SIZE_VER2: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
        #expect(words.count == 11)
        #expect(
            words[0] == CloneFlags.newPIDNamespace && words[2] == 0x2000 && words[4] == UInt64(SIGCHLD)
                && words[8] == 0x1000
                && words[9] == 2
        )
    }

    @Test func ownAlternateStackAndXState() throws {
        let stack = try ProcessControl.alternateStack()
        #expect(stack.flags & SignalStack.disabled != 0 || stack.size != 0)
        #expect(XState.enabledFeatures & 3 == 3)
    }
}
