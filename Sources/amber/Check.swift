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

    func run() throws {
        let results = KernelFeatures.probe()
        for feature in results {
            let mark = feature.present ? "yes" : "NO "
            print("\(mark)  \(feature.name)\(feature.required ? "" : " (optional)"): \(feature.enables)")
            if let detail = feature.detail { print("       \(detail)") }
        }
        let missing = results.filter { $0.required && !$0.present }
        if missing.isEmpty {
            print("amber can dump and restore on this host")
        } else {
            print("missing: \(missing.map(\.name).joined(separator: ", "))")
            throw ExitCode(1)
        }
    }
}
