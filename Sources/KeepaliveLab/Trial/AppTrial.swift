import CKeepaliveShim
import Foundation
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

/// What a trial with real programs adds to its result.
public struct AppTrialReport: Codable, Sendable {
    public var client: String
    public var server: String
    public var clientArgv: [String]
    public var serverArgv: [String]
    /// "exit", "socket-gone", "output:REGEX".
    public var detectMode: String
    /// How the program noticed, in words: e.g. `exit 1: "E read(5, …): Connection timed out"`.
    public var noticed: String?
    /// Where the errno came from: "output" (the program printed the error) or "wire" (A's own RST
    /// after unanswered probes → ETIMEDOUT, B's RST → ECONNRESET).
    public var errnoSource: String?
    public var exitStatus: Int32?
    /// Fault → the program's exit.
    public var exitS: Double?
    /// Fault → the kernel's verdict on the program's socket (POLLERR/POLLHUP on a copy of it).
    public var socketGoneS: Double?
    /// The socket's state then ("CLOSE") and whether sock_diag still listed the connection.
    public var socketStateAtGone: String?
    public var inSocketTableAfterGone: Bool?
    public var tcpInfoAtGone: PeerTCPInfo?
    /// The line that matched an output condition (or the program's last words).
    public var matchedLine: String?
    /// The settings the program applied to its socket, read back just before the fault.
    public var settings: AppSocketSettings?
    /// Small data segments on the idle connection after the fault (application pings), per direction.
    public var appPingsSent: Int
    public var appPingReplies: Int
    public var appPingBytes: Int
    /// The last lines the client wrote (stderr and stdout).
    public var clientOutputTail: String?

    enum CodingKeys: String, CodingKey {
        case client, server
        case clientArgv = "client_argv"
        case serverArgv = "server_argv"
        case detectMode = "detect_mode"
        case noticed
        case errnoSource = "errno_source"
        case exitStatus = "exit_status"
        case exitS = "exit_s"
        case socketGoneS = "socket_gone_s"
        case socketStateAtGone = "socket_state_at_gone"
        case inSocketTableAfterGone = "in_socket_table_after_gone"
        case tcpInfoAtGone = "tcp_info_at_gone"
        case matchedLine = "matched_line"
        case settings
        case appPingsSent = "app_pings_sent"
        case appPingReplies = "app_ping_replies"
        case appPingBytes = "app_ping_bytes"
        case clientOutputTail = "client_output_tail"
    }
}

extension Trial {
    /// True when a policy names a program instead of the built-in peer.
    var usesApps: Bool { spec.clientPolicy.app != nil || spec.serverPolicy.app != nil }

    /// Largest payload counted as an application ping (ssh's keepalive@openssh.com is 36–100 bytes
    /// encrypted, Redis PING 14, a psql query tens of bytes).
    static let appPingMaxBytes = 256

