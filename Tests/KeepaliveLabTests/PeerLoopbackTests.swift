import Foundation
import KeepaliveLab
import KeepaliveNet
import Testing

/// Real peer processes over 127.0.0.1: no namespaces, no privileges.
/// Serialized because several tests measure how fast something is detected.
@Suite(.serialized, .enabled(if: PeerBinary.path != nil, "keepalive-lab executable not found"))
struct PeerLoopbackTests {
    struct Pair {
        let server: PeerProcess
        let client: PeerProcess
        let port: UInt16
    }

    /// A server and a client that completed the first exchange ("ready").
    func startPair(policy: Policy = .none, workload: Workload = .idle) throws -> Pair {
        for _ in 0..<5 {
            let port = UInt16.random(in: 20000..<60000)
            let server = try spawn(.server, port: port)
            guard server.waitForAny([.listening, .closed], timeout: 5)?.kind == .listening else {
                _ = server.waitExit(timeout: 2)
                if server.events.contains(where: { $0.errnoName == "EADDRINUSE" }) { continue }
                throw PeerTestError("server did not listen: \(server.events) \(server.stderrText)")
            }
            let client = try spawn(.client, port: port, policy: policy, workload: workload)
            guard client.waitFor(.ready, timeout: 5) != nil else {
                throw PeerTestError("client not ready: \(client.events) \(client.stderrText)")
            }
            return Pair(server: server, client: client, port: port)
        }
        throw PeerTestError("no free port found")
    }

    func spawn(_ role: PeerConfig.Role, port: UInt16, policy: Policy = .none, workload: Workload = .idle,
               chunk: Int = 1000) throws -> PeerProcess {
        let config = PeerConfig(role: role, address: "127.0.0.1", port: port, policy: policy,
                                workload: workload, streamChunkBytes: chunk,
                                streamBytesPerSecond: 50_000_000)
        return try PeerProcess(executable: PeerBinary.path!, netnsPath: nil, config: config)
    }

    @Test func connectFirstExchangeReady() throws {
        let pair = try startPair()
        let (server, client) = (pair.server, pair.client)
        let connected = try #require(client.waitFor(.connected, timeout: 1))
        #expect(connected.remote == "127.0.0.1:\(pair.port)")
        let request = try #require(client.waitFor(.sent, timeout: 1))
        #expect(request.detail == "KARQ" && request.seq == 0 && request.bytes == 8)
        let reply = try #require(client.waitFor(.received, timeout: 1))
        #expect(reply.detail == "KARS" && reply.seq == 0)
        let ready = try #require(client.events.first { $0.kind == .ready })
        #expect(connected.t <= request.t && request.t <= reply.t && reply.t <= ready.t)

        let accepted = try #require(server.waitFor(.accepted, timeout: 1))
        #expect(accepted.remote == connected.local)
        let served = try #require(server.waitFor(.received, timeout: 1))
        #expect(served.detail == "KARQ" && served.seq == 0)

        client.send(command: "snapshot")
        let snapshot = try #require(client.waitFor(.tcpInfo, timeout: 2))
        #expect(snapshot.detail == "snapshot")
        #expect(snapshot.tcpInfo?.stateName == "ESTABLISHED")

        client.send(command: "quit")
        #expect(client.waitFor(.closed, timeout: 2)?.detail == "quit")
        #expect(client.waitExit(timeout: 2) == 0)
        // quit closes with SO_LINGER 0: the server must see an RST, not a FIN.
        let error = server.waitFor(.error, timeout: 2)
        #expect(error?.errnoName == "ECONNRESET", "server events: \(server.events)")
        #expect(server.waitExit(timeout: 2) == 0)
    }

    @Test func heartbeatsGetReplies() throws {
        let pair = try startPair(policy: Policy(heartbeat: HeartbeatSetting(interval: 0.2, timeout: 1)))
        for seq: UInt32 in 0..<3 {
            let reply = pair.client.waitFor(.heartbeatReply, timeout: 2)
            #expect(reply?.seq == seq)
        }
        #expect(!pair.client.events.contains { $0.kind == .heartbeatTimeout })
        pair.client.send(command: "quit")
        #expect(pair.client.waitExit(timeout: 2) == 0)
        #expect(pair.server.waitExit(timeout: 2) == 0)
    }

