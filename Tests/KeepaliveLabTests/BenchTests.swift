import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

extension BackendTests {
    /// The short variant of `bench` that CI runs: one trial alone, then 200 at once, each a
    /// keepalive 2,1,2 crash (~4.6 s). Nested in BackendTests (serialized) so the 200 trials do not
    /// overlap the other subprocess-heavy tests there. The wall-time ratio is written to the
    /// table, never asserted: timing targets are `bench`'s to measure, not a test's.
    @Suite(.enabled(if: CIGate.runs(TrialPrerequisites.missing), Comment(rawValue: TrialPrerequisites.missing ?? "")))
    struct BenchTests {
        @Test func shortBenchOf200TrialsCompletesWithoutErrors() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kal-bench-\(getpid())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let out = directory.appendingPathComponent("benchmark.md").path
            let (status, stdout, stderr) = try Leftovers.checked {
                try LabCommand.run(["bench", "--rounds", "3", "--concurrency", "1,200", "--keepalive", "2,1,2",
                                    "--alone-runs", "1", "--out", out], asNobody: false, timeout: 600)
            }
            #expect(status == 0, "bench exited \(status): \(stderr)")
            let markdown = try String(contentsOfFile: out, encoding: .utf8)
            #expect(stdout.contains("# keepalive-lab benchmark"))
            let rows = markdown.split(separator: "\n").filter { $0.hasPrefix("| 200 | ") }
            // Parallel efficiency, timing fidelity, memory: one row each.
            #expect(rows.count == 3, "rows for 200 trials: \(rows)")
            let efficiency = try #require(rows.first)
            #expect(efficiency.contains("| 200/200 | 0 |"), "all detected, no error: \(efficiency)")
            #expect(markdown.contains("wall / alone"))
            #expect(markdown.contains("PSS per trial"))
            #expect(markdown.contains("First limit hit: **"))
            #expect(stderr.contains("bench: first limit on this machine:"))
        }
    }
}

/// Unprivileged: the report's arithmetic over fake batches (no trials run).
@Suite struct BenchReportWithFakeBatchesTests {
    func fakeBatch(_ n: Int, wall: Double, span: Double) -> ParallelBenchmark.Batch {
        ParallelBenchmark.Batch(concurrent: n, wallS: wall, longestTrialS: wall, medianTrialS: wall, detected: n, errors: [],
                                setupSpanS: span, cpuSeconds: 1, memory: nil, formulaErrorsS: [], appMinusWireMs: [],
                                peer: "fake", cleanupWaitS: 0.05, cleanupNote: nil)
    }

    @Test func repeatedSizesAreJudgedByTheirMedianRun() {
        // Alone 10 s; 1000 trials three times: 14.6, 16.2, 17.2 s → median 1.62×: missed although one run met.
        let batches = [fakeBatch(1, wall: 10, span: 0.02)]
            + [(14.6, 4.1), (16.2, 5.6), (17.2, 6.9)].map { fakeBatch(1000, wall: $0.0, span: $0.1) }
            + [fakeBatch(200, wall: 11, span: 1)]
        let text = BenchmarkReport.medians(batches, alone: BenchmarkReport.alone(batches), smallest: 1)
        #expect(text.contains("| 1000 | 3 | **1.62** | 1.46 – 1.72 | ≤ 1.5× **missed** | 5.60 s | 4.10 – 6.90 s |"), "\(text)")
        #expect(!text.contains("| 200 |"), "a size that ran once has no median row: \(text)")
        #expect(BenchmarkReport.medians([fakeBatch(1, wall: 10, span: 0), fakeBatch(200, wall: 11, span: 1)], alone: 10, smallest: 1).isEmpty)
    }
}
