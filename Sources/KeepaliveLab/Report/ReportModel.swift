/// Everything a report is made from: one run of a lab (policy × fault × trials), already evaluated.
/// The runner fills it; the report only reads it.
public struct RunReportInput: Sendable {
    public var lab: String
    public var description: String
    /// As the runner wants it shown (e.g. ISO 8601).
    public var date: String
    /// The exact command that reproduces the run.
    public var command: String
    public var kernel: String
    public var backend: String
    /// "real" / "virtual" with what it means; nil for runs from before clocks were recorded.
    public var clock: String? = nil
    /// Where the kernel came from and its HZ (UML), e.g. "lab kernel (linux-source-6.12 …), HZ=250".
    public var kernelDetail: String? = nil
    /// How the run was spread: UML guests at once and trials per guest.
    public var concurrency: String? = nil
    /// nil when the lab needs no impairment (netem, nftables …).
    public var impairmentEngine: String?
    public var cells: [Cell]
    /// Lines of results.jsonl that could not be read back (a cut or corrupted write), by place:
    /// their trials are missing from every number below.
    public var damagedLines: [String] = []

    public init(lab: String, description: String, date: String, command: String, kernel: String,
                backend: String, impairmentEngine: String?, cells: [Cell]) {
        self.lab = lab
        self.description = description
        self.date = date
        self.command = command
        self.kernel = kernel
        self.backend = backend
        self.impairmentEngine = impairmentEngine
        self.cells = cells
    }
}

/// One policy × fault (× workload) combination and all of its trials.
public struct Cell: Sendable {
    /// The name the lab file gives the policy ("aggressive"); falls back to the summary.
    public var policyName: String
    /// `Policy.summary`, e.g. "keepalive 2,1,3 + user-timeout 3000ms".
    public var policySummary: String
    public var fault: String
    public var workload: String
    public var results: [TrialResult]
    public var expectations: [ExpectationCheck]
    /// Trials that could not run: they have no result, only what went wrong.
    public var errors: [TrialErrorNote]

    public init(policyName: String, policySummary: String, fault: String, workload: String,
                results: [TrialResult], expectations: [ExpectationCheck] = [], errors: [TrialErrorNote] = []) {
        self.policyName = policyName
        self.policySummary = policySummary
        self.fault = fault
        self.workload = workload
        self.results = results
        self.expectations = expectations
        self.errors = errors
    }

    /// Matches cells across runs (see `RunComparison`).
    public var key: CellKey { CellKey(policyName: policyName, fault: fault, workload: workload) }

    public var stats: CellStats { CellStats(results: results, errored: errors.count) }

    /// The trial a reader sees drawn: the detected trial whose latency is closest to the cell's
    /// median (the earlier one on a tie), else the first trial.
    public var representative: TrialResult? { representativeIndex.map { results[$0] } }

    /// Position of `representative` in `results`, for "trial 2 of 3".
    public var representativeIndex: Int? {
        let detected = results.indices.filter { results[$0].outcome == .detected && results[$0].detectionLatencyS != nil }
        guard let median = ReportStats.median(detected.map { results[$0].detectionLatencyS! }) else {
            return results.isEmpty ? nil : 0
        }
        return detected.min { abs(results[$0].detectionLatencyS! - median) < abs(results[$1].detectionLatencyS! - median) }
    }

    /// Groups loose results into cells by client policy, fault and workload, in first-seen order.
    /// Policy names are the policy summaries: a lab file's names are not in the results.
    public static func grouping(_ results: [TrialResult]) -> [Cell] {
        var cells: [Cell] = []
        for r in results {
            let summary = r.spec.clientPolicy.summary
            let key = CellKey(policyName: summary, fault: r.spec.fault.description, workload: r.spec.workload.description)
            if let i = cells.firstIndex(where: { $0.key == key }) {
                cells[i].results.append(r)
            } else {
                cells.append(Cell(policyName: summary, policySummary: summary, fault: key.fault,
                                  workload: key.workload, results: [r]))
            }
        }
        return cells
    }
}

public struct CellKey: Codable, Sendable, Hashable, CustomStringConvertible {
    public var policyName: String
    public var fault: String
    public var workload: String

    public init(policyName: String, fault: String, workload: String) {
        self.policyName = policyName
        self.fault = fault
        self.workload = workload
    }

    public var description: String { "\(policyName) · \(fault) · \(workload)" }
}

/// One expectation from the lab file, already evaluated by the runner.
public struct ExpectationCheck: Codable, Sendable, Equatable {
    public var name: String
    public var passed: Bool
    /// What was measured against what was wanted, e.g. "median 4.88 s ≤ 6 s".
    public var detail: String
    /// Why it was not evaluated ("other shard", "interrupted"); nil when it was. A check that did
    /// not run is neither passed nor failed (summary.json files without the field decode as run).
    public var notRun: String?

    public init(name: String, passed: Bool, detail: String, notRun: String? = nil) {
        self.name = name
        self.passed = passed
        self.detail = detail
        self.notRun = notRun
    }

    public var failed: Bool { !passed && notRun == nil }
    /// "PASS", "FAIL", "NOT RUN (other shard)".
    public var label: String { notRun.map { "NOT RUN (\($0))" } ?? (passed ? "PASS" : "FAIL") }
}

/// A trial that could not run (setup failed, a peer died, the machine refused): which one and why.
public struct TrialErrorNote: Codable, Sendable, Equatable {
    /// 1-based, as reports count trials.
    public var trial: Int
    public var message: String

    public init(trial: Int, message: String) {
        self.trial = trial
        self.message = message
    }
}
