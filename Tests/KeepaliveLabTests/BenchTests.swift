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
