/// Checks a lab's expectations against the trials of each cell.
public enum ExpectationEvaluator {
    public struct Verdict: Sendable, Equatable {
        public var expectation: LabExpectation
        public var cellKey: String
        public var passed: Bool
        /// The numbers behind the verdict.
        public var detail: String
        public var name: String { "\(cellKey): \(expectation.summary)" }
    }

    /// One verdict per (expectation, cell it applies to). A cell with no trials fails: an
    /// expectation is never passed by default.
    public static func evaluate(_ lab: Lab, records: [RunRecord]) -> [Verdict] {
        var verdicts: [Verdict] = []
        for expectation in lab.expectations {
            for cell in lab.cells where expectation.applies(to: cell) {
                let results = records.filter { $0.cellKey == cell.key }.compactMap(\.result)
                let (passed, detail) = check(expectation.rule, results)
                verdicts.append(Verdict(expectation: expectation, cellKey: cell.key, passed: passed, detail: detail))
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
            return (matched == n, "\(matched) of \(n) trials within 4 ms + 12.5 % of the kernel formula")
        }
    }
}
