import Foundation

/// summary.json: the run's per-cell statistics and expectations, for machines (CI, `RunComparison`).
public struct SummaryJSON: Codable, Sendable, Equatable {
    public struct CellSummary: Codable, Sendable, Equatable {
        public var policyName: String
        public var policySummary: String
        public var fault: String
        public var workload: String
        public var stats: CellStats
        public var expectations: [ExpectationCheck]
        /// Trials that could not run and why (nil in summaries written before errors were listed).
        public var errors: [TrialErrorNote]?
        /// The cell's real program (when, how, cost, settings read back); nil for built-in peers
        /// and in summaries written before programs were summarised.
        public var program: ProgramFacts?

        public var key: CellKey { CellKey(policyName: policyName, fault: fault, workload: workload) }

        public init(policyName: String, policySummary: String, fault: String, workload: String,
                    stats: CellStats, expectations: [ExpectationCheck], errors: [TrialErrorNote] = [],
                    program: ProgramFacts? = nil) {
            self.policyName = policyName
            self.policySummary = policySummary
            self.fault = fault
            self.workload = workload
            self.stats = stats
            self.expectations = expectations
            self.errors = errors
            self.program = program
        }
    }

    /// Bumped when a field changes meaning; readers refuse what they do not know.
    public static let currentSchema = 1

    public var schema: Int
    public var lab: String
    public var description: String
    public var date: String
    public var command: String
    public var kernel: String
    public var backend: String
    public var impairmentEngine: String?
    public var cells: [CellSummary]
    public var findings: [Finding]

    public init(_ input: RunReportInput) {
        schema = Self.currentSchema
        lab = input.lab
        description = input.description
        date = input.date
        command = input.command
        kernel = input.kernel
        backend = input.backend
        impairmentEngine = input.impairmentEngine
        cells = input.cells.map {
            CellSummary(policyName: $0.policyName, policySummary: $0.policySummary, fault: $0.fault,
                        workload: $0.workload, stats: $0.stats, expectations: $0.expectations, errors: $0.errors,
                        program: $0.programFacts)
        }
        findings = Findings.derive(input.cells)
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> SummaryJSON {
        let summary = try JSONDecoder().decode(SummaryJSON.self, from: data)
        guard summary.schema == currentSchema else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: [], debugDescription: "summary.json schema \(summary.schema); this keepalive-lab reads schema \(currentSchema)"))
        }
        return summary
    }

    public static func read(from url: URL) throws -> SummaryJSON {
        try decode(try Data(contentsOf: url))
    }
}
