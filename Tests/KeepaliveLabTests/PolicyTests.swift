import Foundation
import KeepaliveLab
import Testing

@Suite struct PolicyTests {
    // MARK: keepalive

    @Test func parsesKeepalive() throws {
        #expect(try KeepaliveSetting(parsing: "2,1,3") == KeepaliveSetting(idle: 2, interval: 1, count: 3))
        #expect(try KeepaliveSetting(parsing: " 7200 , 75,9 ") == KeepaliveSetting(idle: 7200, interval: 75, count: 9))
        #expect(try KeepaliveSetting(parsing: "32767,32767,127").description == "32767,32767,127")
    }

    @Test func keepaliveOutOfRangeNamesFieldValueAndRange() {
        expectError("keepalive count 200 is out of range: TCP_KEEPCNT accepts 1…127") {
            _ = try KeepaliveSetting(parsing: "2,1,200")
        }
        expectError("keepalive idle 0 is out of range: TCP_KEEPIDLE accepts 1…32767 s") {
            _ = try KeepaliveSetting(parsing: "0,1,3")
        }
        expectError("keepalive interval 32768 is out of range: TCP_KEEPINTVL accepts 1…32767 s") {
            _ = try KeepaliveSetting(parsing: "2,32768,3")
        }
        expectError("keepalive count 0 is out of range: TCP_KEEPCNT accepts 1…127") {
            try KeepaliveSetting(idle: 1, interval: 1, count: 0).validate()
        }
    }

    @Test(arguments: ["2,1", "2,1,3,4", "", "a,1,3", "2,,3", "2.5,1,3"])
    func malformedKeepalive(_ text: String) {
        #expect(throws: PolicyError.self) { _ = try KeepaliveSetting(parsing: text) }
    }

    @Test func malformedKeepaliveSaysWhatWasExpected() {
        expectError("keepalive \"2,1\" is malformed: expected IDLE,INTERVAL,COUNT in whole seconds, e.g. \"2,1,3\"") {
            _ = try KeepaliveSetting(parsing: "2,1")
        }
    }

    // MARK: heartbeat

    @Test func parsesHeartbeat() throws {
        let hb = try HeartbeatSetting(parsing: "0.2,1")
        #expect(hb == HeartbeatSetting(interval: 0.2, timeout: 1))
        #expect(hb.description == "0.2,1")
        // timeout shorter than the interval is allowed (one missed reply is fatal).
        #expect(try HeartbeatSetting(parsing: "5,1") == HeartbeatSetting(interval: 5, timeout: 1))
    }

    @Test(arguments: ["0,1", "1,0", "-1,1", "1,86401", "nan,1", "inf,1", "1", "x,1"])
    func rejectsBadHeartbeat(_ text: String) {
        #expect(throws: PolicyError.self) { _ = try HeartbeatSetting(parsing: text) }
    }

    @Test func heartbeatOutOfRangeMessage() {
        expectError("heartbeat timeout 90000 is out of range: must be > 0 and ≤ 86400 s") {
            _ = try HeartbeatSetting(parsing: "1,90000")
        }
    }

    // MARK: policy

    @Test func policySummary() throws {
        #expect(Policy.none.summary == "none")
        let p = Policy(keepalive: KeepaliveSetting(idle: 2, interval: 1, count: 3), userTimeoutMs: 3000)
        #expect(p.summary == "keepalive 2,1,3 + user-timeout 3000ms")
        #expect(Policy(useSysctlDefaults: true).summary == "keepalive (sysctl defaults)")
        let hb = Policy(heartbeat: try HeartbeatSetting(parsing: "0.2,1"))
        #expect(hb.summary == "heartbeat 0.2,1")
        #expect(!hb.enablesKeepalive && p.enablesKeepalive)
    }

    @Test func keepaliveAndSysctlDefaultsAreExclusive() {
        let p = Policy(keepalive: KeepaliveSetting(idle: 2, interval: 1, count: 3), useSysctlDefaults: true)
        #expect(throws: PolicyError.self) { try p.validate() }
        #expect(throws: Never.self) { try Policy(useSysctlDefaults: true, userTimeoutMs: 0).validate() }
    }

    @Test func userTimeoutRange() throws {
        #expect(try Policy.parseUserTimeout("3000") == 3000)
        #expect(try Policy.parseUserTimeout("3000ms") == 3000)
        #expect(try Policy.parseUserTimeout("2147483647") == 2_147_483_647)
        expectError("user-timeout 2147483648 is out of range: TCP_USER_TIMEOUT accepts 0…2147483647 ms") {
            _ = try Policy.parseUserTimeout("2147483648")
        }
        #expect(throws: PolicyError.self) { _ = try Policy.parseUserTimeout("-1") }
        #expect(throws: PolicyError.self) { _ = try Policy.parseUserTimeout("3s") }
        #expect(throws: PolicyError.self) { try Policy(userTimeoutMs: UInt32.max).validate() }
    }

