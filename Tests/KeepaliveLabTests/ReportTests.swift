import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import KeepaliveLab

/// The fixtures under Fixtures/ are REAL trial results: the unedited `keepalive-lab trial … --json`
/// output of runs on this project's host backend (Fixtures/README.md lists each command). Tests that
/// need other numbers make them up and say so in their names ("…FakeResults…").
enum ReportFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func load(_ name: String) throws -> TrialResult {
        let data = try Data(contentsOf: directory.appendingPathComponent(name + ".json"))
        return try JSONDecoder().decode(TrialResult.self, from: data)
    }

    static var crashRuns: [TrialResult] {
        get throws { try (1...3).map { try load("crash-keepalive-2-1-3-run\($0)") } }
    }

    /// Every fixture, grouped into cells the way the runner would.
    static func allCells() throws -> [Cell] {
        let names = ["crash-keepalive-2-1-3-run1", "crash-keepalive-2-1-3-run2", "crash-keepalive-2-1-3-run3",
                     "reboot3-keepalive-2-1-3", "crash-icmp-keepalive-2-1-3", "freeze-keepalive-2-1-3",
                     "freeze-heartbeat-1-3", "crash-stream-user-timeout-3000",
                     "crash-stream-keepalive-2-1-3-user-timeout-3000", "none-keepalive-2-1-3",
                     "none-heartbeat-1-3", "crash-no-policy"]
        return Cell.grouping(try names.map(load))
    }

    /// The network-fault fixtures (R misbehaves, B stays healthy), one cell each.
    static let networkNames = ["nat-idle5-no-policy", "nat-idle5-reset-no-policy", "nat-idle5-keepalive-2-1-3",
                               "partition3-keepalive-1-1-2", "partition3-keepalive-1-1-10", "loss30-a2b-keepalive-1-1-2"]

    static func networkCells() throws -> [Cell] { Cell.grouping(try networkNames.map(load)) }

    static func input(_ cells: [Cell]) -> RunReportInput {
        RunReportInput(lab: "fixtures", description: "Real trials from the report fixtures.", date: "2026-11-27",
                       command: "keepalive-lab trial --keepalive 2,1,3 --fault crash --json", kernel: "6.18.44-fc-v657",
                       backend: "host", impairmentEngine: nil, cells: cells)
    }
}

@Suite struct ReportTests {
    // MARK: Ladder

    @Test func crashLadderShowsTheFaultThenThreeProbesBeforeARST() throws {
        let ladder = Ladder.render(try ReportFixtures.load("crash-keepalive-2-1-3-run1"))
        let lines = ladder.split(separator: "\n").map(String.init)
        let fault = try #require(lines.firstIndex { $0.contains("fault: B crashed") })
        let probes = (1...3).map { n in lines.firstIndex { $0.contains("keepalive probe \(n) ") } }
        let rst = try #require(lines.firstIndex { $0.contains(" RST ") && $0.contains("A aborts") })
        let detection = try #require(lines.firstIndex { $0.contains("A detects ETIMEDOUT") })
        #expect(probes.allSatisfy { $0 != nil })
        let p = probes.compactMap { $0 }
        #expect(fault < p[0] && p[0] < p[1] && p[1] < p[2] && p[2] < rst && rst < detection)
        // Probes go to a dead host: they end in X on B's column.
        #expect(p.allSatisfy { lines[$0].contains("→X") })
        #expect(lines[p[0]].hasPrefix("    +1.811"))
        #expect(ladder.contains("(1.811 s quiet)"))
        #expect(!ladder.contains("deadline"))
    }

    @Test func rebootLadderShowsBBackAndTheRSTFromBsFreshKernel() throws {
        let ladder = Ladder.render(try ReportFixtures.load("reboot3-keepalive-2-1-3"))
        let lines = ladder.split(separator: "\n").map(String.init)
        let back = try #require(lines.firstIndex { $0.contains("B back") })
        let rst = try #require(lines.firstIndex { $0.contains("RST") && $0.contains("no such connection") })
        #expect(lines[back].contains("^"))
        #expect(back < rst)
        #expect(lines[rst].contains("←"))
        // Probe 3 comes after B is back: it reaches B's lane, no X.
        let probe3 = try #require(lines.first { $0.contains("keepalive probe 3") })
        #expect(!probe3.contains("→X") && probe3.contains("→|"))
    }

