import ArgumentParser
import Foundation
import KeepaliveNet

struct CleanupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup",
        abstract: "Remove namespaces, links and processes left by runs whose owning process is gone.",
        discussion: "Lab namespaces are named kal-<run>-<trial>-<host>; a run's owner is recorded in /run/keepalive-lab. "
            + "Links live inside the lab namespaces and go with them; processes inside are killed first.")

    @Flag(help: "Remove every keepalive-lab object, including those of runs that are still alive.")
    var all = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let report = Cleanup.run(all: all)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        for name in report.namespacesRemoved { print("removed namespace \(name)") }
        if !report.processesKilled.isEmpty {
            print("killed \(report.processesKilled.count) process(es): \(report.processesKilled.map(String.init).joined(separator: " "))")
        }
        for name in report.tempFilesRemoved { print("removed temporary file \(name)") }
        for run in report.skippedLiveRuns { print("kept run \(run): its owner is still running (use --all)") }
        if report.namespacesRemoved.isEmpty && report.ownerFilesRemoved.isEmpty && report.tempFilesRemoved.isEmpty { print("nothing to clean up") }
    }
}
