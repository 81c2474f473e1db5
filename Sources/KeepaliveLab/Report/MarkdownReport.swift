/// report.md: what a reviewer reads in a pull request.
public enum MarkdownReport {
    /// - Parameter chartsPrefix: prepended to the SVG file names in links, e.g. "" when the charts
    ///   sit next to report.md, or "charts/".
    public static func render(_ input: RunReportInput, chartsPrefix: String) -> String {
        let findings = Findings.derive(input.cells)
        var md: [String] = []
        md += header(input)
        md += summaryTable(input.cells)
        md += outcomeMatrix(input.cells)
        md.append("")
        md += programsSection(input.cells)
        md += errorsSection(input.cells)
        md.append("## Charts")
        md.append("")
        md.append("![Detection latency per cell](\(chartsPrefix)\(SVGChart.latencyFileName))")
        md.append("")
        md.append("![Probe timeline of representative trials](\(chartsPrefix)\(SVGChart.timelineFileName))")
        md.append("")
        md += findingsSection(findings)
        for (i, cell) in input.cells.enumerated() {
            md += cellSection(cell, number: i + 1)
        }
        md += howToRead()
        return md.joined(separator: "\n") + "\n"
    }

    // MARK: - Sections

    static func header(_ input: RunReportInput) -> [String] {
        let trials = input.cells.reduce(0) { $0 + $1.results.count }
        let all = input.cells.flatMap(\.expectations)
        let checks = all.filter { $0.notRun == nil }
        let notRun = all.count - checks.count
        let passed = checks.filter(\.passed).count
        let errored = input.cells.reduce(0) { $0 + $1.errors.count }
        var md = ["# keepalive-lab report: \(input.lab)", ""]
        if !input.description.isEmpty { md += input.description.split(separator: "\n", omittingEmptySubsequences: false).map { "> " + $0 } + [""] }
        md.append("| | |")
        md.append("|---|---|")
        md.append("| Date | \(markdownCell(input.date)) |")
        md.append("| Kernel | \(markdownCell(input.kernel + (input.kernelDetail.map { " — \($0)" } ?? ""))) |")
        md.append("| Backend | \(markdownCell(input.backend)) |")
        if let clock = input.clock { md.append("| Clock | \(markdownCell(clock)) |") }
        if let concurrency = input.concurrency { md.append("| Concurrency | \(markdownCell(concurrency)) |") }
        md.append("| Impairment engine | \(markdownCell(input.impairmentEngine ?? "none (no impairment in this lab)")) |")
        md.append("| Trials | \(trials) in \(input.cells.count) cell\(input.cells.count == 1 ? "" : "s")"
                  + (errored > 0 ? ", \(errored) errored ❌ (see Errored trials)" : "") + " |")
        if !input.damagedLines.isEmpty {
            md.append("| Damaged results | ❌ \(input.damagedLines.count) line\(input.damagedLines.count == 1 ? "" : "s") of results.jsonl "
                      + "could not be read and are left out of every number here: line \(input.damagedLines.joined(separator: ", ")) |")
        }
        var expectations = all.isEmpty ? "none declared"
            : checks.isEmpty ? "none evaluated" : "\(passed) of \(checks.count) passed \(passed == checks.count ? "✅" : "❌")"
        if notRun > 0 { expectations += "; \(notRun) not run (cells of another shard, or an interrupted run)" }
        md.append("| Expectations | " + expectations + " |")
        md.append("")
        md.append("Reproduce:")
        md.append("")
        let fence = codeFence(for: input.command)
        md += [fence + "sh", input.command, fence, ""]
        return md
    }

