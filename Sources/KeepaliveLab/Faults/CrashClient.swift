import Glibc
import KeepaliveNet

/// `crash-client`: A's host dies silently: its cable is cut, then the client is killed. The server
/// in B is the side that has to notice (real programs only: the built-in peers detect on A).
struct CrashClientFault: BareFaultKind {
    static let bare = BareFault(name: "crash-client", value: .crashClient, site: .clientHost,
                                help: "A's host dies silently; the server program in B has to notice (needs an `app:` client)",
                                phrase: "A crashed (silent: nothing sent); the server in B has to notice")

    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws {
        try driver.topology.cutA()
        try peers.signalClient(SIGKILL)
    }

    /// redis-server's tcp-keepalive N: TCP_KEEPIDLE N, TCP_KEEPINTVL N/3, TCP_KEEPCNT 3 (anet.c).
    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] {
        guard let server = spec.serverPolicy.app, server.profile == "redis-server",
              let n = server.options?["tcp-keepalive"].flatMap(Int.init), n > 0 else { return [] }
        let seconds = Double(n + 3 * max(n / 3, 1))
        return [(max(0, seconds - spec.faultDelay) + Trial.tail, "redis-server tcp-keepalive \(n): \(n) + 3 × \(max(n / 3, 1))")]
    }
}