    /// A trial whose client (and server) are real programs. Same topology, capture, faults and
    /// analysis as the built-in peers; the detection comes from the program: its exit, a line of
    /// output, or its connection disappearing (a pidfd_getfd copy polled for the kernel's verdict,
    /// confirmed in A's sock_diag table).
    func runWithApps() throws -> TrialResult {
        try spec.validate()
        guard let clientSpec = spec.clientPolicy.app else {
            throw TrialError(message: "a server program needs a client program too: give the policy's client an `app:` or `command:`")
        }
        let serverSpec = spec.serverPolicy.app ?? AppProfiles.defaultServer(for: clientSpec)
        try clientSpec.validate(role: "client")
        try serverSpec.validate(role: "server")

        let topology = try Topology.build(id: id)
        defer { topology.teardown() }
        for ns in [topology.a, topology.b] {
            try ns.perform {
                try Self.applyNamespaceKeepalive(spec.namespaceKeepalive)
                for (name, value) in spec.sysctls.sorted(by: { $0.key < $1.key }) { try Sysctl.write(name, value) }
            }
        }
        let network = NetworkFaultDriver(spec: spec, topology: topology)
        try network.prepare()
        let capturePath = pcapPath ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("kal-\(id.run)-\(id.trial).pcap").path
        let capture = try topology.r.perform { try PacketCapture(interface: Topology.rToA, pcapPath: capturePath) }
        capture.start()
        var template = Array("/tmp/kal-app-\(id.run)-\(id.trial)-XXXXXX".utf8CString)
        guard let dirPointer = mkdtemp(&template) else { throw SystemCallError("mkdtemp for the trial's programs") }
        let dir = String(cString: dirPointer)
        _ = chmod(dir, 0o755)
        var apps: [AppProcess] = []
        defer {
            for app in apps.reversed() { app.stop(grace: 0.5) }
            _ = capture.stop()
            if pcapPath == nil { unlink(capturePath) }
            try? FileManager.default.removeItem(atPath: dir)
        }

        func context(_ policy: Policy) -> AppProfiles.Context {
            AppProfiles.Context(server: Self.serverAddress, client: Self.clientAddress, port: spec.port, dir: dir, policy: policy)
        }
        let serverCommand = try AppProfiles.resolve(serverSpec, role: "server", context: context(spec.serverPolicy))
        let clientCommand = try AppProfiles.resolve(clientSpec, role: "client", context: context(spec.clientPolicy))
        try serverCommand.setup?(dir)
        try clientCommand.setup?(dir)

        func startServer(in ns: NetworkNamespace) throws -> AppProcess {
            let server = try AppProcess(name: serverCommand.name, argv: serverCommand.argv, environment: serverCommand.env,
                                        netnsPath: ns.path, workingDirectory: dir)
            apps.append(server)
            try Self.waitReady(server, serverCommand, role: "server", ns: ns, port: spec.port, timeout: 30)
            return server
        }
        var server = try startServer(in: topology.b)
        let client = try AppProcess(name: clientCommand.name, argv: clientCommand.argv, environment: clientCommand.env,
                                    netnsPath: topology.a.path, workingDirectory: dir)
        apps.append(client)
        try Self.waitReady(client, clientCommand, role: "client", ns: topology.a, port: spec.port, timeout: 20)
        guard let connection = try Self.waitConnection(client, ns: topology.a, port: spec.port, timeout: 10) else {
            throw TrialError(message: "client program \(client.name) never connected to \(Self.serverAddress):\(spec.port) (no ESTABLISHED socket of its process tree in \(topology.a.name)):\n\(client.tail())")
        }
        var notes: [String] = []
        if let poke = clientCommand.poke {
            let sent = PeerEvent.now()
            client.write(poke.send)
            let answer = try NSRegularExpression(pattern: poke.answer)
            if !client.wait(until: sent + 5, { $0.firstLine(matching: answer, streams: ["stdout"], after: sent - 0.001, locked: true) != nil || $0.lockedExit != nil }) {
                notes.append("the first exchange (\(poke.send.trimmingCharacters(in: .whitespacesAndNewlines))) got no answer within 5 s")
            }
        }
        let tReady = PeerEvent.now()
        Self.sleep(until: tReady + spec.faultDelay)
        if let exit = client.exited {
            throw TrialError(message: "client program \(client.name) exited (status \(exit.status)) before the fault:\n\(client.tail())")
        }

        let settings = connection.settings
        let atFault = connection.tcpInfo
        client.watch(connection)
        let tFault = PeerEvent.now()
        try injectApp(spec.fault, topology: topology, server: server)
        try network.inject(at: tFault)

        // Wait for the program's verdict, B's return or the nat-idle exchange: each wait blocks
        // until the next of those deadlines or an event from the program.
        let detectRegex: NSRegularExpression? = {
            if case .output(let p) = clientCommand.detect { return try? NSRegularExpression(pattern: p) }
            return nil
        }()
        let pokeAnswer = try clientCommand.poke.map { try NSRegularExpression(pattern: $0.answer) }
        var tBack: Double?
        var sendAt: Double?
        var answerAt: Double?
        var detectionAt: Double?
        var matched: AppProcess.Line?
        let deadline = tFault + spec.deadline
        while detectionAt == nil {
            var next = deadline
            if case .reboot(let downtime) = spec.fault, tBack == nil { next = min(next, tFault + downtime) }
            if case .natIdle = spec.fault, let silence = spec.effectiveSilence {
                if sendAt == nil { next = min(next, tFault + silence) }
                if let a = answerAt { next = min(next, a + Self.tail) }
            }
            let now = PeerEvent.now()
            if now >= deadline { break }
            if let a = answerAt, now >= a + Self.tail { break }
            if case .reboot(let downtime) = spec.fault, tBack == nil, now >= tFault + downtime {
                try topology.rebootB()
                server = try startServer(in: topology.b)
                tBack = PeerEvent.now()
                notes.append("B rebooted \(Self.format(tBack! - tFault)) s after the crash: new namespace \(topology.b.name), same IP and MAC, \(server.name) restarted")
                continue
            }
            if case .natIdle = spec.fault, sendAt == nil, let silence = spec.effectiveSilence, now >= tFault + silence {
                sendAt = PeerEvent.now()
                if let poke = clientCommand.poke { client.write(poke.send) } else {
                    notes.append("\(client.name) has no stdin exchange: nothing sent after the silence")
                }
                continue
            }
            let sent = sendAt
            _ = client.wait(until: next) { c in
                if c.lockedExit != nil { return true }
                if let r = detectRegex, c.firstLine(matching: r, after: tFault, locked: true) != nil { return true }
                if clientCommand.detect == .socketGone,
                   c.lockedSocketEvents.contains(where: { $0.what != "peer-fin" }) { return true }
                if answerAt == nil, let s = sent, let r = pokeAnswer,
                   c.firstLine(matching: r, streams: ["stdout"], after: s, locked: true) != nil { return true }
                return false
            }
            if answerAt == nil, let s = sendAt, let r = pokeAnswer, let line = client.firstLine(matching: r, streams: ["stdout"], after: s) {
                answerAt = line.t
            }
            switch clientCommand.detect {
            case .exit:
                detectionAt = client.exited?.t
            case .output:
                if let r = detectRegex, let line = client.firstLine(matching: r, after: tFault) {
                    matched = line
                    detectionAt = line.t
                }
            case .socketGone:
                detectionAt = client.socketEventsSoFar.first(where: { $0.what != "peer-fin" })?.t
            }
            if detectionAt == nil, let exit = client.exited {
                // The program gave up some other way (it exited): that is when it noticed.
                detectionAt = exit.t
                notes.append("\(client.name) exited (status \(exit.status)) without its detection condition \(clientSpec.detect ?? "default")")
            }
        }
        // The verdict on the socket: state, TCP_INFO, and whether A's table still lists it.
        let gone = client.socketEventsSoFar.first(where: { $0.what != "peer-fin" })
        var stillListed: Bool?
        if gone != nil {
            let table = try? SockDiag.dump(in: topology.a)
            stillListed = table?.contains(where: { $0.inode == connection.entry.inode && $0.state != 7 })
        }
        client.releaseSocket()
        if detectionAt != nil { Self.sleep(until: PeerEvent.now() + Self.tail) }
        if client.exited == nil, detectionAt != nil, clientCommand.detect == .exit {
            _ = client.wait(until: PeerEvent.now() + 1) { $0.lockedExit != nil }
        }
        var networkReport = network.finishWithoutPeers()
        if case .natIdle = spec.fault {
            networkReport.sendAt = sendAt
            networkReport.answerAt = answerAt
            networkReport.dataReachedB = answerAt != nil ? true : nil
        }
        let packets = capture.stop()
        if let error = capture.readError { notes.append("capture: \(error)") }
        if capture.droppedFrames > 0 { notes.append("capture: the kernel dropped \(capture.droppedFrames) frame(s) (capture ring full): the wire record is incomplete") }
        let segments = SegmentClassifier.classify(packets, client: (Self.clientAddress, connection.entry.local.port),
                                                  server: (Self.serverAddress, spec.port))

        // The errno: from what the program printed, else from the wire.
        let after = client.allLines.filter { $0.t >= tFault }
        var errnoName: String?
        var errnoSource: String?
        for line in after {
            if let name = Self.errnoFromText(line.text) {
                errnoName = name
                errnoSource = "output"
                if matched == nil { matched = line }
                break
            }
        }
        let detectionT = detectionAt
        if errnoName == nil, let d = detectionT {
            let window = segments.filter { $0.t >= tFault && $0.t <= d + Self.tail }
            if window.contains(where: { $0.direction == .bToA && $0.kind == .rst }) {
                errnoName = "ECONNRESET"; errnoSource = "wire"
            } else if window.contains(where: { $0.direction == .aToB && $0.kind == .rst }),
                      window.contains(where: { $0.direction == .aToB && $0.kind == .keepaliveProbe }) || gone?.what == "error" {
                errnoName = "ETIMEDOUT"; errnoSource = "wire"
            }
        }
        if matched == nil, clientCommand.detect == .exit { matched = after.last }
        let detection = detectionT.map { t -> PeerEvent in
            var e = PeerEvent(kind: errnoName != nil ? .error : .closed, t: t,
                              detail: clientCommand.detect == .socketGone ? "socket gone" : "exit")
            e.errnoName = errnoName
            return e
        }

        // The expectation from what the program really applied to its socket.
        var analysisSpec = spec
        analysisSpec.clientPolicy = Policy(keepalive: settings?.keepalive,
                                           userTimeoutMs: settings?.userTimeoutMs.flatMap { $0 > 0 ? UInt32($0) : nil })
        let analysis = TrialAnalysis(spec: analysisSpec, tFault: tFault, tBack: tBack, detection: detection,
                                     clientEvents: [], segments: segments, network: networkReport)
        var result = analysis.result(pcap: pcapPath, atFault: atFault, atDetection: gone?.info, notes: notes, backend: backend)
        result.spec = spec
        if let e = Self.appExpectation(clientSpec, analysis: analysis), let anchor = analysis.instant(of: e.anchor) {
            let kernelAt = result.expected.flatMap { k in analysis.instant(of: k.anchor).map { $0 + k.seconds } } ?? .infinity
            if anchor + e.seconds < kernelAt {
                let measured = detectionT.map { $0 - anchor }
                result.expected = e
                result.expectedS = e.seconds
                result.measuredS = measured
                // ssh checks once per interval of silence, on a timer that is not reset by every
                // received byte: it gives up between count × interval and (count + 1) × interval.
                let earliest = e.seconds * Double(Self.sshCount(clientSpec)) / Double(Self.sshCount(clientSpec) + 1)
                result.withinTolerance = measured.map { $0 >= earliest - 0.004 && $0 <= e.seconds + Expectation.tolerance(for: e.seconds) } ?? false
            }
        }
        if let d = detectionT { result.marks["app_detection"] = d - tFault }
        if let g = gone { result.marks["socket_gone"] = g.t - tFault }
        if let exit = client.exited { result.marks["app_exit"] = exit.t - tFault }
        result.marks["app_ready"] = tReady - tFault

        let end = detectionT ?? .infinity
        let pings = segments.filter { s in
            s.t > tFault && s.t <= end && s.payloadLength > 0 && s.payloadLength <= Self.appPingMaxBytes
                && ([.data, .retransmission, .heartbeat] as [SegmentKind]).contains(s.kind)
        }
        let exit = client.exited
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
            detectMode: clientSpec.detect ?? Self.describe(clientCommand.detect),
            noticed: noticed, errnoSource: errnoSource,
            exitStatus: exit?.status, exitS: exit.map { $0.t - tFault },
            socketGoneS: gone.map { $0.t - tFault }, socketStateAtGone: gone?.info?.stateName,
            inSocketTableAfterGone: stillListed, tcpInfoAtGone: gone?.info,
            matchedLine: matched?.text, settings: settings,
            appPingsSent: pings.filter { $0.direction == .aToB }.count,
            appPingReplies: pings.filter { $0.direction == .bToA }.count,
            appPingBytes: pings.reduce(0) { $0 + $1.payloadLength },
            clientOutputTail: client.tail(8))
        if let settings { result.notes.append("\(client.name) applied: \(settings.summary)") }
        return result
    }

    static func describe(_ d: AppCondition.Detect) -> String {
        switch d {
        case .exit: return "exit"
        case .socketGone: return "socket-gone"
        case .output(let r): return "output:\(r)"
        }
    }

    /// An application-level timer the program runs itself (ssh's ServerAlive).
    static func appExpectation(_ app: AppSpec, analysis: TrialAnalysis) -> Expectation? {
        guard app.profile == "ssh", analysis.spec.fault.peerIsDead, analysis.spec.fault != .kill,
              let interval = app.options?["ServerAliveInterval"].flatMap(Double.init), interval > 0 else { return nil }
        let count = Double(sshCount(app))
        return Expectation(anchor: .lastReceived, seconds: interval * (count + 1),
                           formula: "ssh: ServerAliveInterval × (ServerAliveCountMax + 1) = \(Fault.format(interval)) × \(Fault.format(count + 1)) (accepted from \(Fault.format(interval * count)) s: ssh's check timer is not reset by each received byte)")
    }

    static func sshCount(_ app: AppSpec) -> Int { app.options?["ServerAliveCountMax"].flatMap(Int.init) ?? 3 }

    static func errnoFromText(_ text: String) -> String? {
        let table: [(String, String)] = [
            ("Connection timed out", "ETIMEDOUT"), ("timed out", "ETIMEDOUT"),
            ("Connection reset by peer", "ECONNRESET"), ("No route to host", "EHOSTUNREACH"),
            ("Broken pipe", "EPIPE"), ("Connection refused", "ECONNREFUSED"),
        ]
        return table.first { text.localizedCaseInsensitiveContains($0.0) }?.1
    }

    /// Waits for a program's readiness condition; throws with its output when it exits first or
    /// never gets there. Socket-table conditions are checked when the program writes something and
    /// otherwise with a doubling back-off (5 ms … 500 ms), never on a fixed period.
    static func waitReady(_ app: AppProcess, _ command: AppCommand, role: String, ns: NetworkNamespace, port: UInt16,
                          timeout: Double) throws {
        let deadline = PeerEvent.now() + timeout
        func fail(_ why: String) -> TrialError {
            TrialError(message: "\(role) program \(app.name) \(why):\n\(app.tail())")
        }
        func listening() -> Bool {
            ((try? SockDiag.dump(in: ns)) ?? []).contains { $0.state == SockDiag.listen && $0.local.port == port }
        }
        switch command.ready {
        case .none:
            return
        case .output(let pattern):
            let regex = try NSRegularExpression(pattern: pattern)
            let ok = app.wait(until: deadline) { $0.firstLine(matching: regex, locked: true) != nil || $0.lockedExit != nil }
            if let exit = app.exited { throw fail("exited (status \(exit.status)) before it was ready (/\(pattern)/)") }
            guard ok else { throw fail("never became ready: no line matching /\(pattern)/ within \(Fault.format(timeout)) s") }
            if command.confirmListen {
                try backoff(app, until: deadline, fail: fail, what: "listening on port \(port) in \(ns.name)") { listening() }
            }
        case .listen:
            try backoff(app, until: deadline, fail: fail, what: "listening on port \(port) in \(ns.name)") { listening() }
        case .connected:
            try backoff(app, until: deadline, fail: fail, what: "connected to \(serverAddress):\(port)") {
                let table = (try? SockDiag.dump(in: ns)) ?? []
                let inodes = Set(SockDiag.processTree(app.pid).flatMap { SockDiag.socketDescriptors(of: $0).keys })
                return table.contains { $0.state == SockDiag.established && $0.remote.port == port && inodes.contains($0.inode) }
            }
        }
    }

    private static func backoff(_ app: AppProcess, until deadline: Double, fail: (String) -> TrialError, what: String,
                                _ check: () -> Bool) throws {
        var step = 0.005
        while true {
            if check() { return }
            if let exit = app.exited { throw fail("exited (status \(exit.status)) before it was \(what)") }
            let now = PeerEvent.now()
            if now >= deadline { throw fail("was never \(what)") }
            let count = app.allLines.count
            _ = app.wait(until: min(deadline, now + step)) { $0.lockedLines.count != count || $0.lockedExit != nil }
            step = min(step * 2, 0.5)
        }
    }

    static func waitConnection(_ app: AppProcess, ns: NetworkNamespace, port: UInt16, timeout: Double) throws -> BorrowedSocket? {
        var found: BorrowedSocket?
        do {
            try backoff(app, until: PeerEvent.now() + timeout, fail: { TrialError(message: $0) }, what: "connected") {
                found = try? BorrowedSocket.find(in: ns, pids: SockDiag.processTree(app.pid), remote: (serverAddress, port))
                return found != nil
            }
        } catch let error as TrialError where error.message.hasPrefix("exited") {
            throw TrialError(message: "client program \(app.name) \(error.message) to \(serverAddress):\(port):\n\(app.tail())")
        } catch {
            return nil
        }
        return found
    }

    private func injectApp(_ fault: Fault, topology: Topology, server: AppProcess) throws {
        switch fault {
        case .none, .loss, .partition, .natIdle:
            break
        case .crash, .reboot:
            try topology.cutB()
            server.signalGroup(SIGKILL)
        case .crashICMP:
            try Nftables.run("""
                table ip kal_fault {
                    chain forward {
                        type filter hook forward priority 0; policy accept;
                        ip daddr \(Self.serverAddress) reject with icmp type host-unreachable
                    }
                }
                """, in: topology.r, operation: "answer for the dead B with ICMP host-unreachable")
            try topology.cutB()
            server.signalGroup(SIGKILL)
        case .kill:
            server.signalGroup(SIGKILL)
        case .freeze:
            server.signalGroup(SIGSTOP)
        }
    }
}
