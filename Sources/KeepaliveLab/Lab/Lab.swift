/// A lab file (`Labs/*.yaml`): a comparison described once — policies × faults × trials — and what
/// each policy must achieve.
public struct Lab: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    public var policies: [NamedPolicy]
    public var faults: [FaultCase]
    public var trials: Int
    public var seed: UInt64
    public var expectations: [LabExpectation]
    /// Where the lab came from (file path), for messages and reports.
    public var source: String
    /// `clock: virtual` runs the lab in the lab kernel's virtual time (nil: real).
    public var clock: LabClock? = nil
    /// `kernel:` for the uml backend (nil: the lab kernel when built, else Debian's).
    public var kernel: KernelChoice? = nil

    /// One row of the matrix: the cells of a policy × fault pair share all of this.
    public struct Cell: Codable, Sendable, Equatable {
        public var policy: NamedPolicy
        public var fault: FaultCase
        public var key: String { "\(policy.name) × \(fault.label)" }
    }

    public var cells: [Cell] {
        policies.flatMap { policy in
            faults.filter { $0.policies?.contains(policy.name) ?? true }.map { Cell(policy: policy, fault: $0) }
        }
    }
}

/// A named combination of client and server policies.
public struct NamedPolicy: Codable, Sendable, Equatable {
    public var name: String
    public var client: Policy
    public var server: Policy
    /// net.ipv4.tcp_keepalive_* in A's and B's namespaces for this policy (nil: kernel defaults).
    public var namespaceKeepalive: KeepaliveSetting?
    /// Other per-namespace sysctls in A and B (e.g. net.ipv4.tcp_retries2).
    public var sysctls: [String: String]? = nil

    public var summary: String {
        var parts = ["client: \(client.summary)"]
        if server != .none { parts.append("server: \(server.summary)") }
        if let k = namespaceKeepalive { parts.append("sysctl tcp_keepalive \(k)") }
        for (name, value) in (sysctls ?? [:]).sorted(by: { $0.key < $1.key }) { parts.append("sysctl \(name)=\(value)") }
        return parts.joined(separator: "; ")
    }
}

/// A fault with the trial settings that go with it.
public struct FaultCase: Codable, Sendable, Equatable {
    public var fault: Fault
    public var workload: Workload
    public var deadline: Double
    public var faultDelay: Double
    /// nat-idle: seconds of silence before the client sends (nil: twice the timeout).
    public var silence: Double?
    /// Engine for loss/partition/shaping in R (nil: auto).
    public var impairment: ImpairmentEngineChoice?
    /// netem-only shaping of both directions for the whole trial.
    public var shape: NetemShape?
    /// Only these policies (by name) meet this fault; nil: every policy.
    public var policies: [String]? = nil

    public var label: String { workload == .idle ? fault.description : "\(fault) (\(workload))" }
}

/// What a policy must achieve under a fault; evaluated over the cell's trials.
public struct LabExpectation: Codable, Sendable, Equatable {
    public enum Rule: Codable, Sendable, Equatable {
        /// Every trial detected, and the given percentile of detection latency ≤ seconds.
        case detectWithin(seconds: Double, percentile: Double)
        /// False positives / trials ≤ rate (B healthy).
        case falsePositiveRateAtMost(Double)
        /// Every trial survived (healthy B: connection lived, or NAT idle: data went through).
        case survives
        /// Every trial had this outcome.
        case outcome(TrialResult.Outcome)
        /// Every trial's measurement matched the kernel formula within tolerance.
        case matchesKernelFormula
    }

    /// Policy name or "*".
    public var policy: String
    /// Fault label or "*".
    public var fault: String
    public var rule: Rule
    /// file:line:column of the expectation, for messages.
    public var location: String
    /// `allow_errors: true`: trials that could not run are left out instead of failing the
    /// expectation (an expectation is otherwise never passed over trials that did not happen).
    public var allowErrors: Bool = false

    /// `fault` names a cell's label ("crash (stream)") or a fault ("crash"). A label wins: when
    /// some cell of the lab carries exactly that label, only such cells match, so `crash` means the
    /// idle crash cell in a lab that also has `crash (stream)`; otherwise every cell with that fault.
    public func applies(to cell: Lab.Cell, in cells: [Lab.Cell]) -> Bool {
        guard policy == "*" || policy == cell.policy.name else { return false }
        if fault == "*" || fault == cell.fault.label { return true }
        if cells.contains(where: { $0.fault.label == fault }) { return false }
        return fault == cell.fault.fault.description
    }

    public var summary: String {
        switch rule {
        case let .detectWithin(seconds, percentile):
            return "detect within \(Fault.format(seconds)) s at p\(Fault.format(percentile))"
        case let .falsePositiveRateAtMost(rate): return "false-positive rate ≤ \(Fault.format(rate))"
        case .survives: return "survives"
        case let .outcome(outcome): return "outcome \(outcome.rawValue)"
        case .matchesKernelFormula: return "matches the kernel formula"
        }
    }
}

extension LabExpectation {
    enum CodingKeys: String, CodingKey { case policy, fault, rule, location, allowErrors }

    /// plan.json files written before `allowErrors` existed still decode (as false).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        policy = try c.decode(String.self, forKey: .policy)
        fault = try c.decode(String.self, forKey: .fault)
        rule = try c.decode(Rule.self, forKey: .rule)
        location = try c.decode(String.self, forKey: .location)
        allowErrors = try c.decodeIfPresent(Bool.self, forKey: .allowErrors) ?? false
    }
}
