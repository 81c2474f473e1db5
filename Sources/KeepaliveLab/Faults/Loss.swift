import KeepaliveNet

/// `loss:PCT[,DIR]`: R drops PCT % of the packets going DIR, from the fault to the end of the
/// trial; B stays healthy, so the deadline ends the trial.
struct LossFault: FaultKind {
    static let facts = FaultFacts(
        name: "loss", syntax: "loss:PCT[,DIR] (0 < PCT ≤ 100)",
        help: "R drops PCT % of the packets going DIR from the fault on; B stays healthy",
        examples: ["loss:30", "loss:2.5,a2b", "loss:100,b2a"])
    var percent: Double, direction: ImpairmentDirection

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
