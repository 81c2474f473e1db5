import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Network faults on the real kernel: R drops (nftables, or netem where the kernel has it), R as a
/// NAT/firewall whose conntrack forgets idle connections. B stays healthy throughout.
/// Skipped with the reason where namespaces cannot be created here.
@Suite(.enabled(if: CIGate.runs(TrialPrerequisites.missing), Comment(rawValue: TrialPrerequisites.missing ?? "")))
struct NetworkFaultTests {
    /// Runs a trial and checks that it left no namespace and no process behind. `witness` runs
    /// alongside, given R's namespace name.
    func trial(_ spec: TrialSpec, name: String, witness: ConntrackWitness? = nil) throws -> TrialResult {
        let run = LabID.newRunID()
        let id = try LabID(run: run, trial: name)
        witness?.start(namespace: id.namespaceName(.r), port: spec.port)
        defer { witness?.stop() }
        let result = try Trial(spec: spec, id: id, peerExecutable: PeerBinary.path!, pcapPath: nil).run()
        let left = NetworkNamespace.listNames().filter { LabID.runID(inNamespaceName: $0) == run }
        #expect(left.isEmpty, "namespaces left behind: \(left)")
        let peers = Self.processes(mentioning: "kal-\(run)-")
        #expect(peers.isEmpty, "peer processes left behind: \(peers)")
        print("\(name): \(TrialOutput.human(result))")
        return result
    }

