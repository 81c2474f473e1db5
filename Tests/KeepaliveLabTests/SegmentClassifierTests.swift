import Testing
@testable import KeepaliveLab

/// Ethernet/IPv4/TCP and ICMP frames built byte by byte, with the lab's addresses.
enum FakePackets {
    static let client = (ip: "198.18.1.2", port: UInt16(40000))
    static let server = (ip: "198.18.2.2", port: UInt16(7000))
    static let router = "198.18.1.1"

    static func tcp(aToB: Bool = true, seq: UInt32, ack: UInt32 = 0, flags: String,
                    payload: [UInt8] = [], window: UInt16 = 64240, t: Double) -> CapturedPacket {
        let (src, dst) = aToB ? (client, server) : (server, client)
        return frame(ipv4(src: src.ip, dst: dst.ip, proto: 6,
                          body: tcpHeader(sport: src.port, dport: dst.port, seq: seq, ack: ack, flags: flags, window: window) + payload), t: t)
    }

    /// ICMP destination unreachable (type 3) from R, quoting the IP header + 8 bytes of `quoting`.
    static func unreachable(code: UInt8, quoting: CapturedPacket, to dst: String = client.ip, t: Double) -> CapturedPacket {
        let quotedIP = Array(quoting.data[14..<(14 + 20 + 8)])
        return frame(ipv4(src: router, dst: dst, proto: 1, body: [3, code, 0, 0, 0, 0, 0, 0] + quotedIP), t: t)
    }

    static func frame(_ ip: [UInt8], t: Double) -> CapturedPacket {
        let eth: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]
        let ns = Int64(t * 1e9)
        return CapturedPacket(realtimeNs: ns, monotonicNs: ns, data: eth + ip, origLen: eth.count + ip.count)
    }

    static func ipv4(src: String, dst: String, proto: UInt8, body: [UInt8]) -> [UInt8] {
        let total = 20 + body.count
        return [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, proto, 0, 0]
            + addr(src) + addr(dst) + body
    }

    static func tcpHeader(sport: UInt16, dport: UInt16, seq: UInt32, ack: UInt32, flags: String,
                          window: UInt16 = 64240) -> [UInt8] {
        let bits: [Character: UInt8] = ["F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10]
        let f = flags.reduce(UInt8(0)) { $0 | bits[$1]! }
        return be16(sport) + be16(dport) + be32(seq) + be32(ack) + [0x50, f] + be16(window) + [0, 0, 0, 0]
    }

    static func heartbeat(_ tag: String, _ n: UInt32) -> [UInt8] { Array(tag.utf8) + be32(n) }

    static func addr(_ s: String) -> [UInt8] { s.split(separator: ".").map { UInt8($0)! } }
    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    static func be32(_ v: UInt32) -> [UInt8] { be16(UInt16(v >> 16)) + be16(UInt16(v & 0xffff)) }

    static func classify(_ packets: [CapturedPacket]) -> [ClassifiedSegment] {
        SegmentClassifier.classify(packets, client: client, server: server)
    }

    /// SYN / SYN-ACK / ACK with A's ISN `a` and B's ISN `b`; afterwards A.nxt = a+1, B.nxt = b+1.
    static func handshake(a: UInt32 = 1000, b: UInt32 = 5000) -> [CapturedPacket] {
        [tcp(seq: a, flags: "S", t: 0.0),
         tcp(aToB: false, seq: b, ack: a &+ 1, flags: "SA", t: 0.001),
         tcp(seq: a &+ 1, ack: b &+ 1, flags: "A", t: 0.002)]
    }
}

@Suite struct SegmentClassifierTests {
    typealias F = FakePackets

    @Test func handshakeFakePackets() {
        let segs = F.classify(F.handshake())
        #expect(segs.map(\.kind) == [.syn, .synAck, .ack])
        #expect(segs.map(\.flags) == ["S", "SA", "A"])
        #expect(segs.map(\.direction) == [.aToB, .bToA, .aToB])
        #expect(segs[1].seq == 5000 && segs[1].ack == 1001)
        #expect(segs.allSatisfy { $0.wireBytes == 54 && $0.payloadLength == 0 })
    }

