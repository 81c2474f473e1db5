import KeepaliveNet

/// Which way along the A–B path an impairment acts. R impairs a direction on the port it leaves
/// R by: A→B on r-b, B→A on r-a.
public enum ImpairmentDirection: String, Codable, Sendable, CaseIterable {
    case both, a2b, b2a

    public var includesA2B: Bool { self != .b2a }
    public var includesB2A: Bool { self != .a2b }

    public init(parsing text: String, field: String) throws {
        guard let direction = Self(rawValue: text) else {
            throw PolicyError.malformed(field: field, input: text, expected: "both, a2b or b2a")
        }
        self = direction
    }
}

/// netem-only link shaping, applied to both directions for the whole trial (from before the
/// connection is opened). nftables cannot delay, duplicate or reorder packets.
public struct NetemShape: Codable, Sendable, Equatable {
    public var delayMs: Double
    public var jitterMs: Double
    public var duplicatePercent: Double
    public var reorderPercent: Double
    /// Correlation of successive loss decisions (netem's "loss PCT CORR"); applies to the `loss` fault.
    public var lossCorrelationPercent: Double

    public init(delayMs: Double = 0, jitterMs: Double = 0, duplicatePercent: Double = 0,
                reorderPercent: Double = 0, lossCorrelationPercent: Double = 0) {
        self.delayMs = delayMs
        self.jitterMs = jitterMs
        self.duplicatePercent = duplicatePercent
        self.reorderPercent = reorderPercent
        self.lossCorrelationPercent = lossCorrelationPercent
    }

    public var isActive: Bool {
        delayMs != 0 || jitterMs != 0 || duplicatePercent != 0 || reorderPercent != 0 || lossCorrelationPercent != 0
    }

    /// The knobs that are set, as the CLI names them ("--delay-ms 50, --jitter-ms 5").
    public var summary: String {
        [("--delay-ms", delayMs, " ms"), ("--jitter-ms", jitterMs, " ms"), ("--duplicate", duplicatePercent, " %"),
         ("--reorder", reorderPercent, " %"), ("--loss-correlation", lossCorrelationPercent, " %")]
            .filter { $0.1 != 0 }.map { "\($0.0) \(Fault.format($0.1))\($0.2)" }.joined(separator: ", ")
    }

    public func validate() throws {
        for (field, value) in [("delay", delayMs), ("jitter", jitterMs)] {
            guard value.isFinite, (0...60_000).contains(value) else {
                throw PolicyError.outOfRange(field: "netem \(field)", value: "\(value) ms", rule: "allowed 0…60000 ms")
            }
        }
        for (field, value) in [("duplicate", duplicatePercent), ("reorder", reorderPercent),
                               ("loss correlation", lossCorrelationPercent)] {
            guard value.isFinite, (0...100).contains(value) else {
                throw PolicyError.outOfRange(field: "netem \(field)", value: "\(value) %", rule: "allowed 0…100 %")
            }
        }
        if jitterMs > 0 && delayMs == 0 {
            throw PolicyError.conflict("netem jitter \(Fault.format(jitterMs)) ms needs a delay > 0 ms (--delay-ms)")
        }
        if reorderPercent > 0 && delayMs == 0 {
            throw PolicyError.conflict("netem reorder \(Fault.format(reorderPercent)) % needs a delay > 0 ms (--delay-ms): the kernel reorders by letting some packets skip the delay")
        }
    }
}

/// What R does to one direction of the path.
public struct LinkImpairment: Sendable, Equatable {
    /// Share of packets dropped, 0…100 %.
    public var lossPercent: Double = 0
    public var shape: NetemShape = NetemShape()

    public init(lossPercent: Double = 0, shape: NetemShape = NetemShape()) {
        self.lossPercent = lossPercent
        self.shape = shape
    }

    public var isNone: Bool { lossPercent == 0 && !shape.isActive }

    /// The netem-only parts in use, or nil when nftables can do the whole job.
    public var netemOnlyParts: String? {
        var parts: [String] = []
        if shape.delayMs > 0 { parts.append("delay \(Fault.format(shape.delayMs)) ms") }
        if shape.jitterMs > 0 { parts.append("jitter \(Fault.format(shape.jitterMs)) ms") }
        if shape.duplicatePercent > 0 { parts.append("duplicate \(Fault.format(shape.duplicatePercent)) %") }
        if shape.reorderPercent > 0 { parts.append("reorder \(Fault.format(shape.reorderPercent)) %") }
        if shape.lossCorrelationPercent > 0 && lossPercent > 0 && lossPercent < 100 {
            parts.append("loss correlation \(Fault.format(shape.lossCorrelationPercent)) %")
        }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }

    func netemSpec(seed: UInt64?) -> NetemSpec {
        NetemSpec(lossPercent: lossPercent,
                  lossCorrelationPercent: lossPercent > 0 ? shape.lossCorrelationPercent : 0,
                  delayMs: shape.delayMs, jitterMs: shape.jitterMs, duplicatePercent: shape.duplicatePercent,
                  reorderPercent: shape.reorderPercent, seed: seed)
    }
}

/// R's impairment of both directions at one moment.
public struct Impairment: Sendable, Equatable {
    public var a2b: LinkImpairment
    public var b2a: LinkImpairment

    public init(a2b: LinkImpairment = LinkImpairment(), b2a: LinkImpairment = LinkImpairment()) {
        self.a2b = a2b
        self.b2a = b2a
    }

    /// The trial-long shaping alone (no loss).
    public static func shaped(_ shape: NetemShape?) -> Impairment {
        let link = LinkImpairment(shape: shape ?? NetemShape())
        return Impairment(a2b: link, b2a: link)
    }

    /// `self` with `percent` loss added in `direction`.
    public func dropping(_ percent: Double, _ direction: ImpairmentDirection) -> Impairment {
        var copy = self
        if direction.includesA2B { copy.a2b.lossPercent = percent }
        if direction.includesB2A { copy.b2a.lossPercent = percent }
        return copy
    }

    public subscript(port: RouterPort) -> LinkImpairment {
        port == .towardB ? a2b : b2a
    }

    public var isNone: Bool { a2b.isNone && b2a.isNone }

    public var netemOnlyParts: String? {
        let parts = Set([a2b.netemOnlyParts, b2a.netemOnlyParts].compactMap { $0 })
        return parts.isEmpty ? nil : parts.sorted().joined(separator: "; ")
    }
}

/// `--impairment`: which engine impairs R's ports.
public enum ImpairmentEngineChoice: String, Codable, Sendable, CaseIterable {
    /// netem when the kernel has it, else nftables.
    case auto, netem, nftables

    public init(parsing text: String) throws {
        guard let choice = Self(rawValue: text) else {
            throw PolicyError.malformed(field: "impairment engine", input: text, expected: "auto, netem or nftables")
        }
        self = choice
    }
}

/// The engine that really ran.
public enum ImpairmentEngineKind: String, Codable, Sendable {
    case netem, nftables
}

public enum ImpairmentError: Error, CustomStringConvertible {
    /// netem was asked for (or is the only engine that can do the job) and the kernel has none.
    case netemUnavailable(purpose: String, underlying: Error)
    case engineFailed(operation: String, underlying: Error)

    public var description: String {
        switch self {
        case let .netemUnavailable(purpose, underlying):
            let detail = (underlying as? LabNetworkError).map { "\($0)" }
                ?? "netem is not available in this kernel (\(underlying))"
            return "\(purpose): \(detail)"
        case let .engineFailed(operation, underlying):
            return "\(operation): \(underlying)"
        }
    }
}
