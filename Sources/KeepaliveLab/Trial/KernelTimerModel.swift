/// One event the kernel's timers should produce, in seconds after the expectation's anchor.
public struct ExpectedEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case probe
        case tailLossProbe = "tail_loss_probe"
        case retransmission
        /// The connection is given up (keepalive: A's RST and ETIMEDOUT) or reset (ECONNRESET).
        case abort
    }

    public var kind: Kind
    /// 1-based per kind (probe 1 is the first keepalive probe).
    public var index: Int
    /// The formula's instant, without timer-wheel lateness.
    public var expected: Double
    public var earliest: Double
    public var latest: Double
    /// False when the model cannot tell whether the event happens (a probe that may instead be
    /// the abort): a measurement is still checked, a missing one is not a failure.
    public var required: Bool = true
    /// Seconds after the previous event of the same timer chain (its measured instant): each
    /// re-arm starts from the jiffy the previous timer actually ran at. nil for the first event.
    public var stepEarliest: Double? = nil
    public var stepLatest: Double? = nil

    enum CodingKeys: String, CodingKey {
        case kind, index, expected, earliest, latest, required
        case stepEarliest = "step_earliest"
        case stepLatest = "step_latest"
    }

    /// What a capture or a clock read adds on either side: pcap timestamps are converted from
    /// CLOCK_REALTIME, and the app learns of the abort after the kernel's softirq.
    public static let measurementSlack = 0.004

    public func contains(_ measured: Double) -> Bool {
        measured >= earliest - Self.measurementSlack && measured <= latest + Self.measurementSlack
    }

    /// A step is the difference of two measured instants, each off by up to `measurementSlack`
    /// (on a loaded host a probe reaches R's capture a few ms after its timer ran: 4.2 and 4.5 ms
    /// short steps were seen with 4 shard processes and a compiler sharing 2 CPUs).
    public static let stepSlack = 2 * measurementSlack

    /// The re-arm from the previous event, measured, is inside its step window (true without one).
    public func stepContains(sincePrevious gap: Double) -> Bool {
        guard let low = stepEarliest, let high = stepLatest else { return true }
        return gap >= low - Self.stepSlack && gap <= high + Self.stepSlack
    }

    func withStep(_ step: ClosedRange<Double>) -> ExpectedEvent {
        var e = self
        e.stepEarliest = step.lowerBound
        e.stepLatest = step.upperBound
        return e
    }
}

/// The kernel's TCP timers (net/ipv4/tcp_timer.c) on the timer wheel, event by event.
public enum KernelTimerModel {
    /// How many jiffies after its bucket a timer handler may run (and re-arm): 0 in a
    /// virtual-time kernel (UML time-travel), 1 on a real machine.
    public static let hostJitter: UInt64 = 1

    /// `tcp_keepalive_timer()` with a silent peer. The first probe goes out at the first firing
    /// with `keepalive_time_elapsed() ≥ keepalive_time_when()`; every timer of that chain was
    /// armed for at most `idle` (setsockopt, `tcp_finish_connect`, or the remainder after an
    /// earlier firing), so it fires no later than `idle` + one bucket of idle's level, and never
    /// before `idle` whole jiffies after the last reception's jiffy. Each probe re-arms for
    /// `interval` from the jiffy it ran at. Without TCP_USER_TIMEOUT the firing after the
    /// count-th probe aborts; with U > 0, the first firing with elapsed ≥ U (count ignored).
    public static func keepalive(idle: Int, interval: Int, count: Int, userTimeoutMs: UInt32?,
                                 hz: Int, jitter: UInt64 = hostJitter) -> [ExpectedEvent] {
        let idleJ = UInt64(idle * hz), intervalJ = UInt64(interval * hz)
        var chain = TimerChain(earliest: idleJ, latest: idleJ + TimerWheel.maxLateness(delta: idleJ, hz: hz),
                               alignmentShift: 0, hz: hz, jitter: jitter)
        var events: [ExpectedEvent] = []
        func nominal(_ k: Int) -> Double { Double(idle + (k - 1) * interval) }
        func event(_ kind: ExpectedEvent.Kind, _ index: Int, _ expected: Double, _ window: ClosedRange<Double>,
                   required: Bool = true, step: ClosedRange<Double>? = nil) -> ExpectedEvent {
            ExpectedEvent(kind: kind, index: index, expected: expected, earliest: window.lowerBound,
                          latest: window.upperBound, required: required,
                          stepEarliest: step?.lowerBound, stepLatest: step?.upperBound)
        }
        guard let u = userTimeoutMs, u > 0 else {
            var step: ClosedRange<Double>? = nil
            for k in 1...max(count, 1) {
                events.append(event(.probe, k, nominal(k), chain.seconds, step: step))
                step = chain.step(delta: intervalJ)
                chain = chain.rearmed(delta: intervalJ)
            }
            events.append(event(.abort, 1, Double(idle + count * interval), chain.seconds, step: step))
            return events
        }
        // Abort needs elapsed (jiffies since the last reception) ≥ msecs_to_jiffies(U) and at
        // least one probe out: the first firing is always a probe.
        let uJ = TimerWheel.msecsToJiffies(UInt64(u), hz: hz)
        let uSeconds = Double(u) / 1000
        let probes = max(1.0, ((uSeconds - Double(idle)) / Double(interval)).rounded(.up))
        let abortNominal = Double(idle) + Double(interval) * probes
        events.append(event(.probe, 1, nominal(1), chain.seconds))
        var k = 1
        while k < 100_000 {
            let step = chain.step(delta: intervalJ)
            chain = chain.rearmed(delta: intervalJ)
            if chain.earliest >= uJ {
                events.append(event(.abort, 1, abortNominal, chain.seconds, step: step))
                return events
            }
            k += 1
            if chain.latest + jitter < uJ {
                events.append(event(.probe, k, nominal(k), chain.seconds, step: step))
                continue
            }
            // Either the abort here or one more probe here and the abort at the next firing.
            events.append(event(.probe, k, nominal(k), chain.seconds, required: false, step: step))
            let next = chain.rearmed(delta: intervalJ)
            events.append(event(.abort, 1, abortNominal, chain.seconds.lowerBound ... next.seconds.upperBound))
            return events
        }
        return events
    }

