import Foundation
import KeepaliveNet

/// The built-in peer on both sides (the `peer` subcommand): it detects on A and speaks the
/// lab's own request/reply.
final class BuiltInPeers: RunningPeers {
    /// The server the trial started first: its events tell whether the request reached B.
    let server: PeerProcess
    let client: PeerProcess
    let tReady: Double
    private let spec: TrialSpec
    private let startServer: (Topology) throws -> PeerProcess
    private var atFault: PeerTCPInfo?
    private var atDetection: PeerTCPInfo?
    private(set) var detection: PeerEvent?
    static let detectionKinds: Set<PeerEvent.Kind> = [.error, .closed, .heartbeatTimeout]

    /// Starts the server in B and the client in A; every process goes into `started` (killed at the end).
    init(_ trial: Trial, in topology: Topology, started: PeerBag) throws {
        let spec = trial.spec
        func startServer(in topology: Topology) throws -> PeerProcess {
            let server = try PeerProcess(
                executable: trial.peerExecutable, netnsPath: topology.b.path,
                config: PeerConfig(role: .server, address: Trial.serverAddress, port: spec.port,
                                   policy: spec.serverPolicy, workload: spec.workload))
            started.add { server.signal(SIGKILL); _ = server.waitExit(timeout: 2) }
            guard server.waitFor(.listening, timeout: 5) != nil else {
                throw TrialError(message: "server in \(topology.b.name) never listened: \(server.stderrText)")
            }
            return server
        }
        server = try startServer(in: topology)
        let client = try PeerProcess(
            executable: trial.peerExecutable, netnsPath: topology.a.path,
            config: PeerConfig(role: .client, address: Trial.serverAddress, port: spec.port,
                               policy: spec.clientPolicy, workload: spec.workload))
        started.add { client.signal(SIGKILL); _ = client.waitExit(timeout: 2) }
        guard let ready = client.waitFor(.ready, timeout: 5) else {
            throw TrialError(message: "client in \(topology.a.name) never became ready: \(client.events.last.map { "\($0.kind.rawValue) \($0.detail ?? "")" } ?? "no events") \(client.stderrText)")
        }
        self.client = client
        self.spec = spec
        self.startServer = startServer
        tReady = ready.t
    }

    func armForFault(in topology: Topology) throws {
        client.send(command: "snapshot")
        atFault = client.waitFor(.tcpInfo, timeout: 1)?.tcpInfo
    }

    func awaitVerdict(until wakeAt: Double, answerAfter sent: Double?) -> Bool {
        let awaited: Set<PeerEvent.Kind> = sent != nil ? [.received] : []
        let event = client.waitForAny(Self.detectionKinds.union(awaited), until: wakeAt)
        if let event, Self.detectionKinds.contains(event.kind) { detection = event }
        // A client gone without a word makes every wait return at once: sleep instead of spinning.
        if event == nil && client.outputEnded { Trial.sleep(until: wakeAt) }
        return detection != nil
    }

    /// The peer snapshots TCP_INFO right before reporting the error (the error carries the earlier
    /// instant its poll returned): the last snapshot before it in the event order. Then the tail,
    /// so A's abort RST is on the wire record.
    func settle(in topology: Topology, tFault: Double) {
        guard let detection else { return }
        let events = client.events
        let upTo = events.lastIndex(of: detection) ?? events.endIndex
        atDetection = events[..<upTo].last(where: { $0.kind == .tcpInfo && $0.t > tFault })?.tcpInfo
        Trial.sleep(until: detection.t + Trial.tail)
    }

    var clientPort: UInt16 {
        client.events.first(where: { $0.kind == .connected })?.local
            .flatMap { $0.split(separator: ":").last }.flatMap { UInt16($0) } ?? 0
    }

    func result(_ trial: Trial, _ wire: TrialWire) -> TrialResult {
        TrialAnalysis(spec: spec, tFault: wire.tFault, tBack: wire.tBack, detection: detection,
                      clientEvents: client.events, segments: wire.segments, network: wire.network)
            .result(pcap: wire.pcap, atFault: atFault, atDetection: atDetection, notes: wire.notes, backend: trial.backend)
    }

    func signalServer(_ signal: Int32) { server.signal(signal) }

    func signalClient(_ signal: Int32) throws {
        throw TrialError(message: "fault crash-client needs real programs as peers (the built-in server does not detect): "
                         + "give the policy an `app:`")
    }

    func restartServer(in topology: Topology) throws -> String {
        _ = try startServer(topology)
        return "fresh server"
    }

    func sendRequest() -> String? {
        client.send(command: "send")
        return nil
    }

    func answer(after sent: Double) -> Double? {
        client.events.first(where: { FaultDriver.isRequest($0, .received, tag: .rrReply) })?.t
    }

    /// The send instant as the client recorded it, and whether B's server saw the request.
    func finishExchange(_ report: inout NetworkFaultReport) {
        if report.sendAt != nil, let sent = client.events.first(where: { FaultDriver.isRequest($0, .sent, tag: .rrRequest) }) {
            report.sendAt = sent.t
        }
        report.dataReachedB = server.events.contains { FaultDriver.isRequest($0, .received, tag: .rrRequest) }
    }
}
