import Foundation
import KeepaliveNet

/// Runs a plan: many trials at once, each on its own topology, each result appended to
/// `results.jsonl` the moment it finishes.
// @unchecked: next/records and the lazy queue are guarded by `lock`; `trialRunner` is set by tests before run().
public final class LabRunner: @unchecked Sendable {
    public let lab: Lab
    public let plan: TrialPlan
    public let directory: RunDirectory
    public let runID: String
    public let parallel: Int
    public let peerExecutable: String
    public let progress: RunProgress

    /// Runs one trial. Tests replace it (e.g. to make a trial throw the way a broken machine
    /// would) without touching namespaces; nil runs the real `Trial`, its setup queued through
    /// the run's SetupGate.
    var trialRunner: (@Sendable (TrialPlan.Item, _ runID: String, _ peerExecutable: String, _ pcap: String) throws -> TrialResult)?

    /// Setups of this run's trials, a few at once (see SetupGate).
    private let setupGate = SetupGate()

    private let lock = NSLock()
    private var next = 0
    private var records: [RunRecord] = []
    /// The plan's items, longest expected trial first (see `TrialDuration`): the long cells start
    /// while there is still work to overlap them with. Which trials run here (the shard) was decided
    /// by matrix index before this ordering and does not depend on it.
    private lazy var queue: [TrialPlan.Item] = plan.longestFirst

    public init(lab: Lab, plan: TrialPlan, directory: RunDirectory, runID: String, parallel: Int,
                peerExecutable: String, progress: RunProgress) {
        self.lab = lab
        self.plan = plan
        self.directory = directory
        self.runID = runID
        self.parallel = max(1, parallel)
        self.peerExecutable = peerExecutable
        self.progress = progress
    }

    /// Blocks until every trial of the plan has finished. Trials run on dedicated threads that live
    /// as long as their trial (peers die with the thread that spawned them).
    public func run() throws -> [RunRecord] {
        let writer = try JSONLinesWriter(path: directory.resultsPath)
        let group = DispatchGroup()
        for worker in 0..<min(parallel, plan.items.count) {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                while let item = take() { finish(item, record: runOne(item), writer: writer) }
            }
            thread.name = "trial-worker-\(worker)"
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        return lock.withLock { records.sorted { $0.index < $1.index } }
    }

    private func take() -> TrialPlan.Item? {
        lock.withLock {
            guard next < queue.count else { return nil }
            defer { next += 1 }
            return queue[next]
        }
    }

    private func runOne(_ item: TrialPlan.Item) -> RunRecord {
        var record = RunRecord(lab: lab.name, run: runID, index: item.index, cell: item.cellIndex,
                               policy: item.cell.policy.name, policySummary: item.cell.policy.summary,
                               fault: item.cell.fault.fault.description, faultLabel: item.cell.fault.label,
                               workload: item.cell.fault.workload.description, trial: item.trial)
        record.backend = ExecutionEnvironment.backendLabel
        record.kernel = Doctor.kernelRelease()
        let pcap = "\(directory.pcapDirectory)/\(Self.fileName(item)).pcap"
        let started = PeerEvent.now()
        do {
            var result: TrialResult
            if let trialRunner {
                result = try trialRunner(item, runID, peerExecutable, pcap)
            } else {
                var trial = Trial(spec: item.spec, id: try LabID(run: runID, trial: item.trialID),
                                  peerExecutable: peerExecutable, pcapPath: pcap)
                trial.setupGate = setupGate
                result = try trial.run()
            }
            result.pcap = "pcaps/\(Self.fileName(item)).pcap"
            record.result = result
        } catch {
            // An errored trial is a result too: it goes to results.jsonl with what went wrong, and
            // the cell's expectations fail over it unless the lab allows errors.
            record.error = "\(error)"
        }
        record.durationS = ((PeerEvent.now() - started) * 1000).rounded() / 1000
        return record
    }

    private func finish(_ item: TrialPlan.Item, record: RunRecord, writer: JSONLinesWriter) {
        var record = record
        do {
            try writer.append(record)
        } catch {
            record.error = (record.error.map { $0 + "; " } ?? "") + "\(error)"
        }
        lock.withLock { records.append(record) }
        progress.finished(record)
    }

    /// `<index>-<policy>-<fault>-<trial>`, safe as a file name.
    static func fileName(_ item: TrialPlan.Item) -> String {
        let raw = "\(item.index)-\(item.cell.policy.name)-\(item.cell.fault.fault)-\(item.trial)"
        return String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" ? $0 : "_" })
    }
}

/// Progress on stderr: a bar with ETA on a terminal, one plain line per trial otherwise.
public final class RunProgress: Sendable {
    let total: Int
    let started = Date()
    let isTerminal: Bool
    private let finishedCount = Locked(0)

    /// In a UML guest stderr is a console line that the host reads from a pipe: plain lines there.
    public init(total: Int, isTerminal: Bool = isatty(2) == 1 && ExecutionEnvironment.backendLabel != Backend.uml.rawValue) {
        self.total = total
        self.isTerminal = isTerminal
    }

    public func finished(_ record: RunRecord) {
        let line: String = finishedCount.withLock { done in
            done += 1
            let elapsed = Date().timeIntervalSince(started)
            let eta = done < total ? elapsed / Double(done) * Double(total - done) : 0
            let what = "\(record.cellKey) #\(record.trial + 1): \(Self.describe(record))"
            if isTerminal {
                let width = 30
                let filled = Int(Double(width) * Double(done) / Double(max(total, 1)))
                let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
                return "\r\u{1B}[2K\(bar) \(done)/\(total) ETA \(Self.duration(eta)) · \(what)"
                    + (done == total ? "\n" : "")
            }
            return "[\(done)/\(total)] \(what) (elapsed \(Self.duration(elapsed)), ETA \(Self.duration(eta)))\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func describe(_ record: RunRecord) -> String {
        guard let r = record.result else { return "ERROR \(record.error ?? "")" }
        var text = r.outcome.rawValue
        if let e = r.errno ?? r.detectedBy { text += " \(e)" }
        if let latency = r.detectionLatencyS { text += String(format: " after %.3f s", latency) }
        return text
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
