import Foundation

/// Renders a run directory: from `plan.json` + `results.jsonl` to report.md, charts, summary.json
/// and junit.xml. Works on an interrupted run too: it renders whatever trials finished.
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
        let input = reportInput(plan: plan, records: records, verdicts: verdicts)
        try ReportWriter.write(input, to: URL(fileURLWithPath: directory.path))

        var lines = ["\(records.count) trial(s) → \(directory.path)/report.md"]
        if !damaged.isEmpty {
            lines.append("skipped damaged line(s) \(damaged.map(String.init).joined(separator: ", ")) of results.jsonl")
        }
        let failedTrials = records.filter { $0.result == nil }
        for record in failedTrials.prefix(5) { lines.append("trial \(record.cellKey) #\(record.trial + 1) could not run: \(record.error ?? "?")") }
        for verdict in verdicts {
            lines.append("\(verdict.passed ? "PASS" : "FAIL") \(verdict.name) — \(verdict.detail)")
        }
        return Outcome(verdicts: verdicts, records: records, summaryText: lines.joined(separator: "\n"))
    }

    /// Cells in the lab's order, each with its trials and its expectations' verdicts.
    static func reportInput(plan: RunDirectory.Plan, records: [RunRecord],
                            verdicts: [ExpectationEvaluator.Verdict]) -> RunReportInput {
        let cells = plan.lab.cells.compactMap { cell -> Cell? in
            let results = records.filter { $0.cellKey == cell.key }.sorted { $0.index < $1.index }.compactMap(\.result)
            let checks = verdicts.filter { $0.cellKey == cell.key }
                .map { ExpectationCheck(name: $0.name, passed: $0.passed, detail: "\($0.detail) (\($0.expectation.location))") }
            guard !results.isEmpty || !checks.isEmpty else { return nil }
            return Cell(policyName: cell.policy.name, policySummary: cell.policy.summary, fault: cell.fault.fault.description,
                        workload: cell.fault.workload.description, results: results, expectations: checks)
        }
        let results = records.compactMap(\.result)
        let engines = Set(results.compactMap(\.impairmentEngine)).sorted()
        let backends = Set(results.map(\.backend)).sorted()
        let kernels = Set(results.map(\.kernel)).sorted()
        var input = RunReportInput(
            lab: plan.lab.name, description: plan.lab.description, date: plan.started, command: plan.command,
            kernel: kernels.isEmpty ? plan.kernel : kernels.joined(separator: ", "),
            backend: backends.isEmpty ? plan.backend : backends.joined(separator: ", "),
            impairmentEngine: engines.isEmpty ? nil : engines.joined(separator: ", "), cells: cells)
        let clocks = Set(results.compactMap(\.clock)).sorted()
        let clock = clocks.isEmpty ? plan.clock : clocks.joined(separator: ", ")
        input.clock = clock.map { name in LabClock(rawValue: name).map { $0.meaning } ?? name }
        let details = Set(results.compactMap { r in
            r.kernelSource.map { source in source + (r.kernelHz.map { ", HZ=\($0)" } ?? "") }
        }).sorted()
        input.kernelDetail = details.isEmpty ? nil : details.joined(separator: "; ")
        input.concurrency = plan.guests.map { "\($0) UML guests at once (one CPU each), up to \(plan.parallel) trials at once in each" }
            ?? "up to \(plan.parallel) trials at once" + (plan.backend == Backend.uml.rawValue ? " in one UML guest (one CPU)" : "")
        return input
    }

    /// Deletes every capture that is not the representative trial of its cell (what the report
    /// draws), so a committed report stays small. Returns how many were removed.
    @discardableResult
    public static func keepRepresentativePcaps(directory: RunDirectory) throws -> Int {
        let plan = try directory.readPlan()
        let (records, _) = try directory.readRecords()
        let input = reportInput(plan: plan, records: records, verdicts: [])
        let keep = Set(input.cells.compactMap { $0.representative?.pcap })
        var removed = 0
        for record in records {
            guard let pcap = record.result?.pcap, !keep.contains(pcap) else { continue }
            if (try? FileManager.default.removeItem(atPath: "\(directory.path)/\(pcap)")) != nil { removed += 1 }
        }
        return removed
    }

    /// Combines the shards of one lab (same lab name) into `into`: results, pcaps, then the report.
    public static func merge(_ sources: [RunDirectory], into target: RunDirectory) throws -> Outcome {
        let plans = try sources.map { try $0.readPlan() }
        guard let first = plans.first else { throw TrialError(message: "merge: no run directories given") }
        for (plan, source) in zip(plans, sources) where plan.lab.name != first.lab.name || plan.lab != first.lab {
            throw TrialError(message: "merge: \(source.path) ran lab \"\(plan.lab.name)\" from a different lab file than \(sources[0].path) (\"\(first.lab.name)\")")
        }
        try target.create()
        var plan = first
        plan.shard = nil
        plan.command = "keepalive-lab merge " + sources.map(\.path).joined(separator: " ") + " --out \(target.path)"
        try target.write(plan: plan)
        let writer = try JSONLinesWriter(path: target.resultsPath)
        var seen: Set<String> = []
        for source in sources {
            for record in try source.readRecords().records {
                // The same matrix position from two shards (or a run merged twice) counts once.
                guard seen.insert("\(record.index)").inserted else { continue }
                try writer.append(record)
                if let pcap = record.result?.pcap {
                    let from = "\(source.path)/\(pcap)", to = "\(target.path)/\(pcap)"
                    if FileManager.default.fileExists(atPath: from) && !FileManager.default.fileExists(atPath: to) {
                        try FileManager.default.copyItem(atPath: from, toPath: to)
                    }
                }
            }
        }
        return try render(directory: target)
    }
}
