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
    /// Per-namespace sysctls set in A and B before the peers start (e.g. net.ipv4.tcp_retries2).
    public var sysctls: [String: String] = [:]

    public init(clientPolicy: Policy = .none, serverPolicy: Policy = .none, workload: Workload = .idle,
                fault: Fault = .crash, deadline: Double = 30, faultDelay: Double = 0.2,
                namespaceKeepalive: KeepaliveSetting? = nil, port: UInt16 = 5001,
                impairment: ImpairmentEngineChoice? = nil, seed: UInt64? = nil, silence: Double? = nil,
                shape: NetemShape? = nil, sysctls: [String: String] = [:]) {
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
        self.sysctls = sysctls
    }

    // Results written before `sysctls` existed decode with none.
    enum CodingKeys: String, CodingKey {
        case clientPolicy, serverPolicy, workload, fault, deadline, faultDelay, namespaceKeepalive, port, impairment, seed,
             silence, shape, sysctls
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clientPolicy = try c.decode(Policy.self, forKey: .clientPolicy)
        serverPolicy = try c.decode(Policy.self, forKey: .serverPolicy)
        workload = try c.decode(Workload.self, forKey: .workload)
        fault = try c.decode(Fault.self, forKey: .fault)
        deadline = try c.decode(Double.self, forKey: .deadline)
        faultDelay = try c.decode(Double.self, forKey: .faultDelay)
        namespaceKeepalive = try c.decodeIfPresent(KeepaliveSetting.self, forKey: .namespaceKeepalive)
        port = try c.decode(UInt16.self, forKey: .port)
        impairment = try c.decodeIfPresent(ImpairmentEngineChoice.self, forKey: .impairment)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        silence = try c.decodeIfPresent(Double.self, forKey: .silence)
        shape = try c.decodeIfPresent(NetemShape.self, forKey: .shape)
        sysctls = try c.decodeIfPresent([String: String].self, forKey: .sysctls) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(clientPolicy, forKey: .clientPolicy)
        try c.encode(serverPolicy, forKey: .serverPolicy)
        try c.encode(workload, forKey: .workload)
        try c.encode(fault, forKey: .fault)
        try c.encode(deadline, forKey: .deadline)
        try c.encode(faultDelay, forKey: .faultDelay)
        try c.encodeIfPresent(namespaceKeepalive, forKey: .namespaceKeepalive)
        try c.encode(port, forKey: .port)
        try c.encodeIfPresent(impairment, forKey: .impairment)
        try c.encodeIfPresent(seed, forKey: .seed)
        try c.encodeIfPresent(silence, forKey: .silence)
        try c.encodeIfPresent(shape, forKey: .shape)
        if !sysctls.isEmpty { try c.encode(sysctls, forKey: .sysctls) }
    }

    /// Sysctl names a lab may set: this namespace's TCP and conntrack knobs.
    public static func validateSysctl(name: String, value: String) throws {
        guard name.range(of: "^net\\.(ipv4\\.tcp_[a-z0-9_]+|netfilter\\.nf_conntrack_[a-z0-9_]+)$", options: .regularExpression) != nil else {
            throw PolicyError.malformed(field: "sysctl", input: name,
                                        expected: "a per-namespace net.ipv4.tcp_* or net.netfilter.nf_conntrack_* name, e.g. net.ipv4.tcp_retries2")
        }
        guard !value.isEmpty, value.allSatisfy({ $0.isNumber || $0 == " " }) else {
            throw PolicyError.malformed(field: "sysctl \(name)", input: value, expected: "a number (or numbers separated by blanks)")
        }
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
        for (name, value) in sysctls { try Self.validateSysctl(name: name, value: value) }
        if fault == .crashClient, clientPolicy.app == nil {
            throw PolicyError.conflict("fault crash-client makes the server the detecting side, which only real programs support: "
                + "give the policy's client an `app:` (and its server one, e.g. `server: {app: redis-server, options: {tcp-keepalive: \"2\"}}`)")
        }
    }

    /// What this trial needs from the kernel under test (for choosing a backend before anything is built).
    public func kernelNeeds(clock: LabClock) -> KernelNeeds {
        let nftables = fault.installsRulesInR || (fault.usesImpairment && impairment == .nftables)
        return KernelNeeds(netem: impairment == .netem || shape != nil, nftables: nftables,
                           sysctls: namespaceKeepalive != nil || !sysctls.isEmpty, clock: clock)
    }

    /// The keepalive timers the client socket really runs with, if keepalive is on.
    public var effectiveClientKeepalive: KeepaliveSetting? {
        if let k = clientPolicy.keepalive { return k }
        if clientPolicy.useSysctlDefaults { return namespaceKeepalive ?? KeepaliveSetting(idle: 7200, interval: 75, count: 9) }
        return nil
    }
}
