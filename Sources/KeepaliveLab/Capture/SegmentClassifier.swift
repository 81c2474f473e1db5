import Foundation

public enum SegmentDirection: String, Codable, Sendable {
    case aToB, bToA, other
}

public enum SegmentKind: String, Codable, Sendable, CaseIterable {
    case syn, synAck = "syn_ack", ack, data, retransmission
    case keepaliveProbe = "keepalive_probe", keepaliveReply = "keepalive_reply"
    /// Probe-shaped segment (as `keepaliveProbe`) sent while the peer's last advertised window was 0.
    case windowProbe = "window_probe"
    case heartbeat, fin, rst, icmp, other
}

/// One captured frame, decoded and labelled. Non-TCP rows have seq/ack 0 and empty flags.
/// ICMP rows travel the opposite way to the packet they quote: an unreachable for an A→B
/// segment is `.bToA` (it heads for A).
public struct ClassifiedSegment: Codable, Sendable, Equatable {
    /// CLOCK_MONOTONIC seconds.
    public var t: Double
    public var direction: SegmentDirection
    public var kind: SegmentKind
    public var seq: UInt32
    public var ack: UInt32
    public var flags: String
    public var payloadLength: Int
    public var wireBytes: Int
    public var icmpType: UInt8?
    public var icmpCode: UInt8?
    /// Sequence number of the TCP header quoted inside an ICMP error.
    public var quotedSeq: UInt32?
}

public enum SegmentClassifier {
    /// Labels every packet in capture order. Addresses and ports are as seen on the captured link.
    public static func classify(_ packets: [CapturedPacket],
                                client: (ip: String, port: UInt16),
                                server: (ip: String, port: UInt16)) -> [ClassifiedSegment] {
        var state = ConnectionState(client: Endpoint(client), server: Endpoint(server))
        return packets.map { state.classify($0) }
    }
}

// MARK: - Sequence-space arithmetic (RFC 1982 style, 32-bit wrap)

func seqLess(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) < 0 }
func seqMax(_ a: UInt32?, _ b: UInt32) -> UInt32 {
    guard let a else { return b }
    return seqLess(a, b) ? b : a
}

// MARK: - Classification state

private struct Endpoint: Equatable {
    var ip: UInt32?
    var port: UInt16
    init(_ e: (ip: String, port: UInt16)) { ip = parseIPv4(e.ip); port = e.port }
    init(ip: UInt32, port: UInt16) { self.ip = ip; self.port = port }
}

/// What one sender's stream looks like from the capture point.
private struct Side {
    /// Highest sequence end sent (or acked by the peer, which covers a capture started mid-stream).
    var nxt: UInt32?
    /// Highest ACK the peer sent for this stream.
    var una: UInt32?
    var synSeq: UInt32?
    var finSeq: UInt32?
    /// Probes not yet matched by a reply; reset when the sender moves on (data, FIN, RST, SYN,
    /// window probe).
    var unansweredProbes = 0
    /// Raw (unscaled) receive window this side last advertised; nil until it sends a segment.
    var window: UInt16?
}

private struct ConnectionState {
    let client: Endpoint
    let server: Endpoint
    var sides: [Side] = [Side(), Side()]  // [aToB sender = A, bToA sender = B]

    init(client: Endpoint, server: Endpoint) { self.client = client; self.server = server }

    func direction(src: Endpoint, dst: Endpoint) -> SegmentDirection {
        if src == client && dst == server { return .aToB }
        if src == server && dst == client { return .bToA }
        return .other
    }

    mutating func classify(_ packet: CapturedPacket) -> ClassifiedSegment {
        var seg = ClassifiedSegment(t: Double(packet.monotonicNs) / 1e9, direction: .other, kind: .other,
                                    seq: 0, ack: 0, flags: "", payloadLength: 0, wireBytes: packet.origLen)
        switch decode(packet.data) {
        case .tcp(let tcp):
            seg.seq = tcp.seq
            seg.ack = tcp.ack
            seg.flags = tcp.flagString
            seg.payloadLength = tcp.payloadLength
            seg.direction = direction(src: tcp.src, dst: tcp.dst)
            if seg.direction != .other { seg.kind = classifyTCP(tcp, from: seg.direction == .aToB ? 0 : 1) }
        case .icmp(let icmp):
            seg.kind = .icmp
            seg.icmpType = icmp.type
            seg.icmpCode = icmp.code
            if let q = icmp.quoted {
                seg.quotedSeq = q.seq
                // The error heads back toward the quoted packet's sender.
                switch direction(src: q.src, dst: q.dst) {
                case .aToB: seg.direction = .bToA
                case .bToA: seg.direction = .aToB
                case .other: break
                }
            }
        case .other:
            break
        }
        return seg
    }

