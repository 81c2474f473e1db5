import ArgumentParser
import Foundation
import KeepaliveLab
import KeepaliveNet

struct TrialCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trial",
        abstract: "Run one keepalive trial on a fresh A–R–B topology and print what happened.",
        discussion: """
            Example: keepalive-lab trial --keepalive 2,1,3 --fault crash --pcap crash.pcap
            The client runs in A, the server in B; the capture is taken on R's interface toward A.
            """)

    @Option(help: "Client keepalive IDLE,INTERVAL,COUNT in seconds (TCP_KEEPIDLE 1…32767, TCP_KEEPINTVL 1…32767, TCP_KEEPCNT 1…127).")
    var keepalive: String?

    @Flag(help: "Client SO_KEEPALIVE with the namespace's net.ipv4.tcp_keepalive_* defaults.")
    var sysctlDefaults = false

    @Option(name: .customLong("namespace-keepalive"), help: "Set net.ipv4.tcp_keepalive_time,intvl,probes in A and B, e.g. 7200,75,9.")
    var namespaceKeepalive: String?

    @Option(help: "Client TCP_USER_TIMEOUT in milliseconds (0…2147483647).")
    var userTimeout: UInt32?

    @Option(help: "Client application heartbeat INTERVAL,TIMEOUT in seconds.")
    var heartbeat: String?

    @Option(help: "Server keepalive IDLE,INTERVAL,COUNT.")
    var serverKeepalive: String?

    @Option(help: "Server TCP_USER_TIMEOUT in milliseconds.")
    var serverUserTimeout: UInt32?

    // Parsed by the same types as lab files, so a bad value gets the same error (field, value, range).
    @Option(help: "idle | rr:SECONDS | stream", transform: { try Workload(parsing: $0) })
    var workload: Workload = .idle

    @Option(help: ArgumentHelp("What happens at the fault instant. DIR is both (default), a2b or b2a.\n" + FaultKinds.help, valueName: "fault"),
            transform: { try Fault(parsing: $0) })
    var fault: Fault = .crash

    @Option(name: .customLong("sysctl"), help: ArgumentHelp(
        "A per-namespace sysctl for A and B, e.g. net.ipv4.tcp_retries2=8 (repeatable; net.ipv4.tcp_* and net.netfilter.nf_conntrack_*).",
        valueName: "NAME=VALUE"))
    var sysctls: [String] = []

    @Option(help: "Seconds after the fault before giving up (0.5…86400; default: 30, or longer where the policy's formula predicts detection later — 1.15 × that + 10 s, e.g. 9068 s for 7200,75,9).")
    var deadline: Double?

    @Option(help: "Seconds between the first exchange and the fault.")
    var faultDelay: Double = 0.2

    @Option(help: "Keep the capture (taken on R, toward A) in this pcap file.")
    var pcap: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(name: .customLong("client-app"), help: "A real program as the client: socat | ssh | redis | psql | curl (its own server runs in B). --keepalive / --user-timeout become the program's own options.")
    var clientApp: String?

    @Option(name: .customLong("client-command"), help: "A full client command line (split at blanks; placeholders {server} {port} {client} {dir}).")
    var clientCommand: String?

    @Option(name: .customLong("server-app"), help: "The server program: socat-echo | sshd | redis-server | postgres | http-slow.")
    var serverApp: String?

    @Option(name: .customLong("app-option"), help: "NAME=VALUE for the client program's profile (repeatable), e.g. ServerAliveInterval=1 for ssh.")
    var appOptions: [String] = []

    @Option(name: .customLong("detect"), help: "How the client program tells it noticed: exit | socket-gone | output:REGEX.")
    var detect: String?

    @OptionGroup(title: "Network faults and impairment")
    var network: NetworkFaultOptions

    @OptionGroup(title: "Where it runs")
    var environment: BackendOptions

    func spec() throws -> TrialSpec {
        var client: Policy = Policy(keepalive: try keepalive.map(KeepaliveSetting.init(parsing:)),
                            useSysctlDefaults: sysctlDefaults, userTimeoutMs: userTimeout,
                            heartbeat: try heartbeat.map(HeartbeatSetting.init(parsing:)))
        if clientApp != nil || clientCommand != nil {
            var options: [String: String] = [:]
            for option in appOptions {
                let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw PolicyError.malformed(field: "app-option", input: option, expected: "NAME=VALUE") }
                options[parts[0]] = parts[1]
            }
            client.app = AppSpec(profile: clientApp, command: clientCommand.map { $0.split(separator: " ").map(String.init) },
                                 detect: detect, options: options.isEmpty ? nil : options)
        }
        var server = Policy(keepalive: try serverKeepalive.map(KeepaliveSetting.init(parsing:)),
                            userTimeoutMs: serverUserTimeout)
        if let serverApp { server.app = AppSpec(profile: serverApp) }
        var spec = TrialSpec(clientPolicy: client, serverPolicy: server, workload: workload,
                             fault: fault, deadline: deadline ?? 30, faultDelay: faultDelay,
                             namespaceKeepalive: try namespaceKeepalive.map(KeepaliveSetting.init(parsing:)),
                             impairment: try network.engineChoice, seed: network.seed, silence: network.silence,
                             shape: network.shape, sysctls: try parsedSysctls())
        if deadline == nil { spec.deadline = TrialDuration.defaultDeadline(for: spec) }
        try spec.validate()
        return spec
    }

    func parsedSysctls() throws -> [String: String] {
        var result: [String: String] = [:]
        for entry in sysctls {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw PolicyError.malformed(field: "sysctl", input: entry, expected: "NAME=VALUE, e.g. net.ipv4.tcp_retries2=8")
            }
            result[parts[0]] = parts[1]
        }
        return result
    }

    func validate() throws {
        do { _ = try spec() } catch let error as PolicyError { throw ValidationError(error.description) }
    }

    func run() throws {
        let spec = try spec()
        // userns / uml: the same command line runs there with --backend host; its output is ours.
        // netem or nftables asked for: auto passes over kernels without them.
        if let status = try environment.runElsewhere(timeout: spec.deadline + spec.faultDelay + (spec.silence ?? 0) + 120,
                                                     needs: spec.kernelNeeds(clock: environment.clock ?? .real)) {
            if status != 0 { throw ExitCode(status) }
            return
        }
        StartupNotices.peers()
        let runID = try RunOwnership.begin()
        defer { RunOwnership.unregister(run: runID) }
        let pcapPath = pcap.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let result = try Trial(spec: spec, id: try LabID(run: runID, trial: "t1"),
                               peerExecutable: PeerProcess.selfExecutable, pcapPath: pcapPath).run()
        if json {
            print(try TrialOutput.json(result))
        } else {
            print(TrialOutput.human(result))
        }
    }
}