    static func processes(mentioning text: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int32(entry) != nil, Int32(entry) != getpid(),
                  let cmdline = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return false }
            return cmdline.contains(text)
        }
    }

    /// Runs trials side by side, all at once: each on a thread of its own, which outlives its peers
    /// (Dispatch would run only as many as there are CPUs).
    func parallel(_ specs: [(TrialSpec, String)]) throws -> [TrialResult] {
        let slots = Locked<[Result<TrialResult, any Error>?]>(Array(repeating: nil, count: specs.count))
        let finished = DispatchSemaphore(value: 0)
        for (i, (spec, name)) in specs.enumerated() {
            Thread {
                let outcome = Result { try trial(spec, name: name) }
                slots.withLock { $0[i] = outcome }
                finished.signal()
            }.start()
        }
        for _ in specs { finished.wait() }
        return try slots.value.map { try $0!.get() }
    }

    static let k213 = KeepaliveSetting(idle: 2, interval: 1, count: 3)
    /// A probe every second that practically never gives up: a steady probe stream to drop from.
    static let everySecond = KeepaliveSetting(idle: 1, interval: 1, count: 127)

    // MARK: nat-idle

    @Test func keepaliveKeepsTheNATEntryFresh() throws {
        let witness = ConntrackWitness()
        let r = try trial(TrialSpec(clientPolicy: Policy(keepalive: Self.k213), fault: .natIdle(timeout: 5, mode: .drop),
                                    deadline: 15, silence: 10), name: "natka", witness: witness)
        #expect(r.outcome == .survived)
        #expect(r.dataReachedB == true && r.answerReceived == true)
        #expect(r.conntrackExpiredS == nil, "R's entry expired at \(r.conntrackExpiredS ?? -1) s")
        #expect(r.probesSent >= 4 && r.probeReplies == r.probesSent)
        let send = try #require(r.marks.send)
        #expect(send >= 10 && send < 10.3)
        #expect(r.impairmentEngine == nil, "NAT needs no impairment engine")
        // The conntrack CLI, independently: the entry was there with R's short timeout, and never vanished.
        let samples = witness.samples
        #expect(samples.contains { $0.timeout != nil }, "conntrack -L never showed the entry")
        // While established, R's 5 s timeout applies (the teardown's RST later moves the entry to
        // CLOSE, with its own 10 s timeout, which the witness may still catch).
        let established = samples.filter { $0.state == "ESTABLISHED" }.compactMap(\.timeout)
        #expect(!established.isEmpty, "conntrack -L never showed the entry ESTABLISHED")
        #expect(established.allSatisfy { $0 <= 5 }, "established timeouts seen: \(established)")
        let firstSeen = samples.firstIndex { $0.timeout != nil } ?? samples.endIndex
        #expect(samples[firstSeen...].allSatisfy { $0.timeout != nil }, "the entry vanished: \(samples)")
    }

    @Test func silentConnectionIsForgottenAndDataGoesIntoTheVoid() throws {
        let witness = ConntrackWitness()
        let r = try trial(TrialSpec(fault: .natIdle(timeout: 5, mode: .drop), deadline: 14), name: "natdrop", witness: witness)
        #expect(r.outcome == .broken)
        #expect(r.detectedBy == nil, "nothing tells A: \(r.detectedBy ?? "")")
        #expect(r.dataReachedB == false && r.answerReceived == false)
        let expired = try #require(r.conntrackExpiredS)
        // Last packet ~0.2 s before the fault, 5 s timeout, 50 ms polls.
        #expect(expired > 4.5 && expired < 5.5, "expired at \(expired) s")
        #expect(try #require(r.marks.send) >= 10, "default silence is twice the timeout")
        let afterSend = r.timeline.filter { $0.t > 10 && $0.direction == .aToB && $0.kind == .retransmission }
        #expect(afterSend.count >= 3, "A retransmits into the void: \(afterSend.count)")
        #expect(r.brokenHow?.contains("retransmitted") == true)
        #expect(!r.timeline.contains { $0.t > 0 && $0.direction == .bToA }, "nothing came back to A")
        let samples = witness.samples
        let firstSeen = try #require(samples.firstIndex { $0.timeout != nil }, "conntrack -L never showed the entry")
        #expect(samples[firstSeen...].contains { $0.timeout == nil }, "conntrack -L saw the entry vanish")
    }

    @Test func firewallAnswersForgottenDataWithReset() throws {
        let r = try trial(TrialSpec(fault: .natIdle(timeout: 5, mode: .reset), deadline: 14), name: "natreset")
        #expect(r.outcome == .broken)
        #expect(r.errno == "ECONNRESET")
        let after = try #require(r.foundOutAfterSendS)
        #expect(after >= 0 && after < 0.1, "ECONNRESET \(after) s after the send")
        #expect(r.timeline.contains { $0.t > 10 && $0.direction == .bToA && $0.kind == .rst }, "R's RST on the wire")
        #expect(r.dataReachedB == false)
        #expect(r.brokenHow?.hasPrefix("ECONNRESET") == true)
    }

    @Test func userTimeoutEndsRetransmissionsIntoTheVoid() throws {
        let r = try trial(TrialSpec(clientPolicy: Policy(userTimeoutMs: 2000), fault: .natIdle(timeout: 5, mode: .drop),
                                    deadline: 14), name: "natut")
        #expect(r.outcome == .broken)
        #expect(r.errno == "ETIMEDOUT")
        let after = try #require(r.foundOutAfterSendS)
        // The clock starts at the first RTO retransmission: after a tail-loss probe (~0.2 s) and an
        // RTO (~0.2 s) on this sub-millisecond link.
        #expect(after >= 2.0 && after < 2.9, "ETIMEDOUT \(after) s after the send")
        #expect(r.wire.count(.retransmission, .aToB) >= 2)
    }

    // MARK: partition

    @Test func shortPartitionFoolsImpatientKeepalive() throws {
        let r = try trial(TrialSpec(clientPolicy: Policy(keepalive: KeepaliveSetting(idle: 1, interval: 1, count: 2)),
                                    fault: .partition(seconds: 3, direction: .both), deadline: 8, faultDelay: 0.5),
                          name: "part12")
        #expect(r.outcome == .falsePositive)
        #expect(r.errno == "ETIMEDOUT")
        #expect(r.expectedS == 3 && r.withinTolerance == true, "since last rx \(r.sinceLastRxS ?? -1) s")
        #expect(try #require(r.detectionLatencyS) < 3, "closed during the partition")
        #expect(r.probesAnswered == 0 && r.probesLost == 2)
        #expect(r.impairmentDrops?["a2b"]?.dropped ?? 0 >= 2)
    }

    @Test func patientKeepaliveRidesOutThePartition() throws {
        let r = try trial(TrialSpec(clientPolicy: Policy(keepalive: KeepaliveSetting(idle: 1, interval: 1, count: 10)),
                                    fault: .partition(seconds: 3, direction: .both), deadline: 8), name: "part110")
        #expect(r.outcome == .survived)
        let heal = try #require(r.marks.heal)
        #expect(heal >= 3 && heal < 3.1)
        #expect(try #require(r.probesLost) >= 2, "probes sent during the partition got no reply")
        #expect(try #require(r.probesAnswered) >= 2, "probes after the heal were answered")
        #expect(!r.timeline.contains { $0.t > 0 && $0.t < 3 && $0.direction == .bToA }, "nothing crossed R during the partition")
    }

    // MARK: loss

    @Test func nftablesLossDropsProbesAtTheRequestedRate() throws {
        let spec = TrialSpec(clientPolicy: Policy(keepalive: Self.everySecond),
                             fault: .loss(percent: 30, direction: .a2b), deadline: 40, impairment: .nftables)
        let results = try parallel([(spec, "loss1"), (spec, "loss2"), (spec, "loss3")])
        var sent = 0, lost = 0
        for r in results {
            #expect(r.outcome == .survived)
            #expect(r.impairmentEngine == "nftables")
            #expect(r.impairmentForm?.contains("numgen random") == true)
            #expect(r.seed == nil)
            sent += r.probesSent
            lost += try #require(r.probesLost)
            // Only probes crossed R toward B: R's own drop counter agrees with the wire.
            let counted = try #require(r.impairmentDrops?["a2b"])
            #expect(abs(counted.dropped - (r.probesLost ?? 0)) <= 1, "R dropped \(counted.dropped), wire lost \(r.probesLost ?? -1)")
        }
        let ratio = Double(lost) / Double(sent)
        print("loss:30 over \(sent) probes: \(lost) dropped = \(String(format: "%.3f", ratio))")
        #expect(sent >= 100, "enough probes: \(sent)")
        // Two-sided exact binomial test at the 0.1 % level.
        #expect(Binomial.cdf(lost, n: sent, p: 0.3) > 0.0005 && Binomial.survival(lost, n: sent, p: 0.3) > 0.0005,
                "\(lost) of \(sent) dropped (\(ratio)) is outside the binomial bounds of 30 %")
    }

    @Test func sameSeedDropsTheSameProbes() throws {
        func spec(_ seed: UInt64) -> TrialSpec {
            TrialSpec(clientPolicy: Policy(keepalive: Self.everySecond), fault: .loss(percent: 50, direction: .a2b),
                      deadline: 8, seed: seed)
        }
        let results = try parallel([(spec(42), "seed42a"), (spec(42), "seed42b"), (spec(7), "seed7")])
        let patterns = results.map { r in
            r.timeline.filter { $0.t > 0 && [.keepaliveProbe, .keepaliveReply].contains($0.kind) }
                .map { $0.kind == .keepaliveProbe ? "x" : "." }.joined()
        }
        print("seeded loss patterns (x probe, . reply): \(patterns)")
        for r in results {
            #expect(r.impairmentForm?.contains("seeded") == true)
            #expect(r.impairmentEngine == "nftables" || r.impairmentEngine == "netem")
        }
        #expect(results[0].seed == 42 && results[2].seed == 7)
        let common = min(patterns[0].count, patterns[1].count) - 1
        #expect(common >= 8)
        #expect(patterns[0].prefix(common) == patterns[1].prefix(common))
        #expect(patterns[0].prefix(common) != patterns[2].prefix(common), "another seed, another pattern")
    }

    // MARK: engine selection

    @Test func autoFallsBackToNftablesAndNetemSaysWhyNot() throws {
        let loss = TrialSpec(clientPolicy: Policy(keepalive: Self.k213), fault: .loss(percent: 10, direction: .both), deadline: 2)
        let r = try trial(loss, name: "auto")
        if r.impairmentEngine == "netem" {
            // A kernel with sch_netem: asking for it explicitly works too.
            var explicit = loss
            explicit.impairment = .netem
            #expect(try trial(explicit, name: "netem").impairmentEngine == "netem")
            return
        }
        #expect(r.impairmentEngine == "nftables")
        #expect(r.notes.contains { $0.contains("netem is not available") && $0.contains("nftables ran instead") })
        #expect(TrialOutput.human(r).contains("impairment engine: nftables"))

        var explicit = loss
        explicit.impairment = .netem
        let error = #expect(throws: ImpairmentError.self) { try trial(explicit, name: "netem") }
        #expect("\(error.map { "\($0)" } ?? "")".contains("not available"), "\(String(describing: error))")

        var delayed = loss
        delayed.shape = NetemShape(delayMs: 50)
        let delayError = #expect(throws: ImpairmentError.self) { try trial(delayed, name: "delay") }
        #expect("\(delayError.map { "\($0)" } ?? "")".contains("delay 50 ms needs netem"))
    }
}

