import ArgumentParser
import Foundation
import KeepaliveLab
import KeepaliveNet

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a lab file: policies × faults × trials, in parallel, each trial on its own topology.",
        discussion: """
            Each trial's result is appended to DIR/results.jsonl as soon as it finishes; then DIR/report.md,
            summary.json, junit.xml and the charts are written. Exit status 1 when an expectation fails or a
            trial errored in a cell no `allow_errors: true` expectation covers, 2 for a bad lab file. Trials
            start longest first; --shard picks trials by matrix position, independent of that order.
            """)

    @Argument(help: "The lab file.")
    var lab: String = "Labs/seed.yaml"

    @Option(help: "Trials running at once (1…4096). Default: what this machine can hold (the first of its CPU, memory, pids, descriptor and namespace limits, from the per-trial costs `bench` measured).")
    var parallel: Int?

    @Option(help: "Trials per cell (overrides the lab file; 1…1000).")
    var trials: Int?

    @Option(help: "Run directory (default runs/<lab>-<time>-<run id>).")
    var out: String?

    @OptionGroup var environment: BackendOptions

    @Option(help: "Captures to keep: all | representative (the trial each cell's report draws) | none.")
    var pcaps: PcapRetention = .all

    @Option(help: "Run only slice I of N of the matrix (e.g. 2/4), deterministic, for splitting across machines.")
    var shard: String?

    @Option(help: ArgumentHelp("uml backend: UML guests at once, each running a shard of the matrix with --parallel trials "
                               + "(a guest has one CPU); merged into one run. Default: the number of CPUs.", valueName: "N"))
    var guests: Int?

    @Flag(help: "Print the plan (cells, trials, expected duration of each, wall estimate for --parallel) and create nothing.")
    var dryRun = false

    func validate() throws {
        if let parallel, !(1...4096).contains(parallel) { throw ValidationError("--parallel \(parallel) is out of range: 1…4096") }
        if let trials, !(1...1000).contains(trials) { throw ValidationError("--trials \(trials) is out of range: 1…1000") }
        _ = try parsedShard()
        if let guests, !(1...64).contains(guests) { throw ValidationError("--guests \(guests) is out of range: 1…64") }
        if guests != nil && shard != nil { throw ValidationError("--guests splits the run into shards itself: give --guests or --shard, not both") }
    }

    func parsedShard() throws -> (Int, Int)? {
        guard let shard else { return nil }
        let parts = shard.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, n <= 10_000, (1...n).contains(i) else {
            throw ValidationError("--shard \(shard) is invalid: expected I/N with 1 ≤ I ≤ N ≤ 10000, e.g. 2/4")
        }
        return (i, n)
    }

    func run() throws {
        let lab: Lab
        do {
            lab = try LabParser.load(path: self.lab)
        } catch let error as LabFileError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if dryRun {
            // Before any backend, namespace or directory: a dry run touches nothing.
            let plan = TrialPlan(lab: lab, trialsOverride: trials, shard: try parsedShard())
            print("lab \(lab.name) (\(lab.source))" + (shard.map { ", shard \($0)" } ?? "") + ": \(plan.items.count) trial(s) in "
                  + "\(Set(plan.items.map(\.cellIndex)).count) of \(lab.cells.count) cells, longest first when run")
            ResourceLimits.raiseOpenFiles()
            let (parallel, why) = Self.effectiveParallel(self.parallel, plan: plan)
            print("up to \(parallel) at once (\(why))")
            print(plan.describe(parallel: parallel, virtual: (environment.clock ?? lab.clock ?? .real) == .virtual))
            return
        }
        // userns / uml: the same command line runs there with --backend host; results land in the
        // same run directory (the working directory is carried over).
        let clock = environment.clock ?? lab.clock ?? .real
        var needs = KernelNeeds(clock: clock)
        for cell in lab.cells {
            needs = needs.union(TrialPlan.spec(for: cell, lab: lab, trial: 0).kernelNeeds(clock: clock))
        }
        let (choice, umlOptions) = try environment.choose(needs: needs, labKernel: lab.kernel)
        if choice.backend != .host {
            let count = TrialPlan(lab: lab, trialsOverride: trials, shard: nil).items.count
            let guests = choice.backend == .uml && shard == nil ? min(self.guests ?? ProcessInfo.processInfo.activeProcessorCount, count) : 1
            if guests > 1 {
                try GuestFanOut(lab: lab, choice: choice, options: umlOptions, guests: guests, parallel: self.parallel ?? 16,
                                out: out ?? "runs/\(lab.name)-\(Self.timestamp(Date()))-\(LabID.newRunID())", pcaps: pcaps,
                                trials: trials, clock: environment.clock).run()
                return
            }
            // A guest's progress lines carry its virtual time; the wall time is added here.
            let forwarder = LineForwarder(transform: RunProgress.wallClockAdder())
            let run = try BackendLauncher.run(choice, arguments: BackendLauncher.innerArguments(launcherOptions: BackendOptions.launcherOptions),
                                              timeout: nil, uml: umlOptions, output: choice.backend == .uml ? forwarder.sink : nil)
            forwarder.flush()
            BackendOptions.reportModules(run)
            if run.status != 0 { throw ExitCode(run.status) }
            return
        }
        let shard = try parsedShard()
        let plan = TrialPlan(lab: lab, trialsOverride: trials, shard: shard)
        ResourceLimits.raiseOpenFiles()
        let (parallel, why) = Self.effectiveParallel(self.parallel, plan: plan)
        let started = Date()
        let runID = try RunOwnership.begin()
        defer { RunOwnership.unregister(run: runID) }
        StartupNotices.peers()
        let directory = RunDirectory(path: out ?? "runs/\(lab.name)-\(Self.timestamp(started))-\(runID)")
        // Two runs appending to one results.jsonl would mix their trials in one report.
        if FileManager.default.fileExists(atPath: directory.resultsPath) {
            throw TrialError(message: "\(directory.path) already holds a run (results.jsonl); choose another --out or remove it")
        }
        try directory.create()
        ResourceLimits.raiseOpenFiles()

        try directory.write(plan: RunDirectory.Plan(
            lab: lab, run: runID, command: Self.commandLine,
            started: ISO8601DateFormatter().string(from: started), kernel: Doctor.kernelRelease(),
            backend: ExecutionEnvironment.backendLabel,
            shard: shard.map { "\($0.0)/\($0.1)" }, trials: trials ?? lab.trials, parallel: parallel,
            clock: LabClock.current.rawValue))
        FileHandle.standardError.write(Data("lab \(lab.name): \(plan.items.count) trials (\(lab.cells.count) cells), up to \(parallel) at once (\(why)), longest first → \(directory.path)\n".utf8))
        FileHandle.standardError.write(Data("\(plan.estimateLine(parallel: parallel, virtual: LabClock.current == .virtual))\n".utf8))
        let runner = LabRunner(lab: lab, plan: plan, directory: directory, runID: runID, parallel: parallel,
                               peerExecutable: PeerProcess.selfExecutable, progress: RunProgress(total: plan.items.count))
        let records = try runner.run()
        if let failure = runner.recordFailure {
            // The results file could not take a line: what it holds is all this run keeps. The
            // report of those trials is still attempted (it may not fit either).
            let recorded = (try? directory.readRecords().records.count) ?? 0
            var message = "run stopped: \(failure); results.jsonl keeps \(recorded) of \(records.count) finished trial(s)"
            do {
                let outcome = try RunReporting.render(directory: directory)
                print(outcome.summaryText)
            } catch {
                message += "; the report could not be written either: \(error)"
            }
            throw TrialError(message: message)
        }
        let outcome: RunReporting.Outcome
        do {
            outcome = try RunReporting.render(directory: directory)
        } catch let error as FileError {
            let recorded = (try? directory.readRecords().records.count) ?? 0
            throw TrialError(message: "the report could not be written: \(error); results.jsonl keeps \(recorded) of \(records.count) "
                             + "finished trial(s) — once there is room, `keepalive-lab report \(directory.path)` renders them")
        }
        switch pcaps {
        case .all: break
        case .representative: try RunReporting.keepRepresentativePcaps(directory: directory)
        case .none: RunReporting.removeCaptures(directory: directory)
        }
        print(outcome.summaryText)
        let errors = records.filter { $0.result == nil }.count
        if errors > 0 { FileHandle.standardError.write(Data("\(errors) trial(s) could not run: see results.jsonl\n".utf8)) }
        // Expectations of cells another shard runs read NOT RUN and do not fail this one.
        if outcome.failed { throw ExitCode(1) }
    }

    /// `--parallel` as given, else what the machine can hold for trials of this plan's typical
    /// length (MachineLimits), capped at the plan's size; with the reason, for the first line.
    static func effectiveParallel(_ given: Int?, plan: TrialPlan) -> (Int, String) {
        if let given { return (given, "--parallel") }
        let durations = plan.items.map { TrialDuration($0.spec).seconds }.sorted()
        let typical = durations.isEmpty ? 10 : durations[durations.count / 2]
        let (fit, limit) = MachineLimits.defaultParallel(trialSeconds: typical)
        let parallel = max(1, min(fit, 4096, max(1, plan.items.count)))
        let capped = parallel < fit ? "; the plan has \(plan.items.count) trial(s)" : ""
        return (parallel, "machine limit: \(limit.resource) allows \(limit.trials) — \(limit.detail)\(capped)")
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// This process's command line as a shell would take it back, for plan.json and report.md.
    static var commandLine: String {
        CommandLine.arguments.dropFirst().reduce("keepalive-lab") { $0 + " " + quote($1) }
    }

    static func quote(_ argument: String) -> String {
        argument.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=,".contains($0) } ? argument : "'\(argument)'"
    }
}

enum PcapRetention: String, ExpressibleByArgument, CaseIterable {
    case all, representative, none
}

enum ResourceLimits {
    /// Each concurrent trial holds ~17 descriptors (namespaces, netlink, capture, peer sockets):
    /// the soft limit goes up to the hard one, and — where allowed (root) — the hard one up to
    /// fs.nr_open, so a thousand trials are not cut off by a 20000 default.
    static func raiseOpenFiles() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if let text = try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8),
           let nrOpen = rlim_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), nrOpen > limit.rlim_max {
            var raised = rlimit(rlim_cur: min(nrOpen, 1 << 20), rlim_max: min(nrOpen, 1 << 20))
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return }
        }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
