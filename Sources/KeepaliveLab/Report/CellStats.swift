/// Order statistics as reports use them. Percentiles are nearest-rank, so every figure shown is a
/// latency some trial really had (with 3 trials, p95 is the maximum: say so rather than interpolate).
public enum ReportStats {
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        let mid = s.count / 2
        return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
    }

    /// Nearest-rank percentile: the smallest value with at least `p` % of the values at or below it.
    public static func percentile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        let rank = Int((p / 100 * Double(s.count)).rounded(.up))
        return s[min(max(rank, 1), s.count) - 1]
    }

    /// The most frequent value; ties go to the alphabetically first so reports are stable.
    public static func mostCommon(_ values: [String]) -> String? {
        var counts: [String: Int] = [:]
        for v in values { counts[v, default: 0] += 1 }
        return counts.min { a, b in a.value != b.value ? a.value > b.value : a.key < b.key }?.key
    }
}

/// What one cell's trials add up to. Latencies are seconds from the fault to the client's detection.
public struct CellStats: Codable, Sendable, Equatable {
    public var trials: Int
    public var detected: Int
    public var missed: Int
    public var falsePositive: Int
    public var survived: Int
    /// Every outcome by its raw value, including any the fields above do not name.
    public var outcomes: [String: Int]
    /// Over `detection_latency_s` of the detected trials.
    public var latencyMedianS: Double?
    public var latencyP95S: Double?
    public var latencyMaxS: Double?
    /// The expectation moved onto the fault's clock (anchor instant + formula), median over trials.
    public var expectedS: Double?
    public var expectedFormula: String?
    /// Trials whose measurement fell within the formula's tolerance, of those that had a formula.
    public var withinTolerance: Int
    public var withFormula: Int
    /// Most common errno; "heartbeat" or another `detected_by` when the client got no errno.
    public var errno: String?
    public var probesMedian: Double?
    public var bytesMedian: Double?
    public var bytesAfterFaultMedian: Double?
    public var overhead: IdleOverhead?
    /// false_positive / trials in which B stayed healthy (fault `none`); nil without such trials.
    public var falsePositiveRate: Double?
    public var healthyTrials: Int
    /// Trials that could not run (no result; not counted in `trials`). Optional so summary.json
    /// files from before it existed still decode.
    public var errored: Int?

    public init(results: [TrialResult], errored: Int = 0) {
        self.errored = errored
        trials = results.count
        detected = results.filter { $0.outcome == .detected }.count
        missed = results.filter { $0.outcome == .missed }.count
        falsePositive = results.filter { $0.outcome == .falsePositive }.count
        survived = results.filter { $0.outcome == .survived }.count
        outcomes = results.reduce(into: [:]) { $0[$1.outcome.rawValue, default: 0] += 1 }
        let latencies = results.filter { $0.outcome == .detected }.compactMap(\.detectionLatencyS)
        latencyMedianS = ReportStats.median(latencies)
        latencyP95S = ReportStats.percentile(latencies, 95)
        latencyMaxS = latencies.max()
        expectedS = ReportStats.median(results.compactMap(\.expectedFromFaultS))
        expectedFormula = ReportStats.mostCommon(results.compactMap { $0.expected?.formula })
        withFormula = results.filter { $0.expected != nil }.count
        withinTolerance = results.filter { $0.withinTolerance == true }.count
        errno = ReportStats.mostCommon(results.compactMap { $0.errno ?? $0.detectedBy })
        probesMedian = ReportStats.median(results.map { Double($0.probesSent) })
        bytesMedian = ReportStats.median(results.map { Double($0.bytesOnWire) })
        bytesAfterFaultMedian = ReportStats.median(results.map { Double($0.bytesAfterFault) })
        overhead = results.first.map { IdleOverhead(policy: $0.spec, measuredIn: results) }
        healthyTrials = results.filter { !$0.spec.fault.peerIsDead }.count
        let healthyClosed = results.filter { !$0.spec.fault.peerIsDead && $0.outcome == .falsePositive }.count
        falsePositiveRate = healthyTrials > 0 ? Double(healthyClosed) / Double(healthyTrials) : nil
    }

