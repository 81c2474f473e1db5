/// One trial's exchange in the order a reader follows it: segments, the key instants (fault, B back,
/// R forgetting the connection, a partition healing, detection, deadline), quiet stretches and
/// collapsed bulk data. Ladder and Mermaid both draw it.
///
/// The capture is taken on R's link toward A, so every A→B segment in the timeline reached R; what
/// R did with it next comes from the fault and the trial's marks (see `Path`).
struct TrialStory {
    enum Marker: Equatable {
        case fault, bBack, detection, deadline
        /// nat-idle: R's conntrack no longer has the connection.
        case conntrackExpired
        /// partition: R forwards again.
        case heal
    }

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

    enum Line {
        case segment(TimelineEntry, label: String, path: Path, note: String?)
        case marker(t: Double, Marker, text: String)
        /// A run of bulk data/ACK segments shown as one line.
        case bulk(from: Double, to: Double, summary: String)
        /// Nothing on the wire for this long.
        case quiet(seconds: Double)
    }

    let fault: Fault
    var lines: [Line]
    /// Set when the recorder kept only part of the bulk traffic in the timeline.
    var thinningNote: String?

    /// - Parameters:
    ///   - collapseAbove: bulk runs longer than this are collapsed …
    ///   - keep: … to their first and last `keep` segments.
    ///   - quietAbove: gaps longer than this (seconds) get a "quiet" line.
    init(_ r: TrialResult, collapseAbove: Int = 8, keep: Int = 3, quietAbove: Double = 0.5) {
        let fault = r.spec.fault
        self.fault = fault
        let paths = Self.paths(r)

        var probeNumber = 0
        var items: [(t: Double, line: Line)] = r.timeline.enumerated().map { i, e in
            if e.kind == .keepaliveProbe { probeNumber += 1 }
            let label = Self.label(e, probeNumber: probeNumber, fault: fault)
            let notes = [Self.note(e, r), paths[i].why].compactMap { $0 }
            return (e.t, .segment(e, label: label, path: paths[i].path,
                                  note: notes.isEmpty ? nil : notes.joined(separator: "; ")))
        }
        for (t, marker, text) in Self.markers(r) {
            // A marker goes after the segments captured at or before its instant.
            let at = items.firstIndex { $0.t > t } ?? items.count
            items.insert((t, .marker(t: t, marker, text: text)), at: at)
        }
        // The connection setup and first exchange (up to "ready") are always drawn in full.
        let collapsed = Self.collapse(items, above: collapseAbove, keep: keep, after: r.marks.ready ?? -.infinity)
        var out: [Line] = []
        var previous: Double?
        for item in collapsed {
            let start: Double
            let end: Double
            if case .bulk(let from, let to, _) = item.line { (start, end) = (from, to) } else { (start, end) = (item.t, item.t) }
            if let p = previous, start - p > quietAbove { out.append(.quiet(seconds: start - p)) }
            out.append(item.line)
            previous = end
        }
        lines = out
        thinningNote = Self.thinning(r)
    }

    // MARK: - Labels

    static func label(_ e: TimelineEntry, probeNumber: Int, fault: Fault) -> String {
        switch e.kind {
        case .syn: return "SYN"
        case .synAck: return "SYN/ACK"
        case .ack: return "ACK"
        case .data: return (e.flags.contains("P") ? "PSH data " : "data ") + "\(e.payload) B"
        case .retransmission:
            if e.flags.contains("S") { return "SYN retransmission" }
            if e.flags.contains("F") && e.payload == 0 { return "FIN retransmission" }
            return "retransmission \(e.payload) B"
        case .keepaliveProbe: return "keepalive probe \(probeNumber)"
        case .keepaliveReply: return "probe reply (dup ACK)"
        case .windowProbe: return "window probe"
        case .heartbeat: return e.direction == .bToA ? "heartbeat reply" : "heartbeat"
        case .fin: return "FIN"
        case .rst: return "RST"
        case .icmp:
            // The timeline does not carry the ICMP type; the fault says what R was told to send.
            return fault == .crashICMP ? "ICMP host-unreachable" : "ICMP error"
        case .other: return e.flags.isEmpty ? "other" : "other [\(e.flags)]"
        }
    }

