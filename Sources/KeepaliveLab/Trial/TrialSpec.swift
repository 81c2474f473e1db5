/// Everything that defines one trial.
public struct TrialSpec: Codable, Sendable, Equatable {
    public var clientPolicy: Policy
    public var serverPolicy: Policy
    public var workload: Workload
    public var fault: Fault
    /// Seconds after the fault before the trial gives up (`missed` / `survived`).
    public var deadline: Double
    /// Seconds after the client is ready (first exchange done) before the fault.
    public var faultDelay: Double
    /// net.ipv4.tcp_keepalive_time/intvl/probes in A's and B's namespaces (nil: kernel defaults
    /// 7200/75/9). Sockets with `useSysctlDefaults` get exactly these.
    public var namespaceKeepalive: KeepaliveSetting?
    public var port: UInt16
    /// Which engine impairs R (loss, partition, shaping); nil means `auto`.
    public var impairment: ImpairmentEngineChoice?
    /// Seeds the impairment's random sequence (netem's PRNG, nftables' drop pattern); nil: unseeded.
    public var seed: UInt64?
    /// nat-idle: seconds of silence after the fault before the client sends (nil: twice the timeout).
    public var silence: Double?
    /// netem-only shaping of both directions for the whole trial.
    public var shape: NetemShape?

    public init(clientPolicy: Policy = .none, serverPolicy: Policy = .none, workload: Workload = .idle,
                fault: Fault = .crash, deadline: Double = 30, faultDelay: Double = 0.2,
                namespaceKeepalive: KeepaliveSetting? = nil, port: UInt16 = 5001,
                impairment: ImpairmentEngineChoice? = nil, seed: UInt64? = nil, silence: Double? = nil,
                shape: NetemShape? = nil) {
        self.clientPolicy = clientPolicy
        self.serverPolicy = serverPolicy
        self.workload = workload
        self.fault = fault
        self.deadline = deadline
        self.faultDelay = faultDelay
        self.namespaceKeepalive = namespaceKeepalive
        self.port = port
        self.impairment = impairment
        self.seed = seed
        self.silence = silence
        self.shape = shape
    }

    public static let deadlineRange = 0.5...86_400.0
    public static let faultDelayRange = 0.0...3600.0

    public func validate() throws {
        try clientPolicy.validate()
        try serverPolicy.validate()
        try namespaceKeepalive?.validate()
        guard deadline.isFinite, Self.deadlineRange.contains(deadline) else {
            throw PolicyError.outOfRange(field: "deadline", value: "\(deadline) s", rule: "allowed 0.5…86400 s")
        }
        guard faultDelay.isFinite, Self.faultDelayRange.contains(faultDelay) else {
            throw PolicyError.outOfRange(field: "fault delay", value: "\(faultDelay) s", rule: "allowed 0…3600 s")
        }
        guard port >= 1 else {
            throw PolicyError.outOfRange(field: "port", value: "\(port)", rule: "allowed 1…65535")
        }
        try validateNetworkFault()
    }

    /// The keepalive timers the client socket really runs with, if keepalive is on.
    public var effectiveClientKeepalive: KeepaliveSetting? {
        if let k = clientPolicy.keepalive { return k }
        if clientPolicy.useSysctlDefaults { return namespaceKeepalive ?? KeepaliveSetting(idle: 7200, interval: 75, count: 9) }
        return nil
    }
}
