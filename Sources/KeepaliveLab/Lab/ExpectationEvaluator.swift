/// Checks a lab's expectations against the trials of each cell.
public enum ExpectationEvaluator {
    public struct Verdict: Sendable, Equatable {
        public enum Status: Sendable, Equatable {
            case passed
            case failed
            /// The cell had no trial in this run, and was not supposed to (another shard's), or was
            /// but the run stopped first. Neither passes nor fails: `merge` decides.
            case notRun(NotRunReason)
        }

        public var expectation: LabExpectation
        public var cellKey: String
        public var status: Status
        /// The numbers behind the verdict.
        public var detail: String
        public var name: String { "\(cellKey): \(expectation.summary)" }
        public var passed: Bool { status == .passed }
        public var failed: Bool { status == .failed }
        /// "PASS", "FAIL", "NOT RUN (other shard)".
        public var label: String {
            switch status {
            case .passed: return "PASS"
            case .failed: return "FAIL"
            case .notRun(let reason): return "NOT RUN (\(reason.rawValue))"
            }
        }
    }

    public enum NotRunReason: String, Sendable, Equatable, Codable {
        case otherShard = "other shard"
        case interrupted
    }

    /// Which cells this run was meant to cover, so a cell without trials can be told apart: another
    /// shard's (not run here), this run's but stopped before it (interrupted), or — in a complete
    /// or merged run — simply missing, which fails.
    public struct Scope: Sendable {
        /// Cell keys with at least one trial in this run's plan (nil: every cell of the lab).
        public var plannedCells: Set<String>?
        /// A merged run: a missing cell is a failure, not something another shard will bring.
        public var complete: Bool

        public init(plannedCells: Set<String>?, complete: Bool) {
            self.plannedCells = plannedCells
            self.complete = complete
        }

        /// Every cell was meant to run here and a missing one fails (a direct evaluation, or merge).
        public static let everything = Scope(plannedCells: nil, complete: true)

        func reasonForNoTrials(_ cellKey: String) -> NotRunReason? {
            if complete { return nil }
            if let planned = plannedCells, !planned.contains(cellKey) { return .otherShard }
            return .interrupted
        }
    }

    /// One verdict per (expectation, cell it applies to). A cell with no trials fails unless the
    /// scope says they belong elsewhere or were cut short: an expectation is never passed by
    /// default. Errored trials fail the expectation unless it says `allow_errors: true`.
    public static func evaluate(_ lab: Lab, records: [RunRecord], scope: Scope = .everything) -> [Verdict] {
        var verdicts: [Verdict] = []
        for expectation in lab.expectations {
            for cell in lab.cells where expectation.applies(to: cell, in: lab.cells) {
                let cellRecords = records.filter { $0.cellKey == cell.key }
                let results = cellRecords.compactMap(\.result)
                let errors = cellRecords.filter { $0.result == nil }
                let verdict: (Verdict.Status, String)
                if cellRecords.isEmpty, let reason = scope.reasonForNoTrials(cell.key) {
                    verdict = (.notRun(reason), "no trials of this cell in this run")
                } else if !errors.isEmpty && !expectation.allowErrors {
                    verdict = (.failed, "\(errors.count) of \(cellRecords.count) trials errored (first: \(errors[0].error ?? "?"))"
                               + " — add allow_errors: true to leave them out")
                } else if results.isEmpty && !errors.isEmpty {
                    verdict = (.failed, "no finished trials: all \(errors.count) errored")
                } else {
                    let (passed, detail) = check(expectation.rule, results)
                    let skipped = errors.isEmpty ? "" : " (\(errors.count) errored trial(s) left out: allow_errors)"
                    verdict = (passed ? .passed : .failed, detail + skipped)
                }
                verdicts.append(Verdict(expectation: expectation, cellKey: cell.key, status: verdict.0, detail: verdict.1))
            }
        }
        return verdicts
    }

    static func check(_ rule: LabExpectation.Rule, _ results: [TrialResult]) -> (Bool, String) {
        guard !results.isEmpty else { return (false, "no finished trials") }
        let n = results.count
        switch rule {
        case let .detectWithin(seconds, percentile):
            let detected = results.filter { $0.outcome == .detected }
            let latencies = detected.compactMap(\.detectionLatencyS)
            guard detected.count == n, latencies.count == n else {
                return (false, "\(detected.count) of \(n) trials detected the fault")
            }
            let value = ReportStats.percentile(latencies, percentile)!
            return (value <= seconds, String(format: "p%@ detection latency %.3f s (limit %@ s, nearest rank) over %d trials",
                                             Fault.format(percentile), value, Fault.format(seconds), n))
        case let .falsePositiveRateAtMost(limit):
            let fp = results.filter { $0.outcome == .falsePositive }.count
            let rate = Double(fp) / Double(n)
            return (rate <= limit, String(format: "%d of %d trials closed a healthy connection (rate %.2f, limit %@)",
                                          fp, n, rate, Fault.format(limit)))
        case .survives:
            let survived = results.filter { $0.outcome == .survived }.count
            return (survived == n, "\(survived) of \(n) trials survived")
        case let .outcome(outcome):
            let matching = results.filter { $0.outcome == outcome }.count
            return (matching == n, "\(matching) of \(n) trials ended \(outcome.rawValue)")
        case .matchesKernelFormula:
            let matched = results.filter { $0.withinTolerance == true }.count
            let modelled = results.filter { $0.events?.isEmpty == false }
            let hz = Set(modelled.compactMap { $0.expected?.hz }).sorted().map { "HZ=\($0)" }.joined(separator: ", ")
            let rule = modelled.count == n
                ? "with every modelled probe, retransmission and abort inside its timer-wheel window (\(hz))"
                : modelled.isEmpty ? "within 4 ms + 12.5 % of the kernel formula"
                : "inside the timer model's windows (\(hz)) or, where HZ was unknown, 4 ms + 12.5 % of the formula"
            return (matched == n, "\(matched) of \(n) trials \(rule)")
        }
    }
}
