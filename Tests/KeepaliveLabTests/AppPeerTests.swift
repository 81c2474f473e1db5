import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Privileged, real programs (socat, ssh/sshd …) as client and server on a real topology.
/// Skipped with the reason where namespaces cannot be created or a program is not installed.
@Suite(.enabled(if: TrialPrerequisites.missing == nil, Comment(rawValue: TrialPrerequisites.missing ?? "")),
       .serialized)
struct AppPeerTests {
    /// Runs a trial; checks that no namespace, program or temporary directory of it is left.
    func trial(_ spec: TrialSpec, name: String) async throws -> TrialResult {
        let run = LabID.newRunID()
        let sharedBefore = Leftovers.sharedMemory()
        defer {
            checkNothingLeft(run: run)
            let left = Leftovers.sharedMemory().subtracting(sharedBefore)
            #expect(left.isEmpty, "\(name): shared memory left behind: \(left)")
        }
        let result = try await Trial(spec: spec, id: try LabID(run: run, trial: name),
                                     peerExecutable: PeerBinary.path!, pcapPath: nil).runOnOwnThread()
        print("\(name): \(TrialOutput.human(result))")
        if let app = result.app { print("\(name): app \(app.noticed ?? "-") settings \(app.settings?.summary ?? "-")") }
        return result
    }

    func checkNothingLeft(run: String) {
        let left = NetworkNamespace.listNames().filter { LabID.runID(inNamespaceName: $0) == run }
        #expect(left.isEmpty, "namespaces left behind: \(left)")
        let procs = Self.processes(mentioning: "kal-app-\(run)-") + Self.processes(mentioning: "kal-\(run)-")
        #expect(procs.isEmpty, "processes left behind: \(procs)")
        let dirs = ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix("kal-app-\(run)-") }
        #expect(dirs.isEmpty, "temporary directories left behind: \(dirs)")
        let kalNamespaces = NetworkNamespace.listNames().filter { $0.hasPrefix("kal-\(run)") }
        #expect(kalNamespaces.isEmpty)
    }

    /// Processes whose command line mentions `text` (the programs get the trial's paths and
    /// namespace names in their arguments: nsenter --net=/run/netns/kal-RUN-…, sshd -f /tmp/kal-app-RUN-…).
    static func processes(mentioning text: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard Int32(entry) != nil,
                  let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let cmdline = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return cmdline.contains(text) ? "\(entry): \(cmdline)" : nil
        }
    }

    static func installed(_ programs: String...) -> Bool { programs.allSatisfy { AppProcess.which($0) != nil } }

    /// psql against a postgres that crashes, then comes back (a second postmaster on the same
    /// data directory): both killed, neither may leave shared memory in /dev/shm or System V
    /// segments behind (trial() checks).
    @Test(.enabled(if: installed("psql") && FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/15/bin/postgres"),
                   "psql/postgres are not installed (apt-get install postgresql)"))
    func psqlAgainstARebootedPostgresLeavesNoSharedMemory() async throws {
        let k = KeepaliveSetting(idle: 2, interval: 1, count: 3)
        let spec = TrialSpec(clientPolicy: Policy(keepalive: k, app: AppSpec(profile: "psql")), fault: .reboot(downtime: 3), deadline: 15)
        let r = try await trial(spec, name: "psqlreboot")
        #expect(r.outcome == .detected, "\(r.outcome)")
        #expect(r.app?.settings?.keepIdle == 2)
    }

    @Test(.enabled(if: installed("socat"), "socat is not installed (apt-get install socat)"))
    func socatKeepaliveAgainstCrashedPeer() async throws {
        let k = KeepaliveSetting(idle: 2, interval: 1, count: 3)
        let spec = TrialSpec(clientPolicy: Policy(keepalive: k, app: AppSpec(profile: "socat")), fault: .crash, deadline: 12)
        let r = try await trial(spec, name: "socat")
        let app = try #require(r.app)
        #expect(r.outcome == .detected)
        #expect(app.exitStatus != nil && app.exitStatus != 0, "socat exits with an error status")
        #expect(app.settings?.soKeepalive == true)
        #expect(app.settings?.keepIdle == 2 && app.settings?.keepIntvl == 1 && app.settings?.keepCnt == 3)
        #expect(r.errno == "ETIMEDOUT")
        let since = try #require(r.sinceLastRxS)
        #expect(Expectation.keepalive(k, userTimeoutMs: nil, hz: KernelHz.current).accepts(since), "since last rx \(since) s")
        #expect(r.withinTolerance == true)
        #expect(r.probesSent == 3 && r.probeReplies == 0)
    }

    @Test(.enabled(if: installed("ssh", "sshd", "ssh-keygen"), "openssh-client/openssh-server are not installed"))
    func sshServerAliveAgainstCrashedPeer() async throws {
        let ssh = AppSpec(profile: "ssh", options: ["ServerAliveInterval": "1", "ServerAliveCountMax": "3", "TCPKeepAlive": "no"])
        let spec = TrialSpec(clientPolicy: Policy(app: ssh), fault: .crash, deadline: 15)
        let r = try await trial(spec, name: "ssh")
        let app = try #require(r.app)
        #expect(r.outcome == .detected)
        #expect(app.exitStatus == 255)
        #expect(app.clientOutputTail?.range(of: "Timeout, server \\S+ not responding", options: .regularExpression) != nil,
                "ssh's own message: \(app.clientOutputTail ?? "")")
        let latency = try #require(r.detectionLatencyS)
        #expect(latency > 3 && latency < 5.5, "ssh gave up \(latency) s after the fault")
        #expect(app.settings?.soKeepalive == false)
        #expect(r.probesSent == 0, "TCPKeepAlive=no: no kernel keepalive probe")
        #expect(app.appPingsSent >= 3, "ssh's keepalives are data: \(app.appPingsSent)")
        #expect(r.withinTolerance == true)
    }

    @Test func programThatExitsBeforeConnectingIsAnError() async throws {
        let app = AppSpec(command: ["sh", "-c", "echo 'cannot reach {server}: giving up' >&2; exit 3"])
        let spec = TrialSpec(clientPolicy: Policy(app: app), fault: .crash, deadline: 5)
        let run = LabID.newRunID()
        defer { checkNothingLeft(run: run) }
        do {
            _ = try await Trial(spec: spec, id: try LabID(run: run, trial: "early"), peerExecutable: PeerBinary.path!,
                                pcapPath: nil).runOnOwnThread()
            Issue.record("the trial should have failed")
        } catch let error as TrialError {
            #expect(error.message.contains("exited (status 3)"), "\(error.message)")
            #expect(error.message.contains("cannot reach 198.18.2.2: giving up"), "stderr tail in the error: \(error.message)")
        }
    }
}

