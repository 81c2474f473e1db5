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

    /// Timers never fire early and may be late by up to 12.5 % (timer wheel granularity); 4 ms
    /// covers capture and scheduling noise (packetdrill's default tolerance).
    public static func tolerance(for expected: Double) -> Double { 0.004 + 0.125 * expected }

    public func accepts(_ measured: Double) -> Bool {
        measured >= seconds - 0.004 - Self.coarseTick && measured <= seconds + Self.tolerance(for: seconds) + Self.coarseTick
    }

    /// One tick of a kernel whose clock is coarser than the 4 ms above covers (UML: HZ=100, 10 ms):
    /// the kernel counts the idle time in ticks, so a timer may fire up to a tick early as seen
    /// from packet timestamps (and a tick late beyond the wheel's own slack). 0 on the host.
    static var coarseTick: Double {
        guard let hz = ExecutionEnvironment.kernelHz, hz > 0, hz < 250 else { return 0 }
        return 1.0 / Double(hz)
    }

    /// Keepalive on an idle connection with a silent peer.
    public static func keepalive(_ k: KeepaliveSetting, userTimeoutMs: UInt32?) -> Expectation {
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
    public static func keepaliveAfterReboot(_ k: KeepaliveSetting, backAfter: Double) -> Expectation {
        let firstProbe = Double(k.idle)
        let index = max(0, ((backAfter - firstProbe) / Double(k.interval)).rounded(.up))
        guard index < Double(k.count) else { return keepalive(k, userTimeoutMs: nil) }
        return Expectation(anchor: .lastReceived, seconds: firstProbe + index * Double(k.interval),
                           formula: "first probe after B is back: idle + \(Int(index)) × interval")
    }

    /// Retransmissions of unacknowledged data, capped by TCP_USER_TIMEOUT. The kernel counts from
    /// the first timer-driven retransmission (retrans_stamp); a tail-loss probe before it does not
    /// start the clock.
    public static func userTimeout(ms: UInt32) -> Expectation {
        Expectation(anchor: .firstTimeoutRetransmission, seconds: Double(ms) / 1000,
                    formula: "TCP_USER_TIMEOUT = \(ms) ms after A's first timer-driven retransmission")
    }

    public static func heartbeat(_ h: HeartbeatSetting) -> Expectation {
        Expectation(anchor: .firstUnansweredHeartbeat, seconds: h.timeout,
                    formula: "heartbeat timeout \(h.timeout) s after the first unanswered heartbeat")
    }
}
