import LinuxKit
import Testing

@testable import Amber

/// The registry of kinds (`StateKinds.all`) from which the dump, the restore and the fault points come.
@Suite struct StateKindsTests {
    private func duplicates(_ names: [String]) -> [String] {
        Dictionary(grouping: names, by: \.self).filter { $0.value.count > 1 }.keys.sorted()
    }

    @Test func everyKindIsListedOnce() {
        let names = StateKinds.all.map { String(describing: $0) }
        #expect(duplicates(names).isEmpty)
    }

    @Test func restoreStepsHaveDistinctNames() {
        #expect(duplicates(StateKinds.all.flatMap { $0.restoreSteps }.map(\.name)).isEmpty)
    }

    @Test func restoreStepsHaveDistinctOrdersWithinAPhase() {
        let steps = StateKinds.all.flatMap { $0.restoreSteps }
        for phase in [RestoreStep.Phase.process, .afterCleanUp, .tree] {
            let orders = steps.filter { $0.phase == phase }.map { String($0.order) }
            #expect(duplicates(orders).isEmpty, "phase \(phase)")
        }
    }

    @Test func restoreStepsOfAPhaseRunInTheirOrder() {
        for phase in [RestoreStep.Phase.process, .afterCleanUp, .tree] {
            let orders = StateKinds.restoreSteps(phase).map(\.order)
            #expect(orders == orders.sorted())
            #expect(orders.count == StateKinds.all.flatMap { $0.restoreSteps }.filter { $0.phase == phase }.count)
        }
    }

    @Test func dumpStepsHaveDistinctNames() {
        let steps = StateKinds.all.flatMap { $0.dumpStepNames }
        #expect(duplicates(steps.map(\.name)).isEmpty)
    }

    @Test func faultPointsHaveNoDuplicates() {
        #expect(duplicates(FaultPoints.dump).isEmpty)
        #expect(duplicates(FaultPoints.restore).isEmpty)
    }

    @Test func faultPointsListEveryStep() {
        let dumpSteps = Set(StateKinds.all.flatMap { $0.dumpStepNames }.map(\.name))
        #expect(dumpSteps.isSubset(of: Set(FaultPoints.dump)))
        let restoreSteps = Set(StateKinds.all.flatMap { $0.restoreSteps }.map(\.name))
        #expect(restoreSteps.isSubset(of: Set(FaultPoints.restore)))
        // A restore's own points are not names of steps.
        #expect(
            restoreSteps.isDisjoint(with: [
                FaultPoints.read, FaultPoints.create, FaultPoints.cleanup, FaultPoints.detach,
            ]))
        #expect(
            dumpSteps.isDisjoint(with: [
                FaultPoints.seize, FaultPoints.preflight, FaultPoints.pages, FaultPoints.write, FaultPoints.inventory,
            ]))
    }

    @Test func timersAreArmedLateAndFlagsComeAfterCredentials() throws {
        let steps = Dictionary(uniqueKeysWithValues: StateKinds.restoreSteps(.process).map { ($0.name, $0.order) })
        let timers = try #require(steps["timers"])
        let handlers = try #require(steps["handlers"])
        let threads = try #require(steps["threads"])
        let credentials = try #require(steps["credentials"])
        let flags = try #require(steps["flags"])
        #expect(handlers < threads && threads < timers)
        #expect(credentials < flags)
    }
}

@Suite struct ScratchArenaTests {
    @Test func slotsAreAlignedAndDoNotOverlap() throws {
        let memory = FakeTaskMemory()
        var arena = ScratchArena(pid: fakePID, memory: memory, base: fakeScratch, size: 64)
        let first = try arena.reserve(3)
        let second = try arena.place(UInt64(0x1122_3344_5566_7788))
        let third = try arena.place([1, 2, 3])
        #expect(first == fakeScratch && second == fakeScratch + 16 && third == fakeScratch + 32)
        #expect(memory.writes.map(\.address) == [second, third])
        #expect(try arena.read(second, as: UInt64.self) == 0x1122_3344_5566_7788)
        #expect(try arena.read(third, count: 3) == [1, 2, 3])
    }

    @Test func aSlotPastTheEndIsRefused() throws {
        var arena = ScratchArena(pid: fakePID, memory: FakeTaskMemory(), base: fakeScratch, size: 32)
        _ = try arena.reserve(20)
        #expect(throws: LinuxError.self) { try arena.reserve(16) }
        #expect(try arena.reserve(0) == fakeScratch + 32)
    }

    @Test func onlyTakenSlotsCanBeRead() throws {
        var arena = ScratchArena(pid: fakePID, memory: FakeTaskMemory(), base: fakeScratch, size: 64)
        let slot = try arena.reserve(8)
        #expect(throws: LinuxError.self) { try arena.read(slot, count: 9) }
        #expect(throws: LinuxError.self) { try arena.read(fakeScratch - 1, count: 1) }
        #expect(try arena.read(slot, count: 8) == [UInt8](repeating: 0, count: 8))
    }
}
