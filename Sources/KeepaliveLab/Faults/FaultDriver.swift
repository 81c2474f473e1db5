import Foundation
import KeepaliveNet

/// A trial's fault, run the same way for every kind of peer: R's impairment engine and its
/// NAT/firewall role set up before the peers start (a missing netem fails the trial before any
/// traffic), the fault injected at its instant, and its own clock (B's reboot, R's heal, the
/// nat-idle exchange) stepped by the trial's loop. What each of those means is the fault kind's;
/// this holds the state they share. R's part goes with R when the topology is torn down.
final class FaultDriver {
    let spec: TrialSpec
    let topology: Topology
    let kind: any FaultKind
    var engine: (any ImpairmentEngine)?
    var watcher: ConntrackWatcher?
    private(set) var tFault: Double?
    /// partition: R has healed.
    var healed = false
    /// reboot: when B came back.
    var tBack: Double?
    /// What happened on the fault's clock, for the result's notes.
    var notes: [String] = []
    var report = NetworkFaultReport()

    init(spec: TrialSpec, topology: Topology) {
        self.spec = spec
        self.topology = topology
        kind = spec.fault.kind
    }

    // A trial that throws never reaches finish(): the watcher must still stop.
    deinit { _ = watcher?.stop() }

    /// The impairment in force once the fault has struck.
    var faultImpairment: Impairment { kind.impairment(over: spec.baselineImpairment) ?? spec.baselineImpairment }

    func prepare() throws {
        let baseline = spec.baselineImpairment
        let impairs = kind.impairment(over: baseline) != nil
        if impairs || !baseline.isNone {
            let purpose = impairs ? "fault \(spec.fault)" : "link shaping (\(spec.shape?.summary ?? ""))"
            let (engine, note) = try ImpairmentEngines.select(spec.impairment ?? .auto, for: faultImpairment,
                                                              purpose: purpose, topology: topology, seed: spec.seed)
            self.engine = engine
            report.engine = engine.kind
            if let note { report.notes.append(note) }
            if !baseline.isNone {
                try engine.apply(baseline)
                report.form = engine.form
            }
        }
        try kind.prepareRouter(self)
    }

    func inject(at t: Double, peers: any TrialPeers) throws {
        tFault = t
        try kind.inject(self, peers: peers)
    }

    /// Runs the fault's own clock. Returns true once the trial has what it waited for (the answer
    /// to the nat-idle send, plus the capture tail).
    func step(peers: any TrialPeers) throws -> Bool {
        guard tFault != nil else { return false }
        return try kind.step(self, now: PeerEvent.now(), peers: peers)
    }

    /// When `step` next has something to do on its own clock (nil: nothing scheduled).
    var nextDeadline: Double? { tFault == nil ? nil : kind.nextDeadline(self) }

    /// nat-idle: the request is out and its answer not yet seen (the trial wakes on the client's
    /// received events).
    var awaitsAnswer: Bool { report.sendAt != nil && report.answerAt == nil }

    /// Records the answer to the request once it is in.
    func observeAnswer(peers: any TrialPeers) {
        guard awaitsAnswer, let sent = report.sendAt, let answer = peers.answer(after: sent) else { return }
        report.answerAt = answer
    }

    /// R's side of the story once the trial is over: conntrack, the engine's drops, the firewall's.
    func finish(peers: any TrialPeers) -> NetworkFaultReport {
        if let watcher { report.conntrack = watcher.stop() }
        if let engine {
            report.drops = engine.dropCounts()
            report.form = report.form ?? engine.form
        }
        kind.finish(self, peers: peers)
        return report
    }

    /// A KARQ/KARS after the handshake's seq 0: the nat-idle exchange.
    static func isRequest(_ e: PeerEvent, _ kind: PeerEvent.Kind, tag: WireTag) -> Bool {
        e.kind == kind && e.detail == tag.rawValue && (e.seq ?? 0) >= 1
    }
}