    @Test func icmpLinesComeFromR() throws {
        let ladder = Ladder.render(try ReportFixtures.load("crash-icmp-keepalive-2-1-3"))
        let icmp = ladder.split(separator: "\n").filter { $0.contains("ICMP host-unreachable") && !$0.contains("fault") }
        #expect(icmp.count == 4)
        // Drawn from R's column (30 columns right of A's) back to A, not across from B.
        for line in icmp {
            let a = line.index(line.startIndex, offsetBy: 13)
            #expect(line[a] == "|")
            #expect(line.contains("←") && line.contains("(from R)"))
        }
    }

    @Test func streamLadderCollapsesBulkData() throws {
        let r = try ReportFixtures.load("crash-stream-user-timeout-3000")
        let ladder = Ladder.render(r)
        #expect(ladder.contains("data segments A→B"))
        #expect(ladder.split(separator: "\n").count < r.timeline.count)
        #expect(ladder.contains("retransmission 1000 B"))
        let fenced = Ladder.markdown(r)
        #expect(fenced.hasPrefix("```text\n"))
    }

    @Test func missedTrialEndsWithTheDeadline() throws {
        let ladder = Ladder.render(try ReportFixtures.load("crash-no-policy"))
        let last = try #require(ladder.split(separator: "\n").last)
        #expect(last.contains("=====") && last.contains("deadline") && last.contains("A never found out"))
    }

    // MARK: Network faults (R misbehaves, B stays healthy)

    /// The character on a lane of a ladder line: A 0, R 30, B 60 after the 13-column time column.
    static func lane(_ line: String, _ offset: Int) -> Character? {
        let chars = Array(line)
        return 13 + offset < chars.count ? chars[13 + offset] : nil
    }

    @Test func natIdleDropLadderShowsRForgettingAndTheRequestStoppingAtR() throws {
        let r = try ReportFixtures.load("nat-idle5-no-policy")
        let lines = Ladder.render(r).split(separator: "\n").map(String.init)
        let fault = try #require(lines.firstIndex { $0.contains("fault: silence begins") })
        let expiry = try #require(lines.firstIndex { $0.contains("R forgets the connection") })
        // The HOWTO's "connection deleted from table": a mark on R's lane at conntrack_expired.
        #expect(lines[expiry].contains("R forgets the connection (conntrack entry expired, 5.06 s idle; timeout 5 s)"))
        #expect(lines[expiry].hasPrefix("    +4.858"))
        #expect(Self.lane(lines[expiry], 30) == "X")
        #expect(fault < expiry)
        // Everything A sent after the expiry stops at R: "→x" on R's lane, B's lane untouched.
        let afterExpiry = lines[(expiry + 1)...].filter { $0.contains("8 B") }
        #expect(afterExpiry.count == 8)
        for line in afterExpiry {
            #expect(Self.lane(line, 29) == "→" && Self.lane(line, 30) == "x" && Self.lane(line, 60) == "|")
            #expect(!line.contains("→|") && line.contains("dropped by R: invalid connection"))
        }
        #expect(afterExpiry[0].contains("PSH data 8 B") && afterExpiry[0].contains("the request after 10 s of silence"))
        // R's own count agrees: 8 INVALID packets dropped.
        #expect(r.notes.contains { $0.contains("found 8 INVALID packet(s) and dropped them") })
        // Before the expiry, segments still cross R to B.
        #expect(lines[..<fault].filter { $0.contains("→|") }.count == 4)
        #expect(lines.last?.contains("R no longer knows the connection; A never found out") == true)
    }

    @Test func natIdleResetLadderDrawsRsRSTInBsName() throws {
        let lines = Ladder.render(try ReportFixtures.load("nat-idle5-reset-no-policy")).split(separator: "\n").map(String.init)
        let expiry = try #require(lines.firstIndex { $0.contains("R forgets the connection") })
        let request = try #require(lines.firstIndex { $0.contains("PSH data 8 B") && $0.contains("refused by R") })
        let rst = try #require(lines.firstIndex { $0.contains(" RST ") })
        let detection = try #require(lines.firstIndex { $0.contains("A detects ECONNRESET") })
        #expect(expiry < request && request < rst && rst < detection)
        #expect(Self.lane(lines[request], 30) == "x")
        // The RST the capture shows "from B" is R's: drawn from R's lane back to A, nothing toward B.
        #expect(lines[rst].contains("from R in B's name, not from B"))
        #expect(Self.lane(lines[rst], 1) == "←" && Self.lane(lines[rst], 30) == "|")
        #expect(Array(lines[rst])[(13 + 31)...(13 + 59)].allSatisfy { $0 == " " })
    }

