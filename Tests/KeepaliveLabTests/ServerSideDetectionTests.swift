import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// crash-client: A's host dies, the server program in B is the detecting side (privileged).
@Suite(.enabled(if: TrialPrerequisites.missing == nil, Comment(rawValue: TrialPrerequisites.missing ?? "")),
       .serialized)
struct ServerSideDetectionTests {
    @Test(.enabled(if: AppPeerTests.installed("redis-server", "redis-cli"), "redis-server/redis-tools are not installed"))
    func redisServerTcpKeepaliveDropsDeadClient() async throws {
        let server = AppSpec(profile: "redis-server", options: ["tcp-keepalive": "2", "loglevel": "verbose"])
        let spec = TrialSpec(clientPolicy: Policy(app: AppSpec(profile: "redis")), serverPolicy: Policy(app: server),
                             fault: .crashClient, deadline: 12)
        let r = try await AppPeerTests().trial(spec, name: "rediss")
        let app = try #require(r.app)
        #expect(r.outcome == .detected)
        #expect(app.detectingSide == "server")
        // redis (anet.c): TCP_KEEPIDLE N, TCP_KEEPINTVL N/3 (at least 1), TCP_KEEPCNT 3.
        #expect(app.settings?.soKeepalive == true)
        #expect(app.settings?.keepIdle == 2 && app.settings?.keepIntvl == 1 && app.settings?.keepCnt == 3)
        #expect(r.expected?.seconds == 5, "idle + count × interval from the read-back settings")
        #expect(r.withinTolerance == true, "B's kernel: probes and abort in their windows (measured \(r.measuredS ?? -1) s)")
        #expect(r.probesSent == 3 && r.probeReplies == 0, "B's probes into the void")
        #expect(r.errno == "ETIMEDOUT")
        #expect(app.socketStateAtGone == "CLOSE")
        #expect(app.matchedLine?.contains("Connection timed out") == true, "redis's own log line: \(app.matchedLine ?? "-")")
        let facts = try #require(ProgramFacts(results: [r]))
        #expect(facts.side == "server" && facts.program.hasPrefix("redis-server"))
        #expect(facts.asked.contains("tcp-keepalive=2"))
    }

    @Test func builtInPeersRefuseCrashClient() throws {
        let spec = TrialSpec(clientPolicy: Policy(keepalive: KeepaliveSetting(idle: 2, interval: 1, count: 3)), fault: .crashClient)
        #expect(throws: PolicyError.self) { try spec.validate() }
    }
}

/// Report and lab syntax for crash-client and program facts (no privilege needed).
struct ProgramReportTests {
    @Test func faultEntriesCanBeLimitedToPolicies() throws {
        let lab = try LabParser(file: "x.yaml").parse("""
            name: x
            policies:
              - name: redis-server-ka-2
                client: {app: redis}
                server: {app: redis-server, options: {tcp-keepalive: "2"}}
              - name: socat
                client: {app: socat}
            faults:
              - crash
              - fault: crash-client
                policies: [redis-server-ka-2]
            """)
        #expect(lab.cells.map(\.key) == ["redis-server-ka-2 × crash", "redis-server-ka-2 × crash-client", "socat × crash"])
        #expect(throws: LabFileError.self) {
            try LabParser(file: "bad.yaml").parse("""
                name: x
                policies: [{name: p, client: {app: socat}}]
                faults: [{fault: crash, policies: [nope]}]
                """)
        }
        #expect(throws: LabFileError.self, "crash-client with the built-in peer") {
            try LabParser(file: "bad.yaml").parse("name: x\npolicies: [{name: p, client: {keepalive: \"2,1,3\"}}]\nfaults: [crash-client]\n")
        }
    }

    /// A real crash result with a made-up program report attached.
    @Test func programsSectionFromFakeAppReport() throws {
        let ka = KeepaliveSetting(idle: 2, interval: 1, count: 3)
        var r = try ReportFixtures.load("crash-keepalive-2-1-3-run1")
        r.spec = TrialSpec(clientPolicy: Policy(keepalive: ka, app: AppSpec(profile: "socat")), fault: .crash)
        r.probesSent = 3
        r.errno = "ETIMEDOUT"
        r.detectionLatencyS = 4.9
        r.app = AppTrialReport(client: "socat", server: "socat-echo", clientArgv: ["socat"], serverArgv: ["socat"],
                               detectMode: "exit", noticed: "exit 1: \"E read(5, …): Connection timed out\"", errnoSource: "output",
                               exitStatus: 1, exitS: 4.9, socketGoneS: 4.9, socketStateAtGone: "CLOSE", inSocketTableAfterGone: false,
                               tcpInfoAtGone: nil, matchedLine: "2026/12/01 E read(5, …): Connection timed out", settings: nil,
                               appPingsSent: 0, appPingReplies: 0, appPingBytes: 0, clientOutputTail: nil)
        let facts = try #require(ProgramFacts(results: [r, r]))
        #expect(facts.how == "exit 1" && facts.exitStatus == 1 && facts.exited == 2)
        #expect(facts.noticed == 2 && facts.noticedMedianS == 4.9)
        #expect(facts.kernelProbesMedian == 3 && facts.asked == "keepalive 2,1,3")
        #expect(ProgramFacts.cleanLine("28702:M 01 Dec 2026 11:02:09.814 - Reading from client: Connection timed out")
                == "Reading from client: Connection timed out")
        let cell = Cell(policyName: "socat-2-1-3", policySummary: "s", fault: "crash", workload: "idle", results: [r])
        let md = MarkdownReport.programsSection([cell]).joined(separator: "\n")
        #expect(md.contains("## Programs") && md.contains("socat (client; vs socat-echo)") && md.contains("ETIMEDOUT (output)"))
        #expect(MarkdownReport.programsSection([Cell(policyName: "x", policySummary: "x", fault: "crash", workload: "idle",
                                                     results: [try ReportFixtures.load("crash-no-policy")])]).isEmpty)
        let summary = SummaryJSON(RunReportInput(lab: "t", description: "", date: "", command: "", kernel: "", backend: "host",
                                                 impairmentEngine: nil, cells: [cell]))
        #expect(summary.cells[0].program?.how == "exit 1")
    }
}

