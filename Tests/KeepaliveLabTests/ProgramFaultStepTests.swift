import Foundation
import Testing
@testable import KeepaliveLab

/// The fault's own clock with real programs as peers: the one runner steps R's heal and the
/// nat-idle exchange for them as for the built-in peer. Privileged, real namespaces and socat
/// (AppPeerTests' suite: skipped with the reason where those are missing).
extension AppPeerTests {
    /// socat as the client with keepalive 1,1,`count`, against its echo server.
    func socatTrial(count: Int, _ fault: Fault, deadline: Double, name: String) async throws -> TrialResult {
        let k = KeepaliveSetting(idle: 1, interval: 1, count: count)
        return try await trial(TrialSpec(clientPolicy: Policy(keepalive: k, app: AppSpec(profile: "socat")), fault: fault,
                                         deadline: deadline), name: name)
    }

    /// nat-idle with socat: after the silence the runner writes socat's poke; keepalive (idle 1 s
    /// < the 3 s conntrack timeout) keeps R's entry, so the answer comes back.
    @Test(.enabled(if: installed("socat"), "socat is not installed (apt-get install socat)"))
    func socatNATIdleExchangeIsSteppedForPrograms() async throws {
        let r = try await socatTrial(count: 3, .natIdle(timeout: 3, mode: .drop), deadline: 10, name: "socatnat")
        let send = try #require(r.marks.send, "the request was sent after the silence")
        #expect(abs(send - 6) < 0.5, "sent \(send) s after the fault (silence 2 × 3 s)")
        #expect(r.answerReceived == true)
        let answer = try #require(r.marks.answer)
        #expect(answer > send && answer < send + 1, "answer at \(answer) s")
        #expect(r.dataReachedB == true)
        #expect(r.outcome == .survived, "\(r.outcome)")
    }

    /// partition with socat: R heals 2 s after the fault (before one runner, programs' trials
    /// never stepped the heal); patient keepalive (10 probes) rides it out.
    @Test(.enabled(if: installed("socat"), "socat is not installed (apt-get install socat)"))
    func socatPartitionHealsForPrograms() async throws {
        let r = try await socatTrial(count: 10, .partition(seconds: 2, direction: .both), deadline: 6, name: "socatpart")
        let heal = try #require(r.marks.heal, "R healed")
        #expect(abs(heal - 2) < 0.5, "healed \(heal) s after the fault")
        #expect(r.detectionLatencyS == nil, "socat kept its connection: \(r.outcome)")
        #expect(r.probeReplies > 0, "probes after the heal are answered")
    }
}
