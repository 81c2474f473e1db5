import ArgumentParser
import Foundation
import KeepaliveLab

/// Measures netem itself on the lab topology: configured loss and delay against what arrives.
struct NetemCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netem-check",
        abstract: "Verify netem for real: numbered UDP datagrams A→B through netem on R; measured loss and delay vs configured.",
        discussion: """
            Loss is checked against binomial bounds (±4.5 σ); the loss sequence (which datagrams were lost) is
            printed with --json, so two runs with the same --seed can be compared (kernels ≥ 6.3 honour the seed).
            Example: keepalive-lab netem-check --backend uml --loss 30 --delay-ms 100
            """)

    @Option(help: "netem loss on R toward B, percent (0…100).")
    var loss: Double = 30

    @Option(name: .customLong("delay-ms"), help: "netem delay on R toward B, ms (0…60000).")
    var delayMs: Double = 100

    @Option(help: "TCA_NETEM_PRNG_SEED for the loss.")
    var seed: UInt64?

    @Option(help: "Datagrams to send (10…100000).")
    var packets: Int = 2000

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup(title: "Where it runs")
    var environment: BackendOptions

    func validate() throws {
        guard loss.isFinite, (0...100).contains(loss) else { throw ValidationError("--loss \(loss) is out of range: 0…100") }
        guard delayMs.isFinite, (0...60_000).contains(delayMs) else {
            throw ValidationError("--delay-ms \(delayMs) is out of range: 0…60000")
        }
        guard (10...100_000).contains(packets) else { throw ValidationError("--packets \(packets) is out of range: 10…100000") }
    }

    func run() throws {
        if let status = try environment.runElsewhere(timeout: Double(packets) * 0.01 + delayMs / 1000 + 60, needs: KernelNeeds(netem: true, clock: environment.clock ?? .real)) {
            if status != 0 { throw ExitCode(status) }
            return
        }
        let result = try NetemCheck.run(lossPercent: loss, delayMs: delayMs, seed: seed, packets: packets)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            func ms(_ v: Double?) -> String { v.map { String(format: "%.1f ms", $0) } ?? "—" }
            print("kernel \(result.kernel) (\(result.backend)) · netem on R toward B: loss \(loss) %, delay \(delayMs) ms"
                  + (seed.map { ", seed \($0)" } ?? ""))
            print(String(format: "loss: %d of %d datagrams = %.2f %% (binomial bounds %.2f…%.2f %%) %@",
                         result.lost.count, result.sent, result.lossRatio * 100,
                         result.expectedLossRange[0] * 100, result.expectedLossRange[1] * 100,
                         result.lossWithinBounds ? "ok" : "OUT OF BOUNDS"))
            print("one-way delay A→B: min \(ms(result.delayMinMs)) · median \(ms(result.delayMedianMs)) · max \(ms(result.delayMaxMs))")
            print("first lost: \(result.lost.prefix(20).map(String.init).joined(separator: " "))")
        }
        if !result.lossWithinBounds { throw ExitCode(1) }
    }
}