/// Lab-file syntax for application peers (no privilege needed).
struct AppPeerParsingTests {
    @Test func labFileNamesProgramsAndConditions() throws {
        let lab = try LabParser(file: "apps.yaml").parse("""
            name: apps
            policies:
              - name: socat
                client: {app: socat, keepalive: "2,1,3"}
              - name: mine
                client:
                  command: [my-client, "{server}", "{port}"]
                  env: {A: b}
                  ready: {stdout: "^ready$"}
                  detect: {output: "gave up"}
                server: {command: "my-server --port {port}", ready: listen}
            faults: [crash]
            """)
        let socat = lab.policies[0].client
        #expect(socat.app == AppSpec(profile: "socat") && socat.keepalive == KeepaliveSetting(idle: 2, interval: 1, count: 3))
        let mine = lab.policies[1]
        #expect(mine.client.app?.command == ["my-client", "{server}", "{port}"])
        #expect(mine.client.app?.ready == "stdout:^ready$" && mine.client.app?.detect == "output:gave up")
        #expect(mine.server.app?.command == ["my-server", "--port", "{port}"] && mine.server.app?.ready == "listen")
        #expect(throws: LabFileError.self) {
            try LabParser(file: "bad.yaml").parse("name: x\npolicies:\n  - name: p\n    client: {app: telnet}\nfaults: [crash]\n")
        }
    }

    @Test func resultsWithoutAppStillDecode() throws {
        let policy = try JSONDecoder().decode(Policy.self, from: Data(#"{"useSysctlDefaults":false}"#.utf8))
        #expect(policy.app == nil)
        let encoded = try JSONEncoder().encode(Policy(app: AppSpec(profile: "ssh", options: ["ServerAliveInterval": "1"])))
        #expect(try JSONDecoder().decode(Policy.self, from: encoded).app?.options?["ServerAliveInterval"] == "1")
    }
}
