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
    var trialRunner: (@Sendable (TrialPlan.Item, _ runID: String, _ peerExecutable: String, _ pcap: String?) throws -> TrialResult)?

    /// Setups of this run's trials, a few at once (see SetupGate).
    private let setupGate = SetupGate()

    private let lock = NSLock()
    private var next = 0
    private var records: [RunRecord] = []
    /// Set when a result could not be appended to results.jsonl: no further trial starts.
    public private(set) var recordFailure: FileError?
    /// Set when the disk filled while a capture was written: later trials keep no capture, so
    /// what space is left goes to results.
    private var capturesGivenUp = false
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
        // Results before captures: room for every trial's line is taken before any capture is
        // written (a line is 3–8 KB; this is generous).
        let writer = try JSONLinesWriter(path: directory.resultsPath, reserving: min(plan.items.count * Self.reservedBytesPerTrial, 64 << 20))
        defer { writer.close() }
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

    /// Space set aside in results.jsonl per planned trial.
    static let reservedBytesPerTrial = 16 << 10

    private func take() -> TrialPlan.Item? {
        lock.withLock {
            guard recordFailure == nil, next < queue.count else { return nil }
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
        let pcap: String? = lock.withLock { capturesGivenUp } ? nil : "\(directory.pcapDirectory)/\(Self.fileName(item)).pcap"
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
            result.pcap = result.pcap == nil ? nil : "pcaps/\(Self.fileName(item)).pcap"
            if let lost = result.notes.first(where: { $0.hasPrefix(PacketCapture.notKeptPrefix) }) {
                let first = lock.withLock { () -> Bool in
                    defer { capturesGivenUp = true }
                    return !capturesGivenUp
                }
                if first {
                    FileHandle.standardError.write(Data(("warning: \(record.cellKey) #\(item.trial + 1): \(lost); "
                                                         + "later trials of this run keep no capture\n").utf8))
                }
            } else if pcap == nil {
                result.notes.append("capture not kept: an earlier trial of this run found the disk full — results come first")
            }
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
            // Said at once, not at the end: the run starts no more trials (their results could
            // not be kept either) and keeps what results.jsonl already holds.
            let failure = (error as? FileError) ?? FileError("append to the results file", path: writer.path, errno: EIO)
            let first = lock.withLock { () -> Bool in
                defer { if recordFailure == nil { recordFailure = failure } }
                return recordFailure == nil
            }
            FileHandle.standardError.write(Data(("error: the result of \(record.cellKey) #\(item.trial + 1) is lost: \(error)"
                                                 + (first ? "; starting no more trials" : "") + "\n").utf8))
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

/// Progress on stderr: a bar with ETA on a terminal, one plain line per trial otherwise. "elapsed"
/// is wall time. In virtual time the process's own clock is the guest's: its lines carry that as
/// "(virtual …)", and the host that forwards the guest's console adds the wall time
/// (`wallClockAdder`).
public final class RunProgress: Sendable {
    let total: Int
    let started = Date()
    let isTerminal: Bool
    let virtualClock: Bool
    private let finishedCount = Locked(0)

    /// In a UML guest stderr is a console line that the host reads from a pipe: plain lines there.
    public init(total: Int, isTerminal: Bool = isatty(2) == 1 && ExecutionEnvironment.backendLabel != Backend.uml.rawValue,
                virtualClock: Bool = LabClock.current == .virtual) {
        self.total = total
        self.isTerminal = isTerminal
        self.virtualClock = virtualClock
    }

    public func finished(_ record: RunRecord) {
        let line: String = finishedCount.withLock { done in
            done += 1
            let elapsed = Date().timeIntervalSince(started)
            let what = "\(record.cellKey) #\(record.trial + 1): \(Self.describe(record))"
            if virtualClock { return "[\(done)/\(total)] \(what) (virtual \(Self.duration(elapsed)))\n" }
            let eta = done < total ? elapsed / Double(done) * Double(total - done) : 0
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

    /// For the host forwarding a virtual-time guest's console: turns a progress line's
    /// "(virtual 1m00s)" into "(elapsed 4s wall, ETA 2s; virtual 1m00s)", the wall time counted from
    /// this call. Other lines pass unchanged.
    public static func wallClockAdder() -> @Sendable (String) -> String {
        let started = Date()
        return { line in
            guard line.hasSuffix(")"), let open = line.range(of: " (virtual ", options: .backwards), line.hasPrefix("["),
                  let slash = line.firstIndex(of: "/"), let close = line.firstIndex(of: "]"), slash < close,
                  let done = Int(line[line.index(after: line.startIndex)..<slash]),
                  let total = Int(line[line.index(after: slash)..<close]), done > 0 else { return line }
            let elapsed = Date().timeIntervalSince(started)
            let eta = done < total ? elapsed / Double(done) * Double(total - done) : 0
            let virtual = line[open.upperBound..<line.index(before: line.endIndex)]
            return line[..<open.lowerBound] + " (elapsed \(duration(elapsed)) wall, ETA \(duration(eta)); virtual \(virtual))"
        }
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
