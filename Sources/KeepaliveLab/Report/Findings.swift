/// A statement the data supports, with the numbers that support it.
public struct Finding: Codable, Sendable, Equatable {
    /// The cell it is about (`CellKey.description`); nil for a statement across cells.
    public var cell: String?
    public var text: String

    public init(cell: String?, text: String) {
        self.cell = cell
        self.text = text
    }
}

/// Derives findings from measured results. Each rule states only what its numbers show, and stays
/// silent when the trials disagree with its premise (e.g. no "all probes answered" unless they were).
public enum Findings {
    public static func derive(_ cells: [Cell]) -> [Finding] {
        var out: [Finding] = []
        for cell in cells where !cell.results.isEmpty {
            let texts = [formula(cell), probesToSilentPeer(cell), unackedData(cell), frozen(cell, all: cells),
                         icmp(cell), reboot(cell), heartbeat(cell), nothingSent(cell), natIdle(cell), healthy(cell),
                         probesThroughImpairment(cell), probePeriod(cell), mixed(cell)].compactMap { $0 }
            out += texts.map { Finding(cell: cell.key.description, text: $0) }
        }
        out += fastest(cells)
        return out
    }

    // MARK: - Rules

    /// Measured against the kernel's (or the heartbeat's) formula.
    static func formula(_ cell: Cell) -> String? {
        let rs = cell.results.filter { $0.expected != nil }
        guard let e = rs.first?.expected else { return nil }
        let measured = rs.compactMap(\.measuredS)
        let within = rs.filter { $0.withinTolerance == true }.count
        // Some formulas already name their anchor ("… after the oldest unacknowledged data").
        let formula = e.formula.contains(" after the ") ? e.formula
            : "\(e.formula) = \(fmtNumber(e.seconds)) s after \(anchorPhrase(e.anchor, host: rs.first?.detectingHost ?? "A"))"
        var text = within == rs.count
            ? "measured latency matched the formula (\(formula)) in \(within) of \(rs.count) trial\(plural(rs.count))"
            : "measured latency was within the formula's tolerance (\(formula)) in only \(within) of \(rs.count) trial\(plural(rs.count))"
        if !measured.isEmpty { text += "; measured \(span(measured)) s" }
        let hz = Set(rs.compactMap { $0.events?.isEmpty == false ? $0.expected?.hz : nil }).sorted()
        text += hz.isEmpty ? " (tolerance 4 ms + 12.5 %)"
            : " (every modelled event inside its timer-wheel window at HZ=\(hz.map(String.init).joined(separator: ", ")))"
        let outside = rs.filter { $0.withinTolerance != true }
        if !outside.isEmpty {
            let values = outside.map { $0.measuredS.map { fmtSeconds($0) + " s" } ?? "no detection" }
            text += "; outside tolerance: " + values.joined(separator: ", ")
        }
        return text
    }