/// `conntrack -L` in R, polled from outside the product: an independent view of R's table.
final class ConntrackWitness: Sendable {
    struct Sample: CustomStringConvertible, Sendable {
        let t: Double
        /// Seconds left on A's entry; nil when the table had none.
        let timeout: Int?
        /// The entry's TCP state ("ESTABLISHED", "CLOSE" once the trial's teardown reset it …).
        let state: String?
        var description: String { "\(timeout.map(String.init) ?? "-")" }
    }

    private let collected = Locked<[Sample]>([])
    private let stopped = Locked(false)
    private let done = DispatchSemaphore(value: 0)

    var samples: [Sample] { collected.value }

    func start(namespace: String, port: UInt16) {
        Thread { [self] in
            defer { done.signal() }
            while !stopped.value {
                if let output = Self.list(namespace: namespace, port: port) {
                    // "tcp 6 4 ESTABLISHED src=198.18.1.2 dst=198.18.2.2 sport=… dport=5001 …"
                    let line = output.split(separator: "\n").first { $0.contains("src=\(Topology.aAddress.address)") }
                    let fields = line.map { $0.split(separator: " ", omittingEmptySubsequences: true) } ?? []
                    let timeout = fields.dropFirst(2).first.flatMap { Int($0) }
                    let state = fields.dropFirst(3).first.map(String.init)
                    collected.withLock { $0.append(Sample(t: PeerEvent.now(), timeout: timeout, state: state)) }
                }
                usleep(250_000)
            }
        }.start()
    }

