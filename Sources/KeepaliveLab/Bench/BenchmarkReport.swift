import Foundation

public enum BenchmarkReport {
    public static func markdown(topology t: TopologyBenchmark.Figures, kernel: String, command: String) -> String {
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        let date = ISO8601DateFormatter().string(from: Date())
        return """
        # keepalive-lab benchmark

        Measured by `\(command)` on \(date), kernel \(kernel), \(ProcessInfo.processInfo.activeProcessorCount) CPUs.

        ## Topology setup + teardown (A–R–B: 3 namespaces, 2 veth pairs, addresses, routes, permanent neighbours)

        Median of \(t.rounds) rounds each, same machine, same run. Target: ≤ 10 ms through libnl.

        | method | build (median) | teardown (median) | build + teardown (median) | p95 total |
        |---|---:|---:|---:|---:|
        | libnl (the product) | \(f(Stats.median(t.libnlBuildMs))) ms | \(f(Stats.median(t.libnlTeardownMs))) ms | **\(f(t.libnlTotalMedianMs)) ms** | \(f(Stats.quantile(zip(t.libnlBuildMs, t.libnlTeardownMs).map { $0 + $1 }, 0.95))) ms |
        | `ip` commands (\(t.ipCommandsPerTopology) processes) | \(f(Stats.median(t.ipBuildMs))) ms | \(f(Stats.median(t.ipTeardownMs))) ms | \(f(t.ipTotalMedianMs)) ms | \(f(Stats.quantile(zip(t.ipBuildMs, t.ipTeardownMs).map { $0 + $1 }, 0.95))) ms |

        libnl is \(String(format: "%.1f", t.ipTotalMedianMs / t.libnlTotalMedianMs))× faster. Teardown deletes the namespaces; the kernel destroys the veths in its own
        cleanup work afterwards, so teardown does not wait for RCU grace periods.

        """
    }
}
