import CKeepaliveShim
import Foundation
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

/// Real programs on both sides. Same topology, capture, faults and analysis as the built-in peers;
/// the detection comes from the program: its exit, a line of output, or its connection
/// disappearing (a pidfd_getfd copy polled for the kernel's verdict, confirmed in A's sock_diag
/// table). The client's stdin exchange (`poke`) is its request, and a rebooted B gets the same
/// server program again.
final class ProgramPeers: RunningPeers {
    private let spec: TrialSpec
    private let clientSpec: AppSpec, serverSpec: AppSpec
    private let clientCommand: AppCommand, serverCommand: AppCommand
    /// The server now running in B (a new one after a reboot).
    private(set) var server: AppProcess
    let client: AppProcess
    private let connection: BorrowedSocket
    private let pokeAnswer: NSRegularExpression?
    private let startServer: (NetworkNamespace) throws -> AppProcess
    let tReady: Double
    /// crash-client: A dies and the server in B is the side that has to notice.
    private let serverSide: Bool
    private let detectCondition: AppCondition.Detect
    private let detectRegex: NSRegularExpression?
    private var notes: [String] = []

    /// The program that has to notice: the client, or (crash-client) the server first started.
    private let detector: AppProcess
    // Set when the fault is armed and as the verdict comes in.
    private var watched: BorrowedSocket
    private var atFault: PeerTCPInfo?
    /// What the program really applied to its socket.
    private var settings: AppSocketSettings?
    private var wakeupsAtFault: (client: [pid_t: Int], server: [pid_t: Int]) = ([:], [:])
    /// When the watch was armed: the runner's fault instant follows it at once (lines and socket
    /// events from then on count).
    private var tFault = 0.0
    private var detectionAt: Double?
    private var matched: AppProcess.Line?
    private var gone: AppProcess.SocketEvent?
    private var stillListed: Bool?
    private var clientWakeups: Double?, serverWakeups: Double?

    /// Resolves the programs, starts the server in B and the client in A, and waits for the
    /// client's connection and first exchange. Every process and the programs' directory go into
    /// `started` (stopped and removed at the end).
    init(_ trial: Trial, in topology: Topology, started: PeerBag) throws {
        let spec = trial.spec
        guard let clientSpec = spec.clientPolicy.app else {
            throw TrialError(message: "a server program needs a client program too: give the policy's client an `app:` or `command:`")
        }
        let serverSpec = spec.serverPolicy.app ?? AppProfiles.defaultServer(for: clientSpec)
        try clientSpec.validate(role: "client")
        try serverSpec.validate(role: "server")
        // $TMPDIR when set: in a UML guest (virtual clock) it is the guest's own tmpfs, where the
        // programs' users (postgres) can own files; /tmp there is the host's, through hostfs.
        var template = Array("\(Trial.appTemporaryBase)/kal-app-\(trial.id.run)-\(trial.id.trial)-XXXXXX".utf8CString)
        guard let dirPointer = mkdtemp(&template) else { throw SystemCallError("mkdtemp for the trial's programs") }
        let dir = String(cString: dirPointer)
        _ = chmod(dir, 0o755)
        started.add { try? FileManager.default.removeItem(atPath: dir) }

        func context(_ policy: Policy) -> AppProfiles.Context {
            AppProfiles.Context(server: Trial.serverAddress, client: Trial.clientAddress, port: spec.port, dir: dir, policy: policy)
        }
        let serverCommand = try AppProfiles.resolve(serverSpec, role: "server", context: context(spec.serverPolicy))
        let clientCommand = try AppProfiles.resolve(clientSpec, role: "client", context: context(spec.clientPolicy))
        try serverCommand.setup?(dir)
        try clientCommand.setup?(dir)

        func startServer(in ns: NetworkNamespace) throws -> AppProcess {
            let server = try AppProcess(name: serverCommand.name, argv: serverCommand.argv, environment: serverCommand.env,
                                        netnsPath: ns.path, workingDirectory: dir)
            started.add { server.stop(grace: 0.5) }
            try Trial.waitReady(server, serverCommand, role: "server", ns: ns, port: spec.port, timeout: 30)
            return server
        }
        let server = try startServer(in: topology.b)
        let client = try AppProcess(name: clientCommand.name, argv: clientCommand.argv, environment: clientCommand.env,
                                    netnsPath: topology.a.path, workingDirectory: dir)
        started.add { client.stop(grace: 0.5) }
        try Trial.waitReady(client, clientCommand, role: "client", ns: topology.a, port: spec.port, timeout: 20)
        guard let connection = try Trial.waitConnection(client, ns: topology.a, port: spec.port, timeout: 10) else {
            throw TrialError(message: "client program \(client.name) never connected to \(Trial.serverAddress):\(spec.port) (no ESTABLISHED socket of its process tree in \(topology.a.name)):\n\(client.tail())")
        }
        if let poke = clientCommand.poke {
            let sent = PeerEvent.now()
            client.write(poke.send)
            let answer = try NSRegularExpression(pattern: poke.answer)
            if !client.wait(until: sent + 5, { $0.firstLine(matching: answer, streams: ["stdout"], after: sent - 0.001, locked: true) != nil || $0.lockedExit != nil }) {
                notes.append("the first exchange (\(poke.send.trimmingCharacters(in: .whitespacesAndNewlines))) got no answer within 5 s")
            }
        }
        tReady = PeerEvent.now()

        self.spec = spec
        self.clientSpec = clientSpec
        self.serverSpec = serverSpec
        self.clientCommand = clientCommand
        self.serverCommand = serverCommand
        self.server = server
        self.client = client
        self.connection = connection
        pokeAnswer = try clientCommand.poke.map { try NSRegularExpression(pattern: $0.answer) }
        self.startServer = startServer
        let serverSide = spec.fault.site == .clientHost
        let detect: AppCondition.Detect = serverSide ? (serverSpec.detect != nil ? serverCommand.detect : .socketGone) : clientCommand.detect
        self.serverSide = serverSide
        detectCondition = detect
        if case .output(let p) = detect { detectRegex = try? NSRegularExpression(pattern: p) } else { detectRegex = nil }
        detector = serverSide ? server : client
        watched = connection
    }

