/// One trial's packet exchange as a text ladder in the style of the TCP Keepalive HOWTO (ch. 2):
/// columns A | R | B, time running down the page, one line per segment.
///
/// Times are seconds relative to the fault, as captured on R's link toward A. A→B labels sit in
/// the A–R half and B→A labels in the R–B half, so the sender is on the label's side. While B's
/// host is down its column is blank and segments sent to it end in `X`. A segment R dropped ends
/// in `x` on R's column (`→x`, as the HOWTO's "invalid connection"); `?` on R's column: no reply,
/// and the capture cannot tell whether R lost the segment or its reply. `X` on R's column is R's
/// conntrack forgetting the connection, `^` there a partition healing.
public enum Ladder {
    static let laneA = 0
    static let laneR = 30
    static let laneB = 60

    /// The ladder inside a ```text fence, with a note when bulk traffic was left out.
    public static func markdown(_ r: TrialResult) -> String {
        let story = TrialStory(r)
        var out = "```text\n" + render(story) + "```\n"
        if let note = story.thinningNote { out += "\n" + note + "\n" }
        return out
    }

    /// The bare ladder, one line per segment or event, each ending in a newline.
    public static func render(_ r: TrialResult) -> String { render(TrialStory(r)) }

    static func render(_ story: TrialStory) -> String {
        var lines: [String] = []
        lines.append(timeColumn("t (s)") + place(["A", "R", "B"]))
        lines.append(timeColumn("from fault") + place(["client", "router", "server"]))
        var bDown = false
        lines.append(timeColumn("") + lanes(bDown: false))
        for line in story.lines {
            switch line {
            case .segment(let e, let label, let path, let note):
                var row = lanes(bDown: bDown)
                draw(e, label: label, path: path, on: &row)
                lines.append(timeColumn(fmtSigned(e.t)) + String(row) + (note.map { "  (\($0))" } ?? ""))
            case .marker(let t, let marker, let text):
                var row = lanes(bDown: bDown)
                switch marker {
                case .fault:
                    // X: B's host is gone; x: only B's server process is hit.
                    switch story.fault.site {
                    case .nowhere: break
                    case .peerProcess: row[laneB] = "x"
                    // The network faults happen in R; B stays healthy.
                    case .router: row[laneR] = "x"
                    case .peerHost:
                        row[laneB] = "X"
                        bDown = true
                    // A's host is gone; B (the server) is the side that has to notice.
                    case .clientHost: row[laneA] = "X"
                    }
                case .bBack:
                    bDown = false
                    row[laneB] = "^"
                case .detection:
                    row[story.fault.site == .clientHost ? laneB : laneA] = "*"
                case .deadline:
                    row = Array(repeating: "=", count: laneB + 1)
                case .conntrackExpired:
                    row[laneR] = "X"
                case .heal:
                    row[laneR] = "^"
                }
                lines.append(timeColumn(fmtSigned(t)) + String(row) + "  " + text)
            case .bulk(let from, let to, let summary):
                lines.append(timeColumn(fmtSigned(from)) + String(lanes(bDown: bDown, char: ":"))
                             + "  \(summary) (\(fmtSigned(from)) … \(fmtSigned(to)))")
            case .quiet(let seconds):
                lines.append(timeColumn("") + String(lanes(bDown: bDown, char: ":")) + "  (\(fmtSeconds(seconds)) s quiet)")
            }
        }
        return lines.map { trimTrailing($0) + "\n" }.joined()
    }

    // MARK: - Drawing

    private static func timeColumn(_ text: String) -> String {
        String(repeating: " ", count: max(0, 10 - text.count)) + text + "   "
    }

    private static func lanes(bDown: Bool, char: Character = "|") -> [Character] {
        var row = Array(repeating: Character(" "), count: laneB + 1)
        row[laneA] = char
        row[laneR] = char
        row[laneB] = bDown ? " " : char
        return row
    }

    /// Words centred on the lanes (the first one starts at A's lane).
    private static func place(_ words: [String]) -> String {
        var row = Array(repeating: Character(" "), count: laneB + 12)
        for (word, lane) in zip(words, [laneA, laneR, laneB]) {
            for (i, ch) in word.enumerated() where lane + i < row.count { row[lane + i] = ch }
        }
        return String(row)
    }

    private static func draw(_ e: TimelineEntry, label: String, path: TrialStory.Path, on row: inout [Character]) {
        // ICMP errors and a firewall's RSTs come from R (see SegmentClassifier: an ICMP error's
        // direction is where it heads).
        switch (e.direction, path == .fromR) {
        case (.aToB, false) where path == .droppedAtR:
            fill(&row, laneA + 1, laneR - 1)
            row[laneR - 1] = "→"
            row[laneR] = "x"
            put(label, in: &row, laneA + 1, laneR - 2)
        case (.aToB, false):
            fill(&row, laneA + 1, laneB - 1)
            row[laneR] = path == .maybeLostAtR ? "?" : "|"
            row[laneB - 1] = "→"
            if path == .toDeadPeer { row[laneB] = "X" }
            put(label, in: &row, laneA + 1, laneR - 1)
        case (.bToA, false) where path == .droppedAtR:
            fill(&row, laneR + 1, laneB - 1)
            row[laneR + 1] = "←"
            row[laneR] = "x"
            put(label, in: &row, laneR + 2, laneB - 1)
        case (.bToA, false):
            fill(&row, laneA + 1, laneB - 1)
            row[laneR] = path == .maybeLostAtR ? "?" : "|"
            row[laneA + 1] = "←"
            put(label, in: &row, laneR + 1, laneB - 1)
        case (.bToA, true):
            fill(&row, laneA + 1, laneR - 1)
            row[laneA + 1] = "←"
            put(label, in: &row, laneA + 2, laneR - 1)
        case (.aToB, true):
            fill(&row, laneR + 1, laneB - 1)
            row[laneB - 1] = "→"
            put(label, in: &row, laneR + 1, laneB - 2)
        case (.other, _):
            put(label, in: &row, laneA + 1, laneB - 1)
        }
    }

    private static func fill(_ row: inout [Character], _ from: Int, _ to: Int) {
        for i in from...to { row[i] = "-" }
    }

    /// Centres " label " between columns `from` and `to` (inclusive), clipping if it cannot fit.
    private static func put(_ label: String, in row: inout [Character], _ from: Int, _ to: Int) {
        let text = Array(" " + label + " ")
        let span = to - from + 1
        let clipped = text.count > span ? Array(text.prefix(span)) : text
        let start = from + (span - clipped.count) / 2
        for (i, ch) in clipped.enumerated() { row[start + i] = ch }
    }

    private static func trimTrailing(_ s: String) -> String {
        var s = Substring(s)
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
