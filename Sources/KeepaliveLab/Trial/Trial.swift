import Foundation
import KeepaliveNet

public struct TrialError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// One trial on its own A–R–B topology: server in B, client in A, capture on R's r-a (the wire
/// next to A: it sees A's probes, everything R forwards to A, and R's ICMP), a fault at a recorded
/// instant, and the measurement. Blocking; run it on a thread that outlives the peers (they die with
/// the thread that spawned them).
public struct Trial: Sendable {
    public let spec: TrialSpec
    public let id: LabID
    /// The keepalive-lab binary that provides the `peer` subcommand.
    public let peerExecutable: String
    /// Where to keep the capture as pcap; nil: none (the analysis reads the packets in memory).
    public let pcapPath: String?
    /// Where the trial runs, for the result's `backend`: the launcher that started this process
    /// declares it (host, userns, uml); see ExecutionEnvironment.
    public var backend: String = ExecutionEnvironment.backendLabel
    /// Shared by the trials of a run: at most a few set up at once (see SetupGate). nil: no limit.
    public var setupGate: SetupGate?
    /// Called once the client is ready (topology, capture and both peers up), before the fault.
    public var onReady: (@Sendable () -> Void)?

    public init(spec: TrialSpec, id: LabID, peerExecutable: String, pcapPath: String?) {
        self.spec = spec
        self.id = id
        self.peerExecutable = peerExecutable
        self.pcapPath = pcapPath
    }

    static let serverAddress = Topology.bAddress.address.description
    static let clientAddress = Topology.aAddress.address.description
    /// After detection, keep capturing this long so A's abort RST is on the wire record.
    static let tail = 0.3