    private var detectSpec: AppSpec { serverSide ? serverSpec : clientSpec }

    /// The detecting program and its connection: the client's, or (crash-client) the server's
    /// accepted one in B.
    func armForFault(in topology: Topology) throws {
        if let exit = client.exited {
            throw TrialError(message: "client program \(client.name) exited (status \(exit.status)) before the fault:\n\(client.tail())")
        }
        if serverSide {
            guard let accepted = try Trial.waitAccepted(server, ns: topology.b, port: spec.port,
                                                       client: (Trial.clientAddress, connection.entry.local.port), timeout: 10) else {
                throw TrialError(message: "server program \(server.name) has no ESTABLISHED connection from \(Trial.clientAddress):\(connection.entry.local.port) in \(topology.b.name):\n\(server.tail())")
            }
            watched = accepted
        }
        settings = watched.settings
        atFault = watched.tcpInfo
        detector.watch(watched)
        wakeupsAtFault = (client: Trial.contextSwitches(client.pid), server: Trial.contextSwitches(server.pid))
        tFault = PeerEvent.now()
    }

    /// Wakes on the program's exit, its detection line, its socket's verdict, or the answer to the
    /// nat-idle request.
    func awaitVerdict(until wakeAt: Double, answerAfter sent: Double?) -> Bool {
        let tFault = tFault, detectRegex = detectRegex, detectCondition = detectCondition, pokeAnswer = pokeAnswer
        _ = detector.wait(until: wakeAt) { c in
            if c.lockedExit != nil { return true }
            if let r = detectRegex, c.firstLine(matching: r, after: tFault, locked: true) != nil { return true }
            if detectCondition == .socketGone,
               c.lockedSocketEvents.contains(where: { $0.what != "peer-fin" }) { return true }
            if let sent, let r = pokeAnswer, c.firstLine(matching: r, streams: ["stdout"], after: sent, locked: true) != nil { return true }
            return false
        }
        switch detectCondition {
        case .exit:
            detectionAt = detector.exited?.t
        case .output:
            if let r = detectRegex, let line = detector.firstLine(matching: r, after: tFault) {
                matched = line
                detectionAt = line.t
            }
        case .socketGone:
            detectionAt = detector.socketEventsSoFar.first(where: { $0.what != "peer-fin" })?.t
        }
        if detectionAt == nil, let exit = detector.exited {
            // The program gave up some other way (it exited): that is when it noticed.
            detectionAt = exit.t
            notes.append("\(detector.name) exited (status \(exit.status)) without its detection condition \(detectSpec.detect ?? "default")")
        }
        return detectionAt != nil
    }

