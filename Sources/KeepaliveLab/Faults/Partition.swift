import KeepaliveNet

/// `partition:SECONDS[,DIR]`: R drops everything going DIR for SECONDS, then heals; B stays
/// healthy, so the deadline ends the trial.
struct PartitionFault: RouterDropFault {
    static let facts = FaultFacts(
        name: "partition", syntax: "partition:SECONDS[,DIR] (0 < SECONDS ≤ 3600)",
        help: "R drops everything going DIR for SECONDS, then heals; B stays healthy",
        examples: ["partition:3", "partition:1.5,b2a", "partition:10,a2b"])
    static let range = 0.0...3600.0
    var seconds: Double, direction: ImpairmentDirection

    /// R heals once `seconds` after the fault: back to the trial's baseline shaping.
    func step(_ driver: FaultDriver, now: Double, peers: any TrialPeers) throws -> Bool {
        guard !driver.healed, let tFault = driver.tFault, now >= tFault + seconds else { return false }
        try driver.engine?.apply(driver.spec.baselineImpairment)
        driver.healed = true
        driver.report.healAt = PeerEvent.now()
        return false
    }

    func nextDeadline(_ driver: FaultDriver) -> Double? {
        driver.healed ? nil : driver.tFault.map { $0 + seconds }
    }

    /// Keepalive gives up during the partition only if its last probe falls inside it.
    func expectations(_ a: TrialAnalysis) -> [Expectation] {
        guard a.spec.workload == .idle, let k = a.spec.effectiveClientKeepalive, let last = a.lastReceived else { return [] }
        let e = Expectation.keepalive(k, userTimeoutMs: a.spec.clientPolicy.userTimeoutMs, hz: a.hz)
        return last + e.seconds < a.tFault + seconds ? [e] : []
    }

    func impairment(over baseline: Impairment) -> Impairment? { baseline.dropping(100, direction) }
    var text: String { "partition:\(Fault.format(seconds))\(direction.suffix)" }
    var reportPhrase: String {
        "R drops everything (\(direction.rawValue)) for \(Fault.format(seconds)) s, then heals; B stays healthy"
    }

    static func parse(arguments: String?) throws -> Fault {
        let (value, direction) = try FaultKinds.amountAndDirection(
            arguments, kind: name, syntax: syntax, what: "seconds, e.g. partition:3",
            upper: range.upperBound, unit: "s", rule: "allowed 0 < SECONDS ≤ 3600")
        return .partition(seconds: value, direction: direction)
    }
}
