import Amber
import ArgumentParser
import Glibc
import LinuxKit

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Report which kernel features amber needs and finds here.",
        discussion: "Exits 0 when everything amber needs is present, 1 otherwise."
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let results = KernelFeatures.probe()
        let missing = results.filter { $0.required && !$0.present }
        if global.json {
            ResultOutput.emit(
                [
                    "version": .string(AmberVersion.current), "ok": .bool(missing.isEmpty),
                    "features": .array(
                        results.map {
                            [
                                "name": .string($0.name), "ok": .bool($0.present), "required": .bool($0.required),
                                "enables": .string($0.enables), "detail": $0.detail.map(JSONValue.string) ?? .null,
                            ]
                        }),
                ])
            if !missing.isEmpty { throw ExitCode(1) }
            return
        }
        print("amber \(AmberVersion.current)")
        for feature in results {
            let mark = feature.present ? "yes" : "NO "
            print("\(mark)  \(feature.name)\(feature.required ? "" : " (optional)"): \(feature.enables)")
            if let detail = feature.detail { print("       \(detail)") }
        }
        if missing.isEmpty {
            print("amber can dump and restore on this host")
        } else {
            print("missing: \(missing.map(\.name).joined(separator: ", "))")
            throw ExitCode(1)
        }
    }
}
