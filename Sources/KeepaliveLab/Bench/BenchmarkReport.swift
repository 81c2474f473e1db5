import Foundation

public enum BenchmarkReport {
    public static func markdown(topology t: TopologyBenchmark.Figures, batches: [ParallelBenchmark.Batch], kernel: String,
                                command: String) -> String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "—" }
        func median(_ v: [Double]) -> Double? { ReportStats.median(v) }
        func p95(_ v: [Double]) -> Double? { ReportStats.percentile(v, 95) }
        let date = ISO8601DateFormatter().string(from: Date())
        return """
        # keepalive-lab benchmark

        Measured by `\(command)` on \(date), kernel \(kernel), \(ProcessInfo.processInfo.activeProcessorCount) CPUs.

        ## Topology setup + teardown (A–R–B: 3 namespaces, 2 veth pairs, addresses, routes, permanent neighbours)

        Median of \(t.rounds) rounds each, same machine, same run. Target: ≤ 10 ms through libnl.

        | method | build (median) | teardown (median) | build + teardown (median) | p95 total |
        |---|---:|---:|---:|---:|
        | libnl (the product) | \(f(median(t.libnlBuildMs))) ms | \(f(median(t.libnlTeardownMs))) ms | **\(f(median(t.libnlTotalMs))) ms** | \(f(p95(t.libnlTotalMs))) ms |
        | `ip` commands (\(t.ipCommandsPerTopology) processes, posix_spawn + waitpid) | \(f(median(t.ipBuildMs))) ms | \(f(median(t.ipTeardownMs))) ms | \(f(median(t.ipTotalMs))) ms | \(f(p95(t.ipTotalMs))) ms |

        libnl is \(String(format: "%.1f", (median(t.ipTotalMs) ?? .nan) / (median(t.libnlTotalMs) ?? .nan)))× faster (medians). Teardown deletes the namespaces; the kernel destroys the veths in its own
        cleanup work afterwards, so teardown does not wait for RCU grace periods.

        """ + parallel(batches)
    }

    static func parallel(_ batches: [ParallelBenchmark.Batch]) -> String {
        guard !batches.isEmpty else { return "" }
        func f(_ v: Double?, _ digits: Int = 2) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "—" }
        var text = """

        ## Parallel efficiency, timing fidelity, memory

        Each batch starts N trials at once, each on its own topology with its own peers and capture:
        keepalive 5,1,5 on an idle connection, B crashes 0.2 s after the first exchange, so every trial
        detects about 10 s after the last segment A received. Target: the batch's wall time within
        1.5× the wall time of one such trial run alone (the smallest batch below). Trials in a batch
        start together, so "wall / longest in batch" only shows that nothing waits for a free slot;
        "wall / alone" shows what concurrency costs (setup of namespaces and peer processes competes
        for the CPUs).

        | concurrent trials | batch wall time | longest trial | median trial | wall / longest in batch | wall / alone | target ≤ 1.5× | detected | errors | peak RSS (harness + peers) | per trial |
        |--:|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|

        """
        let alone = batches.min { $0.concurrent < $1.concurrent }?.longestTrialS ?? .nan
        for b in batches {
            let vsAlone = b.wallS / alone
            text += "| \(b.concurrent) | \(f(b.wallS)) s | \(f(b.longestTrialS)) s | \(f(b.medianTrialS)) s | \(f(b.ratio)) | "
                + "\(f(vsAlone)) | \(vsAlone <= 1.5 ? "met" : "**missed**") | "
                + "\(b.detected)/\(b.concurrent) | \(b.errors.count) | \(f(b.peakRSSMiB, 0)) MiB | \(f(b.rssPerTrialMiB, 1)) MiB |\n"
        }
        text += """

        Timing fidelity per batch: the detection instant the application saw minus A's abort RST on the
        wire (capture in R), and the measured latency minus the kernel formula (idle + count × interval
        from the last segment A received; timers fire late, never early).

        | concurrent trials | app − wire: median | p95 | max | measured − formula: median | p95 | max |
        |--:|--:|--:|--:|--:|--:|--:|

        """
        for b in batches {
            let w = b.appMinusWireMs, e = b.formulaErrorsS.map { $0 * 1000 }
            text += "| \(b.concurrent) | \(f(ReportStats.median(w), 3)) ms | \(f(ReportStats.percentile(w, 95), 3)) ms | \(f(w.max(), 3)) ms | "
                + "\(f(ReportStats.median(e), 1)) ms | \(f(ReportStats.percentile(e, 95), 1)) ms | \(f(e.max(), 1)) ms |\n"
        }
        let errors = batches.flatMap(\.errors)
        if !errors.isEmpty {
            text += "\nErrors (first 5):\n" + errors.prefix(5).map { "- \($0)" }.joined(separator: "\n") + "\n"
        }
        return text
    }
}
