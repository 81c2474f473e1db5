import Foundation

/// The network faults (`loss`, `partition`, `nat-idle`): R misbehaves, B stays healthy.
extension Fault {
    static let networkFaultSyntax = "loss:PCT[,DIR] (0 < PCT ≤ 100), partition:SECONDS[,DIR] (0 < SECONDS ≤ 3600), "
        + "nat-idle:SECONDS[,drop|reset] (SECONDS 1…432000); DIR is both (default), a2b or b2a"

    public static let lossRange = 0.0...100.0
    public static let partitionRange = 0.0...3600.0
    public static let natTimeoutRange = 1...432_000

    /// nil when `text` is not a network fault at all.
    static func parseNetworkFault(_ text: String) throws -> Fault? {
        let kinds = ["loss:", "partition:", "nat-idle:"]
        guard let kind = kinds.first(where: { text.hasPrefix($0) }) else { return nil }
        let name = String(kind.dropLast())
        let fields = text.dropFirst(kind.count).split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard (1...2).contains(fields.count), !fields[0].isEmpty else {
            throw PolicyError.malformed(field: "fault \(name)", input: text, expected: networkFaultSyntax)
        }
        switch name {
        case "loss", "partition":
            guard let value = Double(fields[0]), value.isFinite else {
                throw PolicyError.malformed(field: "fault \(name)", input: fields[0],
                                            expected: name == "loss" ? "a percentage, e.g. loss:30" : "seconds, e.g. partition:3")
            }
            let direction = fields.count == 2
                ? try ImpairmentDirection(parsing: fields[1], field: "fault \(name) direction") : .both
            if name == "loss" {
                guard value > 0, value <= 100 else {
                    throw PolicyError.outOfRange(field: "fault loss", value: "\(fields[0]) %", rule: "allowed 0 < PCT ≤ 100")
                }
                return .loss(percent: value, direction: direction)
            }
            guard value > 0, value <= partitionRange.upperBound else {
                throw PolicyError.outOfRange(field: "fault partition", value: "\(fields[0]) s", rule: "allowed 0 < SECONDS ≤ 3600")
            }
            return .partition(seconds: value, direction: direction)
        default:
            guard let timeout = Int(fields[0]) else {
                throw PolicyError.malformed(field: "fault nat-idle timeout", input: fields[0],
                                            expected: "whole seconds (conntrack's timeout has 1 s resolution), e.g. nat-idle:5")
            }
            guard natTimeoutRange.contains(timeout) else {
                throw PolicyError.outOfRange(field: "fault nat-idle timeout", value: "\(timeout) s", rule: "allowed 1…432000 s")
            }
            var mode = NATIdleMode.drop
            if fields.count == 2 {
                guard let parsed = NATIdleMode(rawValue: fields[1]) else {
                    throw PolicyError.malformed(field: "fault nat-idle mode", input: fields[1], expected: "drop or reset")
                }
                mode = parsed
            }
            return .natIdle(timeout: timeout, mode: mode)
        }
    }

    var networkDescription: String {
        func dir(_ d: ImpairmentDirection) -> String { d == .both ? "" : ",\(d.rawValue)" }
        switch self {
        case let .loss(percent, direction): return "loss:\(Self.format(percent))\(dir(direction))"
        case let .partition(seconds, direction): return "partition:\(Self.format(seconds))\(dir(direction))"
        case let .natIdle(timeout, mode): return "nat-idle:\(timeout)\(mode == .drop ? "" : ",reset")"
        default: return description
        }
    }
}

extension TrialSpec {
    public static let silenceRange = 0.0...86_400.0

    /// nat-idle: how long the connection stays silent before the client sends.
    public var effectiveSilence: Double? {
        guard case .natIdle(let timeout, _) = fault else { return nil }
        return silence ?? Double(2 * timeout)
    }

    /// The impairment the trial runs with for its whole length (shaping only, no loss).
    var baselineImpairment: Impairment { .shaped(shape) }

    func validateNetworkFault() throws {
        try shape?.validate()
        if let silence {
            guard silence.isFinite, silence > 0, silence <= Self.silenceRange.upperBound else {
                throw PolicyError.outOfRange(field: "silence", value: "\(silence) s", rule: "allowed 0 < SECONDS ≤ 86400")
            }
            guard case .natIdle = fault else {
                throw PolicyError.conflict("silence \(Fault.format(silence)) s applies to the nat-idle fault only (fault is \(fault))")
            }
        }
        if let silence = effectiveSilence, silence >= deadline {
            throw PolicyError.conflict("fault \(fault): the client sends after \(Fault.format(silence)) s of silence, which must end before the deadline \(Fault.format(deadline)) s (raise the deadline or shorten the silence)")
        }
        if let shape, shape.lossCorrelationPercent > 0 {
            guard case .loss = fault else {
                throw PolicyError.conflict("loss correlation \(Fault.format(shape.lossCorrelationPercent)) % needs the loss fault (loss:PCT), fault is \(fault)")
            }
        }
        if impairment == .nftables, let shape, shape.isActive {
            throw PolicyError.conflict("\(shape.summary) needs netem; --impairment nftables can only drop packets (no delay, jitter, duplicate, reorder or loss correlation)")
        }
    }
}