    @Test func natIdleSurvivedLadderGoesThroughAndSaysTheEntryNeverExpired() throws {
        let lines = Ladder.render(try ReportFixtures.load("nat-idle5-keepalive-2-1-3")).split(separator: "\n").map(String.init)
        let fault = try #require(lines.first { $0.contains("fault: silence begins") })
        #expect(fault.contains("R's entry for this connection never expired"))
        #expect(!lines.contains { $0.contains("R forgets") || $0.contains("→x") })
        let probes = lines.filter { $0.contains("keepalive probe") }
        #expect(probes.count == 5 && probes.allSatisfy { $0.contains("→|") })
        #expect(lines.filter { $0.contains("probe reply") }.count == 5)
        let request = try #require(lines.first { $0.contains("the request after 10 s of silence") })
        #expect(request.contains("→|"))
        #expect(lines.contains { $0.contains("PSH data 8 B") && $0.contains("the answer") && $0.contains("←") })
    }

    @Test func partitionLadderDropsProbesAndTheRSTAtR() throws {
        let r = try ReportFixtures.load("partition3-keepalive-1-1-2")
        let lines = Ladder.render(r).split(separator: "\n").map(String.init)
        let dropped = lines.filter { $0.contains("dropped by R: partition") }
        #expect(dropped.count == 2 + 1)
        #expect(dropped.allSatisfy { Self.lane($0, 30) == "x" && !$0.contains("→|") })
        #expect(dropped.last?.contains("RST") == true && dropped.last?.contains("A aborts the connection") == true)
        // R's nftables counters agree: every A→B packet after the fault was dropped.
        #expect(r.impairmentDrops?["a2b"] == ImpairmentDropCount(packets: 3, dropped: 3))
        // A gave up before the 3 s partition ended: no heal line.
        #expect(!lines.contains { $0.contains("partition heals") })
    }

    @Test func healedPartitionLadderShowsTheHealThenAnsweredProbes() throws {
        let r = try ReportFixtures.load("partition3-keepalive-1-1-10")
        let lines = Ladder.render(r).split(separator: "\n").map(String.init)
        let heal = try #require(lines.firstIndex { $0.contains("partition heals") })
        #expect(Self.lane(lines[heal], 30) == "^" && lines[heal].hasPrefix("    +3.017"))
        let probes = lines.indices.filter { lines[$0].contains("keepalive probe") }
        let before = probes.filter { $0 < heal }
        let after = probes.filter { $0 > heal }
        #expect(before.count == 3 && after.count == 5)
        #expect(before.allSatisfy { lines[$0].contains("→x") && lines[$0].contains("dropped by R: partition") })
        #expect(after.allSatisfy { lines[$0].contains("→|") && lines[$0 + 1].contains("probe reply") })
        #expect(r.impairmentDrops?["a2b"]?.dropped == before.count)
    }

    @Test func lossLadderDrawsUnansweredProbesLostAtR() throws {
        let r = try ReportFixtures.load("loss30-a2b-keepalive-1-1-2")
        let lines = Ladder.render(r).split(separator: "\n").map(String.init)
        let lost = lines.filter { $0.contains("keepalive probe") && $0.contains("→x") }
        let answered = lines.filter { $0.contains("keepalive probe") && $0.contains("→|") && !$0.hasPrefix("    -") }
        #expect(lost.count == r.probesLost && answered.count == r.probesAnswered)
        #expect(lost.allSatisfy { $0.contains("lost at R: no reply") })
        // R counted 6 drops toward B: the 5 unanswered probes and A's RST.
        let rst = try #require(lines.first { $0.contains(" RST ") })
        #expect(rst.contains("→x") && rst.contains("R counted 6 drops, 5 of them the unanswered probes"))
    }