    @Test func stoppedServerTriggersHeartbeatTimeout() throws {
        let pair = try startPair(policy: Policy(heartbeat: HeartbeatSetting(interval: 0.2, timeout: 0.6)))
        #expect(pair.client.waitFor(.heartbeatReply, timeout: 2) != nil)
        pair.server.signal(SIGSTOP)
        let stoppedAt = PeerEvent.now()
        // The kernel still ACKs for a stopped process, so only the application notices.
        let timeout = try #require(pair.client.waitFor(.heartbeatTimeout, timeout: 3))
        let elapsed = timeout.t - stoppedAt
        #expect(elapsed >= 0.4 && elapsed <= 1.1, "heartbeat_timeout after \(elapsed) s")
        #expect(pair.client.waitFor(.closed, timeout: 1)?.detail == "heartbeat")
        #expect(pair.client.waitExit(timeout: 2) == 0)

        pair.server.signal(SIGCONT)
        #expect(pair.server.waitFor(.error, timeout: 2)?.errnoName == "ECONNRESET")
        #expect(pair.server.waitExit(timeout: 2) == 0)
    }

    @Test func killedServerIsSeenByClient() throws {
        let pair = try startPair()
        pair.server.signal(SIGKILL)
        #expect(pair.server.waitExit(timeout: 2) == 128 + SIGKILL)
        let event = try #require(pair.client.waitForAny([.closed, .error], timeout: 3))
        let seen = event.kind == .closed ? event.detail : event.errnoName
        #expect(seen == "eof" || seen == "ECONNRESET", "client saw \(event)")
        #expect(pair.client.waitExit(timeout: 2) == 0)
    }

    @Test func requestResponseAndSendCommand() throws {
        let pair = try startPair(workload: .rr(seconds: 0.1))
        let replies = (0..<3).compactMap { _ in pair.client.waitFor(.received, timeout: 2) }
        #expect(replies.map(\.seq) == [0, 1, 2])
        pair.client.send(command: "send")
        pair.client.send(command: "quit")
        #expect(pair.client.waitExit(timeout: 2) == 0)
        let sent = pair.client.events.filter { $0.kind == .sent }.compactMap(\.seq)
        #expect(sent == Array(0..<UInt32(sent.count)), "every KARQ takes the next seq")
        #expect(pair.server.waitExit(timeout: 2) == 0)
    }

    @Test func streamReportsProgressAtMostEvery100ms() throws {
        let pair = try startPair(workload: .stream)
        Thread.sleep(forTimeInterval: 0.55)
        pair.client.send(command: "quit")
        #expect(pair.client.waitExit(timeout: 2) == 0)
        #expect(pair.server.waitExit(timeout: 2) == 0)
        let progress = pair.client.events.filter { $0.kind == .sent && $0.detail == "KAST" }
        #expect((3...8).contains(progress.count), "\(progress.count) progress events")
        #expect(zip(progress, progress.dropFirst()).allSatisfy { $1.bytes! > $0.bytes! && $1.t - $0.t >= 0.099 })
        let received = pair.server.events.filter { $0.kind == .received && $0.detail == "KAST" }
        #expect((received.last?.bytes ?? 0) > 100_000)
    }

    /// A stream to a frozen server fills the client's send buffer: from then on nothing can
    /// progress until POLLOUT, and the client must sleep in poll, not spin (a spinning peer burns a
    /// core on the host and stops the virtual clock under UML time-travel).
    @Test func streamToAStalledPeerBlocksInsteadOfSpinning() throws {
        let pair = try startPair(workload: .stream)
        pair.server.signal(SIGSTOP)
        defer {
            pair.server.signal(SIGKILL)
            pair.client.signal(SIGKILL)
            _ = pair.server.waitExit(timeout: 2)
            _ = pair.client.waitExit(timeout: 2)
        }
        Thread.sleep(forTimeInterval: 0.5)  // the buffers fill within milliseconds at 50 MB/s
        let cpu0 = try #require(Self.cpuSeconds(pair.client.pid)), t0 = PeerEvent.now()
        Thread.sleep(forTimeInterval: 1.5)
        let cpu1 = try #require(Self.cpuSeconds(pair.client.pid)), t1 = PeerEvent.now()
        let ratio = (cpu1 - cpu0) / (t1 - t0)
        #expect(ratio < 0.1, "the stalled client used \(String(format: "%.0f", ratio * 100)) % of a CPU")
    }

    /// utime + stime of a process (proc(5) fields 14 and 15).
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let fields = ProcStat.fields(of: pid), fields.count > 12,
              let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    @Test func refusedConnectionIsASetupFailure() throws {
        let client = try spawn(.client, port: UInt16.random(in: 20000..<60000))
        let error = try #require(client.waitFor(.error, timeout: 3))
        #expect(error.errnoName == "ECONNREFUSED")
        #expect(client.waitFor(.closed, timeout: 1)?.detail == "setup")
        #expect(client.waitExit(timeout: 2) == 1)
    }

    @Test func invalidConfigExitsWith2() throws {
        let client = try spawn(.client, port: 1, chunk: 1001)
        #expect(client.waitFor(.error, timeout: 3)?.detail?.contains("streamChunkBytes") == true)
        #expect(client.waitExit(timeout: 2) == 2)
    }
}

fileprivate struct PeerTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
