import Glibc
import KeepaliveNet

/// `crash`: B's host dies silently: its cable is cut, then the server is killed. Nothing from B again.
struct CrashFault: BareFaultKind {
    static let bare = BareFault(name: "crash", value: .crash, site: .peerHost,
                                help: "B's host dies silently (cable cut, server killed); nothing from B again",
                                phrase: "B crashed (silent: nothing sent)")
    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws { try HostDown.crashB(driver.topology, peers: peers) }
    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] { HostDown.expectedEnd(spec) { .keepalive($0, userTimeoutMs: $1, hz: nil) } }
    func expectations(_ analysis: TrialAnalysis) -> [Expectation] { HostDown.expectations(analysis, rebooted: false, icmpAnswers: false) }
}

/// What the faults that take B's host down share: how B dies, and what ends the trial.
enum HostDown {
    static func crashB(_ topology: Topology, peers: any TrialPeers) throws {
        try topology.cutB()
        peers.signalServer(SIGKILL)
    }

    /// An idle connection: A's keepalive (the formula counts from A's last reception, the first
    /// exchange, fault delay earlier); with traffic: TCP_USER_TIMEOUT; either way a heartbeat.
    /// `keepalive`: the kernel's formula for the client's keepalive and TCP_USER_TIMEOUT (seconds
    /// and formula only: no HZ, no per-event windows).
    static func expectedEnd(_ spec: TrialSpec, keepalive: (KeepaliveSetting, UInt32?) -> Expectation) -> [(Double, String)] {
        let tail = Trial.tail
        var candidates: [(Double, String)] = []
        if spec.workload == .idle, let k = spec.effectiveClientKeepalive {
            let e = keepalive(k, spec.clientPolicy.userTimeoutMs)
            candidates.append((max(0, e.seconds - spec.faultDelay) + tail, e.formula))
        }
        if spec.workload != .idle, let u = spec.clientPolicy.userTimeoutMs, u > 0 {
            candidates.append((Double(u) / 1000 + 0.2 + tail, Expectation.userTimeout(ms: u, hz: nil).formula))
        }
        return candidates + heartbeat(spec)
    }

    /// What ends a connection to a host that went down: A's keepalive on an idle connection (for a
    /// rebooted B, the first probe after it is back), TCP_USER_TIMEOUT on data (with R's ICMP
    /// answers undoing backoffs: RFC 6069), tcp_retries2 without it (a silent B only: an ICMP error
    /// changes the ladder, not modelled; a rebooted B resets instead), the heartbeat.
    static func expectations(_ a: TrialAnalysis, rebooted: Bool, icmpAnswers: Bool) -> [Expectation] {
        let spec = a.spec, policy = spec.clientPolicy
        var candidates: [Expectation] = []
        if spec.workload == .idle, let k = spec.effectiveClientKeepalive {
            if rebooted, let back = a.tBack, let last = a.lastReceived {
                candidates.append(.keepaliveAfterReboot(k, backAfter: back - last, hz: a.hz))
            } else {
                candidates.append(.keepalive(k, userTimeoutMs: policy.userTimeoutMs, hz: a.hz))
            }
        }
        if spec.workload != .idle, let u = policy.userTimeoutMs, u > 0, let first = a.firstTimeoutRetransmission {
            if icmpAnswers, let hz = a.hz, hz > 0 {
                candidates.append(a.icmpRevertExpectation(userTimeoutMs: u, hz: hz, firstRetransmission: first))
            } else {
                candidates.append(.userTimeout(ms: u, hz: a.hz))
            }
        }
        if spec.workload != .idle, !rebooted, !icmpAnswers, (policy.userTimeoutMs ?? 0) == 0, a.firstTimeoutRetransmission != nil,
           let hz = a.hz, hz > 0 {
            let retries2 = spec.sysctls["net.ipv4.tcp_retries2"].flatMap { Int($0) } ?? KernelConstants.tcpRetries2Default
            candidates.append(.retransmissionTimeoutFromFirstRetransmission(retries2: retries2, hz: hz))
        }
        return candidates + heartbeat(a)
    }

    /// The heartbeat's own expectation, when the client runs one.
    static func heartbeat(_ a: TrialAnalysis) -> [Expectation] {
        a.spec.clientPolicy.heartbeat.map { [.heartbeat($0, hz: a.hz)] } ?? []
    }

    /// The client's application heartbeat gives up `interval + timeout` after the fault.
    static func heartbeat(_ spec: TrialSpec) -> [(Double, String)] {
        guard let h = spec.clientPolicy.heartbeat else { return [] }
        return [(h.interval + h.timeout + Trial.tail, Expectation.heartbeat(h).formula)]
    }
}
