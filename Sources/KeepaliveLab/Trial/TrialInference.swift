/// What one trial's record shows beyond its segments and instants: what became of each segment past
/// R, which probes were answered, which segment met a forgotten NAT entry, what drew a rebooted B's
/// RST. The report layer (ladders, Mermaid, findings) only words it.
///
/// Built from a `TrialResult` alone — the capture is taken on R's link toward A, so every A→B
/// segment in the timeline reached R; what R did with it next comes from the fault and the marks —
/// so runs recorded before this existed (`report DIR`) are read exactly like new ones.
struct TrialInference {
    /// Where a timeline segment went and why (nil: nothing to say).
    typealias SegmentPath = (path: Path, why: Reason?)
    /// What became of a segment after R's link toward A, where it was captured.
    enum Path: Equatable {
        /// Through R to the other end, as far as the trial can tell.
        case through
        /// Sent toward B while B's host was down: nobody there to answer.
        case toDeadPeer
        /// R dropped (or refused) it: it never got past R.
        case droppedAtR
        /// No reply came, and the capture cannot tell whether R lost the segment or its reply.
        case maybeLostAtR
        /// R made it itself (an ICMP error, a firewall's RST in B's name).
        case fromR
    }

    /// Why a segment took a path other than the plain one for its fault.
    enum Reason: Equatable {
        /// nat-idle: R no longer knew the connection and dropped (or, in reset mode, refused) it.
        case invalidConnection(refused: Bool)
        /// nat-idle, reset mode: an RST R sent in B's name.
        case resetInBsName
        /// partition: dropped by R's drop rule.
        case partitionDropped
        /// partition b2a: the probe got through, its reply did not.
        case partitionReplyDropped
        /// partition: at the window's start, before R's drop rule was in place (R counted fewer drops).
        case beforeDropRule(dropped: Int)
        /// partition: at the window's edge, R's count does not settle it.
        case partitionEdge(dropped: Int, segments: Int)
        /// loss: an unanswered probe, lost at R (a2b) …
        case lostNoReply
        /// … its reply lost at R (b2a) …
        case replyLost
        /// … or either (both directions).
        case probeOrReplyLost
        /// loss a2b: R's drop count accounts for this segment beyond the unanswered probes.
        case countedDrop(dropped: Int, unansweredProbes: Int)
    }

    /// Which part a segment plays in the trial's story.
    enum Role: Equatable {
        /// crash-client: the last segment B heard from A …
        case lastHeardByB
        /// … and B's abort RST.
        case bAborts
        /// The last segment A heard from B …
        case lastHeardByA
        /// … when it was the answer to the nat-idle request.
        case answerLastHeardByA
        /// A's abort RST.
        case aAborts
        /// A rebooted B's fresh kernel resetting a connection it does not know.
        case freshKernelReset
        /// An ICMP error R sent.
        case icmpFromR
        /// nat-idle: the client's request after the silence.
        case request
    }

    /// nat-idle, no answer: the first A→B segment after R forgot the connection.
    struct NATVictim: Equatable {
        let entry: TimelineEntry
        /// It is the client's request after the silence (within 50 ms of the send).
        let isRequest: Bool
        /// The request went out on the wire (whether or not it was the first to meet the entry).
        let requestSent: Bool
        /// A's retransmissions after it.
        let retransmissions: Int
    }

