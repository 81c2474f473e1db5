import Glibc
import KeepaliveNet

/// `freeze`: the server process is stopped (SIGSTOP); B's kernel still answers keepalive probes,
/// so only an application heartbeat ends the trial before its deadline.
struct FreezeFault: BareFaultKind {
    static let bare = BareFault(name: "freeze", value: .freeze, site: .peerProcess,
                                help: "the server process is stopped (SIGSTOP); B's kernel still answers keepalive probes",
                                phrase: "B's server frozen by SIGSTOP (B's kernel stays up)")
    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] { HostDown.heartbeat(spec) }
    /// B's kernel answers the probes: only the heartbeat can tell.
    func expectations(_ analysis: TrialAnalysis) -> [Expectation] { HostDown.heartbeat(analysis) }
    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws { peers.signalServer(SIGSTOP) }
}
