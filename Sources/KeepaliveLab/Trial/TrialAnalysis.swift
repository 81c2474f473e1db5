import KeepaliveNet

/// Turns what a trial recorded (client events, classified wire segments, instants) into a result.
struct TrialAnalysis {
    let spec: TrialSpec
    let tFault: Double
    let tBack: Double?
    let detection: PeerEvent?
    let clientEvents: [PeerEvent]
    let segments: [ClassifiedSegment]
    /// What R did (impairment engine, NAT state) for the network faults.
    var network = NetworkFaultReport()
    /// CONFIG_HZ of the kernel under test: the timer model's one machine input, read here once
    /// (the model itself takes it as an argument; nil: unknown, formulas without per-event windows).
    var hz: Int? = KernelHz.current

    var tDetect: Double? { detection?.t }

    /// The last segment A received from B before it learned the connection was gone. RSTs are left
    /// out: a rebooted B's RST is the detection itself, not the start of the silence.
    var lastReceived: Double? {
        let before = tDetect ?? .infinity
        return segments.last(where: { $0.direction == .bToA && $0.kind != .rst && $0.kind != .icmp && $0.t < before })?.t
    }

    /// First transmission of the oldest A→B data B never acknowledged — or, when B's window was
    /// closed and everything sent was acknowledged, A's first zero-window probe (the kernel's
    /// TCP_USER_TIMEOUT clock then starts there).
    var oldestUnacked: Double? {
        let before = tDetect ?? .infinity
        guard let lastAck = segments.last(where: { $0.direction == .bToA && $0.flags.contains("A") && $0.t < before })?.ack
        else { return nil }
        let unacked = segments.first(where: { seg in
            seg.direction == .aToB && seg.payloadLength > 1 && seg.t < before
                && Int32(bitPattern: (seg.seq &+ UInt32(seg.payloadLength)) &- lastAck) > 0
        })?.t
        let silenceStart = lastReceived ?? -.infinity
        return unacked ?? segments.first(where: {
            $0.direction == .aToB && $0.kind == .windowProbe && $0.t > silenceStart && $0.t < before
        })?.t
    }

    /// A's first retransmission of unacknowledged data by the retransmission timer. A tail-loss
    /// probe comes sooner than TCP_RTO_MIN (200 ms) after the original; the timer never does. With
    /// B's window closed (no unacknowledged data) the first zero-window probe plays this part.
    var firstTimeoutRetransmission: Double? {
        let before = tDetect ?? .infinity
        let sent = segments.filter { $0.direction == .aToB && $0.kind == .data }
        let retransmission = segments.first { seg in
            guard seg.direction == .aToB, seg.kind == .retransmission, seg.payloadLength > 0, seg.t < before,
                  let original = sent.first(where: { Int32(bitPattern: seg.seq &- $0.seq) >= 0
                      && Int32(bitPattern: seg.seq &- ($0.seq &+ UInt32($0.payloadLength))) < 0 })
            else { return false }
            return seg.t - original.t >= KernelConstants.rtoMinSeconds
        }?.t
        let silenceStart = lastReceived ?? -.infinity
        return retransmission ?? segments.first(where: {
            $0.direction == .aToB && $0.kind == .windowProbe && $0.t > silenceStart && $0.t < before
        })?.t
    }

    /// The first heartbeat the server never answered.
    var firstUnansweredHeartbeat: Double? {
        let answered = Set(clientEvents.filter { $0.kind == .heartbeatReply }.compactMap(\.seq))
        return clientEvents.first(where: { $0.kind == .heartbeatSent && !answered.contains($0.seq ?? .max) })?.t
    }

    func instant(of anchor: Expectation.Anchor) -> Double? {
        switch anchor {
        case .lastReceived: return lastReceived
        case .oldestUnacked: return oldestUnacked
        case .firstTimeoutRetransmission: return firstTimeoutRetransmission
        case .firstUnansweredHeartbeat: return firstUnansweredHeartbeat
        }
    }

