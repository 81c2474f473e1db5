import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Privileged, real kernel: namespaces, veths, real client and server processes, capture in R.
/// Skipped with the reason where namespaces cannot be created here.
@Suite(.enabled(if: CIGate.runs(TrialPrerequisites.missing), Comment(rawValue: TrialPrerequisites.missing ?? "")))
struct TrialTests {
    /// Runs a trial and checks that it left no namespace and no process behind.
    func trial(_ spec: TrialSpec, name: String) async throws -> TrialResult {
        let run = LabID.newRunID()
        let result = try await Trial(spec: spec, id: try LabID(run: run, trial: name),
                                     peerExecutable: PeerBinary.path!, pcapPath: nil).runOnOwnThread()
        let left = NetworkNamespace.listNames().filter { LabID.runID(inNamespaceName: $0) == run }
        #expect(left.isEmpty, "namespaces left behind: \(left)")
        let peers = peerProcesses(ofRun: run)
        #expect(peers.isEmpty, "peer processes left behind: \(peers)")
        print("\(name): \(TrialOutput.human(result))")
        return result
    }

    /// Peer processes of one run: their command line names the run's namespaces.
    func peerProcesses(ofRun run: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int32(entry) != nil,
                  let cmdline = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return false }
            return cmdline.contains("kal-\(run)-")
        }
    }

    static let k213 = KeepaliveSetting(idle: 2, interval: 1, count: 3)

    @Test func crashIsDetectedByThreeUnansweredProbes() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(keepalive: Self.k213), fault: .crash, deadline: 12), name: "crash")
        #expect(r.outcome == .detected)
        #expect(r.errno == "ETIMEDOUT")
        let since = try #require(r.sinceLastRxS)
        #expect(Expectation(anchor: .lastReceived, seconds: 5, formula: "").accepts(since), "since last rx \(since) s")
        #expect(r.expectedS == 5 && r.withinTolerance == true)
        #expect(r.probesSent == 3)
        #expect(r.probeReplies == 0)
        // A's RST follows the third probe.
        let probes = r.timeline.filter { $0.kind == .keepaliveProbe && $0.t > 0 }.map(\.t)
        let rsts = r.timeline.filter { $0.kind == .rst && $0.direction == .aToB && $0.t > 0 }
        #expect(probes.count == 3 && rsts.count == 1)
        #expect((rsts.first?.t ?? 0) > (probes.last ?? .infinity))
        #expect(r.rstSeen && r.wireAbortS != nil)
        #expect(r.tcpInfoAtDetection != nil && r.tcpInfoAtFault != nil)
    }

    @Test func rebootedPeerAnswersTheNextProbeWithRST() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(keepalive: Self.k213), fault: .reboot(downtime: 3), deadline: 12),
                          name: "reboot")
        #expect(r.outcome == .detected)
        #expect(r.errno == "ECONNRESET")
        let back = try #require(r.marks.bBack)
        let detection = try #require(r.detectionLatencyS)
        // Detected at the first probe after B came back: within one interval of its return.
        #expect(detection > back && detection < back + 1.0 + 0.15, "back at \(back) s, detected at \(detection) s")
        let rstFromB = r.timeline.first(where: { $0.kind == .rst && $0.direction == .bToA })
        #expect(rstFromB != nil, "B's RST must be on the wire")
        #expect(r.withinTolerance == true)
    }

    @Test func userTimeoutEndsRetransmissionsOfUnackedData() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(userTimeoutMs: 3000), workload: .stream, fault: .crash, deadline: 12),
                          name: "stream")
        #expect(r.outcome == .detected)
        #expect(r.errno == "ETIMEDOUT")
        // Near 3 s after the oldest unacknowledged data: the clock starts at the first timer-driven
        // retransmission, one RTO (plus a tail-loss probe) after that data.
        let since = try #require(r.sinceOldestUnackedS)
        #expect(since >= 3.0 && since < 3.0 + 0.8, "since oldest unacked \(since) s")
        #expect(r.expected?.anchor == .firstTimeoutRetransmission)
        #expect(r.withinTolerance == true, "measured \(r.measuredS ?? -1) s from the first RTO retransmission")
        #expect(r.probesSent == 0)
        #expect(r.wire.count(.retransmission, .aToB) > 0)
    }

    @Test func frozenServerIsInvisibleToKernelKeepalive() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(keepalive: Self.k213), fault: .freeze, deadline: 15), name: "freeze")
        #expect(r.outcome == .missed)
        #expect(r.probesSent >= 5 && r.probeReplies == r.probesSent, "B's kernel answers every probe")
    }

    @Test func heartbeatSeesAFrozenServer() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(heartbeat: HeartbeatSetting(interval: 1, timeout: 3)),
                                    fault: .freeze, deadline: 15), name: "heartbeat")
        #expect(r.outcome == .detected)
        #expect(r.detectedBy == "heartbeat")
        let latency = try #require(r.detectionLatencyS)
        #expect(latency >= 3 && latency <= 4.2, "heartbeat 1,3 detects within timeout + interval, got \(latency) s")
        #expect(r.withinTolerance == true)
    }

    @Test func icmpForAProbeIsIgnored() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(keepalive: Self.k213), fault: .crashICMP, deadline: 12),
                          name: "icmp")
        #expect(r.outcome == .detected)
        #expect(r.errno == "ETIMEDOUT")
        #expect(r.wire.count(.icmp) >= 3, "R answered the probes with ICMP")
        #expect(r.withinTolerance == true)
    }

    @Test func killedServerClosesAtOnce() async throws {
        let r = try await trial(TrialSpec(fault: .kill, deadline: 5), name: "kill")
        #expect(r.outcome == .detected)
        #expect(try #require(r.detectionLatencyS) < 0.5)
        #expect(r.wire.count(.fin, .bToA) + r.wire.count(.rst, .bToA) >= 1)
    }

    @Test func healthyPeerSurvives() async throws {
        let r = try await trial(TrialSpec(clientPolicy: Policy(keepalive: KeepaliveSetting(idle: 1, interval: 1, count: 2)),
                                    fault: .none, deadline: 4), name: "healthy")
        #expect(r.outcome == .survived)
        #expect(r.probesSent >= 2 && r.probeReplies == r.probesSent)
    }
}