    /// Each timeline entry's path past R, and why when it is not plain.
    let paths: [(path: Path, why: Reason?)]
    /// Each timeline entry's part in the story, where it has one.
    let roles: [Role?]
    /// For each A→B keepalive probe in the timeline, whether a probe reply came before A's next
    /// probe; nil for every other entry.
    let probeAnswers: [Bool?]
    /// The longest run of A's probes after the fault that got no reply.
    let longestUnansweredProbeRun: Int
    /// A's probe → its reply → A's next probe: the spacing while B answered.
    let answeredProbeGaps: [Double]
    /// A's keepalive probes after the fault: the spacing of consecutive ones (answered or not) …
    let probeSpacingAfterFault: [Double]
    /// … and of A's heartbeats.
    let heartbeatSpacingAfterFault: [Double]
    /// ICMP errors from R after the fault.
    let icmpAfterFault: Int
    /// B's ACKs after the fault (a frozen server's kernel still ACKs) …
    let acksFromBAfterFault: Int
    /// … and the heartbeat replies B's server sent.
    let heartbeatRepliesAfterFault: Int
    /// nat-idle, no answer, R forgot the connection: the first A→B segment that met the forgotten entry.
    let natVictim: NATVictim?
    /// partition: R healed before A's verdict and no probe went out in between — verdict − heal.
    let healedUnnoticedS: Double?
    /// reboot: A's segment that B's fresh kernel answered with its first RST, and for a probe its
    /// number among the probes after the fault.
    let rebootTrigger: (entry: TimelineEntry, probeNumber: Int?)?

    init(_ r: TrialResult) {
        let timeline = r.timeline
        let answers = Self.probeAnswers(timeline)
        probeAnswers = answers
        paths = Self.paths(r, answers: answers)
        roles = timeline.map { Self.role($0, r) }

        var longest = 0
        var run = 0
        for (i, answer) in answers.enumerated() where timeline[i].t >= 0 {
            guard let answer else { continue }
            run = answer ? 0 : run + 1
            longest = max(longest, run)
        }
        longestUnansweredProbeRun = longest

        var gaps: [Double] = []
        var lastAnswered: Double?
        var pending: Double?
        for e in timeline {
            switch e.kind {
            case .keepaliveProbe where e.direction == .aToB:
                if let a = lastAnswered { gaps.append(e.t - a) }
                pending = e.t
                lastAnswered = nil
            case .keepaliveReply where e.direction == .bToA:
                lastAnswered = pending
            default: break
            }
        }
        answeredProbeGaps = gaps

        func spacing(_ kind: SegmentKind) -> [Double] {
            let sent = timeline.filter { $0.direction == .aToB && $0.kind == kind && $0.t >= 0 }
            return zip(sent.dropFirst(), sent).map { $0.t - $1.t }
        }
        probeSpacingAfterFault = spacing(.keepaliveProbe)
        heartbeatSpacingAfterFault = spacing(.heartbeat)
        icmpAfterFault = timeline.filter { $0.kind == .icmp && $0.t >= 0 }.count
        acksFromBAfterFault = timeline.filter { $0.t >= 0 && $0.direction == .bToA && $0.kind == .ack }.count
        heartbeatRepliesAfterFault = timeline.filter { $0.t >= 0 && $0.direction == .bToA && $0.kind == .heartbeat }.count

        natVictim = Self.natVictim(r)

        if case .partition = r.spec.fault, let heal = r.marks.heal, let d = r.detectionLatencyS, heal < d,
           !timeline.contains(where: { $0.kind == .keepaliveProbe && $0.direction == .aToB && $0.t > heal && $0.t < d }) {
            healedUnnoticedS = d - heal
        } else {
            healedUnnoticedS = nil
        }

        if let rst = timeline.firstIndex(where: { $0.kind == .rst && $0.direction == .bToA && $0.t >= 0 }),
           let trigger = timeline[..<rst].last(where: { $0.direction == .aToB }) {
            let number = trigger.kind == .keepaliveProbe
                ? timeline[...rst].filter { $0.kind == .keepaliveProbe && $0.t >= 0 }.count : nil
            rebootTrigger = (trigger, number)
        } else {
            rebootTrigger = nil
        }
    }

    // MARK: - Probes

    static func probeAnswers(_ timeline: [TimelineEntry]) -> [Bool?] {
        var out = [Bool?](repeating: nil, count: timeline.count)
        var pending: Int?
        for (i, e) in timeline.enumerated() {
            if e.direction == .aToB, e.kind == .keepaliveProbe {
                pending = i
                out[i] = false
            } else if e.direction == .bToA, e.kind == .keepaliveReply, let p = pending {
                out[p] = true
                pending = nil
            }
        }
        return out
    }

