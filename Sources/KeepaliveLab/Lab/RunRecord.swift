import Foundation
import KeepaliveNet

/// One line of `results.jsonl`: which cell and trial, and what happened.
public struct RunRecord: Codable, Sendable {
    public var lab: String
    public var run: String
    public var index: Int
    public var cell: Int
    public var policy: String
    public var policySummary: String
    public var fault: String
    public var faultLabel: String
    public var workload: String
    public var trial: Int
    /// nil when the trial could not run; `error` says why.
    public var result: TrialResult?
    public var error: String?
    /// Where the trial ran and how long it took, also when it errored (a result carries its own
    /// backend and kernel, an error has nothing else to say where it happened). Optional: lines
    /// written before these fields existed decode without them.
    public var backend: String?
    public var kernel: String?
    public var durationS: Double?

    enum CodingKeys: String, CodingKey {
        case lab, run, index, cell, policy, fault, workload, trial, result, error, backend, kernel
        case policySummary = "policy_summary"
        case faultLabel = "fault_label"
        case durationS = "duration_s"
    }

    public var cellKey: String { "\(policy) × \(faultLabel)" }
}

/// What a run directory holds: `plan.json` (what was asked), `results.jsonl` (what happened, one
/// line per finished trial, appended as each finishes), `pcaps/`, and the rendered report.
public struct RunDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var planPath: String { "\(path)/plan.json" }
    public var resultsPath: String { "\(path)/results.jsonl" }
    public var pcapDirectory: String { "\(path)/pcaps" }

    public struct Plan: Codable, Sendable {
        public var lab: Lab
        public var run: String
        public var command: String
        public var started: String
        public var kernel: String
        public var backend: String
        public var shard: String?
        public var trials: Int
        public var parallel: Int
        /// "real" or "virtual"; nil in plans from before clocks were recorded (real).
        public var clock: String? = nil
        /// How many UML guests ran the run's shards at once (nil: one process).
        public var guests: Int? = nil
        /// Set by `merge`: the shard directories this run was joined from. A merged run is complete
        /// by definition, so a cell still missing fails instead of reading "not run".
        public var mergedFrom: [String]?

        public init(lab: Lab, run: String, command: String, started: String, kernel: String, backend: String,
                    shard: String?, trials: Int, parallel: Int, mergedFrom: [String]? = nil, clock: String? = nil,
                    guests: Int? = nil) {
            self.clock = clock
            self.guests = guests
            self.lab = lab
            self.run = run
            self.command = command
            self.started = started
            self.kernel = kernel
            self.backend = backend
            self.shard = shard
            self.trials = trials
            self.parallel = parallel
            self.mergedFrom = mergedFrom
        }

        /// (I, N) from `shard` ("2/4"), nil for an unsharded run or a malformed value.
        public var shardSpec: (Int, Int)? {
            guard let shard else { return nil }
            let parts = shard.split(separator: "/").compactMap { Int($0) }
            guard parts.count == 2, parts[1] >= 1, (1...parts[1]).contains(parts[0]) else { return nil }
            return (parts[0], parts[1])
        }

        /// Which cells this run covers, recomputed from the lab, the trial count and the shard the
        /// same way `run` chose its trials (TrialPlan), so plan.json alone decides it.
        public var evaluationScope: ExpectationEvaluator.Scope {
            if mergedFrom != nil { return .everything }
            let items = TrialPlan(lab: lab, trialsOverride: trials, shard: shardSpec).items
            return ExpectationEvaluator.Scope(plannedCells: Set(items.map(\.cell.key)), complete: false)
        }
    }

    /// mkdir -p of the run directory and its pcaps/, with the errno of the step that failed.
    public func create() throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in pcapDirectory.split(separator: "/") {
            prefix += "/\(component)"
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw TrialError(message: "cannot create the run directory \(path): mkdir \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    public func write(plan: Plan) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(plan).write(to: URL(fileURLWithPath: planPath))
    }

    public func readPlan() throws -> Plan {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrialError(message: "\(path): not a run directory (give the --out directory of a run)")
        }
        guard let data = FileManager.default.contents(atPath: planPath) else {
            throw TrialError(message: "\(path): not a run directory: it has no plan.json (give the --out directory of a run)")
        }
        do {
            return try JSONDecoder().decode(Plan.self, from: data)
        } catch {
            throw TrialError(message: "\(planPath): cannot read the run's plan: \(error)")
        }
    }

    /// Every finished trial. A line cut by an interrupted write is skipped and reported.
    public func readRecords() throws -> (records: [RunRecord], damaged: [Int]) {
        guard let data = FileManager.default.contents(atPath: resultsPath) else { return ([], []) }
        var records: [RunRecord] = []
        var damaged: [Int] = []
        let decoder = JSONDecoder()
        for (number, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.isEmpty {
            if let record = try? decoder.decode(RunRecord.self, from: Data(line)) {
                records.append(record)
            } else {
                damaged.append(number + 1)
            }
        }
        return (records, damaged)
    }
}

/// Appends JSON lines with O_APPEND, one write(2) per line, so concurrent trials never interleave
/// and a crash loses at most the line being written.
public final class JSONLinesWriter: Sendable {
    private let fd: Int32
    /// One writer at a time (each line is one write(2) with O_APPEND; this keeps them in call order).
    private let writing = Locked(())
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    public init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrialError(message: "open \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    public func append<T: Encodable>(_ value: T) throws {
        var line = try encoder.encode(value)
        line.append(UInt8(ascii: "\n"))
        try writing.withLock { _ in
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == line.count else { throw TrialError(message: "append to results.jsonl: \(String(cString: strerror(errno)))") }
        }
    }
}