    /// A few segments deserve a word on the side.
    static func note(_ e: TimelineEntry, _ r: TrialResult) -> String? {
        if r.spec.fault == .crashClient {
            // B is the detecting side: last_rx and the abort are B's.
            if let last = r.marks.lastReceived, e.direction == .aToB, abs(e.t - last) < 1e-6 { return "last segment B hears from A" }
            if e.kind == .rst, e.direction == .bToA, let w = r.wireAbortS, abs(e.t - w) < 1e-6 { return "B aborts the connection" }
            return nil
        }
        if let last = r.marks.lastReceived, e.direction == .bToA, abs(e.t - last) < 1e-6 {
            if case .natIdle = r.spec.fault, e.kind == .data, let answer = r.marks.answer, abs(e.t - answer) < 0.05 {
                return "the answer; last segment A hears from B"
            }
            return "last segment A hears from B"
        }
        if e.kind == .rst, e.direction == .aToB, let w = r.wireAbortS, abs(e.t - w) < 1e-6 { return "A aborts the connection" }
        if e.kind == .rst, e.direction == .bToA, r.marks.bBack != nil { return "B's fresh kernel has no such connection" }
        if e.kind == .icmp { return "from R" }
        if case .natIdle = r.spec.fault, e.direction == .aToB, e.kind == .data,
           let send = r.marks.send, abs(e.t - send) < 0.05 {
            return "the request after \(fmtNumber(r.spec.effectiveSilence ?? send)) s of silence"
        }
        return nil
    }

    // MARK: - Paths