    @Test func dataAndAckFakePackets() {
        let segs = F.classify(F.handshake() + [
            F.tcp(seq: 1001, ack: 5001, flags: "PA", payload: Array(repeating: 7, count: 10), t: 1),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", t: 1.001),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "PA", payload: [1, 2, 3], t: 1.5),
            F.tcp(seq: 1011, ack: 5004, flags: "A", t: 1.501),
        ])
        #expect(segs.dropFirst(3).map(\.kind) == [.data, .ack, .data, .ack])
        #expect(segs[3].payloadLength == 10 && segs[3].wireBytes == 64)
    }

    @Test func keepaliveProbeWithZeroAndOneByteAndReplyFakePackets() {
        let segs = F.classify(F.handshake() + [
            F.tcp(seq: 1000, ack: 5001, flags: "A", t: 2.0),                 // 0-byte probe: SND.UNA − 1
            F.tcp(aToB: false, seq: 5001, ack: 1001, flags: "A", t: 2.001),  // reply: duplicate ACK
            F.tcp(seq: 1000, ack: 5001, flags: "A", payload: [0], t: 3.0),  // 1-byte probe (BSD/Windows style)
            F.tcp(aToB: false, seq: 5001, ack: 1001, flags: "A", t: 3.001),
            F.tcp(aToB: false, seq: 5001, ack: 1001, flags: "A", t: 3.002),  // one reply per probe
        ])
        #expect(segs.dropFirst(3).map(\.kind) == [.keepaliveProbe, .keepaliveReply, .keepaliveProbe, .keepaliveReply, .ack])
        let summary = WireSummary(segs)
        #expect(summary.probesSent == 2)
        #expect(summary.probeReplies == 2)
        #expect(summary.lastFromB == 3.002)
        #expect(summary.count(.keepaliveProbe, .aToB) == 2)
        #expect(summary.bytes(.keepaliveProbe) == 54 + 55)
        #expect(WireSummary(segs, after: 2.5).probesSent == 1)
    }

