import Foundation

/// How a trial result is printed by `keepalive-lab trial`.
public enum TrialOutput {
    public static func json(_ result: TrialResult) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(result), as: UTF8.self)
    }

    /// The timeline in a few lines.
    public static func human(_ r: TrialResult) -> String {
        func s(_ v: Double?) -> String { v.map { String(format: "%.3f s", $0) } ?? "—" }
        var lines: [String] = []
        let spec = r.spec
        lines.append("policy \(spec.clientPolicy.summary) · workload \(spec.workload) · fault \(spec.fault) · kernel \(r.kernel) (\(r.backend))")
        if let lastRx = r.marks.lastReceived { lines.append(String(format: "  %+8.3f s  last segment A received from B", lastRx)) }
        lines.append("  +0.000 s  fault injected (\(spec.fault))")
        if let back = r.marks.bBack { lines.append(String(format: "  %+8.3f s  B back (fresh host, same IP and MAC)", back)) }
        if let detection = r.detectionLatencyS {
            lines.append(String(format: "  %+8.3f s  client learned: %@", detection, r.detectedBy ?? "?"))
        }
        if let abort = r.wireAbortS { lines.append(String(format: "  %+8.3f s  A's RST on the wire", abort)) }
        lines.append("outcome \(r.outcome.rawValue)\(r.errno.map { " (\($0))" } ?? "") · since last rx \(s(r.sinceLastRxS)) · "
                     + "expected \(s(r.expectedS))\(r.expected.map { " [\($0.formula), from \($0.anchor.rawValue)]" } ?? "")"
                     + " · within tolerance \(r.withinTolerance.map { $0 ? "yes" : "NO" } ?? "n/a")")
        lines.append("wire after fault: \(r.probesSent) probe(s), \(r.probeReplies) repl(y/ies), RST \(r.rstSeen ? "seen" : "none"), "
                     + "\(r.bytesAfterFault) bytes (\(r.bytesOnWire) in the whole trial)\(r.pcap.map { " · pcap \($0)" } ?? "")")
        lines += networkLines(r)
        for note in r.notes { lines.append("note: \(note)") }
        return lines.joined(separator: "\n")
    }
}