    /// Each timeline entry's path past R, and why when it is not plain. Only what the trial shows:
    /// - crash / reboot: A→B segments while B's host is down go nowhere.
    /// - nat-idle: once R's conntrack has forgotten the connection (`conntrack_expired`) and the
    ///   request got no answer, every A→B segment after the entry was last seen stops at R as
    ///   INVALID; in reset mode the RSTs the capture shows coming "from B" are R's.
    /// - partition: A→B segments from the fault to the heal are dropped at R (a2b, both); with b2a
    ///   only, the probes got through and their replies did not.
    /// - loss: an unanswered probe was lost at R (a2b), had its reply lost (b2a), or either (both);
    ///   when R's drop counter covers every A→B segment in the timeline, its count settles the rest.
    static func paths(_ r: TrialResult) -> [(path: Path, why: String?)] {
        let timeline = r.timeline
        let fault = r.spec.fault
        let back = r.marks.bBack
        var out: [(path: Path, why: String?)] = timeline.map { e in
            if e.kind == .icmp { return (.fromR, nil) }
            if e.direction == .aToB, fault.takesHostDown, e.t >= 0, e.t < (back ?? .infinity) { return (.toDeadPeer, nil) }
            return (.through, nil)
        }
        let answers = probeAnswers(timeline)
        switch fault {
        case let .natIdle(_, mode):
            guard let expired = r.marks.conntrackExpired, r.marks.answer == nil else { break }
            // A packet while the entry still lived would have refreshed it: everything after the
            // last poll that saw the entry met a forgotten connection.
            let after = min(r.marks.conntrackLastSeen ?? expired, expired)
            for (i, e) in timeline.enumerated() where e.t > after && e.kind != .icmp {
                if e.direction == .aToB {
                    out[i] = (.droppedAtR, mode == .reset ? "refused by R: invalid connection" : "dropped by R: invalid connection")
                } else if e.direction == .bToA, e.kind == .rst, mode == .reset {
                    out[i] = (.fromR, "from R in B's name, not from B: R no longer knows the connection")
                }
            }
        case let .partition(seconds, direction):
            let end = r.marks.heal ?? seconds
            var window: [Int] = []
            for (i, e) in timeline.enumerated() where e.direction == .aToB && e.t >= 0 && e.t < end {
                if answers[i] == true { continue }
                if direction.includesA2B {
                    out[i] = (.droppedAtR, "dropped by R: partition")
                    window.append(i)
                } else if answers[i] == false {
                    out[i] = (.through, "its reply was dropped by R: partition b2a")
                }
            }
            // The drop rule takes effect a few ms after the fault instant (and the heal is stamped
            // once it is done). When R counted fewer drops than segments drawn in the window, the
            // earliest ones got through before the rule was in place — if they sit right at its start.
            guard let count = r.impairmentDrops?["a2b"], count.dropped < window.count else { break }
            let excess = window.count - count.dropped
            let edge = 0.1
            let early = window.prefix(excess)
            if early.allSatisfy({ timeline[$0].t < edge }), !window.contains(where: { timeline[$0].t > end - edge }) {
                for i in early { out[i] = (.through, "passed R before its drop rule was in place (R counted \(count.dropped) drops)") }
            } else {
                for i in window where timeline[i].t < edge || timeline[i].t > end - edge {
                    out[i] = (.maybeLostAtR, "at the partition's edge: R counted \(count.dropped) drops for \(window.count) segments")
                }
            }
        case let .loss(_, direction):
            let lost = timeline.indices.filter { timeline[$0].t >= 0 && answers[$0] == false }
            for i in lost {
                switch direction {
                case .a2b: out[i] = (.droppedAtR, "lost at R: no reply")
                case .b2a: out[i] = (.through, "its reply was lost at R")
                case .both: out[i] = (.maybeLostAtR, "no reply: R lost the probe or its reply")
                }
            }
            // R counts what it forwarded toward B from the fault on. When that is exactly the A→B
            // segments drawn, the drops the unanswered probes do not explain are the others' fate.
            guard direction == .a2b, let count = r.impairmentDrops?["a2b"] else { break }
            let sent = timeline.indices.filter { timeline[$0].direction == .aToB && timeline[$0].t >= 0 }
            guard count.packets == sent.count else { break }
            let unknown = sent.filter { answers[$0] == nil }
            let unexplained = count.dropped - lost.count
            if unexplained == unknown.count, unexplained > 0 {
                for i in unknown {
                    out[i] = (.droppedAtR, "lost at R: R counted \(count.dropped) drops, \(lost.count) of them the unanswered probes")
                }
            }
        default:
            break
        }
        return out
    }

    /// For each A→B keepalive probe in `timeline`, whether a probe reply came before A's next probe;
    /// nil for every other entry.
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