    @Test func lossBothDirectionsOnFakeResultsIsDrawnAsUncertain() throws {
        // The real a2b trial relabelled as loss in both directions (made up): an unanswered probe may
        // have lost its reply instead, so it crosses R with a "?" and R's counter settles nothing.
        var r = try ReportFixtures.load("loss30-a2b-keepalive-1-1-2")
        r.spec.fault = .loss(percent: 30, direction: .both)
        let lines = Ladder.render(r).split(separator: "\n").map(String.init)
        let unsure = lines.filter { $0.contains("R lost the probe or its reply") }
        #expect(unsure.count == 5 && unsure.allSatisfy { Self.lane($0, 30) == "?" && $0.contains("→|") })
        #expect(!lines.contains { $0.contains("→x") })
        #expect(Mermaid.render(r).contains("A-)B: keepalive probe 2 (+1.854 s), no reply: R lost the probe or its reply"))
    }

    @Test func partitionEdgeOnFakeResultsTrustsRsDropCounter() throws {
        // The real partition trial plus a made-up data segment 3 ms after the fault: R counted only
        // 3 drops for 4 segments, so the earliest one passed before the drop rule was in place.
        var r = try ReportFixtures.load("partition3-keepalive-1-1-2")
        let at = try #require(r.timeline.firstIndex { $0.t > 0 })
        r.timeline.insert(TimelineEntry(t: 0.003, direction: .aToB, kind: .data, flags: "PA", payload: 8), at: at)
        let lines = Ladder.render(r).split(separator: "\n").map(String.init)
        let early = try #require(lines.first { $0.hasPrefix("    +0.003") })
        #expect(early.contains("→|") && early.contains("passed R before its drop rule was in place (R counted 3 drops)"))
        #expect(lines.filter { $0.contains("dropped by R: partition") }.count == 3)
    }