    /// "3 detected", "2 detected, 1 missed".
    public var outcomeSummary: String {
        let known = ["detected", "missed", "false_positive", "survived"]
        let order = known + outcomes.keys.filter { !known.contains($0) }.sorted()
        var parts = order.compactMap { key in
            outcomes[key].map { "\($0) \(key.replacingOccurrences(of: "_", with: " "))" }
        }
        if let errored, errored > 0 { parts.append("\(errored) errored") }
        return parts.isEmpty ? "no trials" : parts.joined(separator: ", ")
    }
}

extension TrialResult {
    /// The expectation on the fault's clock: where the anchor was, plus the formula's seconds.
    /// The anchor comes from detection − measurement when both exist, else from `marks`.
    public var expectedFromFaultS: Double? {
        guard let e = expected else { return nil }
        if let d = detectionLatencyS, let m = measuredS { return d - m + e.seconds }
        return marks.instant(of: e.anchor).map { $0 + e.seconds }
    }
}

/// What the client policy costs on the wire while the connection is idle and B is healthy, in bytes
/// per idle hour, and how that figure was derived (the report prints `basis`).
///
/// Keepalive: one probe and its reply every max(idle, interval) seconds, not every interval — the
/// reply restarts the idle clock, so the next probe waits a full idle period again (measured here:
/// 2,1,3 probes a healthy peer every 2.02 s). Heartbeat: a beat, its reply and A's ACK every interval.
/// If heartbeats come at least once per keepalive idle period the connection is never idle long
/// enough for a probe, so keepalive adds nothing.
public struct IdleOverhead: Codable, Sendable, Equatable {
    public var bytesPerHour: Double
    public var basis: String

    /// Linux sizes on this lab's links (Ethernet + IPv4 + TCP with timestamps): 66 B for a bare
    /// ACK-only segment, 74 B for an 8-byte heartbeat message.
    static let fallbackBareSegment = 66
    static let fallbackHeartbeat = 74

    public init(policy spec: TrialSpec, measuredIn results: [TrialResult]) {
        var total = 0.0
        var parts: [String] = []
        let heartbeat = spec.clientPolicy.heartbeat
        if let k = spec.effectiveClientKeepalive {
            if let h = heartbeat, h.interval <= Double(k.idle) {
                parts.append("keepalive never fires: heartbeats every \(fmtNumber(h.interval)) s keep the connection busy")
            } else {
                let probe = Self.perSegment(results, .keepaliveProbe, .aToB)
                let reply = Self.perSegment(results, .keepaliveReply, .bToA)
                let period = Double(max(k.idle, k.interval))
                let pairs = 3600 / period
                total += pairs * Double(probe.bytes + reply.bytes)
                parts.append("keepalive: (probe \(probe.bytes) B \(probe.source) + reply \(reply.bytes) B \(reply.source))"
                             + " × 3600 / max(idle \(k.idle), interval \(k.interval)) s = \(fmtNumber(pairs)) pairs")
            }
        }
        if let h = heartbeat {
            let beat = Self.perSegment(results, .heartbeat, .aToB, fallback: Self.fallbackHeartbeat)
            let reply = Self.perSegment(results, .heartbeat, .bToA, fallback: Self.fallbackHeartbeat)
            let ack = Self.fallbackBareSegment
            let beats = 3600 / h.interval
            total += beats * Double(beat.bytes + reply.bytes + ack)
            parts.append("heartbeat: (beat \(beat.bytes) B \(beat.source) + reply \(reply.bytes) B \(reply.source) + ACK \(ack) B)"
                         + " × 3600 / \(fmtNumber(h.interval)) s = \(fmtNumber(beats)) beats")
        }
        if parts.isEmpty { parts.append("nothing is sent while idle (no keepalive, no heartbeat)") }
        bytesPerHour = total
        basis = parts.joined(separator: "; ")
    }

    /// Mean wire bytes of one segment of `kind`, over all trials that sent any.
    private static func perSegment(_ results: [TrialResult], _ kind: SegmentKind, _ direction: SegmentDirection,
                                   fallback: Int = fallbackBareSegment) -> (bytes: Int, source: String) {
        let count = results.reduce(0) { $0 + $1.wire.count(kind, direction) }
        let bytes = results.reduce(0) { $0 + $1.wire.bytes(kind, direction) }
        guard count > 0 else { return (fallback, "assumed") }
        return (Int((Double(bytes) / Double(count)).rounded()), "measured")
    }
}