    /// The keepalive probe a rebooted peer answers with RST: the first probe after it is back,
    /// `backAfter` seconds after the last reception. With lateness the model may not know which
    /// probe that is: the abort window spans every candidate.
    public static func keepaliveAfterReboot(idle: Int, interval: Int, count: Int, backAfter: Double,
                                            hz: Int, jitter: UInt64 = hostJitter) -> [ExpectedEvent]? {
        let all = keepalive(idle: idle, interval: interval, count: count, userTimeoutMs: nil, hz: hz, jitter: jitter)
        let probes = all.filter { $0.kind == .probe }
        guard let first = probes.firstIndex(where: { $0.latest >= backAfter }) else { return nil }
        let last = probes.firstIndex(where: { $0.earliest >= backAfter }) ?? probes.count - 1
        let nominalIndex = max(0, ((backAfter - Double(idle)) / Double(interval)).rounded(.up))
        guard Int(nominalIndex) < count else { return nil }
        var events = Array(probes[..<first])
        for i in first...last { var p = probes[i]; p.required = i == first; events.append(p) }
        events.append(ExpectedEvent(kind: .abort, index: 1, expected: Double(idle) + nominalIndex * Double(interval),
                                    earliest: probes[first].earliest, latest: probes[last].latest))
        return events
    }

    /// `tcp_model_timeout()`: how long `tcp_retries2` (or retries1) retransmissions take with an
    /// RTO starting at `rtoBase` jiffies and doubling up to TCP_RTO_MAX, in milliseconds.
    public static func modelTimeoutMs(boundary: Int, rtoBase: UInt64, hz: Int) -> UInt64 {
        let rtoMax = UInt64(120 * hz)
        let linearBackoffThresh = UInt64((rtoMax / rtoBase).bitWidth - 1 - (rtoMax / rtoBase).leadingZeroBitCount)  // ilog2
        let b = UInt64(boundary)
        let timeout = b <= linearBackoffThresh
            ? ((2 << b) - 1) * rtoBase
            : ((2 << linearBackoffThresh) - 1) * rtoBase + (b - linearBackoffThresh) * rtoMax
        return TimerWheel.jiffiesToMsecs(timeout, hz: hz)
    }

