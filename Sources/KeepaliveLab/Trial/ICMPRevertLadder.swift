/// Unacknowledged data with TCP_USER_TIMEOUT while R answers for a dead B with ICMP
/// host-unreachable (RFC 6069). The kernel's part is deterministic, the network's is not: R rate
/// limits its ICMP errors (a token bucket, `icmp_ratelimit` 1 s with a burst of 6 per destination,
/// `inet_peer_xrlim_allow`), so which retransmissions get an answer depends on how many data
/// segments the stream sent into the dead host first. The model therefore takes the answers the
/// capture saw as its input, the way the keepalive model takes the last segment received, and
/// predicts each retransmission and the abort from the previous measured one:
/// - `tcp_retransmit_timer()`: retransmit, back off (RTO doubles), re-arm clamped to what is left of
///   U (`tcp_clamp_rto_to_user_timeout()`);
/// - an ICMP unreachable for that segment (`tcp_ld_RTO_revert()`, net/ipv4/tcp_ipv4.c): one backoff
///   step undone and the timer re-armed with the smaller RTO *unclamped* — which is why the abort
///   can come up to one RTO after U;
/// - at each firing `tcp_write_timeout()` aborts once the time since the first timer retransmission
///   reaches U.
/// Windows come from the timer wheel (each re-arm up to its level's granularity late, a tick early
/// at most) and from the initial RTO, which is TCP_RTO_MIN up to 50 ms more (srtt under a stream).
public enum ICMPRevertLadder {
    /// `retransmissions`: A's timer retransmissions, seconds after the first one (so [0, …]);
    /// `answered[i]`: R's ICMP unreachable answered retransmission i.
    public static func events(userTimeoutMs u: UInt32, hz: Int, retransmissions: [Double], answered: [Bool]) -> [ExpectedEvent] {
        guard hz > 0, let first = retransmissions.first, first == 0 else { return [] }
        let tick = 1 / Double(hz)
        let rtoMin = KernelConstants.rtoMinJiffies(hz: hz)
        let uSeconds = Double(u) / 1000
        var events = [ExpectedEvent(kind: .retransmission, index: 1, expected: 0, earliest: 0, latest: 0)]
        var backoff = 0
        var index = 0
        while index < retransmissions.count {
            let sentAt = retransmissions[index]
            backoff += 1
            if index < answered.count && answered[index] { backoff = max(0, backoff - 1) }
            // The next firing, over every initial RTO the stream's srtt allows.
            var earliest = Double.infinity, latest = -Double.infinity, nominal = 0.0
            for rto0 in rtoMin ... rtoMin + UInt64(max(1, hz / 20)) {
                let rto = min(rto0 << UInt64(backoff), UInt64(120 * hz))
                var delta = Double(rto) * tick
                if !(index < answered.count && answered[index]) { delta = min(delta, max(tick, uSeconds - sentAt)) }
                let jiffies = UInt64((delta / tick).rounded(.up))
                let late = Double(TimerWheel.maxLateness(delta: jiffies, hz: hz)) * tick + tick
                earliest = min(earliest, sentAt + delta - tick)
                latest = max(latest, sentAt + delta + late)
                if rto0 == rtoMin { nominal = sentAt + delta }
            }
            // The firing aborts when U has passed since the first retransmission, else retransmits.
            if earliest >= uSeconds {
                events.append(ExpectedEvent(kind: .abort, index: 1, expected: nominal, earliest: earliest, latest: latest))
                return events
            }
            if latest >= uSeconds {
                // Either way, depending on where in its window the timer lands.
                events.append(ExpectedEvent(kind: .retransmission, index: index + 2, expected: nominal, earliest: earliest,
                                            latest: latest, required: false))
                if index + 1 >= retransmissions.count {
                    events.append(ExpectedEvent(kind: .abort, index: 1, expected: max(nominal, uSeconds), earliest: earliest,
                                                latest: latest))
                    return events
                }
            } else {
                events.append(ExpectedEvent(kind: .retransmission, index: index + 2, expected: nominal, earliest: earliest,
                                            latest: latest))
            }
            index += 1
        }
        return events
    }
}