    @Test func policyDecodesWithoutOptionalFields() throws {
        let p = try JSONDecoder().decode(Policy.self, from: Data(#"{"userTimeoutMs": 500}"#.utf8))
        #expect(p == Policy(userTimeoutMs: 500))
        let full = Policy(keepalive: KeepaliveSetting(idle: 2, interval: 1, count: 3), userTimeoutMs: 3000,
                          heartbeat: HeartbeatSetting(interval: 0.2, timeout: 1))
        #expect(try JSONDecoder().decode(Policy.self, from: JSONEncoder().encode(full)) == full)
    }

    // MARK: workload

    @Test func parsesWorkload() throws {
        #expect(try Workload(parsing: "idle") == .idle)
        #expect(try Workload(parsing: "stream") == .stream)
        #expect(try Workload(parsing: "rr:5") == .rr(seconds: 5))
        #expect(try Workload(parsing: "rr:0.25") == .rr(seconds: 0.25))
        #expect(Workload.rr(seconds: 5).description == "rr:5")
    }

    @Test(arguments: ["", "rr", "rr:", "rr:0", "rr:-1", "rr:x", "burst", "RR:5", "rr:100000"])
    func rejectsBadWorkload(_ text: String) {
        #expect(throws: PolicyError.self) { _ = try Workload(parsing: text) }
    }

    @Test func workloadCodesAsText() throws {
        let data = try JSONEncoder().encode([Workload.idle, .rr(seconds: 0.5), .stream])
        #expect(String(decoding: data, as: UTF8.self) == #"["idle","rr:0.5","stream"]"#)
        #expect(try JSONDecoder().decode([Workload].self, from: data) == [.idle, .rr(seconds: 0.5), .stream])
        #expect(throws: DecodingError.self) {
            _ = try JSONDecoder().decode([Workload].self, from: Data(#"["rr:0"]"#.utf8))
        }
    }

    // MARK: peer config and wire format

    @Test func peerConfigRoundTripsAndValidates() throws {
        let config = PeerConfig(role: .client, address: "198.18.2.2", port: 7000,
                                policy: Policy(useSysctlDefaults: true), workload: .rr(seconds: 5))
        let decoded = try JSONDecoder().decode(PeerConfig.self, from: JSONEncoder().encode(config))
        #expect(decoded == config)
        #expect(throws: Never.self) { try decoded.validate() }
        let minimal = try JSONDecoder().decode(
            PeerConfig.self, from: Data(#"{"role":"server","address":"0.0.0.0","port":1}"#.utf8))
        #expect(minimal.streamChunkBytes == 1000 && minimal.workload == .idle && minimal.policy == .none)

        var bad = config
        bad.address = "198.18.2"
        #expect(throws: PolicyError.self) { try bad.validate() }
        bad = config
        bad.streamChunkBytes = 1001
        #expect(throws: PolicyError.self) { try bad.validate() }
    }

    @Test func wireMessagesAndDecoder() {
        #expect(Wire.message(.heartbeatRequest, seq: 0x0102_0304) == Array("KAHB".utf8) + [1, 2, 3, 4])
        #expect(Wire.streamChunk(bytes: 8) == Array("KASTKAST".utf8))

        var decoder = WireDecoder()
        let bytes = Wire.message(.rrRequest, seq: 0) + Wire.streamChunk(bytes: 12)
            + Wire.message(.heartbeatReply, seq: 7) + Wire.message(.rrReply, seq: 9)
        // Fed in awkward pieces: messages split across segments must still come out whole.
        var items: [WireItem] = []
        for piece in [0..<3, 3..<10, 10..<27, 27..<bytes.count] { items += decoder.feed(bytes[piece]) }
        #expect(items == [
            .message(.rrRequest, seq: 0), .stream(bytes: 12),
            .message(.heartbeatReply, seq: 7), .message(.rrReply, seq: 9),
        ])
        #expect(decoder.feed(Array("HTTP".utf8)) == [.invalid(Array("HTTP".utf8))])
        #expect(decoder.failed)
    }

    @Test func errnoNames() {
        #expect(PeerEvent.errnoName(for: ETIMEDOUT) == "ETIMEDOUT")
        #expect(PeerEvent.errnoName(for: ECONNRESET) == "ECONNRESET")
        #expect(PeerEvent.errnoName(for: 4095) == "E4095")
    }
}

private func expectError(_ message: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected error \"\(message)\"", sourceLocation: sourceLocation)
    } catch {
        #expect("\(error)" == message, sourceLocation: sourceLocation)
    }
}