    /// The verdict on the socket (state, TCP_INFO, whether A's table still lists it), the
    /// programs' wakeups, then the tail.
    func settle(in topology: Topology, tFault: Double) {
        let tWakeEnd = PeerEvent.now()
        func wakeRate(_ start: [pid_t: Int], _ pid: pid_t) -> Double? {
            let end = Trial.contextSwitches(pid)
            let common = start.keys.filter { end[$0] != nil }
            guard !common.isEmpty, tWakeEnd > tFault else { return nil }
            return Double(common.reduce(0) { $0 + max(0, end[$1]! - start[$1]!) }) / (tWakeEnd - tFault)
        }
        clientWakeups = wakeRate(wakeupsAtFault.client, client.pid)
        serverWakeups = wakeRate(wakeupsAtFault.server, server.pid)
        gone = detector.socketEventsSoFar.first(where: { $0.what != "peer-fin" })
        if gone != nil {
            let table = try? SockDiag.dump(in: serverSide ? topology.b : topology.a)
            stillListed = table?.contains(where: { $0.inode == watched.entry.inode && $0.state != 7 })
        }
        detector.releaseSocket()
        if detectionAt != nil { Trial.sleep(until: PeerEvent.now() + Trial.tail) }
        if detector.exited == nil, detectionAt != nil, detectCondition == .exit {
            _ = detector.wait(until: PeerEvent.now() + 1) { $0.lockedExit != nil }
        }
    }

    var clientPort: UInt16 { connection.entry.local.port }