    /// What the kernel (or the heartbeat) should do, from the policy, workload and fault: every
    /// mechanism that applies gives a predicted instant, and the earliest one wins.
    var expectation: Expectation? {
        let candidates = spec.fault.kind.expectations(self)
        return candidates.min { a, b in
            (instant(of: a.anchor) ?? .infinity) + a.seconds < (instant(of: b.anchor) ?? .infinity) + b.seconds
        }
    }

    /// RFC 6069 with TCP_USER_TIMEOUT (ICMPRevertLadder): A's timer retransmissions from the first
    /// one, and which of them R answered with ICMP unreachable (within 20 ms: R answers at once).
    func icmpRevertExpectation(userTimeoutMs u: UInt32, hz: Int, firstRetransmission first: Double) -> Expectation {
        let end = tDetect ?? .infinity
        let sent = segments.filter { $0.direction == .aToB && $0.kind == .retransmission && $0.t >= first && $0.t < end }.map(\.t)
        let icmp = segments.filter { $0.kind == .icmp && $0.t >= first }.map(\.t)
        let answered = sent.map { t in icmp.contains { $0 >= t && $0 - t <= 0.02 } }
        let events = ICMPRevertLadder.events(userTimeoutMs: u, hz: hz, retransmissions: sent.map { $0 - first }, answered: answered)
        let abort = events.last(where: { $0.kind == .abort })
        return Expectation(anchor: .firstTimeoutRetransmission, seconds: abort?.expected ?? Double(u) / 1000,
                           formula: "TCP_USER_TIMEOUT = \(u) ms after A's first timer-driven retransmission, each ICMP "
                               + "unreachable undoing one RTO backoff (RFC 6069, re-armed unclamped); \(answered.filter { $0 }.count) "
                               + "of \(answered.count) retransmissions answered",
                           events: events, hz: hz)
    }

    var outcome: TrialResult.Outcome {
        if case .natIdle = spec.fault { return network.answerAt != nil ? .survived : .broken }
        switch (detection != nil, spec.fault.peerIsDead) {
        case (true, true): return .detected
        case (true, false): return .falsePositive
        case (false, true): return .missed
        case (false, false): return .survived
        }
    }

    var detectedBy: String? {
        guard let detection else { return nil }
        switch detection.kind {
        case .heartbeatTimeout: return "heartbeat"
        case .error: return detection.errnoName
        default: return detection.detail ?? detection.kind.rawValue
        }
    }

