import ArgumentParser
import Foundation
import KeepaliveNet

struct SmokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smoke",
        abstract: "Build one A–R–B topology, exchange data over TCP from A to B through R, tear it down.")

    @Option(help: "How many build/exchange/teardown rounds.")
    var rounds: Int = 1

    func validate() throws {
        guard (1...1000).contains(rounds) else { throw ValidationError("--rounds \(rounds) is out of range: 1…1000") }
    }

    func run() throws {
        let run = try RunOwnership.begin()
        defer { RunOwnership.unregister(run: run) }
        for round in 1...rounds {
            let id = try LabID(run: run, trial: "s\(round)")
            let started = ContinuousClock.now
            let topology = try Topology.build(id: id)
            let built = ContinuousClock.now
            let result = try ConnectivityCheck.exchange(over: topology)
            let exchanged = ContinuousClock.now
            topology.teardown()
            let done = ContinuousClock.now
            print("round \(round): built \(id.namespaceName(.a)) / -r / -b in \(ms(built - started)); "
                  + "TCP A→B: connect \(String(format: "%.3f", result.connectSeconds * 1000)) ms, "
                  + "reply \"\(result.reply)\" in \(ms(exchanged - built)); torn down in \(ms(done - exchanged))")
        }
    }

    func ms(_ duration: Duration) -> String {
        let c = duration.components
        return String(format: "%.2f ms", Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15)
    }
}
