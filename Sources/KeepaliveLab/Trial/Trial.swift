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

    /// The one trial runner, for both kinds of peer (the built-in peer, real programs: see
    /// RunningPeers): topology and R's fault side, capture, peers, the fault, its own clock until
    /// the detecting peer's verdict or the deadline, then the analysis.
    public func run() throws -> TrialResult {
        try spec.validate()
        // Setup (namespaces, veths, capture ring, two process starts) is CPU work; the trial after
        // it mostly waits on kernel timers. Queue setups through the gate rather than piling
        // hundreds onto one instant. (Programs' trials never went through it: their setup waits on
        // the programs, up to 30 s.)
        let gate = usesApps ? nil : setupGate.map { $0.enter() }
        defer { gate?.leave() }
        let (topology, network) = try prepareNetwork()
        // Runs last. The built-in peers are all SIGKILLed and reaped by then (the only processes
        // that enter the namespaces), so no /proc scan is needed; programs may leave children.
        defer { topology.teardown(onlyReapedProcesses: !usesApps) }
        // crash-client: captured on R's link toward B, the side that stays up (R drops what goes
        // to a cut link before its capture would see it).
        let capture = try topology.r.perform {
            try PacketCapture(interface: spec.fault.site == .clientHost ? Topology.rToB : Topology.rToA, pcapPath: pcapPath,
                              ringBytes: usesApps || spec.workload == .stream ? PacketCapture.bulkRingBytes : PacketCapture.smallRingBytes)
        }
        capture.start()
        let started = PeerBag()
        defer {
            started.stopAll()
            _ = capture.stop()
        }
        let peers: any RunningPeers = usesApps ? try ProgramPeers(self, in: topology, started: started)
            : try BuiltInPeers(self, in: topology, started: started)
        gate?.leave()
        onReady?()
        Self.sleep(until: peers.tReady + spec.faultDelay)

        try peers.armForFault(in: topology)
        let tFault = PeerEvent.now()
        try network.inject(at: tFault, peers: peers)
        let end = tFault + spec.deadline
        while PeerEvent.now() < end {
            if try network.step(peers: peers) { break }
            // Block until the next thing that can happen: an event from the detecting peer, the
            // fault's next step (B's reboot, R's heal, the nat-idle send), or the deadline. Under
            // UML time-travel a periodic wakeup would crawl the clock.
            let wakeAt = [end, network.nextDeadline].compactMap { $0 }.min()!
            let detected = peers.awaitVerdict(until: wakeAt, answerAfter: network.awaitsAnswer ? network.report.sendAt : nil)
            network.observeAnswer(peers: peers)
            if detected { break }
        }
        peers.settle(in: topology, tFault: tFault)
        let networkReport = network.finish(peers: peers)
        let packets = capture.stop()
        var notes = network.notes
        if let error = capture.readError { notes.append("capture: \(error)") }
        if let error = capture.fileError { notes.append(PacketCapture.notKeptNote(error)) }
        if capture.droppedFrames > 0 { notes.append("capture: the kernel dropped \(capture.droppedFrames) frame(s) (capture ring full): the wire record is incomplete") }
        let segments = SegmentClassifier.classify(packets, client: (Self.clientAddress, peers.clientPort),
                                                  server: (Self.serverAddress, spec.port))
        return peers.result(self, TrialWire(tFault: tFault, tBack: network.tBack, segments: segments, network: networkReport,
                                            notes: notes, pcap: capture.keptFile ? pcapPath : nil))
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

/// A trial's two peers once started, whichever kind they are; the fault side reaches them through
/// TrialPeers, the runner through the rest.
protocol RunningPeers: TrialPeers {
    /// When the first exchange was done: the fault delay starts here.
    var tReady: Double { get }
    /// Just before the fault: the detecting socket's state, and the watch on it.
    func armForFault(in topology: Topology) throws
    /// Blocks until `wakeAt` or something from the detecting peer (with `sent`, also the answer to
    /// the nat-idle request sent then); true once it has noticed.
    func awaitVerdict(until wakeAt: Double, answerAfter sent: Double?) -> Bool
    /// After the wait, before R's story and the capture end: the verdict's details, the tail.
    func settle(in topology: Topology, tFault: Double)
    /// The client's port of the connection (the capture's classification needs it).
    var clientPort: UInt16 { get }
    /// The result from what the peers saw and `wire`.
    func result(_ trial: Trial, _ wire: TrialWire) -> TrialResult
}

/// What the runner hands the peers for the result: the fault instants, the wire, R's story.
struct TrialWire {
    var tFault: Double
    var tBack: Double?
    var segments: [ClassifiedSegment]
    var network: NetworkFaultReport
    /// The fault's and the capture's notes.
    var notes: [String]
    var pcap: String?
}

/// How to stop every process a trial started, in reverse order, at its end (also on failure).
final class PeerBag {
    private var stops: [() -> Void] = []
    func add(_ stop: @escaping () -> Void) { stops.append(stop) }
    func stopAll() {
        for stop in stops.reversed() { stop() }
        stops = []
    }
}