    // MARK: - Roles

    static func role(_ e: TimelineEntry, _ r: TrialResult) -> Role? {
        if r.spec.fault == .crashClient {
            // B is the detecting side: last_rx and the abort are B's.
            if let last = r.marks.lastReceived, e.direction == .aToB, abs(e.t - last) < 1e-6 { return .lastHeardByB }
            if e.kind == .rst, e.direction == .bToA, let w = r.wireAbortS, abs(e.t - w) < 1e-6 { return .bAborts }
            return nil
        }
        if let last = r.marks.lastReceived, e.direction == .bToA, abs(e.t - last) < 1e-6 {
            if case .natIdle = r.spec.fault, e.kind == .data, let answer = r.marks.answer, abs(e.t - answer) < 0.05 {
                return .answerLastHeardByA
            }
            return .lastHeardByA
        }
        if e.kind == .rst, e.direction == .aToB, let w = r.wireAbortS, abs(e.t - w) < 1e-6 { return .aAborts }
        if e.kind == .rst, e.direction == .bToA, r.marks.bBack != nil { return .freshKernelReset }
        if e.kind == .icmp { return .icmpFromR }
        if case .natIdle = r.spec.fault, e.direction == .aToB, e.kind == .data, r.isRequest(e) { return .request }
        return nil
    }

    // MARK: - Paths

    /// Only what the trial shows: A→B segments while B's host is down go nowhere, R's ICMP comes
    /// from R; what only one fault explains (nat-idle's INVALID drops, a partition's window, lost
    /// probes) its kind marks (`FaultKind.markPaths`, in Faults/).
    static func paths(_ r: TrialResult, answers: [Bool?]) -> [SegmentPath] {
        let timeline = r.timeline
        let fault = r.spec.fault
        let back = r.marks.bBack
        var out: [SegmentPath] = timeline.map { e in
            if e.kind == .icmp { return (.fromR, nil) }
            if e.direction == .aToB, fault.takesHostDown, e.t >= 0, e.t < (back ?? .infinity) { return (.toDeadPeer, nil) }
            return (.through, nil)
        }
        fault.kind.markPaths(r, answers: answers, paths: &out)
        return out
    }

    // MARK: - nat-idle

    static func natVictim(_ r: TrialResult) -> NATVictim? {
        guard case .natIdle = r.spec.fault, let after = r.forgottenAfter,
              let victim = r.timeline.first(where: { $0.direction == .aToB && $0.t > after && $0.kind != .icmp })
        else { return nil }
        return NATVictim(
            entry: victim,
            isRequest: r.isRequest(victim),
            requestSent: r.timeline.contains { $0.direction == .aToB && $0.kind == .data && r.isRequest($0) },
            retransmissions: r.timeline.filter { $0.direction == .aToB && $0.kind == .retransmission && $0.t > victim.t }.count)
    }
}

extension TrialResult {
    /// nat-idle: how long the connection had been quiet in R when its conntrack entry was found gone
    /// (the first poll without it minus the last segment captured before).
    var conntrackIdleS: Double? {
        guard let expired = marks.conntrackExpired,
              let last = timeline.last(where: { $0.direction != .other && $0.t < expired }) else { return nil }
        return expired - last.t
    }

    /// nat-idle, the request unanswered: from when R's entry was forgotten. A packet while the entry
    /// still lived would have refreshed it, so everything after the last poll that saw the entry met
    /// a forgotten connection.
    var forgottenAfter: Double? {
        guard let expired = marks.conntrackExpired, marks.answer == nil else { return nil }
        return min(marks.conntrackLastSeen ?? expired, expired)
    }

    /// nat-idle: the client's send → the answer reaching it.
    var answerAfterSendS: Double? {
        marks.answer.flatMap { a in marks.send.map { a - $0 } }
    }

    /// The segment is the client's request after the silence (within 50 ms of the send).
    func isRequest(_ e: TimelineEntry) -> Bool {
        marks.send.map { abs(e.t - $0) < 0.05 } ?? false
    }
}
