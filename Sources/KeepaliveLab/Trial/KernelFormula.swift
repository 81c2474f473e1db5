/// When the kernel should declare a silent peer dead (net/ipv4/tcp_timer.c), measured from an
/// anchor: the last segment A received (keepalive), or the oldest unacknowledged data
/// (retransmission with TCP_USER_TIMEOUT), or the first unanswered heartbeat.
public struct Expectation: Codable, Sendable, Equatable {
    public enum Anchor: String, Codable, Sendable {
        case lastReceived = "last_rx"
        case oldestUnacked = "oldest_unacked"
        /// A's first retransmission by the retransmission timer (not a tail-loss probe): where the
        /// kernel starts the TCP_USER_TIMEOUT clock for unacknowledged data.
        case firstTimeoutRetransmission = "first_rto_retransmission"
        case firstUnansweredHeartbeat = "first_unanswered_heartbeat"
    }

    public var anchor: Anchor
    /// Seconds after the anchor.
    public var seconds: Double
    /// How the figure was derived, for reports.
    public var formula: String
    /// Event by event from the timer model (`KernelTimerModel`), when the kernel's HZ is known:
    /// each probe / retransmission and the abort with its window. nil (key absent) otherwise.
    public var events: [ExpectedEvent]? = nil
    /// The CONFIG_HZ the events were computed for.
    public var hz: Int? = nil

    /// The abort's window from the timer model, when there is one.
    public var abortEvent: ExpectedEvent? { events?.last(where: { $0.kind == .abort }) }

    /// Timers never fire early and may be late by up to 12.5 % (timer wheel granularity); 4 ms
    /// covers capture and scheduling noise (packetdrill's default tolerance).
    public static func tolerance(for expected: Double) -> Double { 0.004 + 0.125 * expected }

    /// With the timer model: inside the abort's window. Without (HZ unknown, heartbeat): the
    /// formula's figure with 4 ms + 12.5 % (and a coarse tick either way).
    public func accepts(_ measured: Double) -> Bool {
        if let abort = abortEvent { return abort.contains(measured) }
        return measured >= seconds - 0.004 - coarseTick && measured <= seconds + Self.tolerance(for: seconds) + coarseTick
    }

    /// One tick of a kernel whose clock is coarser than the 4 ms above covers (UML: HZ=100, 10 ms):
    /// the kernel counts the idle time in ticks, so a timer may fire up to a tick early as seen
    /// from packet timestamps (and a tick late beyond the wheel's own slack). From the HZ the
    /// expectation was made for, never from the machine reading it; 0 without one.
    var coarseTick: Double {
        guard let hz, hz > 0, hz < 250 else { return 0 }
        return 1.0 / Double(hz)
    }

    /// Keepalive on an idle connection with a silent peer.
    public static func keepalive(_ k: KeepaliveSetting, userTimeoutMs: UInt32?, hz: Int?) -> Expectation {
        var e = keepaliveFormula(k, userTimeoutMs: userTimeoutMs)
        if let hz, hz > 0 {
            e.hz = hz
            e.events = KernelTimerModel.keepalive(idle: k.idle, interval: k.interval, count: k.count,
                                                  userTimeoutMs: userTimeoutMs, hz: hz)
        }
        return e
    }

    static func keepaliveFormula(_ k: KeepaliveSetting, userTimeoutMs: UInt32?) -> Expectation {
        if let u = userTimeoutMs, u > 0 {
            // With TCP_USER_TIMEOUT the probe count is ignored: abort at the first probe timer
            // after U has elapsed since the last reception.
            let uSeconds = Double(u) / 1000
            let probes = max(1.0, ((uSeconds - Double(k.idle)) / Double(k.interval)).rounded(.up))
            return Expectation(anchor: .lastReceived, seconds: Double(k.idle) + Double(k.interval) * probes,
                               formula: "idle + interval × max(1, ⌈(U − idle) / interval⌉) = \(k.idle) + \(k.interval) × \(Int(probes))")
        }
        return Expectation(anchor: .lastReceived, seconds: Double(k.idle + k.interval * k.count),
                           formula: "idle + count × interval = \(k.idle) + \(k.count) × \(k.interval)")
    }