    func stop() {
        stopped.withLock { $0 = true }
        done.wait()
    }

    /// nil while R's namespace or its conntrack does not exist yet.
    static func list(namespace: String, port: UInt16) -> String? {
        guard FileManager.default.fileExists(atPath: "/run/netns/\(namespace)") else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, "conntrack", "-L", "-p", "tcp", "--dport", String(port)]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

enum Binomial {
    /// P(X ≤ k) for X ~ Bin(n, p).
    static func cdf(_ k: Int, n: Int, p: Double) -> Double {
        (0...max(0, k)).reduce(0) { $0 + pmf($1, n: n, p: p) }
    }

    /// P(X ≥ k).
    static func survival(_ k: Int, n: Int, p: Double) -> Double {
        (k...n).reduce(0) { $0 + pmf($1, n: n, p: p) }
    }

    static func pmf(_ k: Int, n: Int, p: Double) -> Double {
        guard k >= 0, k <= n else { return 0 }
        let logChoose = lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1))
        return exp(logChoose + Double(k) * log(p) + Double(n - k) * log(1 - p))
    }
}

/// What needs no privileges: parsing, validation, the seeded pattern.
struct NetworkFaultSpecTests {
    @Test func networkFaultsParseAndPrintBack() throws {
        for text in ["loss:30", "loss:2.5,a2b", "partition:3", "partition:1.5,b2a", "nat-idle:5", "nat-idle:60,reset"] {
            let fault = try Fault(parsing: text)
            #expect(fault.description == text)
            #expect(!fault.peerIsDead)
        }
        #expect(try Fault(parsing: "loss:30,both") == .loss(percent: 30, direction: .both))
        #expect(try Fault(parsing: "nat-idle:5,drop") == .natIdle(timeout: 5, mode: .drop))
        let data = try JSONEncoder().encode(Fault.natIdle(timeout: 5, mode: .reset))
        #expect(try JSONDecoder().decode(Fault.self, from: data) == .natIdle(timeout: 5, mode: .reset))
    }