    /// The analysis from the detecting side, then the program's own story (AppTrialReport).
    func result(_ trial: Trial, _ wire: TrialWire) -> TrialResult {
        // The analysis sees the wire from the detecting side: for crash-client B is "A" (its
        // probes are aToB, the last segment it received is bToA) and the fault a crash of its peer.
        let segments = wire.segments, tFault = wire.tFault
        var notes = notes + wire.notes
        var matched = matched
        let detSegments = serverSide ? segments.map { seg -> ClassifiedSegment in
            var m = seg
            switch seg.direction {
            case .aToB: m.direction = .bToA
            case .bToA: m.direction = .aToB
            default: break
            }
            return m
        } : segments

        // The errno: from what the program printed, else from the wire.
        let after = detector.allLines.filter { $0.t >= tFault }
        var errnoName: String?
        var errnoSource: String?
        for line in after {
            if let name = Trial.errnoFromText(line.text) {
                errnoName = name
                errnoSource = "output"
                if matched == nil { matched = line }
                break
            }
        }
        let detectionT = detectionAt
        if errnoName == nil, let d = detectionT {
            let window = detSegments.filter { $0.t >= tFault && $0.t <= d + Trial.tail }
            if window.contains(where: { $0.direction == .bToA && $0.kind == .rst }) {
                errnoName = "ECONNRESET"; errnoSource = "wire"
            } else if window.contains(where: { $0.direction == .aToB && $0.kind == .rst }),
                      window.contains(where: { $0.direction == .aToB && $0.kind == .keepaliveProbe }) || gone?.what == "error" {
                errnoName = "ETIMEDOUT"; errnoSource = "wire"
            }
        }
        if matched == nil, detectCondition == .exit { matched = after.last }
        let detection = detectionT.map { t -> PeerEvent in
            var e = PeerEvent(kind: errnoName != nil ? .error : .closed, t: t,
                              detail: detectCondition == .socketGone ? "socket gone" : detectCondition == .exit ? "exit" : "output")
            e.errnoName = errnoName
            return e
        }

        // The expectation from what the program really applied to its socket.
        var analysisSpec = spec
        analysisSpec.clientPolicy = Policy(keepalive: settings?.keepalive,
                                           userTimeoutMs: settings?.userTimeoutMs.flatMap { $0 > 0 ? UInt32($0) : nil })
        if serverSide { analysisSpec.fault = .crash }
        let analysis = TrialAnalysis(spec: analysisSpec, tFault: tFault, tBack: wire.tBack, detection: detection,
                                     clientEvents: [], segments: detSegments, network: wire.network)
        if serverSide {
            notes.append("crash-client: A's host went down and \(server.name) in B is the detecting side; probes, the last segment received (last_rx) and the expectation are B's (captured on R's link toward B)")
        }
        var result = analysis.result(pcap: wire.pcap, atFault: atFault, atDetection: gone?.info, notes: notes, backend: trial.backend)
        result.spec = spec
        if serverSide {
            // The ladder keeps A on the left.
            result.timeline = TrialAnalysis(spec: spec, tFault: tFault, tBack: nil, detection: detection, clientEvents: [],
                                            segments: segments).timeline
        }
        if !serverSide, let e = Trial.appExpectation(clientSpec, analysis: analysis), let anchor = analysis.instant(of: e.anchor) {
            let kernelAt = result.expected.flatMap { k in analysis.instant(of: k.anchor).map { $0 + k.seconds } } ?? .infinity
            if anchor + e.seconds < kernelAt {
                let measured = detectionT.map { $0 - anchor }
                result.expected = e
                result.expectedS = e.seconds
                result.measuredS = measured
                // ssh checks once per interval of silence, on a timer that is not reset by every
                // received byte: it gives up between count × interval and (count + 1) × interval.
                let earliest = e.seconds * Double(Trial.sshCount(clientSpec)) / Double(Trial.sshCount(clientSpec) + 1)
                result.withinTolerance = measured.map { $0 >= earliest - 0.004 && $0 <= e.seconds + Expectation.tolerance(for: e.seconds) } ?? false
            }
        }
        if let d = detectionT { result.marks.appDetection = d - tFault }
        if let g = gone { result.marks.socketGone = g.t - tFault }
        if let exit = detector.exited { result.marks.appExit = exit.t - tFault }
        result.marks.appReady = tReady - tFault

        let end = detectionT ?? .infinity
        let pings = detSegments.filter { s in
            s.t > tFault && s.t <= end && s.payloadLength > 0 && s.payloadLength <= Trial.appPingMaxBytes
                && ([.data, .retransmission, .heartbeat] as [SegmentKind]).contains(s.kind)
        }
        let exit = detector.exited
        var noticed: String?
        if let d = detectionT {
            let how: String
            if let g = gone, abs(g.t - d) < 1e-9 {
                how = "socket gone (\(g.what == "error" ? "kernel error" : "closed"), state \(g.info?.stateName ?? "?"))"
            } else if let exit, abs(exit.t - d) < 1e-9 {
                how = "exit \(exit.status)"
            } else {
                how = "output"
            }
            noticed = how + (matched.map { ": \"\($0.text.prefix(160))\"" } ?? "")
        }
        result.app = AppTrialReport(
            client: clientSpec.summary, server: serverSpec.summary,
            clientArgv: clientCommand.argv, serverArgv: serverCommand.argv,
            detectMode: detectSpec.detect ?? Trial.describe(detectCondition),
            noticed: noticed, errnoSource: errnoSource,
            exitStatus: exit?.status, exitS: exit.map { $0.t - tFault },
            socketGoneS: gone.map { $0.t - tFault }, socketStateAtGone: gone?.info?.stateName,
            inSocketTableAfterGone: stillListed, tcpInfoAtGone: gone?.info,
            matchedLine: matched?.text, settings: settings,
            appPingsSent: pings.filter { $0.direction == .aToB }.count,
            appPingReplies: pings.filter { $0.direction == .bToA }.count,
            appPingBytes: pings.reduce(0) { $0 + $1.payloadLength },
            clientOutputTail: client.tail(8),
            detectingSide: serverSide ? "server" : "client",
            serverOutputTail: serverSide ? server.tail(8) : nil,
            clientWakeupsPerS: clientWakeups, serverWakeupsPerS: serverWakeups)
        if let settings { result.notes.append("\(detector.name) applied: \(settings.summary)") }
        return result
    }

    func signalServer(_ signal: Int32) { server.signalGroup(signal) }
    func signalClient(_ signal: Int32) throws { client.signalGroup(signal) }

    func restartServer(in topology: Topology) throws -> String {
        server = try startServer(topology.b)
        return "\(server.name) restarted"
    }

    func sendRequest() -> String? {
        guard let poke = clientCommand.poke else { return "\(client.name) has no stdin exchange: nothing sent after the silence" }
        client.write(poke.send)
        return nil
    }

    func answer(after sent: Double) -> Double? {
        guard let pokeAnswer else { return nil }
        return client.firstLine(matching: pokeAnswer, streams: ["stdout"], after: sent)?.t
    }

    /// A program's answer means the request reached B; no answer says nothing either way.
    func finishExchange(_ report: inout NetworkFaultReport) {
        report.dataReachedB = report.answerAt != nil ? true : nil
    }
}