    /// A rebooted peer answers the first probe after it is back with RST.
    /// `backAfter` is the time from the last reception to B's return.
    public static func keepaliveAfterReboot(_ k: KeepaliveSetting, backAfter: Double, hz: Int?) -> Expectation {
        let firstProbe = Double(k.idle)
        let index = max(0, ((backAfter - firstProbe) / Double(k.interval)).rounded(.up))
        guard index < Double(k.count) else { return keepalive(k, userTimeoutMs: nil, hz: hz) }
        var e = Expectation(anchor: .lastReceived, seconds: firstProbe + index * Double(k.interval),
                            formula: "first probe after B is back: idle + \(Int(index)) × interval")
        if let hz, hz > 0, let events = KernelTimerModel.keepaliveAfterReboot(
            idle: k.idle, interval: k.interval, count: k.count, backAfter: backAfter, hz: hz) {
            e.hz = hz
            e.events = events
        }
        return e
    }

    /// Retransmissions of unacknowledged data, capped by TCP_USER_TIMEOUT. The kernel counts from
    /// the first timer-driven retransmission (retrans_stamp); a tail-loss probe before it does not
    /// start the clock.
    public static func userTimeout(ms: UInt32, hz: Int?) -> Expectation {
        var e = Expectation(anchor: .firstTimeoutRetransmission, seconds: Double(ms) / 1000,
                            formula: "TCP_USER_TIMEOUT = \(ms) ms after A's first timer-driven retransmission")
        if let hz, hz > 0 {
            e.hz = hz
            e.events = KernelTimerModel.userTimeout(ms: ms, hz: hz)
        }
        return e
    }

    /// Unacknowledged data to a silent peer without TCP_USER_TIMEOUT: tcp_retries2 retransmissions
    /// (`tcp_model_timeout()`), from the original send. Needs HZ: the ladder is the model itself.
    /// From A's first timer-driven retransmission (retrans_stamp, the clock tcp_write_timeout()
    /// checks): a stream into a dead peer keeps sending after the fault, so its first unacknowledged
    /// segment is no anchor.
    public static func retransmissionTimeoutFromFirstRetransmission(retries2: Int = KernelConstants.tcpRetries2Default, hz: Int) -> Expectation {
        let ms = KernelTimerModel.modelTimeoutMs(boundary: retries2, rtoBase: KernelConstants.rtoMinJiffies(hz: hz), hz: hz)
        let events = KernelTimerModel.retransmissionsFromFirstRetransmission(retries2: retries2, hz: hz)
        return Expectation(anchor: .firstTimeoutRetransmission, seconds: events.last?.expected ?? Double(ms) / 1000,
                           formula: "tcp_retries2 = \(retries2): tcp_model_timeout = \(ms) ms after A's first timer-driven retransmission, "
                               + "checked when the retransmission timer fires",
                           events: events, hz: hz)
    }

    public static func retransmissionTimeout(retries2: Int = KernelConstants.tcpRetries2Default, hz: Int) -> Expectation {
        let rtoMin = KernelConstants.rtoMinJiffies(hz: hz)
        let ms = KernelTimerModel.modelTimeoutMs(boundary: retries2, rtoBase: rtoMin, hz: hz)
        let events = KernelTimerModel.retransmissions(retries2: retries2, hz: hz)
        return Expectation(anchor: .oldestUnacked, seconds: events.last?.expected ?? Double(ms) / 1000,
                           formula: "tcp_retries2 = \(retries2): tcp_model_timeout = \(ms) ms after the first timer retransmission",
                           events: events, hz: hz)
    }

    /// `hz`: the kernel's, for the coarse tick its poll timeouts round to (no per-event model).
    public static func heartbeat(_ h: HeartbeatSetting, hz: Int? = nil) -> Expectation {
        Expectation(anchor: .firstUnansweredHeartbeat, seconds: h.timeout,
                    formula: "heartbeat timeout \(h.timeout) s after the first unanswered heartbeat", hz: hz)
    }
}
