import AmberImage
import FoundationEssentials
import Glibc
import LinuxKit

/// CPU state: general registers (with fs/gs base) and the XSAVE area (x87, SSE, AVX, ...).
enum RegisterState {
    /// The XCR0 feature bits recorded in an XSAVE buffer's header (xstate_bv, at byte 512).
    static func features(ofXState xstate: [UInt8]) -> UInt64 {
        guard xstate.count >= 520 else { return 0 }
        var value: UInt64 = 0
        for byte in xstate[512..<520].reversed() { value = value << 8 | UInt64(byte) }
        return value
    }

    /// The registers a stopped thread had before `injector` took it over.
    static func dump(_ injector: any SyscallInjecting) throws -> Amber_Registers {
        let regs = injector.savedRegisters
        var record = Amber_Registers()
        record.r15 = regs.r15
        record.r14 = regs.r14
        record.r13 = regs.r13
        record.r12 = regs.r12
        record.rbp = regs.rbp
        record.rbx = regs.rbx
        record.r11 = regs.r11
        record.r10 = regs.r10
        record.r9 = regs.r9
        record.r8 = regs.r8
        record.rax = regs.rax
        record.rcx = regs.rcx
        record.rdx = regs.rdx
        record.rsi = regs.rsi
        record.rdi = regs.rdi
        record.origRax = regs.origRax
        record.rip = regs.rip
        record.cs = regs.cs
        record.eflags = regs.eflags
        record.rsp = regs.rsp
        record.ss = regs.ss
        record.fsBase = regs.fsBase
        record.gsBase = regs.gsBase
        record.ds = regs.ds
        record.es = regs.es
        record.fs = regs.fs
        record.gs = regs.gs
        record.xstate = Data(try injector.tracee.xstate())
        return record
    }

    /// Sets the registers last, after every injected call; an interrupted syscall is set up to
    /// restart, as the kernel would have restarted it, or ended with EINTR where it would have
    /// ended it: when the first signal the thread takes runs `handlerFlags`'s handler (nil: it
    /// takes none), as signal(7) says for each kind of restart.
    static func restore(_ record: Amber_Registers, _ tracee: Tracee, handlerFlags: UInt64? = nil) throws {
        var regs = UserRegisters()
        regs.r15 = record.r15
        regs.r14 = record.r14
        regs.r13 = record.r13
        regs.r12 = record.r12
        regs.rbp = record.rbp
        regs.rbx = record.rbx
        regs.r11 = record.r11
        regs.r10 = record.r10
        regs.r9 = record.r9
        regs.r8 = record.r8
        regs.rax = record.rax
        regs.rcx = record.rcx
        regs.rdx = record.rdx
        regs.rsi = record.rsi
        regs.rdi = record.rdi
        regs.origRax = record.origRax
        regs.rip = record.rip
        regs.cs = record.cs
        regs.eflags = record.eflags
        regs.rsp = record.rsp
        regs.ss = record.ss
        regs.fsBase = record.fsBase
        regs.gsBase = record.gsBase
        regs.ds = record.ds
        regs.es = record.es
        regs.fs = record.fs
        regs.gs = record.gs
        if Int64(bitPattern: regs.origRax) >= 0 {
            // The helper is stopped outside any syscall, so the kernel will not restart one for us.
            let interrupt = UInt64(bitPattern: -Int64(EINTR))
            switch Int64(bitPattern: regs.rax) {
            case UserRegisters.restartSys where handlerFlags.map { $0 & Signals.restartFlag == 0 } ?? false:
                regs.rax = interrupt
            case UserRegisters.restartNoHand where handlerFlags != nil,
                UserRegisters.restartRestartBlock where handlerFlags != nil:
                regs.rax = interrupt
            case UserRegisters.restartSys, UserRegisters.restartNoIntr, UserRegisters.restartNoHand:
                regs.rax = regs.origRax
                regs.rip &-= 2
            case UserRegisters.restartRestartBlock
            where regs.origRax == UInt64(SyscallNumber.poll) && Int32(truncatingIfNeeded: regs.rdx) < 0:
                // poll with no timeout: its restart block asks for the very same call again
                // (what `tail -f` waits in).
                regs.rax = regs.origRax
                regs.rip &-= 2
            case UserRegisters.restartRestartBlock:
                regs.rax = interrupt
            default:
                break
            }
            regs.origRax = UInt64.max
        }
        if !record.xstate.isEmpty {
            try tracee.setXState([UInt8](record.xstate))
        }
        try tracee.setRegisters(regs)
    }
}
