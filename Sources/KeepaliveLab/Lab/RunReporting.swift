import Foundation

/// Renders a run directory: from `plan.json` + `results.jsonl` to the report files.
/// Works on an interrupted run too: it renders whatever trials finished.
public enum RunReporting {
    public struct Outcome: Sendable {
        public var verdicts: [ExpectationEvaluator.Verdict]
        public var records: [RunRecord]
        public var failedExpectations: Int { verdicts.filter { !$0.passed }.count }
        public var summaryText: String
    }

    public static func render(directory: RunDirectory) throws -> Outcome {
        let plan = try directory.readPlan()
        let (records, damaged) = try directory.readRecords()
        let verdicts = ExpectationEvaluator.evaluate(plan.lab, records: records)
        var lines = ["\(records.count) trial(s) in \(directory.path)"]
        if !damaged.isEmpty { lines.append("skipped damaged line(s) \(damaged.map(String.init).joined(separator: ", ")) of results.jsonl") }
        for verdict in verdicts {
            lines.append("\(verdict.passed ? "PASS" : "FAIL") \(verdict.name) — \(verdict.detail)")
        }
        return Outcome(verdicts: verdicts, records: records, summaryText: lines.joined(separator: "\n"))
    }
}
