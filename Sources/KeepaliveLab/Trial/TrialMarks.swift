/// The key instants of one trial, in seconds relative to the fault (negative: before it); each is
/// nil when the trial had no such instant.
///
/// In results.jsonl this is the `marks` object, with the keys it had when it was a
/// `[String: Double]`, so runs written before and after read the same. Every key ever written is
/// one of the properties below (checked against the committed Reports/*/results.jsonl and test
/// fixtures); an unknown key is ignored on decoding.
public struct TrialMarks: Codable, Sendable, Equatable {
    /// The fault itself: always 0 in results the lab wrote.
    public var fault: Double?
    /// A's client connected to B.
    public var connected: Double?
    /// The first request/answer exchange after connecting is done: the connection is in use.
    public var ready: Double?
    /// The last segment the detecting side received (RSTs and ICMP left out) before it found out.
    public var lastReceived: Double?
    /// First transmission of the oldest data B never acknowledged (or A's first zero-window probe).
    public var oldestUnacked: Double?
    /// A's first retransmission by the retransmission timer (not a tail-loss probe).
    public var firstTimeoutRetransmission: Double?
    /// The first heartbeat that never got its reply (heartbeat policies only).
    public var firstUnansweredHeartbeat: Double?
    /// The client's detection event.
    public var detection: Double?
    /// A's abort RST on the wire.
    public var wireAbort: Double?
    /// reboot: B's fresh host is up again.
    public var bBack: Double?
    /// The trial's deadline.
    public var deadline: Double?
    /// partition: R forwards again.
    public var heal: Double?
    /// nat-idle: the client's send after the silence …
    public var send: Double?
    /// … and the answer to it reaching A's client.
    public var answer: Double?
    /// nat-idle: the last poll that still found R's conntrack entry.
    public var conntrackLastSeen: Double?
    /// nat-idle: the first poll that no longer found R's conntrack entry.
    public var conntrackExpired: Double?
    /// Application peers: the instant the program noticed (its socket, its exit or its output).
    public var appDetection: Double?
    /// Application peers: the program's socket left the kernel's table.
    public var socketGone: Double?
    /// Application peers: the program exited.
    public var appExit: Double?
    /// Application peers: the program was up and connected.
    public var appReady: Double?

    /// An expectation's anchor (its raw value is the anchor's key here).
    public func instant(of anchor: Expectation.Anchor) -> Double? {
        switch anchor {
        case .lastReceived: return lastReceived
        case .oldestUnacked: return oldestUnacked
        case .firstTimeoutRetransmission: return firstTimeoutRetransmission
        case .firstUnansweredHeartbeat: return firstUnansweredHeartbeat
        }
    }

    enum CodingKeys: String, CodingKey {
        case fault, connected, ready
        case lastReceived = "last_rx"
        case oldestUnacked = "oldest_unacked"
        case firstTimeoutRetransmission = "first_rto_retransmission"
        case firstUnansweredHeartbeat = "first_unanswered_heartbeat"
        case detection
        case wireAbort = "wire_abort"
        case bBack = "b_back"
        case deadline, heal, send, answer
        case conntrackLastSeen = "conntrack_last_seen"
        case conntrackExpired = "conntrack_expired"
        case appDetection = "app_detection"
        case socketGone = "socket_gone"
        case appExit = "app_exit"
        case appReady = "app_ready"
    }
}
