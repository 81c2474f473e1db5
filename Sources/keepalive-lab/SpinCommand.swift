import ArgumentParser
import Foundation

/// Hidden: a deliberate busy loop (clock reads, never a wait), so tests can show that a guest whose
/// virtual clock stalls is stopped with an error naming the busy process.
struct SpinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spin", abstract: "Busy-loop until killed (tests the virtual-time stall watchdog).", shouldDisplay: false)

    /// Accepted and ignored: a guest's job line ends in `--backend host`.
    @Option(help: .hidden) var backend: String?

    func run() throws {
        var now = timespec()
        while true { clock_gettime(CLOCK_MONOTONIC, &now) }
    }
}
