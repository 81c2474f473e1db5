/// Compares two runs' summary.json (e.g. main vs. a pull request): latency and overhead per cell,
/// matched by policy name, fault and workload, and the expectations that changed verdict.
public enum RunComparison {
    /// - Returns: the Markdown, and how many expectations fail in `head` (CI fails when > 0).
    public static func markdown(base: SummaryJSON, head: SummaryJSON) -> (text: String, failingExpectations: Int) {
        let baseCells = Dictionary(base.cells.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let headKeys = Set(head.cells.map(\.key))
        var md = ["## keepalive-lab: \(base.lab) → \(head.lab)", ""]
        md.append("Base: \(base.date), kernel \(base.kernel) (\(base.backend)). Head: \(head.date), kernel \(head.kernel) (\(head.backend)).")
        if base.kernel != head.kernel || base.backend != head.backend {
            md.append("")
            md.append("⚠️ Kernel or backend differ between the runs: timing changes may come from the environment, not the code.")
        }
        md.append("")
        md.append("| Cell | Outcomes | Latency median (s) | p95 (s) | Idle overhead (B/h) | Expectations |")
        md.append("|---|---|--:|--:|--:|---|")
        var flippedToFail: [String] = []
        var flippedToPass: [String] = []
        var newFailing: [String] = []
        for h in head.cells {
            guard let b = baseCells[h.key] else {
                md.append("| " + [h.key.description, h.stats.outcomeSummary + " (new)", fmtSeconds(h.stats.latencyMedianS),
                                  fmtSeconds(h.stats.latencyP95S), fmtBytes(h.stats.overhead?.bytesPerHour),
                                  MarkdownReport.expectationBadge(h.expectations)].map(markdownCell).joined(separator: " | ") + " |")
                newFailing += h.expectations.filter(\.failed).map { "\(h.key): \($0.name): \($0.detail)" }
                continue
            }
            let outcomes = b.stats.outcomeSummary == h.stats.outcomeSummary
                ? h.stats.outcomeSummary : "\(b.stats.outcomeSummary) → \(h.stats.outcomeSummary)"
            md.append("| " + [h.key.description, outcomes,
                              change(b.stats.latencyMedianS, h.stats.latencyMedianS, format: fmtSeconds),
                              change(b.stats.latencyP95S, h.stats.latencyP95S, format: fmtSeconds),
                              change(b.stats.overhead?.bytesPerHour, h.stats.overhead?.bytesPerHour, format: fmtBytes),
                              badgeChange(b.expectations, h.expectations)]
                .map(markdownCell).joined(separator: " | ") + " |")
            let before = Dictionary(b.expectations.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            // An expectation not run (another shard's cell) neither flips nor fails.
            for e in h.expectations where e.notRun == nil {
                switch (before[e.name].flatMap { $0.notRun == nil ? $0.passed : nil }, e.passed) {
                case (true?, false): flippedToFail.append("\(h.key): \(e.name): \(e.detail) (was: \(before[e.name]!.detail))")
                case (false?, true): flippedToPass.append("\(h.key): \(e.name): \(e.detail) (was: \(before[e.name]!.detail))")
                case (nil, false): newFailing.append("\(h.key): \(e.name): \(e.detail)")
                default: break
                }
            }
        }
        let gone = base.cells.filter { !headKeys.contains($0.key) }
        md.append("")
        if !flippedToFail.isEmpty {
            md += ["### ❌ Expectations that now fail", ""] + flippedToFail.map { "- " + $0 } + [""]
        }
        if !newFailing.isEmpty {
            md += ["### ❌ New expectations that fail", ""] + newFailing.map { "- " + $0 } + [""]
        }
        if !flippedToPass.isEmpty {
            md += ["### ✅ Expectations that now pass", ""] + flippedToPass.map { "- " + $0 } + [""]
        }
        if flippedToFail.isEmpty && flippedToPass.isEmpty {
            md += ["No expectation changed verdict.", ""]
        }
        if !gone.isEmpty {
            md += ["### Cells only in base", ""] + gone.map { "- \($0.key)" } + [""]
        }
        let failing = head.cells.flatMap(\.expectations).filter(\.failed).count
        let total = head.cells.flatMap(\.expectations).count
        md.append(failing == 0 ? "Head: all \(total) expectations pass ✅" : "Head: \(failing) of \(total) expectations fail ❌")
        return (md.joined(separator: "\n") + "\n", failing)
    }

    static func badgeChange(_ base: [ExpectationCheck], _ head: [ExpectationCheck]) -> String {
        let b = MarkdownReport.expectationBadge(base)
        let h = MarkdownReport.expectationBadge(head)
        return b == h ? h : "\(b) → \(h)"
    }

    /// "4.883 → 4.901 (+0.018, +0.4 %)"; "4.883" when unchanged; "— → 4.901" when new.
    static func change(_ base: Double?, _ head: Double?, format: (Double?) -> String) -> String {
        guard let b = base, let h = head else {
            return base == nil && head == nil ? "—" : "\(format(base)) → \(format(head))"
        }
        if format(b) == format(h) { return format(h) }
        let delta = h - b
        let sign = delta >= 0 ? "+" : "−"
        var text = "\(format(b)) → \(format(h)) (\(sign)\(format(abs(delta)))"
        if b != 0 { text += ", \(sign)\(fmtNumber((abs(delta) / abs(b) * 1000).rounded() / 10)) %" }
        return text + ")"
    }
}