    /// A silent peer: how many probes went out, whether any was answered, and how close the
    /// application's error followed A's RST.
    static func probesToSilentPeer(_ cell: Cell) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, let k = spec.effectiveClientKeepalive, spec.workload == .idle,
              spec.fault == .crash || spec.fault == .crashICMP,
              rs.allSatisfy({ $0.outcome == .detected && $0.errno == "ETIMEDOUT" }) else { return nil }
        let probes = rs.map(\.probesSent)
        let replies = rs.map(\.probeReplies).reduce(0, +)
        var text = "A sent \(intSpan(probes)) keepalive probe\(probes.max() == 1 ? "" : "s") after the fault in "
            + (rs.count == 1 ? "the trial" : "each of \(rs.count) trials")
        if spec.clientPolicy.userTimeoutMs == nil || spec.clientPolicy.userTimeoutMs == 0 {
            text += " (TCP_KEEPCNT \(k.count))"
        }
        text += replies == 0 ? ", none answered, then ETIMEDOUT" : ", \(replies) answered, then ETIMEDOUT"
        let lag = rs.compactMap(\.appMinusWireMs)
        if !lag.isEmpty, lag.count == rs.count {
            text += "; the application got the error \(span(lag, digits: 2)) ms after A's RST on the wire"
        }
        return text
    }

    /// Unacknowledged data: the retransmission timer governs and keepalive stays silent.
    static func unackedData(_ cell: Cell) -> String? {
        let rs = cell.results.filter { $0.marks.oldestUnacked != nil && $0.outcome == .detected }
        guard !rs.isEmpty, let spec = rs.first?.spec, spec.workload != .idle else { return nil }
        let probes = rs.map(\.probesSent).reduce(0, +)
        let sinceUnacked = rs.compactMap(\.sinceOldestUnackedS)
        let retrans = rs.map { $0.wire.count(.retransmission, .aToB) }
        let errno = ReportStats.mostCommon(rs.compactMap(\.errno)) ?? "an error"
        var text: String
        if spec.clientPolicy.enablesKeepalive, probes == 0 {
            text = "with unacknowledged data in flight, no keepalive probe was sent (0 probes in \(rs.count) trial\(plural(rs.count))) "
                + "although \(keepaliveName(spec)) was on; the connection ended by retransmission timeout"
        } else if !spec.clientPolicy.enablesKeepalive {
            text = "with unacknowledged data in flight, the connection ended by retransmission timeout"
        } else {
            return nil
        }
        text += ": \(errno) \(span(sinceUnacked)) s after the oldest unacknowledged segment, after \(intSpan(retrans)) retransmission\(retrans.max() == 1 ? "" : "s")"
        if let u = spec.clientPolicy.userTimeoutMs, u > 0 { text += " (TCP_USER_TIMEOUT \(u) ms)" }
        if rs.allSatisfy({ !$0.rstSeen }) { text += "; A sent no RST" }
        return text
    }

    /// A frozen server behind a live kernel.
    static func frozen(_ cell: Cell, all cells: [Cell]) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, spec.fault == .freeze, spec.clientPolicy.enablesKeepalive,
              rs.allSatisfy({ $0.outcome == .missed }) else { return nil }
        let probes = rs.map(\.probesSent).reduce(0, +)
        let replies = rs.map(\.probeReplies).reduce(0, +)
        guard probes > 0, replies > 0 else { return nil }
        var text = replies == probes
            ? "B's kernel answered all \(probes) probes while the server was frozen"
            : "B's kernel answered \(replies) of \(probes) probes while the server was frozen"
        text += ": kernel keepalive cannot see a hung application (missed in \(rs.count) of \(rs.count) trial\(plural(rs.count)),"
            + " deadline \(fmtNumber(spec.deadline)) s)"
        let heartbeatCells = cells.filter { other in
            other.results.first?.spec.fault == .freeze && other.results.first?.spec.clientPolicy.heartbeat != nil
                && other.stats.latencyMedianS != nil
        }
        if let hb = heartbeatCells.first, let m = hb.stats.latencyMedianS {
            text += "; \(policyLabel(hb)) detected it in \(fmtSeconds(m)) s"
                + (hb.stats.detected > 1 ? " (median of \(hb.stats.detected))" : "")
        }
        return text
    }

    /// ICMP host-unreachable for keepalive probes.
    static func icmp(_ cell: Cell) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, spec.fault == .crashICMP, spec.workload == .idle else { return nil }
        let icmps = rs.map { TrialInference($0).icmpAfterFault }
        guard icmps.allSatisfy({ $0 > 0 }) else { return nil }
        let errnos = Set(rs.compactMap(\.errno))
        if errnos == ["ETIMEDOUT"] {
            let since = rs.compactMap(\.sinceLastRxS)
            var text = "R sent \(intSpan(icmps)) ICMP host-unreachable to A after the fault and A ignored them: "
                + "the error was ETIMEDOUT, not EHOSTUNREACH, \(span(since)) s after the last segment A received"
            if let e = rs.first?.expected { text += " (silent-peer formula: \(fmtNumber(e.seconds)) s)" }
            return text
        }
        if errnos == ["EHOSTUNREACH"], let m = cell.stats.latencyMedianS {
            return "ICMP host-unreachable from R ended the connection: EHOSTUNREACH \(fmtSeconds(m)) s after the fault (median)"
        }
        return nil
    }

    /// A rebooted peer answers with RST.
    static func reboot(_ cell: Cell) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, case .reboot = spec.fault,
              rs.allSatisfy({ $0.errno == "ECONNRESET" && $0.marks.bBack != nil }),
              let latency = cell.stats.latencyMedianS else { return nil }
        let backs = rs.compactMap { $0.marks.bBack }
        var text = "B came back \(span(backs)) s after the crash"
        // Which of A's segments drew the RST: the last A→B segment before B's RST.
        let triggers: [String] = rs.compactMap { r in
            guard let (trigger, number) = TrialInference(r).rebootTrigger else { return nil }
            if let number { return "keepalive probe \(number)" }
            return TrialStory.label(trigger, probeNumber: 0, fault: spec.fault)
        }
        if triggers.count == rs.count, Set(triggers).count == 1 {
            text += "; its fresh kernel answered \(triggers[0]) with RST"
        }
        text += ": ECONNRESET \(fmtSeconds(latency)) s after the fault" + (rs.count > 1 ? " (median)" : "")
        if let k = spec.effectiveClientKeepalive {
            let silent = Expectation.keepaliveFormula(k, userTimeoutMs: spec.clientPolicy.userTimeoutMs)
            let anchors = rs.compactMap { $0.marks.lastReceived }
            if let a = ReportStats.median(anchors) {
                let wouldBe = a + silent.seconds
                if wouldBe > latency {
                    text += ", \(fmtSeconds(wouldBe - latency)) s sooner than a silent peer (\(silent.formula) = \(fmtNumber(silent.seconds)) s after the last segment A received)"
                }
            }
        }
        return text
    }

    /// Application heartbeat detections.
    static func heartbeat(_ cell: Cell) -> String? {
        let rs = cell.results.filter { $0.detectedBy == "heartbeat" && $0.outcome == .detected }
        guard let spec = rs.first?.spec, let h = spec.clientPolicy.heartbeat, let m = cell.stats.latencyMedianS else { return nil }
        var text = "the heartbeat (every \(fmtNumber(h.interval)) s, timeout \(fmtNumber(h.timeout)) s) detected the failure "
            + "\(fmtSeconds(m)) s after the fault" + (rs.count > 1 ? " (median of \(rs.count))" : "")
        let since = rs.compactMap(\.sinceFirstUnansweredHeartbeatS)
        if !since.isEmpty { text += ", \(span(since)) s after the first unanswered heartbeat" }
        if spec.fault == .freeze {
            let acks = rs.map { TrialInference($0).acksFromBAfterFault }
            let replies = rs.map { TrialInference($0).heartbeatRepliesAfterFault }
            if acks.allSatisfy({ $0 > 0 }), replies.allSatisfy({ $0 == 0 }) {
                text += "; B's kernel still ACKed the heartbeats (\(intSpan(acks)) ACKs) but the frozen server sent no reply"
            }
        }
        return text
    }

    /// Nothing on the wire after the fault: nobody could have noticed.
    static func nothingSent(_ cell: Cell) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, spec.fault.peerIsDead, spec.workload == .idle,
              rs.allSatisfy({ $0.outcome == .missed && $0.bytesAfterFault == 0 }) else { return nil }
        var text = "nothing was sent after the fault (0 bytes on the wire in \(rs.count) of \(rs.count) trial\(plural(rs.count)))"
        if !spec.clientPolicy.enablesKeepalive && spec.clientPolicy.heartbeat == nil {
            text += ": without keepalive or a heartbeat an idle client never learns"
        }
        return text + " (deadline \(fmtNumber(spec.deadline)) s)"
    }

    /// B stayed healthy. Not for nat-idle: there the question is whether R kept the connection, not
    /// whether A closed a healthy one (see `natIdle`).
    static func healthy(_ cell: Cell) -> String? {
        let s = cell.stats
        guard s.healthyTrials > 0 else { return nil }
        if case .natIdle = cell.results.first?.spec.fault { return nil }
        return "B stayed healthy in \(s.healthyTrials) trial\(plural(s.healthyTrials)) (\(s.outcomeSummary)): "
            + "false-positive rate \(fmtPercent(s.falsePositiveRate))"
    }

    /// The interval between probes while B answers them.
    static func probePeriod(_ cell: Cell) -> String? {
        guard let k = cell.results.first?.spec.effectiveClientKeepalive else { return nil }
        let gaps = cell.results.flatMap { TrialInference($0).answeredProbeGaps }
        guard let median = ReportStats.median(gaps) else { return nil }
        let period = Double(max(k.idle, k.interval))
        var text = "while B answered, probes came every \(fmtSeconds(median)) s (median of \(gaps.count) gap\(plural(gaps.count)))"
        if median >= period - 0.004, median <= period + Expectation.tolerance(for: period) {
            text += " = max(idle \(k.idle), interval \(k.interval)) s"
            if k.idle > k.interval { text += ", not every interval: each reply restarts the idle clock" }
        }
        return text
    }

    /// nat-idle: when R's conntrack forgot the connection and what became of the first segment A
    /// sent into the forgotten connection; or what kept the entry fresh.
    static func natIdle(_ cell: Cell) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, case let .natIdle(timeout, mode) = spec.fault else { return nil }
        var parts: [String] = []
        let forgotten = rs.filter { $0.marks.conntrackExpired != nil }
        let kept = rs.filter { $0.marks.conntrackExpired == nil }
        let of = rs.count > 1 ? " (\(forgotten.count) of \(rs.count) trials)" : ""
        if !forgotten.isEmpty {
            let idle = forgotten.compactMap(\.conntrackIdleS)
            var text = "R forgot the connection"
                + (idle.isEmpty ? "" : " \(span(idle, digits: 2)) s after the last packet it forwarded") + of
            text += " (timeout \(timeout) s)"
            // The first segment A sent into the forgotten connection, in trials that got no answer.
            let victims: [(r: TrialResult, e: TimelineEntry, v: TrialInference.NATVictim)] = forgotten.compactMap { r in
                TrialInference(r).natVictim.map { (r, $0.entry, $0) }
            }
            if victims.count == forgotten.count, let first = victims.first {
                let isRequest = victims.allSatisfy(\.v.isRequest)
                let what: String
                if isRequest {
                    what = "the request \(fmtNumber(spec.effectiveSilence ?? first.e.t)) s after the fault"
                } else if victims.allSatisfy({ $0.e.kind == .keepaliveProbe }) {
                    what = "A's first keepalive probe after that (at +\(span(victims.map(\.e.t))) s)"
                } else {
                    what = "A's next segment (at +\(span(victims.map(\.e.t))) s)"
                }
                let errnos = Set(victims.map { $0.r.errno ?? "none" })
                let silence = fmtNumber(spec.effectiveSilence ?? first.e.t)
                switch mode {
                case .drop:
                    text += "; \(what) was dropped as INVALID"
                    // The request's fate too when a probe met the forgotten entry first.
                    let sentRequest = victims.allSatisfy(\.v.requestSent)
                    if !isRequest, sentRequest { text += ", and so was the request \(silence) s after the fault" }
                    let resends = victims.map(\.v.retransmissions)
                    if (isRequest || sentRequest), resends.allSatisfy({ $0 > 0 }) {
                        text += (isRequest ? " and" : ",") + " retransmitted \(intSpan(resends)) time\(resends.max() == 1 ? "" : "s") into the void"
                    }
                    if errnos == ["none"] {
                        text += "; A had not found out by the deadline (\(fmtNumber(spec.deadline)) s)"
                    } else if errnos.count == 1, let errno = victims[0].r.errno {
                        let latency = victims.compactMap { v in v.r.detectionLatencyS.map { $0 - v.e.t } }
                        text += ", until \(errno)" + (latency.count == victims.count ? " \(span(latency)) s later" : "")
                    }
                case .reset:
                    text += "; \(what) was answered with RST by R"
                    if errnos == ["ECONNRESET"] {
                        // From the client's own send when the victim is the request (same clock as the
                        // detection), else from the segment on the wire.
                        let latency = victims.compactMap { v in
                            isRequest ? v.r.foundOutAfterSendS : v.r.detectionLatencyS.map { $0 - v.e.t }
                        }
                        text += ": ECONNRESET" + (latency.count == victims.count
                            ? " \(shortSpan(latency)) after the \(isRequest ? "send" : "probe")" : "")
                    }
                }
            }
            parts.append(text)
        }
        if !kept.isEmpty {
            // What kept the entry fresh: probes (or heartbeats) after the fault, at their median spacing.
            let probeGaps = kept.flatMap { TrialInference($0).probeSpacingAfterFault }
            let beatGaps = kept.flatMap { TrialInference($0).heartbeatSpacingAfterFault }
            let never = "it never expired" + (rs.count > 1 ? " in \(kept.count) of \(rs.count) trials" : "")
            var text: String
            if let m = ReportStats.median(probeGaps) {
                text = "keepalive probes every \(String(format: "%.1f", m)) s kept R's entry fresh (\(never))"
            } else if let m = ReportStats.median(beatGaps) {
                text = "heartbeats every \(String(format: "%.1f", m)) s kept R's entry fresh (\(never))"
            } else {
                text = "R's entry never expired" + (rs.count > 1 ? " in \(kept.count) of \(rs.count) trials" : "")
            }
            let answered = kept.compactMap(\.answerAfterSendS)
            if answered.count == kept.count, !answered.isEmpty {
                text += "; the request \(fmtNumber(spec.effectiveSilence ?? 0)) s after the fault was answered \(shortSpan(answered)) after the send"
            }
            parts.append(text)
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// loss / partition: A's probes after the fault, answered or lost, and what that did to the connection.
    static func probesThroughImpairment(_ cell: Cell) -> String? {
        let rs = cell.results
        guard let spec = rs.first?.spec, let k = spec.effectiveClientKeepalive else { return nil }
        let lost = rs.compactMap(\.probesLost)
        let answered = rs.compactMap(\.probesAnswered)
        guard lost.count == rs.count, answered.count == rs.count, rs.contains(where: { $0.probesSent > 0 }) else { return nil }
        let per = rs.count == 1 ? "" : " per trial"
        var text: String
        switch spec.fault {
        case let .loss(percent, direction):
            let sent = zip(lost, answered).map { $0 + $1 }
            switch direction {
            case .a2b:
                text = "under \(Fault.format(percent)) % loss (a2b) R lost \(intSpan(lost)) of A's \(intSpan(sent)) keepalive probes after the fault"
                    + " on their way to B\(per); \(intSpan(answered)) were answered"
            case .b2a:
                text = "under \(Fault.format(percent)) % loss (b2a) \(intSpan(lost)) of A's \(intSpan(sent)) keepalive probes after the fault"
                    + " lost their reply at R\(per); \(intSpan(answered)) were answered"
            case .both:
                text = "under \(Fault.format(percent)) % loss (both directions) \(intSpan(lost)) of A's \(intSpan(sent)) keepalive probes after the fault"
                    + " got no reply (R lost the probe or its reply)\(per); \(intSpan(answered)) were answered"
            }
        case let .partition(seconds, direction):
            text = "during the \(Fault.format(seconds)) s partition (\(direction.rawValue)) \(intSpan(lost)) keepalive probe\(lost.max() == 1 ? "" : "s") got no reply\(per)"
            if rs.allSatisfy({ $0.marks.heal != nil }), answered.contains(where: { $0 > 0 }) {
                text += "; after R healed, \(intSpan(answered)) were answered"
            }
        default:
            return nil
        }
        let drops = rs.compactMap { $0.impairmentDrops?["a2b"] }
        if drops.count == rs.count, spec.fault.impairmentDirection?.includesA2B == true {
            text += "; R dropped \(intSpan(drops.map(\.dropped))) of \(intSpan(drops.map(\.packets))) A→B packets in all"
        }
        // The longest run of unanswered probes decides: TCP_KEEPCNT in a row and A gives up.
        let runs = rs.map { TrialInference($0).longestUnansweredProbeRun }
        let limit = spec.clientPolicy.userTimeoutMs.map { $0 > 0 } == true ? nil : k.count
        if rs.allSatisfy({ $0.outcome == .falsePositive }) {
            let latencies = rs.compactMap(\.detectionLatencyS)
            text += "; \(intSpan(runs)) unanswered in a row"
                + (limit.map { " (TCP_KEEPCNT \($0))" } ?? "")
                + " and A gave up: \(ReportStats.mostCommon(rs.compactMap(\.errno)) ?? "closed") \(span(latencies)) s after the fault, a false positive"
            if case let .partition(seconds, _) = spec.fault, let last = latencies.max(), last < seconds {
                text += ": the partition would have healed at \(Fault.format(seconds)) s"
            } else if case .partition = spec.fault {
                // Healed before A's verdict, but no probe went out in between to find out.
                let late = rs.compactMap { TrialInference($0).healedUnnoticedS }
                if late.count == rs.count {
                    text += ": R had healed \(span(late)) s before, after A's last probe had gone out"
                }
            }
        } else if rs.allSatisfy({ $0.outcome == .survived }) {
            text += "; at most \(intSpan(runs)) unanswered in a row"
                + (limit.map { ", fewer than TCP_KEEPCNT \($0)," } ?? "")
                + " so the connection survived"
        }
        return text
    }

    /// "0.6 ms" below 10 ms (three decimals of a second would round it to nothing), else "0.012 s".
    static func shortSpan(_ values: [Double]) -> String {
        (values.max() ?? 0) < 0.01 ? span(values.map { $0 * 1000 }, digits: 1) + " ms" : span(values) + " s"
    }

    static func mixed(_ cell: Cell) -> String? {
        let s = cell.stats
        guard s.detected > 0, s.missed > 0 else { return nil }
        return "detection was not reliable: \(s.missed) of \(s.trials) trials missed the deadline"
    }

    /// Across cells with the same fault and workload: which policy found out first.
    static func fastest(_ cells: [Cell]) -> [Finding] {
        var out: [Finding] = []
        var groups: [(fault: String, workload: String)] = []
        for c in cells where !groups.contains(where: { $0 == (c.fault, c.workload) }) { groups.append((c.fault, c.workload)) }
        for (fault, workload) in groups {
            let ranked = cells.filter { $0.fault == fault && $0.workload == workload }
                .compactMap { c in c.stats.latencyMedianS.map { (c, $0) } }
                .sorted { $0.1 < $1.1 }
            guard ranked.count >= 2, let first = ranked.first, let last = ranked.last else { continue }
            // A ranking only where the measurements separate the policies: the slowest policy's
            // fastest trial came later than the fastest policy's slowest trial, by more than the
            // clock reads' own slack. (The formula's tolerance is no measure here: in virtual time
            // two policies repeat to the microsecond with windows seconds wide.)
            let latencies = { (c: Cell) in c.results.filter { $0.outcome == .detected }.compactMap(\.detectionLatencyS) }
            let fastestSlowest = latencies(first.0).max() ?? first.1, slowestFastest = latencies(last.0).min() ?? last.1
            if slowestFastest - fastestSlowest <= ExpectedEvent.measurementSlack {
                out.append(Finding(cell: nil, text: "fault \(fault), workload \(workload): the \(ranked.count) policies' detections "
                    + "overlap (medians \(span(ranked.map(\.1))) s; every trial \(span(ranked.flatMap { latencies($0.0) })) s): no ranking"))
                continue
            }
            out.append(Finding(cell: nil, text: "fault \(fault), workload \(workload): fastest median detection "
                + "\(policyLabel(first.0)) (\(fmtSeconds(first.1)) s), slowest \(policyLabel(last.0)) (\(fmtSeconds(last.1)) s)"))
        }
        return out
    }

    // MARK: - Wording

    /// `host`: the detecting side ("B" for crash-client, where B's kernel runs the timers).
    static func anchorPhrase(_ a: Expectation.Anchor, host: String = "A") -> String {
        switch a {
        case .lastReceived: return "the last segment \(host) received"
        case .oldestUnacked: return "the oldest unacknowledged data"
        case .firstTimeoutRetransmission: return "A's first timer-driven retransmission"
        case .firstUnansweredHeartbeat: return "the first unanswered heartbeat"
        }
    }

    /// "heartbeat 1,3", or "\"fast-hb\" (heartbeat 1,3)" when the lab named the policy.
    static func policyLabel(_ cell: Cell) -> String {
        cell.policyName == cell.policySummary ? cell.policySummary : "\"\(cell.policyName)\" (\(cell.policySummary))"
    }

    static func keepaliveName(_ spec: TrialSpec) -> String {
        if let k = spec.clientPolicy.keepalive { return "keepalive \(k)" }
        return "keepalive (sysctl defaults)"
    }

    /// "5.085" or "5.075–5.095".
    static func span(_ values: [Double], digits: Int = 3) -> String {
        guard let lo = values.min(), let hi = values.max() else { return "—" }
        let fmt = "%.\(digits)f"
        let a = String(format: fmt, lo)
        let b = String(format: fmt, hi)
        return a == b ? a : "\(a)–\(b)"
    }

    static func intSpan(_ values: [Int]) -> String {
        guard let lo = values.min(), let hi = values.max() else { return "0" }
        return lo == hi ? "\(lo)" : "\(lo)–\(hi)"
    }

    static func plural(_ n: Int) -> String { n == 1 ? "" : "s" }
}

