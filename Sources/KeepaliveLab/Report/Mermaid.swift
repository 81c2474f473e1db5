/// One trial as a Mermaid `sequenceDiagram` (GitHub renders ```mermaid blocks).
/// Same content as the `Ladder`: segments with their time from the fault, notes for the fault,
/// B's return, R forgetting the connection, a partition healing, the detection and collapsed bulk.
/// A segment sent to a dead B ends in a cross at B (`A-xB`), one R dropped in a cross at R
/// (`A-xR`); what R sends itself (ICMP, a firewall's RST) is dashed from R. An open arrow (`-)`)
/// is a segment that got no reply when the capture cannot tell whether R lost it or its reply.
public enum Mermaid {
    public static func render(_ r: TrialResult) -> String {
        let story = TrialStory(r)
        var out = ["sequenceDiagram",
                   "    participant A as A (client)",
                   "    participant R as R (router)",
                   "    participant B as B (server)"]
        for line in story.lines {
            switch line {
            case .segment(let e, let label, let path, let note):
                var text = "\(label) (\(fmtSigned(e.t)) s)"
                if let note { text += ", \(note)" }
                text = clean(text)
                switch (e.direction, path) {
                case (.aToB, .fromR): out.append("    R-->>B: \(text)")
                case (.bToA, .fromR): out.append("    R-->>A: \(text)")
                case (.aToB, .droppedAtR): out.append("    A-xR: \(text)")
                case (.bToA, .droppedAtR): out.append("    B-xR: \(text)")
                case (.aToB, .toDeadPeer): out.append("    A-xB: \(text)")
                case (.aToB, .maybeLostAtR): out.append("    A-)B: \(text)")
                case (.bToA, .maybeLostAtR): out.append("    B-)A: \(text)")
                case (.aToB, _): out.append("    A->>B: \(text)")
                case (.bToA, _): out.append("    B->>A: \(text)")
                case (.other, _): out.append("    Note over R: \(text)")
                }
            case .marker(let t, let marker, let text):
                let over: String
                switch marker {
                // The network faults happen in R; B stays healthy.
                case .fault:
                    switch story.fault.site {
                    case .router: over = "R"
                    case .clientHost: over = "A"
                    case .nowhere, .peerHost, .peerProcess: over = "B"
                    }
                case .bBack: over = "B"
                case .conntrackExpired, .heal: over = "R"
                case .detection: over = story.fault.detectingHost
                case .deadline: over = "A,B"
                }
                out.append("    Note over \(over): \(clean("\(fmtSigned(t)) s \(text)"))")
            case .bulk(let from, let to, let summary):
                out.append("    Note over A,B: \(clean("\(summary) (\(fmtSigned(from)) … \(fmtSigned(to)) s)"))")
            case .quiet(let seconds):
                out.append("    Note over A,B: \(clean("\(fmtSeconds(seconds)) s quiet"))")
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// In a ```mermaid fence.
    public static func markdown(_ r: TrialResult) -> String { "```mermaid\n" + render(r) + "```\n" }

    /// Mermaid reads `;` as a statement end, `#…;` as an entity and `<…>` as HTML.
    static func clean(_ s: String) -> String {
        s.replacingOccurrences(of: ";", with: ",")
            .replacingOccurrences(of: "#", with: "no. ")
            .replacingOccurrences(of: "<", with: "‹")
            .replacingOccurrences(of: ">", with: "›")
    }
}
