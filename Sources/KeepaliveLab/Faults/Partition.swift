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

    /// A→B segments from the fault to the heal are dropped at R (a2b, both); with b2a only, the
    /// probes got through and their replies did not.
    func markPaths(_ r: TrialResult, answers: [Bool?], paths: inout [TrialInference.SegmentPath]) {
        let timeline = r.timeline
        let end = r.marks.heal ?? seconds
        var window: [Int] = []
        for (i, e) in timeline.enumerated() where e.direction == .aToB && e.t >= 0 && e.t < end {
            if answers[i] == true { continue }
            if direction.includesA2B {
                paths[i] = (.droppedAtR, .partitionDropped)
                window.append(i)
            } else if answers[i] == false {
                paths[i] = (.through, .partitionReplyDropped)
            }
        }
        // The drop rule takes effect a few ms after the fault instant (and the heal is stamped
        // once it is done). When R counted fewer drops than segments drawn in the window, the
        // earliest ones got through before the rule was in place — if they sit right at its start.
        guard let count = r.impairmentDrops?["a2b"], count.dropped < window.count else { return }
        let excess = window.count - count.dropped
        let edge = 0.1
        let early = window.prefix(excess)
        if early.allSatisfy({ timeline[$0].t < edge }), !window.contains(where: { timeline[$0].t > end - edge }) {
            for i in early { paths[i] = (.through, .beforeDropRule(dropped: count.dropped)) }
        } else {
            for i in window where timeline[i].t < edge || timeline[i].t > end - edge {
                paths[i] = (.maybeLostAtR, .partitionEdge(dropped: count.dropped, segments: window.count))
            }
        }
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
