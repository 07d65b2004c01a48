import Glibc

#if DEBUG
import Synchronization

/// Test-only fault injection, so that the tests can make a dump or a restore fail, or be
/// killed, at a named point: `AMBER_TEST_FAULT=<point>[@<n>]=<action>` arms one point (the
/// n-th time it is reached, the first by default). Points are "dump.<point>" and
/// "restore.<point>" (`FaultPoints`); actions are `fail` (throw, as a real error
/// there would), `kill` (SIGKILL amber itself), `kill-supervisor` (SIGKILL the `amber dump`
/// process a dump worker serves, as a user would) and `pause` (sleep a second, then go on:
/// what a slow dump or restore shows, such as its progress, without a timing in the test). Unset, it costs one comparison per point.
/// Debug builds only: a release amber has no such switch, whatever its environment says.
enum TestFault {
    enum Action: String, Sendable {
        case fail
        case kill
        case killSupervisor = "kill-supervisor"
        case pause
    }

    private struct Armed: Sendable {
        let point: String
        let occurrence: Int
        let action: Action
    }

    private static let armed: Armed? = {
        guard let value = getenv("AMBER_TEST_FAULT").map({ String(cString: $0) }),
            let equals = value.lastIndex(of: "="),
            let action = Action(rawValue: String(value[value.index(after: equals)...]))
        else { return nil }
        let target = value[..<equals].split(separator: "@", maxSplits: 1)
        let occurrence = target.count == 2 ? Int(target[1]) ?? 1 : 1
        return Armed(point: String(target[0]), occurrence: occurrence, action: action)
    }()

    private static let passes = Atomic<Int>(0)

    /// The action armed for `point` if this is the occurrence it waits for.
    static func reached(_ point: String) -> Action? {
        guard let armed, armed.point == point else { return nil }
        let count = passes.wrappingAdd(1, ordering: .relaxed).newValue
        guard count == armed.occurrence else { return nil }
        if armed.action == .kill { _ = Glibc.kill(getpid(), SIGKILL) }
        if armed.action == .pause { sleep(1) }
        return armed.action
    }
}

#endif
