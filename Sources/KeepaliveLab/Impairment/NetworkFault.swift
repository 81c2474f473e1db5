import Foundation

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
