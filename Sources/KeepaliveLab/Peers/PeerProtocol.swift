import CKeepaliveShim
import KeepaliveNet
import Foundation
// Wire, WireTag, WireDecoder (the peer's protocol) live with the lean peer.
@_exported import KeepalivePeerCore

#if canImport(Glibc)
import Glibc
#endif

/// Everything a peer process needs, passed as JSON on its command line.
public struct PeerConfig: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable { case client, server }

    public var role: Role
    /// IPv4 address the client connects to / the server binds to.
    public var address: String
    public var port: UInt16
    public var policy: Policy
    public var workload: Workload
    /// Size of each stream write; a multiple of 4 so the "KAST" pattern stays aligned on the wire.
    public var streamChunkBytes: Int
    /// Stream pacing. Unpaced, a busy machine lets B's receive window fill up, and A then sends
    /// zero-window probes instead of retransmitting unacknowledged data: a different experiment.
    public var streamBytesPerSecond: Int

    public static let defaultStreamBytesPerSecond = 200_000

    public init(
        role: Role, address: String, port: UInt16, policy: Policy = .none,
        workload: Workload = .idle, streamChunkBytes: Int = 1000,
        streamBytesPerSecond: Int = PeerConfig.defaultStreamBytesPerSecond
    ) {
        self.role = role
        self.address = address
        self.port = port
        self.policy = policy
        self.workload = workload
        self.streamChunkBytes = streamChunkBytes
        self.streamBytesPerSecond = streamBytesPerSecond
    }

    // Written out so that `streamChunkBytes` may be omitted.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decode(Role.self, forKey: .role)
        address = try c.decode(String.self, forKey: .address)
        port = try c.decode(UInt16.self, forKey: .port)
        policy = try c.decodeIfPresent(Policy.self, forKey: .policy) ?? .none
        workload = try c.decodeIfPresent(Workload.self, forKey: .workload) ?? .idle
        streamChunkBytes = try c.decodeIfPresent(Int.self, forKey: .streamChunkBytes) ?? 1000
        streamBytesPerSecond = try c.decodeIfPresent(Int.self, forKey: .streamBytesPerSecond)
            ?? Self.defaultStreamBytesPerSecond
    }

    public func validate() throws {
        try policy.validate()
        try workload.validate()
        var addr = in_addr()
        guard inet_pton(AF_INET, address, &addr) == 1 else {
            throw PolicyError.malformed(field: "address", input: address, expected: "an IPv4 address")
        }
        guard streamChunkBytes > 0, streamChunkBytes % 4 == 0, streamChunkBytes <= 1 << 20 else {
            throw PolicyError.outOfRange(
                field: "streamChunkBytes", value: "\(streamChunkBytes)",
                rule: "must be a multiple of 4 between 4 and 1048576")
        }
        guard (1_000...1_000_000_000).contains(streamBytesPerSecond) else {
            throw PolicyError.outOfRange(field: "streamBytesPerSecond", value: "\(streamBytesPerSecond)",
                                         rule: "allowed 1000…1000000000 bytes/s")
        }
    }
}

// MARK: - Events

/// One line of JSON on a peer's stdout.
public struct PeerEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case listening, accepted, connected, sent, received
        case heartbeatSent = "heartbeat_sent"
        case heartbeatReply = "heartbeat_reply"
        case heartbeatTimeout = "heartbeat_timeout"
        case tcpInfo = "tcp_info"
        case error, closed, ready
    }

    public var kind: Kind
    /// CLOCK_MONOTONIC seconds: shared by all namespaces, so client, server and capture line up.
    public var t: Double
    public var errno: Int32?
    public var errnoName: String?
    /// Message size for messages; cumulative bytes on the socket for stream ("KAST") progress.
    public var bytes: Int?
    public var seq: UInt32?
    /// The message tag for sent/received, the reason for closed, a human text for error.
    public var detail: String?
    /// "ip:port" of this socket (listening, accepted, connected).
    public var local: String?
    /// "ip:port" of the other end (accepted, connected).
    public var remote: String?
    public var tcpInfo: PeerTCPInfo?

    public init(
        kind: Kind, t: Double = PeerEvent.now(), errno: Int32? = nil, bytes: Int? = nil, seq: UInt32? = nil,
        detail: String? = nil, local: String? = nil, remote: String? = nil, tcpInfo: PeerTCPInfo? = nil
    ) {
        self.kind = kind
        self.t = t
        self.errno = errno
        self.errnoName = errno.map(PeerEvent.errnoName(for:))
        self.bytes = bytes
        self.seq = seq
        self.detail = detail
        self.local = local
        self.remote = remote
        self.tcpInfo = tcpInfo
    }

    /// CLOCK_MONOTONIC now, in seconds (the clock of `t`).
    public static func now() -> Double { Double(kal_monotonic_ns()) / 1e9 }

    public static func errnoName(for code: Int32) -> String { Errno.name(code) }
}

/// The kernel's view of a TCP socket (a subset of struct tcp_info; see kal_tcp_info).
public struct PeerTCPInfo: Codable, Sendable, Equatable {
    public var state: UInt8
    public var probes: UInt8
    public var backoff: UInt8
    public var retransmits: UInt8
    public var rtoUs: UInt32
    public var unacked: UInt32
    public var lost: UInt32
    public var retrans: UInt32
    public var totalRetrans: UInt32
    public var lastDataSentMs: UInt32
    public var lastDataRecvMs: UInt32
    public var lastAckRecvMs: UInt32
    public var rttUs: UInt32
    public var rttvarUs: UInt32
    public var sndCwnd: UInt32

    init(_ c: kal_tcp_info) {
        state = c.state
        probes = c.probes
        backoff = c.backoff
        retransmits = c.retransmits
        rtoUs = c.rto_us
        unacked = c.unacked
        lost = c.lost
        retrans = c.retrans
        totalRetrans = c.total_retrans
        lastDataSentMs = c.last_data_sent_ms
        lastDataRecvMs = c.last_data_recv_ms
        lastAckRecvMs = c.last_ack_recv_ms
        rttUs = c.rtt_us
        rttvarUs = c.rttvar_us
        sndCwnd = c.snd_cwnd
    }

    /// getsockopt(TCP_INFO); nil with errno set on failure. Still works after the kernel aborted the connection.
    public static func read(fd: Int32) -> PeerTCPInfo? {
        var info = kal_tcp_info()
        guard kal_tcp_info(fd, &info) == 0 else { return nil }
        return PeerTCPInfo(info)
    }

    /// The kernel's name for `state` (include/net/tcp_states.h).
    public var stateName: String {
        let names = [
            "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
            "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
        ]
        return Int(state) < names.count ? names[Int(state)] : "STATE\(state)"
    }
}
