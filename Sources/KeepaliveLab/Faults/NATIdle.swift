import KeepaliveNet

/// `nat-idle:SECONDS[,drop|reset]`: R is a NAT / stateful firewall for A whose conntrack forgets a
/// connection idle for SECONDS; the connection goes silent, then the client sends. B stays healthy.
struct NATIdleFault: FaultKind {
    static let facts = FaultFacts(
        name: "nat-idle", syntax: "nat-idle:SECONDS[,drop|reset] (SECONDS 1…432000)",
        help: "R is a NAT/firewall that forgets connections idle for SECONDS (then drops, or answers with RST); "
            + "the connection stays silent (--silence, default 2 × SECONDS), then the client sends",
        examples: ["nat-idle:5", "nat-idle:60,reset", "nat-idle:432000"])
    static let range = 1...432_000

    var timeout: Int
    var mode: NATIdleMode

    static func parse(arguments: String?) throws -> Fault {
        let text = "nat-idle:\(arguments ?? "")"
        let fields = try FaultKinds.fields(arguments, kind: name, syntax: syntax, text: text)
        guard let timeout = Int(fields[0]) else {
            throw PolicyError.malformed(field: "fault nat-idle timeout", input: fields[0],
                                        expected: "whole seconds (conntrack's timeout has 1 s resolution), e.g. nat-idle:5")
        }
        guard range.contains(timeout) else {
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

    var text: String { "nat-idle:\(timeout)\(mode == .drop ? "" : ",reset")" }
    var site: Fault.Site { .router }
    var reportPhrase: String {
        "R is a NAT/firewall that forgets connections idle for \(timeout) s (then \(mode == .reset ? "answers with RST" : "drops")); B stays healthy"
    }
    var installsRulesInR: Bool { true }

    func prepareRouter(_ driver: FaultDriver) throws {
        try NATMiddlebox.install(in: driver.topology, timeout: timeout, mode: mode)
        let watcher = try ConntrackWatcher(topology: driver.topology, port: driver.spec.port)
        watcher.start()
        driver.watcher = watcher
    }

    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws {
        driver.report.conntrackAtFault = driver.watcher?.current()
        try NATMiddlebox.checkPolicyApplied(driver.report.conntrackAtFault, timeout: timeout)
    }

    /// After the silence the client sends; once the answer is in (and the capture tail), done.
    func step(_ driver: FaultDriver, now: Double, peers: any TrialPeers) throws -> Bool {
        guard let tFault = driver.tFault else { return false }
        if driver.report.sendAt == nil, let silence = driver.spec.effectiveSilence, now >= tFault + silence {
            driver.report.sendAt = now
            if let note = peers.sendRequest() { driver.notes.append(note) }
        }
        driver.observeAnswer(peers: peers)
        if let answer = driver.report.answerAt { return now >= answer + Trial.tail }
        return false
    }

    func nextDeadline(_ driver: FaultDriver) -> Double? {
        guard let tFault = driver.tFault else { return nil }
        if driver.report.sendAt == nil { return driver.spec.effectiveSilence.map { tFault + $0 } }
        return driver.report.answerAt.map { $0 + Trial.tail }
    }

    func finish(_ driver: FaultDriver, peers: any TrialPeers) {
        driver.report.invalidPackets = NATMiddlebox.invalidCount(in: driver.topology)
        peers.finishExchange(&driver.report)
    }

    /// Probes that come before the entry expires keep it; a firewall that resets answers at once.
    /// Once R has forgotten the connection and the request got no answer, every A→B segment after
    /// the entry was last seen stops at R as INVALID; in reset mode the RSTs "from B" are R's.
    func markPaths(_ r: TrialResult, answers: [Bool?], paths: inout [TrialInference.SegmentPath]) {
        let timeline = r.timeline
        guard let after = r.forgottenAfter else { return }
        for (i, e) in timeline.enumerated() where e.t > after && e.kind != .icmp {
            if e.direction == .aToB {
                paths[i] = (.droppedAtR, .invalidConnection(refused: mode == .reset))
            } else if e.direction == .bToA, e.kind == .rst, mode == .reset {
                paths[i] = (.fromR, .resetInBsName)
            }
        }
    }

    /// Data sent into an expired entry is retransmitted into the void until TCP_USER_TIMEOUT.
    func expectations(_ a: TrialAnalysis) -> [Expectation] {
        guard let u = a.spec.clientPolicy.userTimeoutMs, u > 0, a.firstTimeoutRetransmission != nil else { return [] }
        return [.userTimeout(ms: u, hz: a.hz)]
    }

    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] {
        let silence = spec.effectiveSilence ?? Double(2 * timeout)
        let tail = Trial.tail
        if let k = spec.effectiveClientKeepalive, k.idle < timeout {
            return [(silence + tail, "silence \(Fault.format(silence)) s, then the exchange (keepalive keeps the entry)")]
        } else if mode == .reset {
            return [(silence + tail, "silence \(Fault.format(silence)) s, then R's reset")]
        } else if let u = spec.clientPolicy.userTimeoutMs, u > 0 {
            return [(silence + Double(u) / 1000 + 0.2 + tail, "silence \(Fault.format(silence)) s + TCP_USER_TIMEOUT \(u) ms")]
        }
        return []
    }
}