    /// Unacknowledged data to a silent peer, without TCP_USER_TIMEOUT, from the original send:
    /// a tail-loss probe after PTO (2·srtt + TCP_RTO_MIN for one packet out, capped by the RTO), then
    /// `tcp_retransmit_timer()` every RTO, doubling (capped at TCP_RTO_MAX = 120 s). The first
    /// timer retransmission sets retrans_stamp (`tcp_retransmit_skb()`); `tcp_write_timeout()` runs
    /// at each firing, before retransmitting, and aborts once `retransmits_timed_out()`: the
    /// milliseconds since retrans_stamp reach `tcp_model_timeout(tcp_retries2, TCP_RTO_MIN)`.
    /// The initial RTO is `usecs_to_jiffies(srtt + rttvar)` = TCP_RTO_MIN, or one jiffy more when
    /// the RTT is not exactly 0 (a real veth): both are modelled and the windows joined.
    ///
    /// Not modelled: RFC 6069 (`tcp_ld_RTO_revert()`, net/ipv4/tcp_ipv4.c) — an ICMP unreachable
    /// for the head of the retransmission queue undoes one backoff step and re-arms with the
    /// smaller RTO, so with ICMP errors (crash-icmp) retransmissions come faster than this ladder
    /// (the abort check is unchanged, still from retrans_stamp).
    public static func retransmissions(retries2: Int = KernelConstants.tcpRetries2Default, hz: Int, tailLossProbe: Bool = true,
                                       jitter: UInt64 = hostJitter) -> [ExpectedEvent] {
        let rtoMin = KernelConstants.rtoMinJiffies(hz: hz)
        let timeoutMs = modelTimeoutMs(boundary: retries2, rtoBase: rtoMin, hz: hz)
        let runs = [rtoMin, rtoMin + 1].map {
            ladder(initialRto: $0, timeoutMs: timeoutMs, userTimeoutMs: nil, tailLossProbe: tailLossProbe, hz: hz, jitter: jitter)
        }
        return joined(runs)
    }

    /// The same ladder measured from the first timer retransmission (retrans_stamp) — what a trial
    /// can anchor on when the client kept sending after the fault (a stream re-arms the probe and
    /// retransmission timers with every new segment, so the original send is no anchor). The
    /// initial RTO is `srtt + rttvar` ≥ TCP_RTO_MIN: every RTO up to TCP_RTO_MIN + 50 ms is
    /// modelled, as for TCP_USER_TIMEOUT.
    public static func retransmissionsFromFirstRetransmission(retries2: Int = KernelConstants.tcpRetries2Default, hz: Int,
                                                              jitter: UInt64 = hostJitter) -> [ExpectedEvent] {
        let rtoMin = KernelConstants.rtoMinJiffies(hz: hz)
        let timeoutMs = modelTimeoutMs(boundary: retries2, rtoBase: rtoMin, hz: hz)
        let runs = (rtoMin ... rtoMin + UInt64(max(1, hz / 20))).map {
            ladder(initialRto: $0, timeoutMs: timeoutMs, userTimeoutMs: nil, tailLossProbe: false, hz: hz, jitter: jitter,
                   fromFirstRetransmission: true)
        }
        return joined(runs)
    }

    /// Unacknowledged data with TCP_USER_TIMEOUT = U, from the first timer retransmission (the
    /// kernel's retrans_stamp): each re-arm is `tcp_clamp_rto_to_user_timeout()` — the RTO, or
    /// the time left until U if shorter — and the firing with elapsed ≥ U aborts. The RTO at that
    /// point is `srtt + rttvar` ≥ TCP_RTO_MIN; under bulk data on a veth srtt reaches a few ms
    /// (measured here: 208 ms at HZ=250), so by default every RTO up to TCP_RTO_MIN + 50 ms is
    /// modelled (pass `initialRto` in jiffies when TCP_INFO told it).
    public static func userTimeout(ms: UInt32, hz: Int, initialRto: ClosedRange<UInt64>? = nil,
                                   jitter: UInt64 = hostJitter) -> [ExpectedEvent] {
        let rtoMin = KernelConstants.rtoMinJiffies(hz: hz)
        let rtos = initialRto ?? rtoMin ... rtoMin + UInt64(max(1, hz / 20))
        let runs = rtos.map {
            ladder(initialRto: $0, timeoutMs: UInt64(ms), userTimeoutMs: UInt64(ms), tailLossProbe: false,
                   hz: hz, jitter: jitter, fromFirstRetransmission: true)
        }
        return joined(runs)
    }

    /// Event by event, the widest window of several model runs (same kinds and indices).
    static func joined(_ runs: [[ExpectedEvent]]) -> [ExpectedEvent] {
        var out: [ExpectedEvent] = []
        for run in runs {
            for e in run {
                if let i = out.firstIndex(where: { $0.kind == e.kind && $0.index == e.index }) {
                    out[i].earliest = min(out[i].earliest, e.earliest)
                    out[i].latest = max(out[i].latest, e.latest)
                    out[i].required = out[i].required && e.required
                } else {
                    out.append(e)
                }
            }
        }
        return out.sorted { $0.earliest < $1.earliest }
    }