    @Test func badNetworkFaultsSayWhatIsAllowed() {
        let cases: [(String, String)] = [
            ("loss:0", "0 < PCT ≤ 100"), ("loss:101", "0 < PCT ≤ 100"), ("loss:abc", "percentage"),
            ("partition:0", "0 < SECONDS ≤ 3600"), ("partition:3,sideways", "both, a2b or b2a"),
            ("nat-idle:0", "1…432000"), ("nat-idle:2.5", "whole seconds"), ("nat-idle:5,ignore", "drop or reset"),
            ("loss:", "loss:PCT"),
        ]
        for (text, hint) in cases {
            do {
                let fault = try Fault(parsing: text)
                Issue.record("\(text) parsed as \(fault)")
            } catch {
                #expect("\(error)".contains(hint), "\(text): \(error)")
            }
        }
    }

    @Test func specValidationCatchesImpossibleCombinations() {
        let nat = TrialSpec(fault: .natIdle(timeout: 5, mode: .drop), deadline: 8)
        #expect(throws: PolicyError.self) { try nat.validate() }  // silence 10 s ≥ deadline 8 s
        #expect(throws: PolicyError.self) { try TrialSpec(fault: .crash, silence: 3).validate() }
        let delayOnNft = TrialSpec(fault: .loss(percent: 10, direction: .both), impairment: .nftables,
                                   shape: NetemShape(delayMs: 20))
        #expect(throws: PolicyError.self) { try delayOnNft.validate() }
        let correlationWithoutLoss = TrialSpec(fault: .partition(seconds: 1, direction: .both),
                                               shape: NetemShape(lossCorrelationPercent: 25))
        #expect(throws: PolicyError.self) { try correlationWithoutLoss.validate() }
        #expect(throws: PolicyError.self) { try TrialSpec(fault: .none, shape: NetemShape(jitterMs: 5)).validate() }
        #expect(throws: Never.self) { try TrialSpec(fault: .natIdle(timeout: 5, mode: .reset), deadline: 14).validate() }
    }

    @Test func seededDropPatternIsReproducibleAndExact() {
        let a = SeededDropPattern(lossPercent: 30, seed: 42)
        #expect(a == SeededDropPattern(lossPercent: 30, seed: 42))
        #expect(a != SeededDropPattern(lossPercent: 30, seed: 43))
        #expect(a.indices.count == 300 && Set(a.indices).count == 300)
        #expect(a.indices.allSatisfy { (0..<SeededDropPattern.period).contains($0) })
        #expect(SeededDropPattern(lossPercent: 0.01, seed: 1).indices.count == 1, "a requested loss never rounds to none")
        #expect(SeededDropPattern(lossPercent: 100, seed: 1).indices.count == SeededDropPattern.period)
        // SplitMix64's published first output for seed 0.
        var generator = SplitMix64(seed: 0)
        #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
    }

    @Test func conntrackCountersAndNftCountersParse() {
        let text = """
            table ip kal_impair {
            	counter a2b_seen {
            		packets 19 bytes 988
            	}
            	counter a2b_dropped {
            		packets 5 bytes 260
            	}
            }
            """
        #expect(NftablesCounters.parse(text) == ["a2b_seen": 19, "a2b_dropped": 5])
    }
}
