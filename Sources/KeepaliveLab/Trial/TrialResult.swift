/// One trial's measured outcome: one JSON line in results.jsonl.
public struct TrialResult: Codable, Sendable {
    public enum Outcome: String, Codable, Sendable {
        /// The peer was dead and the client found out before the deadline.
        case detected
        /// The peer was dead and the client did not find out before the deadline.
        case missed
        /// The peer was healthy but the connection was closed.
        case falsePositive = "false_positive"
        /// The peer was healthy and the connection lived to the deadline (nat-idle: the data sent
        /// after the silence reached B and the answer came back).
        case survived
        /// nat-idle: the middlebox forgot the connection; the data sent after the silence got no answer.
        case broken
    }

    public var outcome: Outcome
    public var errno: String?
    /// How the client found out: "ETIMEDOUT", "ECONNRESET", "eof", "heartbeat".
    public var detectedBy: String?
    /// Fault → the client's detection event (CLOCK_MONOTONIC, both sides).
    public var detectionLatencyS: Double?
    /// Last segment A received from B (on the wire) → detection.
    public var sinceLastRxS: Double?
    /// The oldest unacknowledged data segment from A → detection (data in flight).
    public var sinceOldestUnackedS: Double?
    /// First heartbeat that never got its reply → detection.
    public var sinceFirstUnansweredHeartbeatS: Double?
    public var expected: Expectation?
    public var expectedS: Double?
    /// The measurement against `expected`, from the expectation's anchor.
    public var measuredS: Double?
    /// With the timer model (`expected.events`): true when every checked event is inside its
    /// window (`events`); else the abort alone against the formula's tolerance.
    public var withinTolerance: Bool?
    public var probesSent: Int
    public var probeReplies: Int
    public var rstSeen: Bool
    /// Fault → A's abort RST on the wire.
    public var wireAbortS: Double?
    /// The app's detection instant minus A's RST on the wire (timing fidelity), in ms.
    public var appMinusWireMs: Double?
    public var bytesOnWire: Int
    public var bytesAfterFault: Int
    public var pcap: String?
    public var kernel: String
    public var backend: String
    public var spec: TrialSpec
    public var tcpInfoAtFault: PeerTCPInfo?
    public var tcpInfoAtDetection: PeerTCPInfo?
    public var wire: WireSummary
    /// Time-ordered segments after the connection was set up, relative to the fault (seconds).
    public var timeline: [TimelineEntry]
    /// Key instants relative to the fault.
    public var marks: TrialMarks
    public var notes: [String]
    /// Which engine impaired R: "netem" or "nftables"; nil (key absent) when the trial needed none.
    public var impairmentEngine: String? = nil
    /// How the engine realised it (e.g. nftables `numgen random`, or a seeded drop pattern).
    public var impairmentForm: String? = nil
    /// The trial's seed for the impairment's random sequence (nil: unseeded).
    public var seed: UInt64? = nil
    /// Packets R saw and dropped per direction ("a2b", "b2a"), where the engine counts them.
    public var impairmentDrops: [String: ImpairmentDropCount]? = nil
    /// loss / partition: A's probes after the fault that got no reply (probe or reply dropped) …
    public var probesLost: Int? = nil
    /// … and those that did.
    public var probesAnswered: Int? = nil
    /// nat-idle: fault → the first poll that no longer found R's conntrack entry (nil: it never expired).
    public var conntrackExpiredS: Double? = nil
    /// nat-idle: the send after the silence reached B's server / its answer reached A's client.
    public var dataReachedB: Bool? = nil
    public var answerReceived: Bool? = nil
    /// nat-idle, broken: how A found out (or that it did not by the deadline).
    public var brokenHow: String? = nil
    /// nat-idle: the client's send → A's detection (negative: A found out before sending).
    public var foundOutAfterSendS: Double? = nil
    /// "real" or "virtual" (UML time-travel); nil in results from before clocks were recorded (real).
    public var clock: String? = nil
    /// CONFIG_HZ of the kernel that ran the trial, where known.
    public var kernelHz: Int? = nil
    /// Where that kernel came from: e.g. "lab kernel (linux-source-6.12 6.12.117-1~deb12u1)".
    public var kernelSource: String? = nil
    /// Each modelled kernel event (probes, retransmissions, abort): predicted window and measured
    /// instant, seconds after the expectation's anchor. nil (key absent) without the timer model.
    public var events: [EventCheck]? = nil
    /// Application peers (real programs): what ran, how it noticed, what it applied to its socket.
    public var app: AppTrialReport? = nil

    enum CodingKeys: String, CodingKey {
        case outcome, errno
        case detectedBy = "detected_by"
        case detectionLatencyS = "detection_latency_s"
        case sinceLastRxS = "since_last_rx_s"
        case sinceOldestUnackedS = "since_oldest_unacked_s"
        case sinceFirstUnansweredHeartbeatS = "since_first_unanswered_heartbeat_s"
        case expected
        case expectedS = "expected_s"
        case measuredS = "measured_s"
        case withinTolerance = "within_tolerance"
        case probesSent = "probes_sent"
        case probeReplies = "probe_replies"
        case rstSeen = "rst_seen"
        case wireAbortS = "wire_abort_s"
        case appMinusWireMs = "app_minus_wire_ms"
        case bytesOnWire = "bytes_on_wire"
        case bytesAfterFault = "bytes_after_fault"
        case pcap, kernel, backend, spec
        case tcpInfoAtFault = "tcp_info_at_fault"
        case tcpInfoAtDetection = "tcp_info_at_detection"
        case wire, timeline, marks, notes
        case impairmentEngine = "impairment_engine"
        case impairmentForm = "impairment_form"
        case seed
        case impairmentDrops = "impairment_drops"
        case probesLost = "probes_lost"
        case probesAnswered = "probes_answered"
        case conntrackExpiredS = "conntrack_expired_s"
        case dataReachedB = "data_reached_b"
        case answerReceived = "answer_received"
        case brokenHow = "broken_how"
        case foundOutAfterSendS = "found_out_after_send_s"
        case clock
        case kernelHz = "kernel_hz"
        case kernelSource = "kernel_source"
        case events
        case app
    }
}

/// One segment for ladders and charts.
public struct TimelineEntry: Codable, Sendable, Equatable {
    /// Seconds relative to the fault (negative: before it).
    public var t: Double
    public var direction: SegmentDirection
    public var kind: SegmentKind
    public var flags: String
    public var payload: Int
    /// ICMP messages only.
    public var icmpType: UInt8? = nil
    public var icmpCode: UInt8? = nil
}
