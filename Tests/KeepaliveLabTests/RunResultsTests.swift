import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import KeepaliveLab

/// Unprivileged: how a run directory is evaluated and rendered — errored trials, shards, merges,
/// old files, the run order. Trials here are the real fixture results or a thrown error (the
/// runner's test hook); nothing touches a namespace.
@Suite struct RunResultsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let errorLab = """
        name: errors
        trials: 2
        policies:
          - name: tuned
            client:
              keepalive: 2,1,3
        faults:
          - crash
          - reboot:3
        expectations:
          - policy: tuned
            fault: crash
            detect_within: 6
          - policy: tuned
            fault: reboot:3
            outcome: detected
            allow_errors: true
        """

    func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keepalive-lab-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs `lab` through the real runner with `trial` in place of the real trial.
    func run(_ lab: Lab, in path: String, shard: (Int, Int)? = nil,
             trial: @escaping @Sendable (TrialPlan.Item) throws -> TrialResult) throws -> RunReporting.Outcome {
        let directory = RunDirectory(path: path)
        try directory.create()
        try directory.write(plan: .init(lab: lab, run: "test", command: "test", started: "2026-12-01", kernel: "test-kernel",
                                        backend: "host", shard: shard.map { "\($0.0)/\($0.1)" }, trials: lab.trials, parallel: 2))
        let runner = LabRunner(lab: lab, plan: TrialPlan(lab: lab, shard: shard), directory: directory, runID: "test",
                               parallel: 2, peerExecutable: "/nonexistent", progress: RunProgress(total: 0, isTerminal: false))
        runner.trialRunner = { item, _, _, _ in try trial(item) }
        _ = try runner.run()
        return try RunReporting.render(directory: directory)
    }

    @Test func erroredTrialIsAResultInEveryReportFile() throws {
        let lab = try LabParser(file: "errors.yaml").parse(Self.errorLab)
        let fixture = try ReportFixtures.load("crash-keepalive-2-1-3-run1")
        let reboot = try ReportFixtures.load("reboot3-keepalive-2-1-3")
        let path = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        // Trial 2 of each cell fails the way a machine without a netem qdisc would.
        let outcome = try run(lab, in: path) { item in
            if item.trial == 1 { throw TrialError(message: "netem: Specified qdisc kind is unknown (ENOENT)") }
            return item.cell.fault.fault == .crash ? fixture : reboot
        }
        // results.jsonl: the errored trials with their error, where they ran and how long they took.
        let (records, damaged) = try RunDirectory(path: path).readRecords()
        #expect(damaged.isEmpty && records.count == 4)
        let errored = records.filter { $0.result == nil }
        #expect(errored.count == 2 && errored.allSatisfy { $0.error?.contains("qdisc kind is unknown") == true })
        #expect(errored.allSatisfy { $0.backend != nil && $0.kernel != nil && $0.durationS != nil })
        // Without allow_errors the expectation fails; with it, the errored trial is left out.
        let crash = try #require(outcome.verdicts.first { $0.cellKey == "tuned × crash" })
        #expect(crash.failed && crash.detail.contains("1 of 2 trials errored"))
        let rebootVerdict = try #require(outcome.verdicts.first { $0.cellKey == "tuned × reboot:3" })
        #expect(rebootVerdict.passed && rebootVerdict.detail.contains("left out"))
        #expect(outcome.failed && outcome.unexcusedErrors == 1)

        let report = try String(contentsOfFile: "\(path)/report.md", encoding: .utf8)
        #expect(report.contains("## Errored trials"))
        #expect(report.contains("trial 2: `netem: Specified qdisc kind is unknown (ENOENT)`"))
        #expect(report.contains("1 detected, 1 errored"))
        let summary = try SummaryJSON.read(from: URL(fileURLWithPath: "\(path)/summary.json"))
        #expect(summary.cells.allSatisfy { $0.stats.errored == 1 && $0.errors?.first?.trial == 2 })
        let junit = try String(contentsOfFile: "\(path)/junit.xml", encoding: .utf8)
        #expect(junit.contains(#"errors="2""#) && junit.contains(#"<error message="netem: Specified qdisc kind is unknown (ENOENT)" type="trial-error">"#))
        #expect(junit.contains(#"failures="1""#))
        _ = try XMLDocument(data: Data(junit.utf8))
    }

    /// The error lab with one trial per cell, each the recorded fixture of its fault.
    func runOneTrialPerCell(in path: String, shard: (Int, Int)? = nil) throws -> RunReporting.Outcome {
        let lab = try LabParser(file: "errors.yaml").parse(Self.errorLab.replacingOccurrences(of: "trials: 2", with: "trials: 1"))
        let fixture = try ReportFixtures.load("crash-keepalive-2-1-3-run1")
        let reboot = try ReportFixtures.load("reboot3-keepalive-2-1-3")
        return try run(lab, in: path, shard: shard) { $0.cell.fault.fault == .crash ? fixture : reboot }
    }

    /// A line cut by an interrupted write (or corrupted later) is no silent gap: report.md's header
    /// names it and the run fails, though every expectation over the lines that remain passes.
    @Test func aDamagedResultsLineIsInTheReportHeaderAndFailsTheRun() throws {
        let path = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let clean = try runOneTrialPerCell(in: path)
        #expect(!clean.failed && clean.damagedLines.isEmpty)
        let handle = try #require(FileHandle(forWritingAtPath: "\(path)/results.jsonl"))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"lab":"errors","run":"test","index":7,"cel"#.utf8))
        handle.closeFile()
        let outcome = try RunReporting.render(directory: RunDirectory(path: path))
        #expect(outcome.verdicts.allSatisfy { $0.passed })
        #expect(outcome.damagedLines == [RunDirectory.DamagedLine(file: "results.jsonl", line: 3)])
        #expect(outcome.failed, "a damaged line fails the run")
        #expect(outcome.summaryText.contains("FAIL results.jsonl: 1 damaged line(s) skipped (line 3)"))
        let report = try String(contentsOfFile: "\(path)/report.md", encoding: .utf8)
        let header = report.components(separatedBy: "Reproduce:").first ?? ""
        #expect(header.contains("| Damaged results | ❌ 1 line of results.jsonl could not be read"), "\(header)")
        #expect(header.contains("line 3 |"))
    }

    @Test func expectationsOfAnotherShardReadNotRunAndDoNotFail() throws {
        let path = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        // Shard 2/2 holds matrix index 1 only: the reboot cell.
        let outcome = try runOneTrialPerCell(in: path, shard: (2, 2))
        #expect(outcome.verdicts.map(\.label) == ["NOT RUN (other shard)", "PASS"])
        #expect(!outcome.failed)
        let junit = try String(contentsOfFile: "\(path)/junit.xml", encoding: .utf8)
        #expect(junit.contains(#"<skipped message="NOT RUN (other shard)"/>"#) && junit.contains(#"failures="0""#))
        let report = try String(contentsOfFile: "\(path)/report.md", encoding: .utf8)
        #expect(report.contains("⏭ NOT RUN (other shard) tuned × crash"))
        #expect(report.contains("1 of 1 passed ✅; 1 not run"))

        // The same run cut short before its only trial: interrupted, still not a failure.
        try FileManager.default.removeItem(atPath: "\(path)/results.jsonl")
        let interrupted = try RunReporting.render(directory: RunDirectory(path: path))
        #expect(interrupted.verdicts.map(\.label) == ["NOT RUN (other shard)", "NOT RUN (interrupted)"])
        #expect(!interrupted.failed)

        // Merged on its own, the other shard's cell is missing: that fails.
        let merged = try temporaryDirectory() + "/merged"
        defer { try? FileManager.default.removeItem(atPath: (merged as NSString).deletingLastPathComponent) }
        try FileManager.default.removeItem(atPath: path)
        _ = try runOneTrialPerCell(in: path, shard: (2, 2))
        let outcomeMerged = try RunReporting.merge([RunDirectory(path: path)], into: RunDirectory(path: merged))
        #expect(outcomeMerged.verdicts.map(\.label) == ["FAIL", "PASS"])
        #expect(outcomeMerged.verdicts[0].detail == "no finished trials")
    }

    @Test func mergeRefusesShardsThatDoNotBelongTogether() throws {
        let lab = try LabParser(file: "errors.yaml").parse(Self.errorLab)
        let plan = RunDirectory.Plan(lab: lab, run: "a", command: "", started: "", kernel: "6.18.44", backend: "host",
                                     shard: "1/2", trials: 2, parallel: 1)
        var other = plan
        other.kernel = "6.1.0-uml"
        other.shard = "2/2"
        let a = try temporaryDirectory(), b = try temporaryDirectory(), out = try temporaryDirectory()
        defer { for p in [a, b, out] { try? FileManager.default.removeItem(atPath: p) } }
        try RunDirectory(path: a).write(plan: plan)
        try RunDirectory(path: b).write(plan: other)
        let error = #expect(throws: TrialError.self) { try RunReporting.merge([RunDirectory(path: a), RunDirectory(path: b)], into: RunDirectory(path: out + "/m")) }
        #expect(error?.message == "merge: \(b) and \(a) are not shards of one run: kernel \"6.1.0-uml\" in \(b), \"6.18.44\" in \(a)")
        #expect(!FileManager.default.fileExists(atPath: out + "/m"))

        other = plan
        other.trials = 3
        #expect(MergeCheck.difference(plan, other) == .init(what: "trials per cell", first: "2", other: "3"))
        other = plan
        other.backend = "uml"
        #expect(MergeCheck.difference(plan, other)?.what == "backend")
        other = plan
        other.lab.name = "seed"
        #expect(MergeCheck.difference(plan, other) == .init(what: "lab", first: "errors", other: "seed"))
        other = plan
        other.lab.expectations[0].allowErrors = true
        #expect(MergeCheck.difference(plan, other)?.what.hasPrefix("lab file contents") == true)
        other = plan
        other.lab.source = "elsewhere/errors.yaml"
        other.shard = "2/2"
        #expect(MergeCheck.difference(plan, other) == nil)
    }

    /// A run written before errored-trial fields, `allowErrors`, clocks and timer-model events
    /// existed (Reports/seed as committed at 440b2ad, kept as a fixture): it decodes and renders.
    @Test func committedRunsWithoutTheNewFieldsStillRender() throws {
        let source = Self.repository.appendingPathComponent("Tests/KeepaliveLabTests/Fixtures/old-run-seed").path
        let (records, damaged) = try RunDirectory(path: source).readRecords()
        #expect(damaged.isEmpty && records.count == 30)
        #expect(records.allSatisfy { $0.durationS == nil && $0.result != nil })
        let copy = try temporaryDirectory() + "/seed"
        defer { try? FileManager.default.removeItem(atPath: (copy as NSString).deletingLastPathComponent) }
        try FileManager.default.copyItem(atPath: source, toPath: copy)
        let outcome = try RunReporting.render(directory: RunDirectory(path: copy))
        #expect(outcome.verdicts.count == 6 && outcome.verdicts.allSatisfy(\.passed) && !outcome.failed)
        let old = try SummaryJSON.read(from: URL(fileURLWithPath: source + "/summary.json"))
        #expect(old.cells.allSatisfy { $0.errors == nil && $0.expectations.allSatisfy { $0.notRun == nil } })
    }

    @Test func longestTrialsStartFirstAndShardsIgnoreTheOrder() throws {
        let lab = try LabParser(file: "Labs/seed.yaml").parse(try String(contentsOfFile: Self.repository.appendingPathComponent("Labs/seed.yaml").path, encoding: .utf8))
        let plan = TrialPlan(lab: lab, trialsOverride: 2)
        let durations = plan.longestFirst.map { TrialDuration($0.spec).seconds }
        #expect(durations == durations.sorted(by: >))
        #expect(Set(plan.longestFirst.map(\.index)) == Set(plan.items.map(\.index)))
        // keepalive 2,1,3 against a crash: idle + count × interval = 5 s from the last reception.
        let crash = try #require(plan.items.first { $0.cell.key == "keepalive-2-1-3 × crash" })
        #expect(abs(TrialDuration(crash.spec).seconds - (TrialDuration.overhead + 0.2 + 4.8 + Trial.tail)) < 1e-9)
        let missed = try #require(plan.items.first { $0.cell.key == "no-keepalive × crash" })
        #expect(TrialDuration(missed.spec).bound == "deadline 15 s")
        // Shard membership is by matrix index: the same whatever the durations.
        for i in 1...3 {
            #expect(TrialPlan(lab: lab, trialsOverride: 2, shard: (i, 3)).items.map(\.index) == plan.items.map(\.index).filter { $0 % 3 == i - 1 })
        }
        let (total, critical) = TrialDuration.wall([10, 6, 5, 4, 3], parallel: 2)
        #expect(total == 14 && critical == 10)
        #expect(plan.describe(parallel: 4).contains("estimated wall"))
        #expect(plan.describe(parallel: 4, virtual: true).contains("estimated virtual time"))
    }

    /// `trial` without --deadline: 30 s unless the policy's formula predicts a later end.
    @Test func defaultDeadlineCoversTheFormula() throws {
        func spec(_ keepalive: String?) throws -> TrialSpec {
            var policy = Policy.none
            policy.keepalive = try keepalive.map(KeepaliveSetting.init(parsing:))
            return TrialSpec(clientPolicy: policy, fault: .crash)
        }
        let long = TrialDuration.defaultDeadline(for: try spec("7200,75,9"))
        #expect(long > 7875 * 1.1 && long < 7875 * 1.2 + 30)
        #expect(TrialDuration.defaultDeadline(for: try spec("2,1,3")) == 30)
        #expect(TrialDuration.defaultDeadline(for: try spec(nil)) == 30)
    }
}