    @Test func zeroWindowProbesAreNotKeepalivesFakePackets() {
        let segs = F.classify(F.handshake() + [
            F.tcp(seq: 1001, ack: 5001, flags: "PA", payload: Array(repeating: 7, count: 10), t: 1),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 0, t: 1.001),  // B's buffer is full
            F.tcp(seq: 1010, ack: 5001, flags: "A", t: 1.2),                             // zero-window probe
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 0, t: 1.201),
            F.tcp(seq: 1010, ack: 5001, flags: "A", t: 1.6),                             // backed off
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 0, t: 1.601),
        ])
        #expect(segs.dropFirst(3).map(\.kind) == [.data, .ack, .windowProbe, .ack, .windowProbe, .ack])
        let stalled = WireSummary(segs)
        #expect(stalled.probesSent == 0 && stalled.probeReplies == 0)
        #expect(stalled.count(.windowProbe, .aToB) == 2)
        #expect(SegmentKind.windowProbe.rawValue == "window_probe")

        // B reads, reopens the window; the connection goes idle and A's keepalive fires.
        let after = F.classify(F.handshake() + [
            F.tcp(seq: 1001, ack: 5001, flags: "PA", payload: Array(repeating: 7, count: 10), t: 1),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 0, t: 1.001),
            F.tcp(seq: 1010, ack: 5001, flags: "A", t: 1.2),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 0, t: 1.201),
            F.tcp(seq: 1010, ack: 5001, flags: "A", t: 1.6),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 0, t: 1.601),
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 65535, t: 2),    // window update
            F.tcp(seq: 1010, ack: 5001, flags: "A", t: 10),                              // keepalive probe
            F.tcp(aToB: false, seq: 5001, ack: 1011, flags: "A", window: 65535, t: 10.001),
        ])
        #expect(after.dropFirst(9).map(\.kind) == [.ack, .keepaliveProbe, .keepaliveReply])
        let summary = WireSummary(after)
        #expect(summary.probesSent == 1 && summary.probeReplies == 1)
        #expect(summary.count(.windowProbe) == 2)
    }

    @Test func unansweredProbesThenPeerSilenceFakePackets() {
        let probes = (1...3).map { F.tcp(seq: 1000, ack: 5001, flags: "A", t: Double($0) + 1) }
        let rst = F.tcp(seq: 1001, ack: 5001, flags: "RA", t: 5.07)
        let segs = F.classify(F.handshake() + probes + [rst])
        #expect(segs.dropFirst(3).map(\.kind) == [.keepaliveProbe, .keepaliveProbe, .keepaliveProbe, .rst])
        let summary = WireSummary(segs)
        #expect(summary.probesSent == 3 && summary.probeReplies == 0)
        #expect(summary.rstFromA == [5.07])
        #expect(summary.lastFromB == 0.001)
        #expect(segs.last?.flags == "RA")
    }

    @Test func retransmissionsFakePackets() {
        let data = F.tcp(seq: 1001, ack: 5001, flags: "PA", payload: [1, 2, 3, 4], t: 1)
        let segs = F.classify([F.tcp(seq: 1000, flags: "S", t: 0), F.tcp(seq: 1000, flags: "S", t: 1)]
            + Array(F.handshake().dropFirst()) + [
            data, data,
            // The last unacked byte resent alone looks like a 1-byte probe, but it is not acked yet.
            F.tcp(seq: 1004, ack: 5001, flags: "PA", payload: [4], t: 1.5),
            F.tcp(aToB: false, seq: 5001, ack: 1005, flags: "A", t: 1.6),
            F.tcp(seq: 1005, ack: 5001, flags: "FA", t: 2),
            F.tcp(seq: 1005, ack: 5001, flags: "FA", t: 2.5),
        ])
        #expect(segs.map(\.kind) == [.syn, .retransmission, .synAck, .ack, .data, .retransmission,
                                      .retransmission, .ack, .fin, .retransmission])
    }

    @Test func heartbeatFakePackets() {
        let beat = F.tcp(seq: 1001, ack: 5001, flags: "PA", payload: F.heartbeat("KAHB", 1), t: 1)
        let segs = F.classify(F.handshake() + [
            beat,
            F.tcp(aToB: false, seq: 5001, ack: 1009, flags: "PA", payload: F.heartbeat("KAHR", 1), t: 1.001),
            beat,                                                                          // resent
            F.tcp(seq: 1009, ack: 5009, flags: "PA", payload: F.heartbeat("KAHB", 2) + F.heartbeat("KAHB", 3), t: 2),
            F.tcp(seq: 1025, ack: 5009, flags: "PA", payload: F.heartbeat("KAHB", 4) + [0xff], t: 3),  // not a multiple of 8
            F.tcp(seq: 1034, ack: 5009, flags: "PA", payload: Array("HELLO!!!".utf8), t: 4),
        ])
        #expect(segs.dropFirst(3).map(\.kind) == [.heartbeat, .heartbeat, .retransmission, .heartbeat, .data, .data])
    }

    @Test func rstFakePackets() {
        let segs = F.classify(F.handshake() + [
            F.tcp(aToB: false, seq: 5001, flags: "R", t: 1),
            F.tcp(seq: 1001, ack: 5001, flags: "RA", t: 2),
        ])
        #expect(segs.dropFirst(3).map(\.kind) == [.rst, .rst])
        #expect(segs.dropFirst(3).map(\.flags) == ["R", "RA"])
        #expect(WireSummary(segs).rstFromA == [2])
    }

    @Test func sequenceWraparoundFakePackets() {
        let isn: UInt32 = 0xFFFF_FFF0
        let payload = [UInt8](repeating: 9, count: 32)  // ends at 0x0000_0011
        let segs = F.classify(F.handshake(a: isn, b: 0xFFFF_FFFF) + [
            F.tcp(seq: 0xFFFF_FFF1, ack: 0, flags: "PA", payload: payload, t: 1),
            F.tcp(aToB: false, seq: 0, ack: 0x11, flags: "A", t: 1.001),
            F.tcp(seq: 0xFFFF_FFF1, ack: 0, flags: "PA", payload: payload, t: 1.2),  // before SND.NXT across the wrap
            F.tcp(seq: 0x10, ack: 0, flags: "A", t: 3),                             // probe: 0x11 − 1
            F.tcp(aToB: false, seq: 0, ack: 0x11, flags: "A", t: 3.001),
            F.tcp(seq: 0x11, ack: 0, flags: "PA", payload: [1], t: 4),
        ])
        #expect(segs.dropFirst(3).map(\.kind) == [.data, .ack, .retransmission, .keepaliveProbe, .keepaliveReply, .data])
        // B's ISN 0xFFFFFFFF: its SYN-ACK puts B's SND.NXT at 0, so a probe from B is seq 0xFFFFFFFF.
        let fromB = F.classify(F.handshake(a: isn, b: 0xFFFF_FFFF) + [F.tcp(aToB: false, seq: 0xFFFF_FFFF, ack: isn &+ 1, flags: "A", t: 2)])
        #expect(fromB.last?.kind == .keepaliveProbe && fromB.last?.direction == .bToA)
    }

    @Test func icmpHostUnreachableQuotingProbeFakePackets() {
        let probe = F.tcp(seq: 1000, ack: 5001, flags: "A", t: 2)
        let icmp = F.unreachable(code: 1, quoting: probe, t: 2.003)
        let segs = F.classify(F.handshake() + [probe, icmp])
        let last = segs.last!
        #expect(last.kind == .icmp && last.direction == .bToA)
        #expect(last.icmpType == 3 && last.icmpCode == 1 && last.quotedSeq == 1000)
        #expect(last.wireBytes == 14 + 20 + 8 + 28)
        let summary = WireSummary(segs)
        #expect(summary.lastFromB == 0.001)  // ICMP came from R, not from B
        #expect(summary.count(.icmp, .bToA) == 1)
        #expect(summary.bytesOnWire == 4 * 54 + 70)
    }

    @Test func unrelatedAndMidStreamFakePackets() {
        let other = F.frame(F.ipv4(src: "198.18.1.2", dst: "198.18.2.2", proto: 6,
                                   body: F.tcpHeader(sport: 40001, dport: 7000, seq: 1, ack: 0, flags: "S")), t: 0.5)
        let arp = CapturedPacket(realtimeNs: 0, monotonicNs: 0, data: [UInt8](repeating: 0xff, count: 12) + [0x08, 0x06] + [UInt8](repeating: 0, count: 28), origLen: 42)
        // Capture started while idle: the first probe teaches nothing, B's reply reveals A's SND.NXT.
        let segs = F.classify([arp, other,
                               F.tcp(seq: 1000, ack: 5001, flags: "A", t: 1),
                               F.tcp(aToB: false, seq: 5001, ack: 1001, flags: "A", t: 1.001),
                               F.tcp(seq: 1000, ack: 5001, flags: "A", t: 2),
                               F.tcp(aToB: false, seq: 5001, ack: 1001, flags: "A", t: 2.001)])
        #expect(segs.map(\.kind) == [.other, .other, .ack, .ack, .keepaliveProbe, .keepaliveReply])
        #expect(segs[0].direction == .other && segs[1].direction == .other)
        let summary = WireSummary(segs)
        #expect(summary.bytesOnWire == 4 * 54)
        #expect(summary.unrelated["other"]?.count == 2)
    }
}
