import Foundation
import KeepaliveNet

/// Renders a run directory: from `plan.json` + `results.jsonl` to report.md, charts, summary.json
/// and junit.xml. Works on an interrupted run too: it renders whatever trials finished.
public enum RunReporting {
    public struct Outcome: Sendable {
        public var verdicts: [ExpectationEvaluator.Verdict]
        public var records: [RunRecord]
        /// Expectations that failed; one not run (another shard's cell) does not count.
        public var failedExpectations: Int { verdicts.filter(\.failed).count }
        public var summaryText: String
        /// Errored trials the lab does not excuse: in a cell no expectation with `allow_errors`
        /// covers. They fail the run even where no expectation looks at their cell.
        public var unexcusedErrors: Int
        /// Lines of results.jsonl that could not be read: trials the verdicts could not see.
        public var damagedLines: [RunDirectory.DamagedLine] = []
        /// Exit status 1 for `run`, `report` and `merge`.
        public var failed: Bool { failedExpectations > 0 || unexcusedErrors > 0 || !damagedLines.isEmpty }
    }

    public static func render(directory: RunDirectory) throws -> Outcome {
        let plan = try directory.readPlan()
        let (records, damaged) = try directory.readRecords()
        let verdicts = ExpectationEvaluator.evaluate(plan.lab, records: records, scope: plan.evaluationScope)
        var input = reportInput(plan: plan, records: records, verdicts: verdicts)
        input.damagedLines = damaged.map(\.description)
        try ReportWriter.write(input, to: URL(fileURLWithPath: directory.path))

        var lines = ["\(records.count) trial(s) → \(directory.path)/report.md"]
        if !damaged.isEmpty {
            lines.append("FAIL results.jsonl: \(damaged.count) damaged line(s) skipped (line \(damaged.map(\.description).joined(separator: ", "))): "
                         + "their trials are in no verdict")
        }
        let failedTrials = records.filter { $0.result == nil }
        for record in failedTrials.prefix(5) { lines.append("trial \(record.cellKey) #\(record.trial + 1) could not run: \(record.error ?? "?")") }
        if failedTrials.count > 5 { lines.append("… \(failedTrials.count - 5) more errored trial(s): see report.md") }
        for verdict in verdicts {
            lines.append("\(verdict.label) \(verdict.name) — \(verdict.detail)")
        }
        let excused = Set(plan.lab.cells.filter { cell in plan.lab.expectations.contains { $0.allowErrors && $0.applies(to: cell, in: plan.lab.cells) } }.map(\.key))
        let unexcused = failedTrials.filter { !excused.contains($0.cellKey) }.count
        if unexcused > 0 { lines.append("\(unexcused) trial(s) could not run (no allow_errors covers their cell): see report.md, Errored trials") }
        return Outcome(verdicts: verdicts, records: records, summaryText: lines.joined(separator: "\n"), unexcusedErrors: unexcused,
                       damagedLines: damaged)
    }

    /// Cells in the lab's order, each with its trials and its expectations' verdicts.
    static func reportInput(plan: RunDirectory.Plan, records: [RunRecord],
                            verdicts: [ExpectationEvaluator.Verdict]) -> RunReportInput {
        let cells = plan.lab.cells.compactMap { cell -> Cell? in
            let cellRecords = records.filter { $0.cellKey == cell.key }.sorted { $0.index < $1.index }
            let results = cellRecords.compactMap(\.result)
            let errors = cellRecords.filter { $0.result == nil }
                .map { TrialErrorNote(trial: $0.trial + 1, message: $0.error ?? "unknown error") }
            let checks = verdicts.filter { $0.cellKey == cell.key }.map { verdict -> ExpectationCheck in
                var notRun: String?
                if case .notRun(let reason) = verdict.status { notRun = reason.rawValue }
                return ExpectationCheck(name: verdict.name, passed: verdict.passed,
                                        detail: "\(verdict.detail) (\(verdict.expectation.location))", notRun: notRun)
            }
            guard !results.isEmpty || !checks.isEmpty || !errors.isEmpty else { return nil }
            return Cell(policyName: cell.policy.name, policySummary: cell.policy.summary, fault: cell.fault.fault.description,
                        workload: cell.fault.workload.description, results: results, expectations: checks, errors: errors)
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
            if unlink("\(directory.path)/\(pcap)") == 0 { removed += 1 }
        }
        return removed
    }