    private mutating func classifyTCP(_ tcp: TCPHeader, from s: Int) -> SegmentKind {
        let r = 1 - s
        var kind: SegmentKind
        if tcp.rst {
            kind = .rst
        } else if tcp.syn {
            if sides[s].synSeq == tcp.seq {
                kind = .retransmission
            } else {
                // A new SYN on the same 4-tuple is a new incarnation (e.g. after a peer reboot).
                kind = tcp.hasAck ? .synAck : .syn
                sides[s] = Side(synSeq: tcp.seq)
                if !tcp.hasAck { sides[r] = Side() }
            }
        } else if tcp.fin {
            kind = sides[s].finSeq == tcp.seq ? .retransmission : .fin
            sides[s].finSeq = tcp.seq
        } else if isKeepaliveProbe(tcp, sides[s]) {
            // Linux zero-window probes have exactly the keepalive shape; tell them apart by the
            // peer's window (scaling is irrelevant: zero is zero).
            kind = sides[r].window == 0 ? .windowProbe : .keepaliveProbe
        } else if tcp.payloadLength > 0 {
            if let nxt = sides[s].nxt, seqLess(tcp.seq, nxt) {
                kind = .retransmission
            } else {
                kind = tcp.isHeartbeat ? .heartbeat : .data
            }
        } else if tcp.hasAck {
            // Pure ACK: a reply if it acknowledges exactly what the prober has sent.
            if sides[r].unansweredProbes > 0, tcp.ack == sides[r].nxt {
                kind = .keepaliveReply
                sides[r].unansweredProbes -= 1
            } else {
                kind = .ack
            }
        } else {
            kind = .other
        }

        switch kind {
        case .keepaliveProbe: sides[s].unansweredProbes += 1
        case .ack, .keepaliveReply, .other: break
        default: sides[s].unansweredProbes = 0
        }
        if !tcp.rst {
            sides[s].window = tcp.window
            sides[s].nxt = seqMax(sides[s].nxt, tcp.seq &+ UInt32(truncatingIfNeeded: tcp.sequenceSpace))
            if tcp.hasAck {
                sides[r].una = seqMax(sides[r].una, tcp.ack)
                sides[r].nxt = seqMax(sides[r].nxt, tcp.ack)
            }
        }
        return kind
    }

    /// Linux: seq = SND.UNA − 1, no data, ACK only, sent only when nothing is outstanding
    /// (so SND.UNA == SND.NXT). Other stacks send one garbage byte at the same seq; that byte
    /// must already be acked, or it is an ordinary retransmission of the last byte.
    private func isKeepaliveProbe(_ tcp: TCPHeader, _ side: Side) -> Bool {
        guard tcp.hasAck, !tcp.syn, !tcp.fin, !tcp.rst, tcp.payloadLength <= 1,
              let nxt = side.nxt, tcp.seq == nxt &- 1 else { return false }
        return tcp.payloadLength == 0 || side.una == nxt
    }
}

// MARK: - Decoding

private struct TCPHeader {
    var src: Endpoint
    var dst: Endpoint
    var seq: UInt32
    var ack: UInt32
    var flags: UInt8
    /// Raw 16-bit window field (before any window scaling).
    var window: UInt16
    var payloadLength: Int
    /// The payload bytes that were captured (snaplen may cut them short).
    var payload: ArraySlice<UInt8>

    var fin: Bool { flags & 0x01 != 0 }
    var syn: Bool { flags & 0x02 != 0 }
    var rst: Bool { flags & 0x04 != 0 }
    var hasAck: Bool { flags & 0x10 != 0 }
    var sequenceSpace: Int { payloadLength + (syn ? 1 : 0) + (fin ? 1 : 0) }

