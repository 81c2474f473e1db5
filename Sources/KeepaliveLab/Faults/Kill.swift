import Glibc
import KeepaliveNet

/// `kill`: the server process is killed; B's kernel stays up and closes the connection (FIN/RST).
/// A may or may not see the close: the deadline ends the trial.
struct KillFault: BareFaultKind {
    static let bare = BareFault(name: "kill", value: .kill, site: .peerProcess,
                                help: "the server process is killed; B's kernel stays up and closes the connection",
                                phrase: "B's server process killed (B's kernel stays up)")
    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws { peers.signalServer(SIGKILL) }
}
