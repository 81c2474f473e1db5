import KeepaliveNet

/// `reboot:SECONDS`: crash, then after `downtime` seconds a fresh B (same IP and MAC, no
/// connection state) with a fresh server.
struct RebootFault: FaultKind {
    static let facts = FaultFacts(
        name: "reboot", syntax: "reboot:SECONDS (0 < SECONDS ≤ 3600)",
        help: "crash, then B comes back after SECONDS (same IP and MAC, no connection state, a fresh server)",
        examples: ["reboot:3", "reboot:0.5"])
    static let range = 0.0...3600.0
    var downtime: Double

    /// B comes back once: a fresh namespace, and the peers start a fresh server in it.
    func step(_ driver: FaultDriver, now: Double, peers: any TrialPeers) throws -> Bool {
        guard driver.tBack == nil, let tFault = driver.tFault, now >= tFault + downtime else { return false }
        try driver.topology.rebootB()
        let server = try peers.restartServer(in: driver.topology)
        let back = PeerEvent.now()
        driver.tBack = back
        driver.notes.append("B rebooted \(Trial.format(back - tFault)) s after the crash: new namespace \(driver.topology.b.name), same IP and MAC, \(server)")
        return false
    }

    func nextDeadline(_ driver: FaultDriver) -> Double? {
        driver.tBack == nil ? driver.tFault.map { $0 + downtime } : nil
    }

    static func parse(arguments: String?) throws -> Fault {
        guard let value = arguments, let downtime = Double(value), downtime.isFinite else {
            throw PolicyError.malformed(field: "fault reboot downtime", input: arguments ?? "", expected: "seconds, e.g. reboot:3")
        }
        guard downtime > 0, downtime <= range.upperBound else {
            throw PolicyError.outOfRange(field: "fault reboot downtime", value: "\(value) s", rule: "allowed 0 < SECONDS ≤ 3600")
        }
        return .reboot(downtime: downtime)
    }

    var text: String { "reboot:\(Fault.format(downtime))" }
    var site: Fault.Site { .peerHost }
    var reportPhrase: String { "B crashed (reboots after \(Fault.format(downtime)) s)" }

    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws {
        try HostDown.crashB(driver.topology, peers: peers)
    }

    /// The kernel's formula for a peer that is back, with no state, `downtime` after the crash.
    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] {
        HostDown.expectedEnd(spec) { k, _ in .keepaliveAfterReboot(k, backAfter: spec.faultDelay + downtime, hz: nil) }
    }

    func expectations(_ analysis: TrialAnalysis) -> [Expectation] { HostDown.expectations(analysis, rebooted: true, icmpAnswers: false) }
}
