import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Privileged, real kernel, through the command line: a small lab run whole, then as two shards
/// that are merged. Each shard passes on its own (the other's expectations read NOT RUN), and the
/// merge reaches the same verdicts as the whole run. About 4 s per run with keepalive 1,1,2/1,1,3.
@Suite(.enabled(if: CIGate.runs(TrialPrerequisites.missing), Comment(rawValue: TrialPrerequisites.missing ?? "")))
struct ShardMergeTests {
    static let lab = """
        name: shard-smoke
        description: 2 policies × 2 faults × 1 trial, fast timers, for the shard/merge test.
        trials: 1
        deadline: 6
        policies:
          - name: ka-1-1-2
            client:
              keepalive: 1,1,2
          - name: ka-1-1-3
            client:
              keepalive: 1,1,3
        faults:
          - crash
          - reboot:1
        expectations:
          - fault: crash
            outcome: detected
          - policy: ka-1-1-2
            fault: crash
            detect_within: 3.5
          - fault: reboot:1
            outcome: detected
        """

    /// Runs `keepalive-lab ARGS`; returns its exit status and stdout.
    func cli(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: PeerBinary.path!)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print("keepalive-lab \(arguments.joined(separator: " ")) → \(process.terminationStatus)\n\(output)")
        return (process.terminationStatus, output)
    }

    /// (name, PASS/FAIL/NOT RUN) of every expectation in a run directory's summary.json.
    func verdicts(_ directory: String) throws -> [String: String] {
        let summary = try SummaryJSON.read(from: URL(fileURLWithPath: "\(directory)/summary.json"))
        return Dictionary(uniqueKeysWithValues: summary.cells.flatMap(\.expectations).map { ($0.name, $0.label) })
    }

    @Test func twoShardsMergeToTheVerdictsOfTheWholeRun() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("keepalive-lab-shards-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let labPath = "\(root)/shard-smoke.yaml"
        try Self.lab.write(toFile: labPath, atomically: true, encoding: .utf8)
        let common = ["--backend", "host", "--parallel", "4", "--pcaps", "none"]

        let whole = try cli(["run", labPath, "--out", "\(root)/whole"] + common)
        #expect(whole.status == 0)
        let s1 = try cli(["run", labPath, "--shard", "1/2", "--out", "\(root)/s1"] + common)
        let s2 = try cli(["run", labPath, "--shard", "2/2", "--out", "\(root)/s2"] + common)
        #expect(s1.status == 0 && s2.status == 0, "a shard must not fail over the other shard's cells")
        #expect(s1.output.contains("NOT RUN (other shard)") && s2.output.contains("NOT RUN (other shard)"))
        #expect(try verdicts("\(root)/s1").values.contains("NOT RUN (other shard)"))
        let junit = try String(contentsOfFile: "\(root)/s1/junit.xml", encoding: .utf8)
        #expect(junit.contains("<skipped message=\"NOT RUN (other shard)\"/>"))

        let merged = try cli(["merge", "\(root)/s1", "\(root)/s2", "--out", "\(root)/merged"])
        #expect(merged.status == 0)
        let expected = try verdicts("\(root)/whole")
        #expect(expected.count == 5 && expected.values.allSatisfy { $0 == "PASS" })
        #expect(try verdicts("\(root)/merged") == expected)

        // One shard alone is not the whole run: the merge fails over the missing cells.
        let half = try cli(["merge", "\(root)/s1", "--out", "\(root)/half"])
        #expect(half.status == 1)
        #expect(try verdicts("\(root)/half").values.filter { $0 == "FAIL" }.count == 2)

        let runs = try ["whole", "s1", "s2"].map { try RunDirectory(path: "\(root)/\($0)").readPlan().run }
        let left = NetworkNamespace.listNames().filter { LabID.runID(inNamespaceName: $0).map(runs.contains) ?? false }
        #expect(left.isEmpty, "namespaces left behind: \(left)")
    }
}