    /// Runs the trial on a dedicated thread that lives exactly as long as the trial (the peers'
    /// parent-death signal is tied to it), without blocking a Swift concurrency thread.
    public func runOnOwnThread() async throws -> TrialResult {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try self.run() }) }
            thread.name = "trial-\(id.trial)"
            thread.start()
        }
    }

    public func run() throws -> TrialResult {
        if usesApps { return try runWithApps() }  // real programs as peers: AppTrial.swift
        try spec.validate()
        // Setup (namespaces, veths, capture ring, two process starts) is CPU work; the trial after
        // it mostly waits on kernel timers. Queue setups through the gate rather than piling
        // hundreds onto one instant.
        let gate = setupGate.map { $0.enter() }
        defer { gate?.leave() }
        let (topology, network) = try prepareNetwork()
        // Runs last: by then every peer this trial started (the only processes that enter its
        // namespaces) has been SIGKILLed and reaped by the defer below, so no /proc scan is needed.
        defer { topology.teardown(onlyReapedProcesses: true) }
        let capture = try topology.r.perform {
            try PacketCapture(interface: Topology.rToA, pcapPath: pcapPath,
                              ringBytes: spec.workload == .stream ? PacketCapture.bulkRingBytes : PacketCapture.smallRingBytes)
        }
        capture.start()
        // Every peer this trial starts (a rebooted B's server too), killed and reaped at the end.
        var started: [PeerProcess] = []
        defer {
            for peer in started {
                peer.signal(SIGKILL)
                _ = peer.waitExit(timeout: 2)
            }
            _ = capture.stop()
        }
        func startServer(in topology: Topology) throws -> PeerProcess {
            let server = try self.startServer(in: topology)
            started.append(server)
            return server
        }

        let server = try startServer(in: topology)
        let client = try PeerProcess(
            executable: peerExecutable, netnsPath: topology.a.path,
            config: PeerConfig(role: .client, address: Self.serverAddress, port: spec.port,
                               policy: spec.clientPolicy, workload: spec.workload))
        started.append(client)
        let peers = BuiltInPeers(server: server, client: client, startServer: startServer)
        guard let ready = client.waitFor(.ready, timeout: 5) else {
            throw TrialError(message: "client in \(topology.a.name) never became ready: \(client.events.last.map { "\($0.kind.rawValue) \($0.detail ?? "")" } ?? "no events") \(client.stderrText)")
        }
        gate?.leave()
        onReady?()
        Self.sleep(until: ready.t + spec.faultDelay)

        client.send(command: "snapshot")
        let atFault = client.waitFor(.tcpInfo, timeout: 1)?.tcpInfo
        let tFault = PeerEvent.now()
        var notes: [String] = []
        try network.inject(at: tFault, peers: peers)

        var detection: PeerEvent?
        let detectionKinds: Set<String> = ["error", "closed", "heartbeat_timeout"]
        let end = tFault + spec.deadline
        while detection == nil && PeerEvent.now() < end {
            if try network.step(peers: peers) { break }
            // Block until the next thing that can happen: a client event, the fault's next step
            // (B's reboot, R's heal, the nat-idle send), or the deadline. Under UML time-travel a
            // periodic wakeup would crawl the clock.
            let wakeAt = [end, network.nextDeadline].compactMap { $0 }.min()!
            let awaited: Set<String> = network.awaitsAnswer ? [PeerEvent.Kind.received.rawValue] : []
            let event = client.waitForAny(detectionKinds.union(awaited), until: wakeAt)
            if let event, detectionKinds.contains(event.kind.rawValue) { detection = event }
            // A client gone without a word makes every wait return at once: sleep instead of spinning.
            if event == nil && client.outputEnded { Self.sleep(until: wakeAt) }
        }
        notes += network.notes
        var atDetection: PeerTCPInfo?
        if let detection {
            // The peer snapshots TCP_INFO right before reporting the error (the error carries the
            // earlier instant its poll returned): the last snapshot before it in the event order.
            let events = client.events
            let upTo = events.lastIndex(of: detection) ?? events.endIndex
            atDetection = events[..<upTo].last(where: { $0.kind == .tcpInfo && $0.t > tFault })?.tcpInfo
            Self.sleep(until: detection.t + Self.tail)
        }
        let networkReport = network.finish(peers: peers)
        let packets = capture.stop()
        if let error = capture.readError { notes.append("capture: \(error)") }
        if let error = capture.fileError { notes.append(PacketCapture.notKeptNote(error)) }
        if capture.droppedFrames > 0 { notes.append("capture: the kernel dropped \(capture.droppedFrames) frame(s) (capture ring full): the wire record is incomplete") }

        let clientPort = client.events.first(where: { $0.kind == .connected })?.local
            .flatMap { $0.split(separator: ":").last }.flatMap { UInt16($0) } ?? 0
        let segments = SegmentClassifier.classify(packets, client: (Self.clientAddress, clientPort),
                                                  server: (Self.serverAddress, spec.port))
        return TrialAnalysis(spec: spec, tFault: tFault, tBack: network.tBack, detection: detection,
                             clientEvents: client.events, segments: segments, network: networkReport)
            .result(pcap: capture.keptFile ? pcapPath : nil, atFault: atFault, atDetection: atDetection, notes: notes, backend: backend)
    }

    private func startServer(in topology: Topology) throws -> PeerProcess {
        let server = try PeerProcess(
            executable: peerExecutable, netnsPath: topology.b.path,
            config: PeerConfig(role: .server, address: Self.serverAddress, port: spec.port,
                               policy: spec.serverPolicy, workload: spec.workload))
        guard server.waitFor(.listening, timeout: 5) != nil else {
            throw TrialError(message: "server in \(topology.b.name) never listened: \(server.stderrText)")
        }
        return server
    }

    /// The trial's topology, A's and B's sysctls set, and R's impairment engine and NAT role in
    /// place before any traffic (conntrack must see the SYN); torn down again if a step fails.
    func prepareNetwork() throws -> (Topology, FaultDriver) {
        let topology = try Topology.build(id: id)
        do {
            for ns in [topology.a, topology.b] {
                try ns.perform {
                    try Self.applyNamespaceKeepalive(spec.namespaceKeepalive)
                    for (name, value) in spec.sysctls.sorted(by: { $0.key < $1.key }) {
                        try Self.writePolicySysctl(name, value, askedBy: "the policy's sysctls")
                    }
                }
            }
            let network = FaultDriver(spec: spec, topology: topology)
            try network.prepare()
            return (topology, network)
        } catch {
            topology.teardown()
            throw error
        }
    }

    /// net.ipv4.tcp_keepalive_* are per network namespace: sockets with SO_KEEPALIVE but no
    /// per-socket timers use these.
    static func applyNamespaceKeepalive(_ setting: KeepaliveSetting?) throws {
        guard let k = setting else { return }
        let why = "namespace keepalive \(k)"
        try writePolicySysctl("net.ipv4.tcp_keepalive_time", String(k.idle), askedBy: why)
        try writePolicySysctl("net.ipv4.tcp_keepalive_intvl", String(k.interval), askedBy: why)
        try writePolicySysctl("net.ipv4.tcp_keepalive_probes", String(k.count), askedBy: why)
    }

    /// A per-namespace sysctl a policy asks for. Unavoidable, unlike R's conntrack settings: what the
    /// policy tests is the namespace default itself (the value sockets without per-socket options
    /// run with), and net.ipv4.tcp_* defaults have no netlink interface. Backend selection checks
    /// that sysctl writes work before it picks a backend for such a trial (`KernelNeeds.sysctls`);
    /// this error is for an explicit --backend where they do not.
    static func writePolicySysctl(_ name: String, _ value: String, askedBy why: String) throws {
        do {
            try Sysctl.write(name, value)
        } catch let error as SystemCallError where error.errno == EROFS {
            throw TrialError(message: "\(why) sets sysctl \(name)=\(value) in A and B, and /proc/sys is read-only here "
                + "(container runtimes mount it so): run this lab with --backend uml, whose guest has its own /proc/sys")
        }
    }

    /// One blocking sleep to `t` on the events' clock, however far ahead (no 4295 s usleep limit).
    static func sleep(until t: Double) {
        var remaining = t - PeerEvent.now()
        while remaining > 0 {
            var ts = timespec(tv_sec: Int(remaining), tv_nsec: Int((remaining - remaining.rounded(.down)) * 1e9))
            _ = nanosleep(&ts, nil)  // EINTR: go round with what is left
            remaining = t - PeerEvent.now()
        }
    }

    static func format(_ value: Double) -> String { String(format: "%.3f", value) }
}
