/// One expected kernel event next to what the capture (or the app) showed, seconds after the
/// expectation's anchor: what `within_tolerance` is made of when the timer model applies.
public struct EventCheck: Codable, Sendable, Equatable {
    public var kind: ExpectedEvent.Kind
    public var index: Int
    /// nil for a measured event the model did not expect.
    public var predicted: Double?
    public var earliest: Double?
    public var latest: Double?
    /// nil: not seen (a failure only for a required event).
    public var measured: Double?
    /// The re-arm's window from the previous event's measured instant, and the measured gap
    /// (nil for a chain's first event or when the previous one was not seen).
    public var stepEarliest: Double? = nil
    public var stepLatest: Double? = nil
    public var sincePrevious: Double? = nil
    /// Inside the window from the anchor and, when there is one, the step window.
    public var inside: Bool

    enum CodingKeys: String, CodingKey {
        case kind, index, predicted, earliest, latest, measured, inside
        case stepEarliest = "step_earliest"
        case stepLatest = "step_latest"
        case sincePrevious = "since_previous"
    }

    /// Pairs the model's events with measured ones in order, per kind: the k-th probe seen with
    /// probe k. The abort is the app's detection. A measured event the model did not expect
    /// (one probe too many) is a failed check with no window.
    public static func pair(_ expected: [ExpectedEvent], measured: [ExpectedEvent.Kind: [Double]]) -> [EventCheck] {
        var checks: [EventCheck] = []
        var used: [ExpectedEvent.Kind: Int] = [:]
        var previous: Double? = nil
        for e in expected {
            let seen = measured[e.kind] ?? []
            let i = used[e.kind, default: 0]
            let value = i < seen.count ? seen[i] : nil
            if value != nil { used[e.kind] = i + 1 }
            let gap = e.stepEarliest == nil ? nil : value.flatMap { v in previous.map { v - $0 } }
            let inside = value.map { e.contains($0) && (gap.map(e.stepContains) ?? true) } ?? !e.required
            checks.append(EventCheck(kind: e.kind, index: e.index, predicted: e.expected, earliest: e.earliest,
                                     latest: e.latest, measured: value, stepEarliest: gap == nil ? nil : e.stepEarliest,
                                     stepLatest: gap == nil ? nil : e.stepLatest, sincePrevious: gap, inside: inside))
            previous = value
        }
        for (kind, seen) in measured.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where seen.count > used[kind, default: 0] {
            for (j, t) in seen.enumerated().dropFirst(used[kind, default: 0]) {
                checks.append(EventCheck(kind: kind, index: j + 1, predicted: nil, earliest: nil, latest: nil,
                                         measured: t, inside: false))
            }
        }
        return checks
    }
}

extension EventCheck {
    /// The checks for one expectation from what A sent (instants on the same clock as `anchor`
    /// and `detection`). Keepalive probes and payload retransmissions after the anchor are the
    /// measured probes and retransmissions (the anchor itself is retransmission 1 when it is
    /// one); the app's detection is the abort. nil when the expectation has no timer model.
    /// When the anchor is a zero-window probe, the retransmission ladder does not apply
    /// (`tcp_probe_timer()` paces those): only the abort is checked.
    static func checks(for expectation: Expectation, anchor: Double, detection: Double?,
                       sentByA: [(t: Double, kind: SegmentKind, payload: Int)]) -> [EventCheck]? {
        guard var events = expectation.events else { return nil }
        let before = (detection ?? .infinity) + ExpectedEvent.measurementSlack
        var measured: [ExpectedEvent.Kind: [Double]] = [:]
        if events.contains(where: { $0.kind == .probe }) {
            measured[.probe] = sentByA.filter { $0.kind == .keepaliveProbe && $0.t > anchor && $0.t < before }.map { $0.t - anchor }
        }
        if events.contains(where: { $0.kind == .retransmission }) {
            let retransmissions = sentByA.filter { $0.kind == .retransmission && $0.payload > 0 && $0.t >= anchor && $0.t < before }
            if retransmissions.first.map({ abs($0.t - anchor) < 1e-9 }) == true {
                measured[.retransmission] = retransmissions.map { $0.t - anchor }
            } else {
                events.removeAll { $0.kind == .retransmission }
            }
        }
        measured[.abort] = detection.map { [$0 - anchor] } ?? []
        return pair(events, measured: measured)
    }
}