    @Test func mermaidDrawsDropsAtRAndNotesForExpiryAndHeal() throws {
        let drop = Mermaid.render(try ReportFixtures.load("nat-idle5-no-policy"))
        #expect(drop.contains("Note over R: +0.000 s fault: silence begins"))
        #expect(drop.contains("Note over R: +4.858 s R forgets the connection (conntrack entry expired, 5.06 s idle, timeout 5 s)"))
        #expect(drop.contains("A-xR: PSH data 8 B (+10.012 s), the request after 10 s of silence, dropped by R: invalid connection"))
        #expect(drop.components(separatedBy: "A-xR: ").count - 1 == 8)
        #expect(!drop.contains("A->>B: retransmission"))
        let reset = Mermaid.render(try ReportFixtures.load("nat-idle5-reset-no-policy"))
        #expect(reset.contains("R-->>A: RST (+10.008 s), from R in B's name"))
        #expect(!reset.contains("B->>A: RST"))
        let healed = Mermaid.render(try ReportFixtures.load("partition3-keepalive-1-1-10"))
        #expect(healed.contains("A-xR: keepalive probe 1 (+0.817 s), dropped by R: partition"))
        #expect(healed.contains("Note over R: +3.017 s partition heals"))
        #expect(healed.contains("A->>B: keepalive probe 4 (+3.889 s)"))
        for m in [drop, reset, healed] { #expect(!m.contains(";") && !m.contains("#")) }
    }

    @Test func networkFindingsTellWhatRDid() throws {
        let findings = Findings.derive(try ReportFixtures.networkCells())
        func about(_ fault: String, _ policy: String) -> [String] {
            findings.filter { $0.cell == "\(policy) · \(fault) · idle" }.map(\.text)
        }
        func has(_ texts: [String], _ words: String...) -> Bool { texts.contains { t in words.allSatisfy { t.contains($0) } } }
        let drop = about("nat-idle:5", "none")
        #expect(has(drop, "R forgot the connection 5.06 s after the last packet it forwarded",
                    "the request 10 s after the fault was dropped as INVALID and retransmitted 7 times into the void",
                    "not found out by the deadline (30 s)"))
        let reset = about("nat-idle:5,reset", "none")
        #expect(has(reset, "R forgot the connection 5.03 s", "answered with RST by R: ECONNRESET 0.6 ms after the send"))
        let kept = about("nat-idle:5", "keepalive 2,1,3")
        #expect(has(kept, "keepalive probes every 2.0 s kept R's entry fresh (it never expired)", "answered 1.7 ms after the send"))
        // nat-idle is not about false positives: R breaks the connection, not A.
        for texts in [drop, reset, kept] { #expect(!texts.contains { $0.contains("false-positive") }) }
        #expect(has(about("loss:30,a2b", "keepalive 1,1,2"), "R lost 5 of A's 12 keepalive probes", "7 were answered",
                    "R dropped 6 of 13 A→B packets", "2 unanswered in a row (TCP_KEEPCNT 2)", "a false positive"))
        #expect(has(about("partition:3", "keepalive 1,1,2"), "2 keepalive probes got no reply",
                    "ETIMEDOUT 2.860 s after the fault", "the partition would have healed at 3 s"))
        #expect(has(about("partition:3", "keepalive 1,1,10"), "3 keepalive probes got no reply", "after R healed, 5 were answered",
                    "fewer than TCP_KEEPCNT 10, so the connection survived"))
        let md = MarkdownReport.render(ReportFixtures.input(try ReportFixtures.networkCells()), chartsPrefix: "")
        #expect(md.contains("| none | nat-idle:5 | idle | 1 | 1 broken |"))
        #expect(md.split(separator: "\n").filter { $0.hasPrefix("| none | nat-idle") }.allSatisfy { $0.contains("| n/a |") })
    }

    // MARK: Mermaid

    @Test func mermaidIsASequenceDiagram() throws {
        let m = Mermaid.render(try ReportFixtures.load("crash-keepalive-2-1-3-run1"))
        #expect(m.hasPrefix("sequenceDiagram\n"))
        #expect(m.contains("participant R as R (router)"))
        #expect(m.contains("Note over B: +0.000 s fault: B crashed"))
        #expect(m.contains("A-xB: keepalive probe 1 (+1.811 s)"))
        #expect(m.contains("Note over A: +4.883 s A detects ETIMEDOUT"))
        #expect(!m.contains(";") && !m.contains("#"))
    }

    // MARK: SVG and JUnit

    @Test func chartsParseAsXML() throws {
        let cells = try ReportFixtures.allCells()
        for svg in [SVGChart.latency(cells), SVGChart.probeTimeline(cells), SVGChart.latency([]), SVGChart.probeTimeline([])] {
            let root = try XMLCheck.parse(svg)
            #expect(root.first == "svg")
            #expect(svg.contains(##"fill="#ffffff""##))
        }
        let latency = SVGChart.latency(cells)
        #expect(latency.contains(">keepalive 2,1,3<") && latency.contains(">crash · idle<"))
        #expect(latency.contains("seconds from the fault"))
    }

    @Test func junitParsesAndEscapesHandMadeExpectations() throws {
        var cells = try ReportFixtures.allCells()
        cells[0].expectations = [
            ExpectationCheck(name: "median < 6 s", passed: true, detail: "median 4.883 s < 6 s"),
            ExpectationCheck(name: "p95 <= 4.5 s & \"strict\"", passed: false, detail: "p95 4.894 s > 4.5 s <'quoted'>\u{1}"),
        ]
        cells[1].expectations = [ExpectationCheck(name: "errno", passed: true, detail: "ECONNRESET")]
        let xml = JUnitReport.render(ReportFixtures.input(cells))
        let elements = try XMLCheck.parse(xml)
        #expect(elements.first == "testsuites")
        #expect(elements.filter { $0 == "testcase" }.count == 3)
        #expect(elements.filter { $0 == "failure" }.count == 1)
        #expect(elements.filter { $0 == "testsuite" }.count == cells.count)
        #expect(xml.contains(#"tests="3" failures="1""#))
    }

    // MARK: Statistics

    @Test func medianAndNearestRankPercentileOnFakeResults() {
        #expect(ReportStats.median([]) == nil)
        #expect(ReportStats.median([3, 1, 2]) == 2)
        #expect(ReportStats.median([4, 1, 3, 2]) == 2.5)
        #expect(ReportStats.percentile([5], 95) == 5)
        #expect(ReportStats.percentile([3, 1, 2], 95) == 3)
        #expect(ReportStats.percentile((1...20).map(Double.init), 95) == 19)
        #expect(ReportStats.percentile((1...100).map(Double.init), 95) == 95)
        #expect(ReportStats.percentile((1...100).map(Double.init), 50) == 50)
        #expect(ReportStats.percentile([], 95) == nil)
        #expect(ReportStats.mostCommon(["ETIMEDOUT", "ECONNRESET", "ETIMEDOUT"]) == "ETIMEDOUT")
        #expect(ReportStats.mostCommon(["b", "a"]) == "a")
    }

    @Test func cellStatsOnFakeResults() throws {
        // One real trial copied five times with made-up latencies and outcomes.
        let real = try ReportFixtures.load("crash-keepalive-2-1-3-run1")
        var fakes: [TrialResult] = [1.0, 2, 3, 4, 10].map { latency in
            var r = real
            r.detectionLatencyS = latency
            return r
        }
        fakes[4].outcome = .missed
        fakes[4].errno = nil
        fakes[4].detectedBy = nil
        let s = CellStats(results: fakes)
        #expect(s.trials == 5 && s.detected == 4 && s.missed == 1)
        #expect(s.latencyMedianS == 2.5)
        #expect(s.latencyP95S == 4)
        #expect(s.latencyMaxS == 4)
        #expect(s.outcomeSummary == "4 detected, 1 missed")
        #expect(s.falsePositiveRate == nil)
    }

    @Test func cellStatsFromThreeRealCrashRuns() throws {
        let cell = Cell.grouping(try ReportFixtures.crashRuns)[0]
        let s = cell.stats
        #expect(s.trials == 3 && s.detected == 3)
        #expect(s.latencyMedianS == 4.882964257999902)
        #expect(s.latencyMaxS == 4.894236997000007)
        #expect(s.latencyP95S == s.latencyMaxS)
        #expect(s.errno == "ETIMEDOUT")
        #expect(s.probesMedian == 3)
        #expect(s.bytesMedian == 758)
        #expect(s.withinTolerance == 3 && s.withFormula == 3)
        // The formula's 5 s after the last received segment, which was ~0.2 s before the fault.
        let expected = try #require(s.expectedS)
        #expect(abs(expected - 4.798) < 0.001)
        // No reply to measure: probe 66 B measured, reply 66 B assumed, one pair every 2 s.
        let overhead = try #require(s.overhead)
        #expect(overhead.bytesPerHour == 132 * 1800)
        #expect(overhead.basis.contains("probe 66 B measured + reply 66 B assumed"))
        #expect(cell.representativeIndex == 0)
    }

    @Test func overheadUsesMeasuredReplyAndHeartbeatSizes() throws {
        let keepalive = CellStats(results: [try ReportFixtures.load("none-keepalive-2-1-3")])
        #expect(keepalive.overhead?.bytesPerHour == 132.0 * 1800)
        #expect(keepalive.overhead?.basis.contains("reply 66 B measured") == true)
        #expect(keepalive.falsePositiveRate == 0 && keepalive.healthyTrials == 1 && keepalive.survived == 1)
        let heartbeat = CellStats(results: [try ReportFixtures.load("none-heartbeat-1-3")])
        // Beat 74 + reply 74 (both measured) + A's ACK 66, once a second.
        #expect(heartbeat.overhead?.bytesPerHour == 214.0 * 3600)
        let none = CellStats(results: [try ReportFixtures.load("crash-no-policy")])
        #expect(none.overhead?.bytesPerHour == 0.0)
    }

    // MARK: Findings

    @Test func findingsFromRealTrialsCarryTheirNumbers() throws {
        let findings = Findings.derive(try ReportFixtures.allCells()).map(\.text)
        func has(_ words: String...) -> Bool { findings.contains { f in words.allSatisfy { f.contains($0) } } }
        #expect(has("in 3 of 3 trials", "idle + count × interval = 2 + 3 × 1 = 5 s"))
        #expect(has("A sent 3 keepalive probes", "each of 3 trials", "none answered", "ms after A's RST"))
        #expect(has("B's kernel answered all 4 probes while the server was frozen", "heartbeat 1,3", "3.800 s"))
        #expect(has("ETIMEDOUT, not EHOSTUNREACH", "5.070 s"))
        #expect(has("no keepalive probe was sent", "keepalive 2,1,3", "TCP_USER_TIMEOUT 3000 ms", "5 retransmissions"))
        #expect(has("B came back 3.045 s", "answered keepalive probe 3 with RST", "ECONNRESET 3.876 s"))
        #expect(has("probes came every 2.016 s", "max(idle 2, interval 1)"))
        #expect(has("without keepalive or a heartbeat an idle client never learns"))
        #expect(has("B's kernel still ACKed the heartbeats"))
    }

    // MARK: Whole report

    @Test func reportHasHeaderTableLaddersAndChartLinks() throws {
        var cells = try ReportFixtures.allCells()
        cells[0].expectations = [ExpectationCheck(name: "median < 6 s", passed: true, detail: "median 4.883 s < 6 s")]
        let md = MarkdownReport.render(ReportFixtures.input(cells), chartsPrefix: "")
        #expect(md.hasPrefix("# keepalive-lab report: fixtures\n"))
        #expect(md.contains("| Kernel | 6.18.44-fc-v657 |"))
        #expect(md.contains("```sh\nkeepalive-lab trial --keepalive 2,1,3 --fault crash --json\n```"))
        #expect(md.contains("| keepalive 2,1,3 | crash | idle | 3 | 3 detected | 4.883 | 4.894 | 4.894 | 4.798 | ETIMEDOUT | 3 | 758 / 264 | 237,600 | n/a | ✅ 1/1 |"))
        #expect(md.contains("![Detection latency per cell](latency.svg)"))
        #expect(md.contains("](probe-timeline.svg)"))
        #expect(md.components(separatedBy: "```text\n").count - 1 == cells.count)
        #expect(md.components(separatedBy: "```mermaid\n").count - 1 == cells.count)
        #expect(md.contains("## How to read this"))
    }

    @Test func writerWritesFiveParsableFiles() throws {
        // KAL_REPORT_SAMPLE_DIR=/some/dir keeps the rendered sample report there for a human to look at.
        let keep = ProcessInfo.processInfo.environment["KAL_REPORT_SAMPLE_DIR"]
        let dir = keep.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("report-test-\(UUID().uuidString)")
        defer { if keep == nil { try? FileManager.default.removeItem(at: dir) } }
        let files = try ReportWriter.write(ReportFixtures.input(try ReportFixtures.allCells()), to: dir)
        for url in [files.latencyChart, files.timelineChart, files.junit] {
            _ = try XMLCheck.parse(try String(contentsOf: url, encoding: .utf8))
        }
        let summary = try SummaryJSON.read(from: files.summary)
        #expect(summary.cells.count == 10)
        #expect(summary.cells[0].stats.detected == 3)
        #expect(try String(contentsOf: files.report, encoding: .utf8).contains("## Summary"))
    }

    @Test func writerWritesTheNetworkFaultSample() throws {
        // KAL_REPORT_SAMPLE_DIR=/some/dir keeps this one in /some/dir/network.
        guard let keep = ProcessInfo.processInfo.environment["KAL_REPORT_SAMPLE_DIR"] else { return }
        let dir = URL(fileURLWithPath: keep).appendingPathComponent("network")
        let files = try ReportWriter.write(ReportFixtures.input(try ReportFixtures.networkCells()), to: dir)
        #expect(try String(contentsOf: files.report, encoding: .utf8).contains("## Summary"))
    }

    // MARK: Compare

    @Test func compareDetectsAFlippedExpectation() throws {
        var cells = try ReportFixtures.allCells()
        cells[0].expectations = [ExpectationCheck(name: "median < 6 s", passed: true, detail: "median 4.883 s < 6 s")]
        let base = SummaryJSON(ReportFixtures.input(cells))
        var head = try SummaryJSON.decode(try base.encoded())
        #expect(head == base)
        head.cells[0].expectations[0] = ExpectationCheck(name: "median < 6 s", passed: false, detail: "median 6.2 s ≥ 6 s")
        head.cells[0].stats.latencyMedianS = 6.2  // hand-edited, as a regression would look
        let (text, failing) = RunComparison.markdown(base: base, head: head)
        #expect(failing == 1)
        #expect(text.contains("### ❌ Expectations that now fail"))
        #expect(text.contains("median < 6 s: median 6.2 s ≥ 6 s (was: median 4.883 s < 6 s)"))
        #expect(text.contains("4.883 → 6.200 (+1.317, +27 %)"))
        let same = RunComparison.markdown(base: base, head: base)
        #expect(same.failingExpectations == 0)
        #expect(same.text.contains("No expectation changed verdict."))
    }
}

/// Parses XML with Foundation's XMLParser and returns the element names in document order.
enum XMLCheck {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ text: String) throws -> [String] {
        final class Collector: NSObject, XMLParserDelegate {
            var names: [String] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
                        qualifiedName: String?, attributes: [String: String] = [:]) {
                names.append(name)
            }
        }
        let parser = XMLParser(data: Data(text.utf8))
        let collector = Collector()
        parser.delegate = collector
        guard parser.parse() else {
            throw Failure(description: "XML does not parse: \(parser.parserError.map { "\($0)" } ?? "unknown error") "
                          + "at line \(parser.lineNumber)")
        }
        return collector.names
    }
}
