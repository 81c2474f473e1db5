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
    /// "client" (the program in A noticed; every fault but crash-client) or "server" (crash-client:
    /// the program in B noticed its dead client). nil in results from before server-side detection.
    public var detectingSide: String? = nil
    /// The last lines the server wrote, when it was the detecting side.
    public var serverOutputTail: String? = nil

    /// Context switches per second of the trial's clock, summed over each program's process tree,
    /// from the fault to the end of the wait (processes alive at both ends): how often the program
    /// wakes up while its connection is idle. A program on a periodic timer shows its frequency
    /// (redis-server's serverCron: hz 10); under virtual time every wakeup costs wall time.
    /// nil when no process of the tree lived through the interval.
    public var clientWakeupsPerS: Double? = nil
    public var serverWakeupsPerS: Double? = nil

    /// The program whose verdict is the detection.
    public var detector: String { detectingSide == "server" ? server : client }

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
        case detectingSide = "detecting_side"
        case serverOutputTail = "server_output_tail"
        case clientWakeupsPerS = "client_wakeups_per_s"
        case serverWakeupsPerS = "server_wakeups_per_s"
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

        // crash-client: A dies and the server in B is the side that has to notice.
        let serverSide = spec.fault == .crashClient
        let (topology, network) = try prepareNetwork()
        defer { topology.teardown() }
        // Captured on R's link toward the side that stays up: R drops what goes to a cut link
        // before its capture would see it.
        let capture = try topology.r.perform {
            try PacketCapture(interface: serverSide ? Topology.rToB : Topology.rToA, pcapPath: pcapPath)
        }
        capture.start()
        // $TMPDIR when set: in a UML guest (virtual clock) it is the guest's own tmpfs, where the
        // programs' users (postgres) can own files; /tmp there is the host's, through hostfs.
        var template = Array("\(Self.appTemporaryBase)/kal-app-\(id.run)-\(id.trial)-XXXXXX".utf8CString)
        guard let dirPointer = mkdtemp(&template) else { throw SystemCallError("mkdtemp for the trial's programs") }
        let dir = String(cString: dirPointer)
        _ = chmod(dir, 0o755)
        var apps: [AppProcess] = []
        defer {
            for app in apps.reversed() { app.stop(grace: 0.5) }
            _ = capture.stop()
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
        let firstServer = try startServer(in: topology.b)
        let client = try AppProcess(name: clientCommand.name, argv: clientCommand.argv, environment: clientCommand.env,
                                    netnsPath: topology.a.path, workingDirectory: dir)
        apps.append(client)
        try Self.waitReady(client, clientCommand, role: "client", ns: topology.a, port: spec.port, timeout: 20)
        guard let connection = try Self.waitConnection(client, ns: topology.a, port: spec.port, timeout: 10) else {
            throw TrialError(message: "client program \(client.name) never connected to \(Self.serverAddress):\(spec.port) (no ESTABLISHED socket of its process tree in \(topology.a.name)):\n\(client.tail())")
        }
        let peers = try ProgramPeers(server: firstServer, client: client, poke: clientCommand.poke, startServer: startServer)
        var server: AppProcess { peers.server }
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

        // The detecting program and its connection: the client's, or (crash-client) the server's
        // accepted one in B.
        var watched = connection
        if serverSide {
            guard let accepted = try Self.waitAccepted(server, ns: topology.b, port: spec.port,
                                                      client: (Self.clientAddress, connection.entry.local.port), timeout: 10) else {
                throw TrialError(message: "server program \(server.name) has no ESTABLISHED connection from \(Self.clientAddress):\(connection.entry.local.port) in \(topology.b.name):\n\(server.tail())")
            }
            watched = accepted
        }
        let detector = serverSide ? server : client
        let detectCondition: AppCondition.Detect = serverSide ? (serverSpec.detect != nil ? serverCommand.detect : .socketGone)
            : clientCommand.detect
        let detectSpec = serverSide ? serverSpec : clientSpec
        let settings = watched.settings
        let atFault = watched.tcpInfo
        detector.watch(watched)
        let wakeupsAtFault = (client: Self.contextSwitches(client.pid), server: Self.contextSwitches(server.pid))
        let tFault = PeerEvent.now()
        try network.inject(at: tFault, peers: peers)

        // Wait for the program's verdict or the fault's next step (B's return, R's heal, the
        // nat-idle exchange): each wait blocks until the next of those deadlines or an event from
        // the program.
        let detectRegex: NSRegularExpression? = {
            if case .output(let p) = detectCondition { return try? NSRegularExpression(pattern: p) }
            return nil
        }()
        var detectionAt: Double?
        var matched: AppProcess.Line?
        let deadline = tFault + spec.deadline
        while detectionAt == nil, PeerEvent.now() < deadline {
            if try network.step(peers: peers) { break }
            let next = [deadline, network.nextDeadline].compactMap { $0 }.min()!
            let sent = network.awaitsAnswer ? network.report.sendAt : nil
            _ = detector.wait(until: next) { c in
                if c.lockedExit != nil { return true }
                if let r = detectRegex, c.firstLine(matching: r, after: tFault, locked: true) != nil { return true }
                if detectCondition == .socketGone,
                   c.lockedSocketEvents.contains(where: { $0.what != "peer-fin" }) { return true }
                return peers.answered(c, after: sent)
            }
            network.observeAnswer(peers: peers)
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
        }
        let tWakeEnd = PeerEvent.now()
        func wakeRate(_ start: [pid_t: Int], _ pid: pid_t) -> Double? {
            let end = Self.contextSwitches(pid)
            let common = start.keys.filter { end[$0] != nil }
            guard !common.isEmpty, tWakeEnd > tFault else { return nil }
            return Double(common.reduce(0) { $0 + max(0, end[$1]! - start[$1]!) }) / (tWakeEnd - tFault)
        }
        let clientWakeups = wakeRate(wakeupsAtFault.client, client.pid)
        let serverWakeups = wakeRate(wakeupsAtFault.server, server.pid)
        // The verdict on the socket: state, TCP_INFO, and whether A's table still lists it.
        let gone = detector.socketEventsSoFar.first(where: { $0.what != "peer-fin" })
        var stillListed: Bool?
        if gone != nil {
            let table = try? SockDiag.dump(in: serverSide ? topology.b : topology.a)
            stillListed = table?.contains(where: { $0.inode == watched.entry.inode && $0.state != 7 })
        }
        detector.releaseSocket()
        if detectionAt != nil { Self.sleep(until: PeerEvent.now() + Self.tail) }
        if detector.exited == nil, detectionAt != nil, detectCondition == .exit {
            _ = detector.wait(until: PeerEvent.now() + 1) { $0.lockedExit != nil }
        }
        notes += network.notes
        let networkReport = network.finish(peers: peers)
        let packets = capture.stop()
        if let error = capture.readError { notes.append("capture: \(error)") }
        if let error = capture.fileError { notes.append(PacketCapture.notKeptNote(error)) }
        if capture.droppedFrames > 0 { notes.append("capture: the kernel dropped \(capture.droppedFrames) frame(s) (capture ring full): the wire record is incomplete") }
        let segments = SegmentClassifier.classify(packets, client: (Self.clientAddress, connection.entry.local.port),
                                                  server: (Self.serverAddress, spec.port))
        // The analysis sees the wire from the detecting side: for crash-client B is "A" (its
        // probes are aToB, the last segment it received is bToA) and the fault a crash of its peer.
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
            if let name = Self.errnoFromText(line.text) {
                errnoName = name
                errnoSource = "output"
                if matched == nil { matched = line }
                break
            }
        }
        let detectionT = detectionAt
        if errnoName == nil, let d = detectionT {
            let window = detSegments.filter { $0.t >= tFault && $0.t <= d + Self.tail }
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
        let analysis = TrialAnalysis(spec: analysisSpec, tFault: tFault, tBack: network.tBack, detection: detection,
                                     clientEvents: [], segments: detSegments, network: networkReport)
        if serverSide {
            notes.append("crash-client: A's host went down and \(server.name) in B is the detecting side; probes, the last segment received (last_rx) and the expectation are B's (captured on R's link toward B)")
        }
        var result = analysis.result(pcap: capture.keptFile ? pcapPath : nil, atFault: atFault, atDetection: gone?.info, notes: notes, backend: backend)
        result.spec = spec
        if serverSide {
            // The ladder keeps A on the left.
            result.timeline = TrialAnalysis(spec: spec, tFault: tFault, tBack: nil, detection: detection, clientEvents: [],
                                            segments: segments).timeline
        }
        if !serverSide, let e = Self.appExpectation(clientSpec, analysis: analysis), let anchor = analysis.instant(of: e.anchor) {
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
        if let d = detectionT { result.marks.appDetection = d - tFault }
        if let g = gone { result.marks.socketGone = g.t - tFault }
        if let exit = detector.exited { result.marks.appExit = exit.t - tFault }
        result.marks.appReady = tReady - tFault

        let end = detectionT ?? .infinity
        let pings = detSegments.filter { s in
            s.t > tFault && s.t <= end && s.payloadLength > 0 && s.payloadLength <= Self.appPingMaxBytes
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
            detectMode: detectSpec.detect ?? Self.describe(detectCondition),
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

    /// Where trial directories for programs go: $TMPDIR (the guest's tmpfs under UML) or /tmp.
    static var appTemporaryBase: String {
        let dir = ProcessInfo.processInfo.environment["TMPDIR"] ?? ""
        return dir.hasPrefix("/") ? (dir.hasSuffix("/") ? String(dir.dropLast()) : dir) : "/tmp"
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
              let interval = sshServerAliveInterval(app), interval > 0 else { return nil }
        let count = Double(sshCount(app))
        let implied = app.options?["ServerAliveInterval"] == nil ? " (Debian's ssh: BatchMode=yes implies ServerAliveInterval 300)" : ""
        return Expectation(anchor: .lastReceived, seconds: interval * (count + 1),
                           formula: "ssh: ServerAliveInterval × (ServerAliveCountMax + 1) = \(Fault.format(interval)) × \(Fault.format(count + 1))\(implied) (accepted from \(Fault.format(interval * count)) s: ssh's check timer is not reset by each received byte)")
    }

    /// The ServerAliveInterval ssh really runs with: the option, else — the profile always passes
    /// BatchMode=yes — 300 s on Debian's OpenSSH ("300 if the BatchMode option is set
    /// (Debian-specific)", ssh_config(5)), else 0.
    static func sshServerAliveInterval(_ app: AppSpec) -> Double? {
        if let value = app.options?["ServerAliveInterval"] { return Double(value) }
        return debianOpenSSH ? 300 : nil
    }

    static let debianOpenSSH = FileManager.default.fileExists(atPath: "/usr/share/doc/openssh-client/changelog.Debian.gz")

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

    /// Voluntary + involuntary context switches of each process in `root`'s tree (/proc/PID/status).
    static func contextSwitches(_ root: pid_t) -> [pid_t: Int] {
        var result: [pid_t: Int] = [:]
        for pid in SockDiag.processTree(root) {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { continue }
            var total = 0
            for line in text.split(separator: "\n") where line.contains("ctxt_switches:") {
                total += Int(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) ?? 0
            }
            result[pid] = total
        }
        return result
    }

    /// The server's accepted connection from `client` (crash-client: the server detects).
    static func waitAccepted(_ app: AppProcess, ns: NetworkNamespace, port: UInt16, client: (String, UInt16),
                             timeout: Double) throws -> BorrowedSocket? {
        var found: BorrowedSocket?
        do {
            try backoff(app, until: PeerEvent.now() + timeout, fail: { TrialError(message: $0) }, what: "accepting") {
                found = try? BorrowedSocket.find(in: ns, pids: SockDiag.processTree(app.pid), remote: client, localPort: port)
                return found != nil
            }
        } catch {
            return nil
        }
        return found
    }

}