    /// The representative trial's kernel events against the timer model: each one's predicted
    /// instant, the window the timer wheel allows at that HZ (how late it may be), the measurement
    /// and whether it is inside. Seconds after the expectation's anchor.
    static func eventTable(_ r: TrialResult) -> [String] {
        guard let events = r.events, !events.isEmpty, let e = r.expected else { return [] }
        var md = ["", "Kernel events vs the timer model (HZ=\(e.hz.map(String.init) ?? "?"); seconds after "
                  + "\(Findings.anchorPhrase(e.anchor))):", ""]
        md.append("| Event | Predicted | Allowed window | Allowed lateness | Measured | Step from previous (measured / window) | |")
        md.append("|---|--:|--:|--:|--:|--:|:-:|")
        func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "—" }
        for c in events {
            let window = c.earliest.flatMap { a in c.latest.map { b in "\(f(a)) … \(f(b))" } } ?? "not expected"
            let lateness = c.predicted.flatMap { p in c.latest.map { f($0 - p) } } ?? "—"
            let step = c.sincePrevious.map { gap in
                "\(f(gap)) / " + (c.stepEarliest.flatMap { a in c.stepLatest.map { b in "\(f(a)) … \(f(b))" } } ?? "—")
            } ?? "—"
            let name = c.kind == .abort ? "abort" : "\(c.kind.rawValue.replacingOccurrences(of: "_", with: " ")) \(c.index)"
            md.append("| \(name) | \(f(c.predicted)) | \(window) | \(lateness) | \(f(c.measured)) | \(step) | \(c.inside ? "✅" : "❌ outside") |")
        }
        md.append("")
        return md
    }

    /// Policies down, faults across: which policy survives (or detects) what, at a glance. Only
    /// when the lab crosses at least two policies with two faults.
    static func outcomeMatrix(_ cells: [Cell]) -> [String] {
        func column(_ c: Cell) -> String { c.workload == "idle" ? c.fault : "\(c.fault) (\(c.workload))" }
        var policies: [String] = [], columns: [String] = []
        for c in cells {
            if !policies.contains(c.policyName) { policies.append(c.policyName) }
            if !columns.contains(column(c)) { columns.append(column(c)) }
        }
        guard policies.count >= 2, columns.count >= 2 else { return [] }
        var md = ["", "### Outcomes: policy × fault", ""]
        md.append("| Policy | " + columns.map(markdownCell).joined(separator: " | ") + " |")
        md.append("|---|" + String(repeating: "---|", count: columns.count))
        for policy in policies {
            let row = columns.map { name -> String in
                guard let c = cells.first(where: { $0.policyName == policy && column($0) == name }) else { return "—" }
                let badge = c.expectations.isEmpty ? "" : (c.expectations.allSatisfy { $0.passed || $0.notRun != nil } ? " ✅" : " ❌")
                return markdownCell(c.stats.outcomeSummary + badge)
            }
            md.append("| **\(markdownCell(policy))** | " + row.joined(separator: " | ") + " |")
        }
        return md
    }

    static func summaryTable(_ cells: [Cell]) -> [String] {
        var md = ["## Summary", ""]
        md.append("| Policy | Fault | Workload | Trials | Outcomes | Latency median (s) | p95 | max | Expected (s) | errno | Probes | Bytes all / after fault | Idle overhead (B/h) | False positives | Expectations |")
        md.append("|---|---|---|--:|---|--:|--:|--:|--:|---|--:|--:|--:|--:|---|")
        for cell in cells { md.append(row(cell)) }
        md.append("")
        md.append("Latency: fault → the client's detection (the server's for crash-client), over detected trials (p95 is nearest-rank: with few trials it is the maximum). "
                  + "Expected: the formula's prediction moved onto the fault's clock. Probes, bytes: medians per trial. "
                  + "Idle overhead: what the policy sends per hour on an idle connection with a healthy B (basis per cell below). "
                  + "False positives: closed connections among trials where B stayed healthy (n/a for nat-idle: "
                  + "there R, not A, breaks the connection; its outcomes are survived or broken).")
        return md
    }

    static func row(_ cell: Cell) -> String {
        let s = cell.stats
        let policy = cell.policyName == cell.policySummary ? cell.policyName : "**\(cell.policyName)**<br>\(cell.policySummary)"
        // nat-idle trials end survived or broken (R forgot the connection), never as a false positive.
        var natIdle = false
        if case .natIdle = cell.results.first?.spec.fault { natIdle = true }
        let fp = s.healthyTrials > 0 && !natIdle ? "\(fmtPercent(s.falsePositiveRate)) (\(s.falsePositive)/\(s.healthyTrials))" : "n/a"
        let cols = [
            policy, cell.fault, cell.workload, "\(s.trials)" + (cell.errors.isEmpty ? "" : " (+\(cell.errors.count) errored)"), s.outcomeSummary,
            fmtSeconds(s.latencyMedianS), fmtSeconds(s.latencyP95S), fmtSeconds(s.latencyMaxS), fmtSeconds(s.expectedS),
            s.errno ?? "—", s.probesMedian.map(fmtNumber) ?? "—",
            "\(fmtBytes(s.bytesMedian)) / \(fmtBytes(s.bytesAfterFaultMedian))",
            fmtBytes(s.overhead?.bytesPerHour), fp, expectationBadge(cell.expectations),
        ]
        return "| " + cols.map(markdownCell).joined(separator: " | ") + " |"
    }

    /// Per real program: when it noticed, how, what it cost on the wire, and the settings read back
    /// from its socket next to what the policy asked for (`ProgramFacts`).
    static func programsSection(_ cells: [Cell]) -> [String] {
        let rows = cells.compactMap { cell in cell.programFacts.map { (cell, $0) } }
        guard !rows.isEmpty else { return [] }
        var md = ["## Programs", ""]
        md.append("When and how each program noticed (the detecting program: the client in A, or the server in B for crash-client).")
        md.append("")
        md.append("| Policy | Fault | Program (side) | Noticed | After fault (s) median / max | How | Exit | errno (from) | Socket gone (state; left table) | The program's words |")
        md.append("|---|---|---|--:|--:|---|---|---|---|---|")
        for (cell, p) in rows {
            let cols = [
                cell.policyName, cell.fault, "\(p.program) (\(p.side); vs \(p.partner))",
                "\(p.noticed)/\(p.trials)",
                p.noticedMedianS == nil ? "—" : "\(fmtSeconds(p.noticedMedianS)) / \(fmtSeconds(p.noticedMaxS))",
                p.how ?? "did not notice",
                p.exited == 0 ? "—" : "status \(p.exitStatus.map(String.init) ?? "?") (\(p.exited)/\(p.trials))",
                p.errno.map { e in p.errnoSource.map { "\(e) (\($0))" } ?? e } ?? "—",
                p.socketGone == 0 ? "—" : "\(p.socketGone)/\(p.trials) (\(p.socketState ?? "?"); \(p.leftSocketTable)/\(p.socketGone))",
                p.errorText.map { "`\($0.replacingOccurrences(of: "`", with: "'"))`" } ?? "—",
            ]
            md.append("| " + cols.map(markdownCell).joined(separator: " | ") + " |")
        }
        md.append("")
        md.append("What it cost on the wire after the fault (medians per trial) and the settings read back from the program's socket just before the fault.")
        md.append("")
        md.append("| Policy | Fault | Kernel probes | App pings sent / replies (bytes) | Bytes after fault | Wakeups/s client / server | SO_KEEPALIVE | KEEPIDLE / KEEPINTVL / KEEPCNT | TCP_USER_TIMEOUT | Policy asked for |")
        md.append("|---|---|--:|--:|--:|--:|---|---|--:|---|")
        for (cell, p) in rows {
            let s = p.readBack
            func n(_ v: Int?) -> String { v.map(String.init) ?? "?" }
            func num(_ v: Double?) -> String { v.map(fmtNumber) ?? "—" }
            let pings: String = num(p.appPingsMedian) + " / " + num(p.appPingRepliesMedian) + " (" + fmtBytes(p.appPingBytesMedian) + " B)"
            var soKeepalive = "—"
            var timers = "—"
            var userTimeout = "—"
            if let s {
                soKeepalive = s.soKeepalive.map { $0 ? "on" : "off" } ?? "?"
                timers = n(s.keepIdle) + " / " + n(s.keepIntvl) + " / " + n(s.keepCnt) + (s.soKeepalive == false ? " (unused)" : "")
                userTimeout = s.userTimeoutMs.map { "\($0) ms" } ?? "?"
            }
            let asked: String = p.asked + (p.readBackVaries ? " (read-back varied between trials)" : "")
            func rate(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "—" }
            let wakeups = rate(p.clientWakeupsPerSMedian) + " / " + rate(p.serverWakeupsPerSMedian)
            let cols: [String] = [cell.policyName, cell.fault, num(p.kernelProbesMedian), pings, fmtBytes(p.bytesAfterFaultMedian),
                                  wakeups, soKeepalive, timers, userTimeout, asked]
            md.append("| " + cols.map(markdownCell).joined(separator: " | ") + " |")
        }
        md.append("")
        md.append("Kernel probes: keepalive probes sent by the detecting side's kernel. App pings: data segments of at most \(Trial.appPingMaxBytes) bytes "
                  + "the program itself sent on the idle connection (ssh's keepalive@openssh.com, a Redis PING, a query), with the replies it got, "
                  + "retransmissions included (in nat-idle cells that includes the lab's own request after the silence). "
                  + "Wakeups/s: context switches per second of the trial's clock, from the fault to the end, summed over the program's process tree "
                  + "(— when no process of it lived through that interval, e.g. a crashed B's server): a program on a periodic timer shows its rate. "
                  + "Socket gone: the kernel ended the program's connection (state then; in how many trials sock_diag no longer listed it). "
                  + "errno from output: the program printed it; from wire: the RST after unanswered probes (ETIMEDOUT) or from a rebooted peer (ECONNRESET).")
        md.append("")
        return md
    }

    static func expectationBadge(_ all: [ExpectationCheck]) -> String {
        guard !all.isEmpty else { return "—" }
        let checks = all.filter { $0.notRun == nil }
        let notRun = all.count - checks.count
        guard !checks.isEmpty else { return "⏭ \(notRun) not run" }
        let passed = checks.filter(\.passed).count
        return (passed == checks.count ? "✅" : "❌") + " \(passed)/\(checks.count)" + (notRun > 0 ? ", \(notRun) not run" : "")
    }

    /// Every trial that could not run, by cell, with its error: they are results too, and a cell
    /// with one fails its expectations unless the lab says `allow_errors`.
    static func errorsSection(_ cells: [Cell]) -> [String] {
        let errored = cells.filter { !$0.errors.isEmpty }
        guard !errored.isEmpty else { return [] }
        var md = ["## Errored trials", ""]
        for cell in errored {
            for e in cell.errors {
                md.append("- **\(markdownCell(cell.key.description))** trial \(e.trial): `\(e.message.replacingOccurrences(of: "`", with: "'").replacingOccurrences(of: "\n", with: " "))`")
            }
        }
        md.append("")
        return md
    }

    static func findingsSection(_ findings: [Finding]) -> [String] {
        var md = ["## Findings", ""]
        if findings.isEmpty { return md + ["No finding: the trials gave nothing to state with confidence.", ""] }
        for f in findings {
            md.append("- " + (f.cell.map { "**\($0)**: " } ?? "") + f.text + ".")
        }
        md.append("")
        return md
    }

    static func cellSection(_ cell: Cell, number: Int) -> [String] {
        let s = cell.stats
        var md = ["## \(number). \(cell.key.description)", ""]
        md.append(cell.policyName == cell.policySummary ? "- Policy: \(cell.policySummary)" : "- Policy: **\(cell.policyName)** (\(cell.policySummary))")
        // Errored trials are counted in the outcomes, so in the total too.
        var outcome = "- Outcomes: \(s.outcomeSummary) of \(s.trials + cell.errors.count)"
        if s.latencyMedianS != nil {
            outcome += "; latency median \(fmtSeconds(s.latencyMedianS)) s, p95 \(fmtSeconds(s.latencyP95S)) s, max \(fmtSeconds(s.latencyMaxS)) s"
        }
        md.append(outcome)
        if let formula = s.expectedFormula {
            md.append("- Expected: \(fmtSeconds(s.expectedS)) s after the fault (\(formula)); within tolerance in \(s.withinTolerance) of \(s.withFormula)")
        }
        if let o = s.overhead { md.append("- Idle overhead: \(fmtBytes(o.bytesPerHour)) B/h: \(o.basis)") }
        if cell.expectations.isEmpty {
            md.append("- Expectations: none declared")
        } else {
            md.append("- Expectations:")
            for e in cell.expectations {
                let mark = e.notRun != nil ? "⏭ \(e.label)" : e.passed ? "✅" : "❌"
                md.append("  - \(mark) \(e.name): \(e.detail)")
            }
        }
        md.append("")
        if !cell.errors.isEmpty {
            md.append("Errored: " + cell.errors.map { "trial \($0.trial)" }.joined(separator: ", ") + " (see Errored trials).")
            md.append("")
        }
        guard let r = cell.representative, let index = cell.representativeIndex else {
            return md + ["No finished trials in this cell.", ""]
        }
        let why = r.outcome == .detected ? "median latency" : "first trial; none detected"
        var line = "Representative trial: \(index + 1) of \(cell.results.count) (\(why)), outcome \(r.outcome.rawValue)"
        if let d = r.detectionLatencyS { line += ", \(r.detectedBy ?? "detected") after \(fmtSeconds(d)) s" }
        line += ", kernel \(r.kernel) (\(r.backend))"
        if let pcap = r.pcap { line += ", capture `\(pcap)`" }
        md.append(line + ".")
        md.append("")
        md.append(Ladder.markdown(r))
        md += eventTable(r)
        md.append("<details><summary>Same trial as a sequence diagram</summary>")
        md.append("")
        md.append(Mermaid.markdown(r))
        md.append("</details>")
        md.append("")
        if !r.notes.isEmpty {
            md += r.notes.map { "- Note: \($0)" }
            md.append("")
        }
        return md
    }

    static func howToRead() -> [String] {
        [
            "## How to read this",
            "",
            "- Time zero is the fault. Every time is in seconds from it; negative times are before it.",
            "- The ladders are drawn from the capture on R's link toward A: A on the left, R (the router) in the middle, B on the right, time running down. "
                + "A→B labels sit between A and R, B→A labels between R and B. `X` on B's column is B's host going down; "
                + "while it is down its column is blank and segments sent to it end in `X`. `x` is a fault that leaves B's host up "
                + "(on B's column: its server killed or frozen; on R's: a network fault in R). `^` is B coming back, `*` on A's column is the moment "
                + "A's application learned, `:` marks a quiet stretch or collapsed bulk data, `=====` the end of the trial.",
            "- Network faults: a segment that ends in `→x` on R's column was dropped by R (a partition, a loss it is known to have suffered, "
                + "or a NAT that no longer knows the connection: \"invalid connection\" in the HOWTO's ladder) and never reached B. "
                + "`?` on R's column: no reply came and the capture cannot tell whether R lost the segment or its reply. "
                + "`X` on R's column is R's conntrack forgetting the connection, `^` there a partition healing. "
                + "A line drawn from R's column back to A was sent by R itself (ICMP, or a firewall's RST in B's name). "
                + "B→A segments R dropped are not drawn: the capture on R's link toward A never sees them.",
            "- A keepalive probe is an empty ACK with seq = SND.UNA − 1; its reply is a duplicate ACK. ICMP lines come from R.",
            "- Expected values come from the kernel's timer rules (net/ipv4/tcp_timer.c): a silent peer is declared dead `idle + count × interval` "
                + "after the last segment A received; with TCP_USER_TIMEOUT the probe count is ignored; with unacknowledged data no probe is sent "
                + "and retransmissions (capped by TCP_USER_TIMEOUT) decide. Timers never fire early but land in timer-wheel buckets "
                + "(kernel/time/timer.c: up to 8^level jiffies late, each re-arm from the previous firing), so a trial matches when every "
                + "modelled probe, retransmission and abort lies in its window (`events` in results.jsonl); with the kernel's HZ unknown, "
                + "within 4 ms + 12.5 % above the formula.",
            "- Detected: B was broken and A found out before the deadline. Missed: it did not. "
                + "False positive: B was healthy and the connection was closed anyway. Survived: B was healthy and the connection stayed open.",
            "",
        ]
    }

    /// A fence longer than any run of backticks in `text`.
    static func codeFence(for text: String) -> String {
        var longest = 0
        var run = 0
        for ch in text {
            run = ch == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        return String(repeating: "`", count: max(3, longest + 1))
    }
}