    /// `--pcaps none`: the captures and their directory go.
    public static func removeCaptures(directory: RunDirectory) {
        try? FileManager.default.removeItem(atPath: directory.pcapDirectory)
    }

    /// Combines the shards of one lab into `into`: results, pcaps, then the report, whose
    /// expectations are evaluated over the whole matrix (a cell no shard ran fails). Refuses shards
    /// that do not belong together: another lab or lab file, another trial count or shard split,
    /// another backend or kernel — their numbers would not be one experiment.
    public static func merge(_ sources: [RunDirectory], into target: RunDirectory) throws -> Outcome {
        let plans = try sources.map { try $0.readPlan() }
        guard let first = plans.first else { throw TrialError(message: "merge: no run directories given") }
        for (plan, source) in zip(plans, sources).dropFirst() {
            if let difference = MergeCheck.difference(first, plan) {
                throw TrialError(message: "merge: \(source.path) and \(sources[0].path) are not shards of one run: "
                                 + "\(difference.what) \"\(difference.other)\" in \(source.path), \"\(difference.first)\" in \(sources[0].path)")
            }
        }
        try target.create()
        var plan = first
        plan.shard = nil
        plan.mergedFrom = sources.map(\.path)
        plan.command = "keepalive-lab merge " + sources.map(\.path).joined(separator: " ") + " --out \(target.path)"
        try target.write(plan: plan)
        let writer = try JSONLinesWriter(path: target.resultsPath)
        var seen: Set<String> = []
        var interrupted = false
        for (source, sourcePlan) in zip(sources, plans) {
            let records = try source.readRecords().records
            let planned = TrialPlan(lab: sourcePlan.lab, trialsOverride: sourcePlan.trials, shard: sourcePlan.shardSpec).items.count
            if sourcePlan.mergedFrom == nil && records.count < planned { interrupted = true }
            if sourcePlan.interrupted == true { interrupted = true }
            for record in records {
                // The same matrix position from two shards (or a run merged twice) counts once.
                guard seen.insert("\(record.index)").inserted else { continue }
                var record = record
                if let pcap = record.result?.pcap {
                    // Captures land in the merged run's pcaps/ (a multi-guest run's records point
                    // into guests/guest-N/pcaps/ until it is merged).
                    let name = "pcaps/" + (pcap.split(separator: "/").last.map(String.init) ?? pcap)
                    let from = "\(source.path)/\(pcap)", to = "\(target.path)/\(name)"
                    if FileManager.default.fileExists(atPath: from) && !FileManager.default.fileExists(atPath: to) {
                        try FileIO.copy(from, to: to, operation: "merge: copy a capture")
                    }
                    record.result?.pcap = name
                }
                try writer.append(record)
            }
        }
        writer.close()
        if interrupted {
            plan.interrupted = true
            try target.write(plan: plan)
        }
        return try render(directory: target)
    }
}

/// What must be equal for two run directories to be shards of one run.
enum MergeCheck {
    struct Difference: Equatable {
        var what: String
        var first: String
        var other: String
    }

    /// The first thing that differs, named with both values; nil when they belong together.
    static func difference(_ a: RunDirectory.Plan, _ b: RunDirectory.Plan) -> Difference? {
        if a.lab.name != b.lab.name { return Difference(what: "lab", first: a.lab.name, other: b.lab.name) }
        // The same lab file read from another path is the same lab; any other change is not.
        var labA = a.lab, labB = b.lab
        labA.source = ""
        labB.source = ""
        if labA != labB {
            return Difference(what: "lab file contents (policies, faults, expectations, seed)", first: a.lab.source, other: b.lab.source)
        }
        if a.trials != b.trials { return Difference(what: "trials per cell", first: "\(a.trials)", other: "\(b.trials)") }
        if let sa = a.shardSpec, let sb = b.shardSpec, sa.1 != sb.1 {
            return Difference(what: "shard split", first: a.shard ?? "-", other: b.shard ?? "-")
        }
        if a.backend != b.backend { return Difference(what: "backend", first: a.backend, other: b.backend) }
        if a.kernel != b.kernel { return Difference(what: "kernel", first: a.kernel, other: b.kernel) }
        return nil
    }
}