/// Real programs inside the lab kernel (virtual clock): the host's binaries through hostfs, trial
/// directories on the guest's tmpfs (postgres owns its cluster there), real-scale timers in seconds.
extension BackendTests.VirtualTimeTests {
    @Test(.enabled(if: AppPeerTests.installed("redis-server", "redis-cli", "psql"), "redis / postgresql are not installed"))
    func realProgramsAtRealScaleInVirtualTime() throws {
        _ = try VirtualTimePrerequisites.requireKernel()
        var started = Date()
        // redis-server's default tcp-keepalive 300 (300/100/3) against a dead client: ~600 s.
        let redis = try Leftovers.checked {
            try LabCommand.json(["trial", "--clock", "virtual", "--client-app", "redis", "--server-app", "redis-server",
                                 "--fault", "crash-client", "--deadline", "700"], timeout: 600)
        }
        print("virtual-time redis-server crash-client: \(String(format: "%.2f", Date().timeIntervalSince(started))) s wall, "
              + "\(redis["detection_latency_s"] ?? "?") s virtual")
        #expect(redis["clock"] as? String == "virtual")
        #expect(redis["outcome"] as? String == "detected")
        #expect(redis["within_tolerance"] as? Bool == true)
        let app = try #require(redis["app"] as? [String: Any])
        #expect(app["detecting_side"] as? String == "server")
        let settings = try #require(app["settings"] as? [String: Any])
        #expect(settings["tcp_keepidle"] as? Int == 300 && settings["tcp_keepintvl"] as? Int == 100 && settings["tcp_keepcnt"] as? Int == 3)
        #expect((app["server_wakeups_per_s"] as? Double).map { $0 > 5 && $0 < 15 } == true, "serverCron at hz 10")
        // psql against postgres (initdb as user postgres inside the guest), libpq keepalives 60/75/9.
        started = Date()
        let psql = try Leftovers.checked {
            try LabCommand.json(["trial", "--clock", "virtual", "--client-app", "psql", "--keepalive", "60,75,9",
                                 "--fault", "crash", "--deadline", "900"], timeout: 600)
        }
        print("virtual-time psql 60,75,9 crash: \(String(format: "%.2f", Date().timeIntervalSince(started))) s wall, "
              + "\(psql["detection_latency_s"] ?? "?") s virtual")
        #expect(psql["outcome"] as? String == "detected", "\(psql["notes"] ?? "")")
        #expect(psql["errno"] as? String == "ETIMEDOUT")
        #expect(psql["probes_sent"] as? Int == 9)
        #expect(psql["within_tolerance"] as? Bool == true)
    }
}