    func result(pcap: String?, atFault: PeerTCPInfo?, atDetection: PeerTCPInfo?, notes: [String],
                backend: String = "host") -> TrialResult {
        let all = WireSummary(segments)
        let afterFault = WireSummary(segments, after: tFault)
        let wireAbort = afterFault.rstFromA.first
        let expected = expectation
        let measured = expected.flatMap { e in instant(of: e.anchor).flatMap { a in tDetect.map { $0 - a } } }
        let eventChecks = self.eventChecks(expected)
        var notes = notes
        if backend == "uml", let note = ExecutionEnvironment.timingNote { notes.append(note) }
        let icmp = afterFault.count(.icmp)
        if icmp > 0 {
            notes.append("R sent \(icmp) ICMP error(s) to A after the fault")
        }
        if spec.fault == .freeze, afterFault.probeReplies > 0 {
            notes.append("B's kernel answered \(afterFault.probeReplies) keepalive probe(s) while the server process was stopped")
        }
        func sinceFault(_ t: Double?) -> Double? { t.map { $0 - tFault } }
        var marks = TrialMarks()
        marks.fault = 0
        marks.connected = sinceFault(clientEvents.first(where: { $0.kind == .connected })?.t)
        marks.ready = sinceFault(clientEvents.first(where: { $0.kind == .ready })?.t)
        marks.lastReceived = sinceFault(lastReceived)
        marks.oldestUnacked = sinceFault(oldestUnacked)
        marks.firstTimeoutRetransmission = sinceFault(firstTimeoutRetransmission)
        if spec.clientPolicy.heartbeat != nil { marks.firstUnansweredHeartbeat = sinceFault(firstUnansweredHeartbeat) }
        marks.detection = sinceFault(tDetect)
        marks.wireAbort = sinceFault(wireAbort)
        marks.bBack = sinceFault(tBack)
        marks.deadline = sinceFault(tFault + spec.deadline)
        var result = TrialResult(
            outcome: outcome,
            errno: detection?.errnoName,
            detectedBy: detectedBy,
            detectionLatencyS: tDetect.map { $0 - tFault },
            sinceLastRxS: tDetect.flatMap { d in lastReceived.map { d - $0 } },
            sinceOldestUnackedS: tDetect.flatMap { d in oldestUnacked.map { d - $0 } },
            sinceFirstUnansweredHeartbeatS: spec.clientPolicy.heartbeat == nil ? nil
                : tDetect.flatMap { d in firstUnansweredHeartbeat.map { d - $0 } },
            expected: expected,
            expectedS: expected?.seconds,
            measuredS: measured,
            withinTolerance: eventChecks.map { $0.allSatisfy(\.inside) }
                ?? expected.map { e in measured.map(e.accepts) ?? false },
            probesSent: afterFault.probesSent,
            probeReplies: afterFault.probeReplies,
            rstSeen: afterFault.count(.rst) > 0,
            wireAbortS: wireAbort.map { $0 - tFault },
            appMinusWireMs: wireAbort.flatMap { w in tDetect.map { ($0 - w) * 1000 } },
            bytesOnWire: all.bytesOnWire,
            bytesAfterFault: afterFault.bytesOnWire,
            pcap: pcap,
            kernel: Doctor.kernelRelease(),
            backend: backend,
            spec: spec,
            tcpInfoAtFault: atFault,
            tcpInfoAtDetection: atDetection,
            wire: all,
            timeline: timeline,
            marks: marks,
            notes: notes)
        result.clock = LabClock.current.rawValue
        result.kernelHz = ExecutionEnvironment.kernelHz
        result.kernelSource = ExecutionEnvironment.kernelSource
        result.events = eventChecks
        applyNetworkFault(to: &result)
        return result
    }

    /// The timer model's events against the wire: A's probes and retransmissions, and the abort —
    /// the kernel's own act where the wire shows it (A's RST: tcp_write_err() after
    /// tcp_send_active_reset()), else the app's detection (a reset from B). The app learns a
    /// moment later (`app_minus_wire_ms`), later still on a loaded machine: that is the
    /// application's scheduling, not the kernel's timers (nil without a model or an anchor).
    func eventChecks(_ expected: Expectation?) -> [EventCheck]? {
        guard let expected, let anchor = instant(of: expected.anchor) else { return nil }
        let sent = segments.filter { $0.direction == .aToB }.map { (t: $0.t, kind: $0.kind, payload: $0.payloadLength) }
        var abort = tDetect
        if let detected = tDetect, let rst = WireSummary(segments, after: tFault).rstFromA.first,
           rst <= detected + ExpectedEvent.measurementSlack {
            abort = rst
        }
        return EventCheck.checks(for: expected, anchor: anchor, detection: abort, sentByA: sent)
    }

    /// The connection's segments relative to the fault. Bulk data is thinned (first and last few,
    /// and everything within a second of the fault) so stream trials stay readable.
    var timeline: [TimelineEntry] {
        let connection = segments.filter { $0.direction != .other }
        let bulk: Set<SegmentKind> = [.data, .ack]
        let bulkIndices = connection.indices.filter { bulk.contains(connection[$0].kind) }
        let keepBulk = Set(bulkIndices.prefix(6) + bulkIndices.suffix(6))
        return connection.indices.compactMap { i in
            let seg = connection[i]
            guard !bulk.contains(seg.kind) || keepBulk.contains(i) || abs(seg.t - tFault) < 1 else { return nil }
            return TimelineEntry(t: seg.t - tFault, direction: seg.direction, kind: seg.kind,
                                 flags: seg.flags, payload: seg.payloadLength, icmpType: seg.icmpType, icmpCode: seg.icmpCode)
        }.suffix(2000).map { $0 }
    }
}
