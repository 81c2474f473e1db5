import ArgumentParser
import Foundation
import KeepaliveLab
import KeepaliveNet

/// `run` on the uml backend with several guests: a UML guest has one CPU, so the matrix is split
/// into one deterministic shard per guest (`--shard i/N`), the guests run at once (each with its
/// own kernel and `--parallel` trials), and their run directories are merged into one run.
struct GuestFanOut {
    let lab: Lab
    let choice: BackendSelection.Choice
    let options: UMLOptions
    let guests: Int
    let parallel: Int
    let out: String
    let pcaps: PcapRetention
    /// `--trials` and `--clock` as given (the guests' plans record what they ran).
    let trials: Int?
    let clock: LabClock?

    /// Options of the outer command that each guest's command gets its own value for.
    static let replacedOptions: Set<String> = ["--out", "--guests", "--parallel", "--pcaps", "--shard"]

    func run() throws {
        let target = RunDirectory(path: out)
        if FileManager.default.fileExists(atPath: target.resultsPath) || FileManager.default.fileExists(atPath: "\(out)/guests") {
            throw TrialError(message: "\(out) already holds a run (results.jsonl); choose another --out or remove it")
        }
        let inner = BackendLauncher.innerArguments(launcherOptions: BackendOptions.launcherOptions.union(Self.replacedOptions))
        let directories = (1...guests).map { RunDirectory(path: "\(out)/guests/guest-\($0)") }
        // The run's own plan first: a run killed before its guests are merged is still a run
        // directory, which `report` renders from the guests' results (cells no guest finished
        // read NOT RUN (interrupted)). The merge below replaces it.
        try target.create()
        try target.write(plan: RunDirectory.Plan(
            lab: lab, run: LabID.newRunID(), command: RunCommand.commandLine,
            started: ISO8601DateFormatter().string(from: Date()), kernel: choice.umlKernel?.release ?? "uml",
            backend: Backend.uml.rawValue, shard: nil, trials: trials ?? lab.trials, parallel: parallel,
            clock: (clock ?? lab.clock ?? .real).rawValue, guests: guests))
        FileHandle.standardError.write(Data("keepalive-lab: \(guests) UML guests at once, one shard each, up to \(parallel) trials per guest\n".utf8))
        let started = Date()
        let statuses = StatusList(count: guests)
        let group = DispatchGroup()
        for (index, directory) in directories.enumerated() {
            let arguments = inner + ["--shard", "\(index + 1)/\(guests)", "--out", directory.path, "--parallel", String(parallel),
                                     "--pcaps", "all"]
            let prefix = LineForwarder(prefix: "[guest \(index + 1)/\(guests)] ", transform: RunProgress.wallClockAdder())
            // A thread per guest: each blocks in its own launcher until its machine is gone.
            let thread = Thread { [choice, options] in
                do {
                    let run = try BackendLauncher.run(choice, arguments: arguments, timeout: nil, uml: options, output: prefix.sink)
                    BackendOptions.reportModules(run)
                    statuses.set(index, .success(run.status))
                } catch {
                    statuses.set(index, .failure(error))
                }
                prefix.flush()
                group.leave()
            }
            group.enter()
            thread.start()
        }
        group.wait()
        var failures: [String] = []
        for (index, status) in statuses.all.enumerated() {
            switch status {
            // 1: an expectation failed in that shard; the merged run judges every expectation again.
            case .success(let code) where code == 0 || code == 1: break
            case .success(let code): failures.append("guest \(index + 1): exit status \(code)")
            case .failure(let error): failures.append("guest \(index + 1): \(error)")
            case nil: failures.append("guest \(index + 1): did not report")
            }
        }
        let present = directories.filter { FileManager.default.fileExists(atPath: $0.planPath) }
        guard !present.isEmpty else { throw TrialError(message: "no guest produced a run: \(failures.joined(separator: "; "))") }
        _ = try RunReporting.merge(present, into: target)
        var plan = try target.readPlan()
        plan.guests = guests
        plan.parallel = parallel
        plan.command = RunCommand.commandLine
        try target.write(plan: plan)
        let outcome = try RunReporting.render(directory: target)
        try? FileManager.default.removeItem(atPath: "\(out)/guests")
        switch pcaps {
        case .all: break
        case .representative: try RunReporting.keepRepresentativePcaps(directory: target)
        case .none: RunReporting.removeCaptures(directory: target)
        }
        print(outcome.summaryText)
        FileHandle.standardError.write(Data(String(format: "keepalive-lab: %d guests, %.1f s wall → %@\n", guests,
                                                   Date().timeIntervalSince(started), out).utf8))
        if !failures.isEmpty {
            FileHandle.standardError.write(Data("keepalive-lab: \(failures.joined(separator: "; "))\n".utf8))
            throw ExitCode(1)
        }
        if outcome.failed { throw ExitCode(1) }
    }
}

/// Per-guest results, filled by the guests' threads.
private final class StatusList: Sendable {
    private let values: Locked<[Result<Int32, any Error>?]>

    init(count: Int) { values = Locked(Array(repeating: nil, count: count)) }
    func set(_ index: Int, _ value: Result<Int32, any Error>) { values.withLock { $0[index] = value } }
    var all: [Result<Int32, any Error>?] { values.value }
}
