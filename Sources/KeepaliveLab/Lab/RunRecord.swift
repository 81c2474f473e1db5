import CKeepaliveShim
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
        /// Set by `merge` when a source run had fewer trials than it planned (it was interrupted):
        /// cells without trials then read NOT RUN (interrupted) rather than failing.
        public var interrupted: Bool? = nil

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
            if mergedFrom != nil && interrupted != true { return .everything }
            let items = TrialPlan(lab: lab, trialsOverride: trials, shard: shardSpec).items
            return ExpectationEvaluator.Scope(plannedCells: Set(items.map(\.cell.key)), complete: false)
        }
    }

    /// mkdir -p of the run directory and its pcaps/, with the errno of the step that failed.
    public func create() throws {
        try FileIO.createDirectories(pcapDirectory, operation: "create the run directory \(path)")
    }

    public func write(plan: Plan) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileIO.write(Array(try encoder.encode(plan)), to: planPath, operation: "write the run's plan")
    }

    public func readPlan() throws -> Plan {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TrialError(message: "\(path): not a run directory (give the --out directory of a run)")
        }
        guard let data = try FileIO.read(planPath, operation: "read the run's plan") else {
            throw TrialError(message: "\(path): not a run directory: it has no plan.json (give the --out directory of a run)")
        }
        do {
            return try JSONDecoder().decode(Plan.self, from: Data(data))
        } catch {
            throw TrialError(message: "\(planPath): cannot read the run's plan: \(Self.describe(decoding: error))")
        }
    }

    /// The run directories of the UML guests of a multi-guest run (`guests/guest-N`), in guest order;
    /// empty once they have been merged (or for any other run).
    public var guestDirectories: [RunDirectory] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "\(path)/guests")) ?? []
        return names.filter { $0.hasPrefix("guest-") }
            .sorted { (Int($0.dropFirst(6)) ?? 0) < (Int($1.dropFirst(6)) ?? 0) }
            .map { RunDirectory(path: "\(path)/guests/\($0)") }
    }

    /// A line of results.jsonl that could not be read back: where it is.
    public struct DamagedLine: Sendable, Equatable, CustomStringConvertible {
        /// Relative to the run directory: results.jsonl, or guests/guest-N/results.jsonl.
        public var file: String
        public var line: Int
        public var description: String { file == "results.jsonl" ? "\(line)" : "\(file):\(line)" }
    }

    /// Every finished trial. A line cut by an interrupted write is skipped and reported. A
    /// multi-guest run interrupted before its guests were merged has no results.jsonl of its own:
    /// then the guests' results are read (their pcaps paths made relative to this directory).
    public func readRecords() throws -> (records: [RunRecord], damaged: [DamagedLine]) {
        if let data = try FileIO.read(resultsPath, operation: "read the run's results") {
            return Self.decode(data, file: "results.jsonl")
        }
        var records: [RunRecord] = []
        var damaged: [DamagedLine] = []
        for guest in guestDirectories {
            guard let data = try FileIO.read(guest.resultsPath, operation: "read a guest's results") else { continue }
            let relative = String(guest.path.dropFirst(path.count + 1))
            let part = Self.decode(data, file: "\(relative)/results.jsonl")
            records += part.records.map { record in
                var record = record
                if let pcap = record.result?.pcap { record.result?.pcap = "\(relative)/\(pcap)" }
                return record
            }
            damaged += part.damaged
        }
        return (records, damaged)
    }

    static func decode(_ data: [UInt8], file: String) -> (records: [RunRecord], damaged: [DamagedLine]) {
        var records: [RunRecord] = []
        var damaged: [DamagedLine] = []
        let decoder = JSONDecoder()
        for (number, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            if let record = try? decoder.decode(RunRecord.self, from: Data(line)) {
                records.append(record)
            } else {
                damaged.append(DamagedLine(file: file, line: number + 1))
            }
        }
        return (records, damaged)
    }

    /// A decoding error in a sentence (Foundation's own description is a dump of its context).
    static func describe(decoding error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "key \"\(key.stringValue)\" is missing" + Self.at(context)
        case DecodingError.typeMismatch(let type, let context), DecodingError.valueNotFound(let type, let context):
            return "expected \(type)" + Self.at(context)
        case DecodingError.dataCorrupted(let context):
            return "not valid JSON" + Self.at(context)
        default:
            return "\(error)"
        }
    }

    private static func at(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return path.isEmpty ? "" : " at \(path)"
    }
}

/// Appends JSON lines with O_APPEND, one write(2) per line, so concurrent trials never interleave
/// and a crash loses at most the line being written.
///
/// Results come before captures: `reserving` bytes are allocated for the file up front
/// (fallocate(2) with FALLOC_FL_KEEP_SIZE: blocks past the end, the size unchanged), so appends land
/// in space that captures written later cannot take. `close()` gives back what was not used.
public final class JSONLinesWriter: Sendable {
    private let fd: Int32
    public let path: String
    /// Bytes allocated past the end for lines still to come (0: none could be).
    public let reserved: Int
    /// One writer at a time (each line is one write(2) with O_APPEND; this keeps them in call order);
    /// holds whether the file was closed.
    private let writing = Locked(false)
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    public init(path: String, reserving: Int = 0) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError("open the results file", path: path) }
        reserved = Self.reserve(fd, bytes: reserving)
    }

    deinit { close() }

    /// As much of `bytes` as the file system gives, halving on ENOSPC down to one page.
    private static func reserve(_ fd: Int32, bytes: Int) -> Int {
        let end = lseek(fd, 0, SEEK_END)
        var size = bytes
        while size >= 4096 {
            if kal_reserve_past_end(fd, end, off_t(size)) == 0 { return size }
            guard errno == ENOSPC || errno == EDQUOT else { return 0 }  // EOPNOTSUPP: no reservation on this file system
            size /= 2
        }
        return 0
    }

    public func append<T: Encodable>(_ value: T) throws {
        var line: Data
        do {
            line = try encoder.encode(value)
        } catch {
            throw TrialError(message: "append to \(path): cannot encode the record: \(error)")
        }
        line.append(UInt8(ascii: "\n"))
        try writing.withLock { closed in
            guard !closed else { throw FileError("append to the results file", path: path, errno: EBADF) }
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == line.count else {
                let failure = errno
                // A short write left part of a line: cut it off, so the file holds whole lines only.
                if written > 0 { _ = ftruncate(fd, lseek(fd, 0, SEEK_END) - off_t(written)) }
                throw FileError("append to the results file", path: path, errno: written < 0 ? failure : ENOSPC)
            }
        }
    }

    /// Frees the reserved space past the last line and closes the file. Idempotent.
    public func close() {
        writing.withLock { closed in
            guard !closed else { return }
            closed = true
            if reserved > 0 {
                let end = lseek(fd, 0, SEEK_END)
                let page: off_t = 4096
                let from = (end + page - 1) / page * page
                _ = kal_release_past_end(fd, from, off_t(reserved) + page)
            }
            Glibc.close(fd)
        }
    }
}
