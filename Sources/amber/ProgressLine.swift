import Amber
import Dispatch
import Glibc
import Synchronization

/// A dump's or restore's progress on a terminal: once it has run half a second, a line on
/// standard error, redrawn in place four times a second, with the bytes of memory copied, the
/// bytes found to copy and the rate (`MemoryProgress`, counted by the copying threads); erased
/// when done. Only when standard error is a terminal and the result is not JSON. A line
/// written to standard error meanwhile (a log message, an error) goes through
/// `FileHandleOutput.standardError`, which erases the progress first; the next tick draws it again.
/// No maintained Swift package for this is in the offline package set: these few lines do.
enum ProgressLine {
    private struct State {
        var running = false
        /// The progress line is on the terminal now.
        var shown = false
    }

    private static let state = Mutex(State())

    /// Starts drawing, for `verb` ("dump", "restore"), if standard error is a terminal.
    static func start(_ verb: String) {
        guard isatty(2) == 1, !ResultOutput.json else { return }
        state.withLock { $0.running = true }
        DispatchQueue(label: "amber.progress").async { draw(verb) }
    }

    /// Stops drawing and erases the line.
    static func finish() {
        state.withLock { state in
            state.running = false
            erase(&state)
        }
    }

    /// Writes `text` to standard error, erasing the progress line first if it is shown.
    static func standardError(_ text: String) {
        state.withLock { state in
            erase(&state)
            write(text)
        }
    }

    private static func erase(_ state: inout State) {
        guard state.shown else { return }
        write("\r\u{1B}[K")
        state.shown = false
    }

    private static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    /// Four ticks a second; the rate is over the last second (four ticks).
    private static func draw(_ verb: String) {
        let tick: UInt32 = 250_000
        usleep(2 * tick)
        var recent: [(time: ContinuousClock.Instant, bytes: UInt64)] = []
        while true {
            let copied = MemoryProgress.copied
            let expected = MemoryProgress.expected
            recent.append((.now, copied))
            if recent.count > 5 { recent.removeFirst() }
            let elapsed = recent[recent.count - 1].time - recent[0].time
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let rate = seconds > 0 ? Double(copied - recent[0].bytes) / seconds : 0
            let done = min(copied, expected)
            let rateText = recent.count > 1 ? ", \(mebibytes(UInt64(rate))) MiB/s" : ""
            let line =
                "\ramber \(verb): \(mebibytes(done)) of \(mebibytes(expected)) MiB of memory (\(expected == 0 ? 0 : done * 100 / expected)%)\(rateText)\u{1B}[K"
            let running = state.withLock { state in
                guard state.running else { return false }
                if expected > 0 {
                    write(line)
                    state.shown = true
                }
                return true
            }
            guard running else { return }
            usleep(tick)
        }
    }

    private static func mebibytes(_ bytes: UInt64) -> UInt64 { bytes >> 20 }
}