    static func markers(_ r: TrialResult) -> [(Double, Marker, String)] {
        var faultText = "fault: " + r.spec.fault.reportPhrase
        if case .natIdle = r.spec.fault {
            faultText = "fault: silence begins; " + r.spec.fault.reportPhrase
            if r.marks.conntrackExpired == nil { faultText += "; R's entry for this connection never expired" }
        }
        var out: [(Double, Marker, String)] = [(0, .fault, faultText)]
        if let back = r.marks.bBack { out.append((back, .bBack, "B back: fresh host, same IP and MAC, no connection state")) }
        if let expired = r.marks.conntrackExpired {
            var text = "R forgets the connection (conntrack entry expired"
            if let idle = r.conntrackIdleS { text += ", \(String(format: "%.2f", idle)) s idle" }
            if case let .natIdle(timeout, _) = r.spec.fault { text += "; timeout \(timeout) s" }
            out.append((expired, .conntrackExpired, text + ")"))
        }
        if let heal = r.marks.heal, case let .partition(seconds, _) = r.spec.fault {
            out.append((heal, .heal, "partition heals: R forwards again (\(Fault.format(seconds)) s partition)"))
        }
        if let d = r.marks.detection ?? r.detectionLatencyS {
            var text = r.detectionPhrase + ", \(fmtSeconds(d)) s after the fault"
            if r.outcome == .falsePositive { text += " (false positive: B was healthy)" }
            out.append((d, .detection, text))
        }
        if r.marks.detection == nil && r.detectionLatencyS == nil {
            let t = r.marks.deadline ?? r.spec.deadline
            let why: String
            switch r.outcome {
            case .missed: why = "\(r.detectingHost) never found out"
            case .survived: why = "B healthy, connection still open"
            case .broken: why = "R no longer knows the connection; A never found out"
            default: why = "outcome \(r.outcome.rawValue)"
            }
            out.append((t, .deadline, "deadline: trial ends (\(why))"))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    // MARK: - Bulk

    private static let bulkKinds: Set<SegmentKind> = [.data, .ack]

    private static func collapse(_ items: [(t: Double, line: Line)], above: Int, keep: Int, after: Double) -> [(t: Double, line: Line)] {
        var out: [(t: Double, line: Line)] = []
        var run: [(t: Double, entry: TimelineEntry, line: Line)] = []
        var runPath = Path.through
        func flush() {
            if run.count > above {
                out += run.prefix(keep).map { ($0.t, $0.line) }
                let middle = run.dropFirst(keep).dropLast(keep)
                var summary = bulkSummary(middle.map(\.entry))
                switch runPath {
                case .droppedAtR: summary += " all dropped by R"
                case .toDeadPeer: summary += " all sent to the dead host"
                default: break
                }
                out.append((middle.first!.t, .bulk(from: middle.first!.t, to: middle.last!.t, summary: summary)))
                out += run.suffix(keep).map { ($0.t, $0.line) }
            } else {
                out += run.map { ($0.t, $0.line) }
            }
            run.removeAll()
        }
        // Markers break runs, so a run never straddles the fault or B's return; so does a change of
        // path, so segments R dropped are never summed up with segments that got through.
        for item in items {
            if case .segment(let e, _, let path, _) = item.line, bulkKinds.contains(e.kind), e.t > after,
               path == .through || path == .droppedAtR || path == .toDeadPeer {
                if path != runPath { flush() }
                runPath = path
                run.append((item.t, e, item.line))
            } else {
                flush()
                out.append(item)
            }
        }
        flush()
        return out
    }

    static func bulkSummary(_ entries: [TimelineEntry]) -> String {
        func count(_ kind: SegmentKind, _ dir: SegmentDirection) -> Int {
            entries.filter { $0.kind == kind && $0.direction == dir }.count
        }
        var parts: [String] = []
        for (kind, dir, one, many) in [(SegmentKind.data, SegmentDirection.aToB, "data segment A→B", "data segments A→B"),
                                       (.data, .bToA, "data segment B→A", "data segments B→A"),
                                       (.ack, .aToB, "ACK A→B", "ACKs A→B"),
                                       (.ack, .bToA, "ACK B→A", "ACKs B→A")] {
            let n = count(kind, dir)
            if n > 0 { parts.append("\(n) \(n == 1 ? one : many)") }
        }
        return "… " + parts.joined(separator: ", ") + " …"
    }

    /// The recorder keeps only the first and last few bulk segments (and those near the fault);
    /// the wire summary still counts all of them.
    static func thinning(_ r: TrialResult) -> String? {
        var parts: [String] = []
        for (kind, name) in [(SegmentKind.data, "data segments"), (.ack, "ACKs")] {
            let shown = r.timeline.filter { $0.kind == kind }.count
            let all = r.wire.count(kind, .aToB) + r.wire.count(kind, .bToA)
            if all > shown { parts.append("\(shown) of \(all) \(name)") }
        }
        guard !parts.isEmpty else { return nil }
        return "The trial's timeline keeps " + parts.joined(separator: " and ")
            + " (the first and last few, and all within 1 s of the fault); the others are not drawn."
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
}
