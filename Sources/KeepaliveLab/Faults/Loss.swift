import KeepaliveNet

/// `loss:PCT[,DIR]`: R drops PCT % of the packets going DIR, from the fault to the end of the
/// trial; B stays healthy, so the deadline ends the trial.
struct LossFault: FaultKind {
    static let facts = FaultFacts(
        name: "loss", syntax: "loss:PCT[,DIR] (0 < PCT ≤ 100)",
        help: "R drops PCT % of the packets going DIR from the fault on; B stays healthy",
        examples: ["loss:30", "loss:2.5,a2b", "loss:100,b2a"])
    var percent: Double, direction: ImpairmentDirection

    /// An unanswered probe was lost at R (a2b), had its reply lost (b2a), or either (both); when R's
    /// drop counter covers every A→B segment in the timeline, its count settles the rest.
    func markPaths(_ r: TrialResult, answers: [Bool?], paths: inout [TrialInference.SegmentPath]) {
        let timeline = r.timeline
        let lost = timeline.indices.filter { timeline[$0].t >= 0 && answers[$0] == false }
        for i in lost {
            switch direction {
            case .a2b: paths[i] = (.droppedAtR, .lostNoReply)
            case .b2a: paths[i] = (.through, .replyLost)
            case .both: paths[i] = (.maybeLostAtR, .probeOrReplyLost)
            }
        }
        // R counts what it forwarded toward B from the fault on. When that is exactly the A→B
        // segments drawn, the drops the unanswered probes do not explain are the others' fate.
        guard direction == .a2b, let count = r.impairmentDrops?["a2b"] else { return }
        let sent = timeline.indices.filter { timeline[$0].direction == .aToB && timeline[$0].t >= 0 }
        guard count.packets == sent.count else { return }
        let unknown = sent.filter { answers[$0] == nil }
        let unexplained = count.dropped - lost.count
        if unexplained == unknown.count, unexplained > 0 {
            for i in unknown { paths[i] = (.droppedAtR, .countedDrop(dropped: count.dropped, unansweredProbes: lost.count)) }
        }
    }

    func impairment(over baseline: Impairment) -> Impairment? { baseline.dropping(percent, direction) }
    var reportPhrase: String { "R drops \(Fault.format(percent)) % of packets (\(direction.rawValue)); B stays healthy" }
    var text: String { "loss:\(Fault.format(percent))\(direction.suffix)" }

    static func parse(arguments: String?) throws -> Fault {
        let (value, direction) = try FaultKinds.amountAndDirection(
            arguments, kind: name, syntax: syntax, what: "a percentage, e.g. loss:30",
            upper: 100, unit: "%", rule: "allowed 0 < PCT ≤ 100")
        return .loss(percent: value, direction: direction)
    }
}

/// What loss and partition share: R's engine drops what goes `direction` from the fault on.
protocol RouterDropFault: FaultKind {
    var direction: ImpairmentDirection { get }
}

extension RouterDropFault {
    var site: Fault.Site { .router }
    var impairmentDirection: ImpairmentDirection? { direction }

    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws {
        try driver.engine?.apply(driver.faultImpairment)
        driver.report.form = driver.engine?.form
    }
}

extension LossFault: RouterDropFault {}

extension ImpairmentDirection {
    /// `,a2b` in a fault's text form; nothing for the default (both).
    var suffix: String { self == .both ? "" : ",\(rawValue)" }
}
