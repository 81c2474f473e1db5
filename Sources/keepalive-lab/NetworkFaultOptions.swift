import ArgumentParser
import KeepaliveLab

/// `trial` options for R's impairment engine and the network faults (loss, partition, nat-idle).
struct NetworkFaultOptions: ParsableArguments {
    @Option(help: "Impairment engine in R: auto (netem when the kernel has it, else nftables) | netem | nftables.")
    var impairment: String = "auto"

    @Option(help: "Seed for the impairment's random sequence (netem's PRNG; nftables: a seeded drop pattern instead of numgen random). 0…18446744073709551615.")
    var seed: UInt64?

    @Option(help: "nat-idle: seconds of silence before the client sends (default: twice the conntrack timeout; 0 < S ≤ 86400).")
    var silence: Double?

    @Option(name: .customLong("delay-ms"), help: "netem only: delay of both directions, whole trial (0…60000 ms).")
    var delayMs: Double = 0

    @Option(name: .customLong("jitter-ms"), help: "netem only: jitter on the delay (0…60000 ms; needs --delay-ms).")
    var jitterMs: Double = 0

    @Option(help: "netem only: duplicate this share of packets (0…100 %).")
    var duplicate: Double = 0

    @Option(help: "netem only: reorder this share of packets (0…100 %; needs --delay-ms).")
    var reorder: Double = 0

    @Option(name: .customLong("loss-correlation"), help: "netem only: correlation of the loss fault's drops (0…100 %).")
    var lossCorrelation: Double = 0

    var engineChoice: ImpairmentEngineChoice {
        get throws { try ImpairmentEngineChoice(parsing: impairment) }
    }

    var shape: NetemShape? {
        let shape = NetemShape(delayMs: delayMs, jitterMs: jitterMs, duplicatePercent: duplicate,
                               reorderPercent: reorder, lossCorrelationPercent: lossCorrelation)
        return shape.isActive ? shape : nil
    }
}
