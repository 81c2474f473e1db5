/// One trial's exchange in the order a reader follows it: segments, the key instants (fault, B back,
/// R forgetting the connection, a partition healing, detection, deadline), quiet stretches and
/// collapsed bulk data. Ladder and Mermaid both draw it.
///
/// What became of each segment past R, and what part it plays, come from the analysis
/// (`TrialInference`); this only words and arranges them.
struct TrialStory {
    enum Marker: Equatable {
        case fault, bBack, detection, deadline
        /// nat-idle: R's conntrack no longer has the connection.
        case conntrackExpired
        /// partition: R forwards again.
        case heal
    }

    typealias Path = TrialInference.Path

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
        let inference = TrialInference(r)

        var probeNumber = 0
        var items: [(t: Double, line: Line)] = r.timeline.enumerated().map { i, e in
            if e.kind == .keepaliveProbe { probeNumber += 1 }
            let label = Self.label(e, probeNumber: probeNumber, fault: fault)
            let notes = [inference.roles[i].map { Self.note($0, r) }, inference.paths[i].why.map(Self.why)].compactMap { $0 }
            return (e.t, .segment(e, label: label, path: inference.paths[i].path,
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
    static func note(_ role: TrialInference.Role, _ r: TrialResult) -> String {
        switch role {
        case .lastHeardByB: return "last segment B hears from A"
        case .bAborts: return "B aborts the connection"
        case .answerLastHeardByA: return "the answer; last segment A hears from B"
        case .lastHeardByA: return "last segment A hears from B"
        case .aAborts: return "A aborts the connection"
        case .freshKernelReset: return "B's fresh kernel has no such connection"
        case .icmpFromR: return "from R"
        case .request: return "the request after \(fmtNumber(r.spec.effectiveSilence ?? r.marks.send ?? 0)) s of silence"
        }
    }

    /// Why a segment took its path past R.
    static func why(_ reason: TrialInference.Reason) -> String {
        switch reason {
        case .invalidConnection(let refused): return refused ? "refused by R: invalid connection" : "dropped by R: invalid connection"
        case .resetInBsName: return "from R in B's name, not from B: R no longer knows the connection"
        case .partitionDropped: return "dropped by R: partition"
        case .partitionReplyDropped: return "its reply was dropped by R: partition b2a"
        case .beforeDropRule(let dropped): return "passed R before its drop rule was in place (R counted \(dropped) drops)"
        case .partitionEdge(let dropped, let segments): return "at the partition's edge: R counted \(dropped) drops for \(segments) segments"
        case .lostNoReply: return "lost at R: no reply"
        case .replyLost: return "its reply was lost at R"
        case .probeOrReplyLost: return "no reply: R lost the probe or its reply"
        case .countedDrop(let dropped, let unanswered): return "lost at R: R counted \(dropped) drops, \(unanswered) of them the unanswered probes"
        }
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