    /// `tcp_retransmit_timer()` firing by firing. With `fromFirstRetransmission` the anchor is the
    /// first timer retransmission itself (retransmission 1 at 0); else the original send.
    static func ladder(initialRto: UInt64, timeoutMs: UInt64, userTimeoutMs: UInt64?, tailLossProbe: Bool,
                       hz: Int, jitter: UInt64, fromFirstRetransmission: Bool = false) -> [ExpectedEvent] {
        let rtoMax = UInt64(120 * hz)
        let tickMs = 1000 / Double(hz)
        var events: [ExpectedEvent] = []
        var rto = initialRto
        var nominal = 0.0
        var chain: TimerChain
        if fromFirstRetransmission {
            chain = TimerChain(earliest: 0, latest: 0, alignmentShift: 0, hz: hz, jitter: jitter)
        } else {
            var first = TimerChain.armed(delta: rto, hz: hz, jitter: jitter)
            if tailLossProbe {
                nominal += Double(rto) / Double(hz)
                events.append(ExpectedEvent(kind: .tailLossProbe, index: 1, expected: nominal,
                                            earliest: first.seconds.lowerBound, latest: first.seconds.upperBound))
                first = first.rearmed(delta: rto)
            }
            chain = first
        }
        nominal += fromFirstRetransmission ? 0 : Double(rto) / Double(hz)
        events.append(ExpectedEvent(kind: .retransmission, index: 1, expected: nominal,
                                    earliest: fromFirstRetransmission ? 0 : chain.seconds.lowerBound,
                                    latest: fromFirstRetransmission ? 0 : chain.seconds.upperBound))
        // Jiffies since retrans_stamp (the first timer retransmission, the abort clock's origin),
        // aligned like that firing.
        var since = TimerChain(earliest: 0, latest: 0, alignmentShift: chain.alignmentShift, hz: hz, jitter: jitter)
        var index = 1
        var nominalSince = 0.0
        while index < 1000 {
            rto = min(rto << 1, rtoMax)
            var delta = rto ... rto
            if let u = userTimeoutMs {
                // tcp_clamp_rto_to_user_timeout(): min(RTO, msecs_to_jiffies(U − elapsed)).
                let elapsedLow = UInt64(max(0, Double(since.earliest) * tickMs - tickMs))
                let elapsedHigh = UInt64(Double(since.latest + jitter) * tickMs + tickMs)
                let leftHigh = u > elapsedLow ? TimerWheel.msecsToJiffies(u - elapsedLow, hz: hz) : 1
                let leftLow = u > elapsedHigh ? TimerWheel.msecsToJiffies(u - elapsedHigh, hz: hz) : 1
                delta = max(1, min(rto, leftLow)) ... max(1, min(rto, leftHigh))
            }
            let next = chain.rearmed(delta: delta)
            since = since.rearmed(delta: delta)
            nominalSince += Double(delta.upperBound) / Double(hz)
            let elapsedLow = Double(since.earliest) * tickMs - tickMs
            let elapsedHigh = Double(since.latest + jitter) * tickMs + tickMs
            let window = fromFirstRetransmission ? since.seconds : next.seconds
            let nominalHere = fromFirstRetransmission ? nominalSince : nominal + nominalSince
            chain = next
            if elapsedLow >= Double(timeoutMs) {
                let abortNominal = (fromFirstRetransmission ? 0 : nominal) + Double(timeoutMs) / 1000
                events.append(ExpectedEvent(kind: .abort, index: 1, expected: abortNominal,
                                            earliest: window.lowerBound, latest: window.upperBound))
                return events
            }
            index += 1
            if elapsedHigh < Double(timeoutMs) {
                events.append(ExpectedEvent(kind: .retransmission, index: index, expected: nominalHere,
                                            earliest: window.lowerBound, latest: window.upperBound))
                continue
            }
            // This firing may abort, or retransmit once more and abort at the next one.
            events.append(ExpectedEvent(kind: .retransmission, index: index, expected: nominalHere,
                                        earliest: window.lowerBound, latest: window.upperBound, required: false))
            var after = min(rto << 1, rtoMax) ... min(rto << 1, rtoMax)
            if let u = userTimeoutMs {
                let left = u > UInt64(max(0, elapsedLow)) ? TimerWheel.msecsToJiffies(u - UInt64(max(0, elapsedLow)), hz: hz) : 1
                after = 1 ... max(1, min(rto << 1, left))
            }
            let later = (fromFirstRetransmission ? since : next).rearmed(delta: after)
            let abortNominal = (fromFirstRetransmission ? 0 : nominal) + Double(timeoutMs) / 1000
            events.append(ExpectedEvent(kind: .abort, index: 1, expected: abortNominal,
                                        earliest: window.lowerBound, latest: later.seconds.upperBound))
            return events
        }
        return events
    }
}