    var flagString: String {
        // tcpdump's order, with "A" where tcpdump prints ".".
        let names: [(UInt8, Character)] = [(0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"),
                                           (0x20, "U"), (0x10, "A"), (0x40, "E"), (0x80, "W")]
        return String(names.filter { flags & $0.0 != 0 }.map(\.1))
    }

    /// The lab's application heartbeat: 8-byte messages tagged "KAHB" (beat) or "KAHR" (reply).
    var isHeartbeat: Bool {
        guard payloadLength > 0, payloadLength % 8 == 0, payload.count >= 8 else { return false }
        var i = payload.startIndex
        while i + 8 <= payload.endIndex {
            let tag = payload[i..<i + 4]
            guard tag.elementsEqual("KAHB".utf8) || tag.elementsEqual("KAHR".utf8) else { return false }
            i += 8
        }
        return true
    }
}

private struct QuotedTCP {
    var src: Endpoint
    var dst: Endpoint
    var seq: UInt32
}

private struct ICMPMessage {
    var type: UInt8
    var code: UInt8
    var quoted: QuotedTCP?
}

private enum Decoded {
    case tcp(TCPHeader)
    case icmp(ICMPMessage)
    case other
}

private func be16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
private func be32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(be16(b, i)) << 16 | UInt32(be16(b, i + 2)) }

private func parseIPv4(_ s: String) -> UInt32? {
    var addr = in_addr()
    guard inet_pton(AF_INET, s, &addr) == 1 else { return nil }
    return UInt32(bigEndian: addr.s_addr)
}

/// IPv4 header at `ip`: (header length, total length, protocol, src, dst), or nil if not a
/// first-fragment IPv4 header within the captured bytes.
private func ipv4Header(_ b: [UInt8], at ip: Int) -> (ihl: Int, total: Int, proto: UInt8, src: UInt32, dst: UInt32)? {
    guard b.count >= ip + 20, b[ip] >> 4 == 4 else { return nil }
    let ihl = Int(b[ip] & 0x0f) * 4
    guard ihl >= 20, be16(b, ip + 6) & 0x1fff == 0 else { return nil }  // later fragments carry no L4 header
    return (ihl, Int(be16(b, ip + 2)), b[ip + 9], be32(b, ip + 12), be32(b, ip + 16))
}

private func decode(_ b: [UInt8]) -> Decoded {
    guard b.count >= 14 else { return .other }
    var ip = 14
    var etherType = be16(b, 12)
    if etherType == 0x8100, b.count >= 18 {  // one 802.1Q tag
        etherType = be16(b, 16)
        ip = 18
    }
    guard etherType == 0x0800, let h = ipv4Header(b, at: ip) else { return .other }
    let l4 = ip + h.ihl
    switch h.proto {
    case 6:
        guard b.count >= l4 + 20 else { return .other }
        let doff = Int(b[l4 + 12] >> 4) * 4
        let payloadLength = max(0, h.total - h.ihl - doff)
        let start = min(b.count, l4 + doff)
        return .tcp(TCPHeader(src: Endpoint(ip: h.src, port: be16(b, l4)),
                              dst: Endpoint(ip: h.dst, port: be16(b, l4 + 2)),
                              seq: be32(b, l4 + 4), ack: be32(b, l4 + 8), flags: b[l4 + 13],
                              window: be16(b, l4 + 14),
                              payloadLength: payloadLength,
                              payload: b[start..<min(b.count, start + payloadLength)]))
    case 1:
        guard b.count >= l4 + 8 else { return .other }
        var msg = ICMPMessage(type: b[l4], code: b[l4 + 1])
        // Error messages (unreachable, source quench, redirect, time exceeded, parameter problem)
        // quote the offending IP header and at least 8 bytes of its payload.
        if [3, 4, 5, 11, 12].contains(msg.type), let q = ipv4Header(b, at: l4 + 8), q.proto == 6 {
            let qt = l4 + 8 + q.ihl
            if b.count >= qt + 8 {
                msg.quoted = QuotedTCP(src: Endpoint(ip: q.src, port: be16(b, qt)),
                                       dst: Endpoint(ip: q.dst, port: be16(b, qt + 2)),
                                       seq: be32(b, qt + 4))
            }
        }
        return .icmp(msg)
    default:
        return .other
    }
}
