import Foundation

public enum BenchmarkReport {
    public static func markdown(topology t: TopologyBenchmark.Figures, batches: [ParallelBenchmark.Batch], kernel: String,
                                command: String, keepalive: KeepaliveSetting = ParallelBenchmark.defaultKeepalive) -> String {
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
        | `ip` commands (\(t.ipCommandsPerTopology) processes, spawn + waitpid) | \(f(median(t.ipBuildMs))) ms | \(f(median(t.ipTeardownMs))) ms | \(f(median(t.ipTotalMs))) ms | \(f(p95(t.ipTotalMs))) ms |

        libnl is \(String(format: "%.1f", (median(t.ipTotalMs) ?? .nan) / (median(t.libnlTotalMs) ?? .nan)))× faster (medians). Teardown deletes the namespaces; the kernel destroys the veths in its own
        cleanup work afterwards, so teardown does not wait for RCU grace periods.

        """ + parallel(batches, keepalive: keepalive)
    }

    /// The wall-time target for a batch of `n` trials, as a multiple of one trial alone.
    public static func target(_ n: Int) -> Double { n <= 200 ? 1.3 : 1.5 }

    /// One trial alone: the median wall time of the single-trial batches.
    public static func alone(_ batches: [ParallelBenchmark.Batch]) -> Double {
        let smallest = batches.map(\.concurrent).min() ?? 1
        return ReportStats.median(batches.filter { $0.concurrent == smallest }.map(\.wallS)) ?? .nan
    }

    /// "≤ 1.5× met" or "≤ 1.5× **missed**" for a batch of `n` trials at `ratio` × one trial alone.
    static func verdict(ratio: Double, trials n: Int) -> String {
        let bound = "≤ \(String(format: "%.1f", target(n)))×"
        return ratio <= target(n) ? "\(bound) met" : "\(bound) **missed**"
    }

    /// Where a batch size ran more than once: the median run decides the verdict (one run on a
    /// shared machine can land on either side of a target), with the spread beside it.
    static func medians(_ batches: [ParallelBenchmark.Batch], alone: Double, smallest: Int) -> String {
        func f(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        let sizes = Array(Set(batches.map(\.concurrent))).sorted().filter { n in
            n != smallest && batches.filter { $0.concurrent == n }.count > 1
        }
        guard !sizes.isEmpty else { return "" }
        var text = """

        Sizes that ran more than once, by their median run (the verdict) and the spread of all runs:

        | concurrent trials | runs | wall / alone: median | min – max | target | setup span: median | min – max |
        |--:|--:|--:|--:|:-:|--:|--:|

        """
        for n in sizes {
            let runs = batches.filter { $0.concurrent == n }
            let ratios = runs.map { $0.wallS / alone }
            let spans = runs.compactMap(\.setupSpanS)
            guard let median = ReportStats.median(ratios) else { continue }
            text += "| \(n) | \(runs.count) | **\(f(median))** | \(f(ratios.min()!)) – \(f(ratios.max()!)) | \(verdict(ratio: median, trials: n)) | "
                + (ReportStats.median(spans).map { "\(f($0)) s | \(f(spans.min()!)) – \(f(spans.max()!)) s |" } ?? "— | — |") + "\n"
        }
        return text
    }

    static func parallel(_ batches: [ParallelBenchmark.Batch], keepalive k: KeepaliveSetting) -> String {
        guard !batches.isEmpty else { return "" }
        func f(_ v: Double?, _ digits: Int = 2) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "—" }
        let alone = alone(batches)
        let smallest = batches.map(\.concurrent).min() ?? 1
        let aloneRuns = batches.filter { $0.concurrent == smallest }.count
        let formula = k.idle + k.interval * k.count
        let peer = batches.last?.peer ?? "?"
        var text = """

        ## Parallel efficiency

        Each batch starts N trials at once, each on its own topology with its own peers (`\(peer)`) and
        capture: keepalive \(k) on an idle connection, B crashes 0.2 s after the first exchange, so every
        trial detects about \(formula) s after the last segment A received. "Alone" is the median wall
        time of \(aloneRuns) single-trial batch(es) of this run (\(f(alone)) s). Target: 200 trials within
        1.3× and 1000 within 1.5× of that. Setups go through a gate (\(SetupGate.defaultWidth) at once, first
        come first served), so "setup span" is the batch start → the last client ready. CPU is machine-wide
        busy time during the batch (`/proc/stat`), so anything else running counts too. Before each batch
        the bench waits until the kernel has destroyed the namespaces of earlier batches ("settle":
        deleting a namespace only queues its destruction, which otherwise runs during the next batch's
        setup); the wait ends on a kernel event (RTM_DELNSID of a sentinel namespace), not a timer.

        | concurrent trials | settle before | batch wall time | longest trial | median trial | setup span | wall / alone | target | detected | errors | CPU (machine) | per trial |
        |--:|--:|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|

        """
        for b in batches {
            let vsAlone = b.wallS / alone
            let verdict = b.concurrent == smallest ? "—" : self.verdict(ratio: vsAlone, trials: b.concurrent)
            text += "| \(b.concurrent) | \(b.cleanupWaitS.map { "\(f($0)) s" } ?? "failed") | \(f(b.wallS)) s | \(f(b.longestTrialS)) s | \(f(b.medianTrialS)) s | \(f(b.setupSpanS)) s | "
                + "\(f(vsAlone)) | \(verdict) | \(b.detected)/\(b.concurrent) | \(b.errors.count) | "
                + "\(f(b.cpuSeconds, 1)) s | \(f(b.cpuSeconds / Double(b.concurrent) * 1000, 1)) ms |\n"
        }
        text += medians(batches, alone: alone, smallest: smallest)
        let unsettled = batches.filter { $0.cleanupNote != nil }
        if !unsettled.isEmpty {
            text += "\nSettle failed before \(unsettled.count) batch(es), which then started at once: "
                + Set(unsettled.compactMap(\.cleanupNote)).sorted().joined(separator: "; ") + "\n"
        }
        text += """

        ## Timing fidelity

        The detection instant the application saw (its poll(2) returning with the error) minus A's abort
        RST on the wire (capture in R, same CLOCK_MONOTONIC timeline), and the measured latency minus the
        kernel formula (idle + count × interval from the last segment A received; timers fire late,
        never early). Target: app − wire p95 ≤ 5 ms at 200 trials.

        What bounds it: trials with the same keepalive settings that started within one timer-wheel
        bucket have their timers expire in the same tick, so one softirq sends dozens of RSTs and wakes
        dozens of peers at once. Peers run at SCHED_FIFO 1 until they have stamped the wakeup, then
        drop to SCHED_OTHER before formatting their report, so one peer's report does not delay the
        next peer's stamp. The wire stamp is taken when R's receive path hands the frame to the capture
        (a TCP segment carries its sender's departure time, which the capture cannot use); the kernel
        defers that receive work to ksoftirqd while a woken realtime peer waits, so app − wire can
        be slightly negative: the wire stamp is then the later one.

        | concurrent trials | app − wire: median | p95 | max | measured − formula: median | p95 | max |
        |--:|--:|--:|--:|--:|--:|--:|

        """
        for b in batches {
            let w = b.appMinusWireMs, e = b.formulaErrorsS.map { $0 * 1000 }
            text += "| \(b.concurrent) | \(f(ReportStats.median(w), 3)) ms | \(f(ReportStats.percentile(w, 95), 3)) ms | \(f(w.max(), 3)) ms | "
                + "\(f(ReportStats.median(e), 1)) ms | \(f(ReportStats.percentile(e, 95), 1)) ms | \(f(e.max(), 1)) ms |\n"
        }
        text += memory(batches)
        text += limits(batches, alone: alone)
        let errors = batches.flatMap(\.errors)
        if !errors.isEmpty {
            text += "\nErrors (first 5):\n" + errors.prefix(5).map { "- \($0)" }.joined(separator: "\n") + "\n"
        }
        return text
    }

    static func memory(_ batches: [ParallelBenchmark.Batch]) -> String {
        let measured = batches.filter { $0.memory != nil }
        guard !measured.isEmpty else { return "" }
        func mib(_ kib: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f MiB", kib / 1024) }
        var text = """

        ## Memory

        Sampled once per batch, at the instant the last trial's client became ready (every topology,
        capture and client of the trials alive then — N unless setting up N took longer than a
        trial, see "alive"; a crash kills B's server 0.2 s after its own client is ready, so servers
        of earlier trials are gone by then). Per-trial figures divide by the trials alive. **PSS** (`/proc/PID/smaps_rollup`: each shared
        page divided among the processes mapping it, so the Swift runtime is not counted once per
        process) of the harness and of every peer whose command line names the run. PSS per trial =
        harness PSS / N + a client's mean PSS + a server's mean PSS (a client's where no server is
        alive: same binary, same work). **Kernel** = the change in `/proc/meminfo` Slab + KernelStack
        + PageTables + Percpu + VmallocUsed between just before the batch and the sample (namespaces,
        veths, sockets, capture rings' bookkeeping, task structs and stacks), divided by the
        topologies that exist then (network namespaces added / 3, finished trials whose namespaces
        the kernel has not freed yet included);
        machine-wide, so anything else changing memory meanwhile is in it. MemAvailable's drop covers
        everything (user and kernel, incl. capture ring pages, which are in no meminfo field above).

        | concurrent trials | alive | harness PSS | client PSS (mean) | server PSS (mean) | **PSS per trial** | ΔSlab | ΔSUnreclaim | ΔKernelStack | ΔPageTables | ΔPercpu | ΔVmallocUsed | **kernel per trial** | MemAvailable drop per trial | netns before → at sample |
        |--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|

        """
        for b in measured {
            let m = b.memory!
            let d = m.meminfoDeltaKiB
            func delta(_ key: String) -> String { mib(Double(d[key] ?? 0)) }
            text += "| \(b.concurrent) | \(m.trials) | \(mib(Double(m.harnessPSSKiB))) | \(mib(m.meanClientPSSKiB, 2)) (\(m.clients)) | "
                + "\(mib(m.meanServerPSSKiB, 2)) (\(m.servers)) | **\(mib(m.pssPerTrialKiB, 2))** | \(delta("Slab")) | \(delta("SUnreclaim")) | "
                + "\(delta("KernelStack")) | \(delta("PageTables")) | \(delta("Percpu")) | \(delta("VmallocUsed")) | "
                + "**\(mib(m.kernelPerTrialKiB, 2))** | \(mib(-Double(d["MemAvailable"] ?? 0) / Double(m.trials), 2)) | \(m.netnsBefore) → \(m.netnsAtSample) |\n"
        }
        text += "\nTarget: PSS per trial ≤ 8 MiB.\n"
        return text
    }

    /// Per-trial costs of the largest batch with a memory sample, and what they allow on this machine.
    public static func perTrial(_ batches: [ParallelBenchmark.Batch], alone: Double) -> MachineLimits.PerTrial? {
        guard let b = batches.filter({ $0.memory != nil }).max(by: { $0.concurrent < $1.concurrent }), let m = b.memory else { return nil }
        return MachineLimits.PerTrial(pssKiB: m.pssPerTrialKiB, kernelKiB: m.kernelPerTrialKiB, tasks: m.tasksPerTrial,
                                      fds: m.fdsPerTrial, netns: 3, cpuSeconds: b.cpuSeconds / Double(b.concurrent),
                                      trialSeconds: alone)
    }

    static func limits(_ batches: [ParallelBenchmark.Batch], alone: Double) -> String {
        guard let p = perTrial(batches, alone: alone),
              let b = batches.filter({ $0.memory != nil }).max(by: { $0.concurrent < $1.concurrent }) else { return "" }
        let limits = MachineLimits.limits(perTrial: p, trialSeconds: alone)
        var text = """

        ## What this machine can hold

        Per-trial costs from the \(b.concurrent)-trial batch: PSS \(String(format: "%.2f", p.pssKiB / 1024)) MiB, kernel \(String(format: "%.2f", p.kernelKiB / 1024)) MiB,
        \(String(format: "%.1f", p.tasks)) tasks (harness threads / N + 2 peers), \(String(format: "%.1f", p.fds)) harness descriptors, 3 namespaces,
        \(String(format: "%.1f", p.cpuSeconds * 1000)) ms of CPU; trials of \(String(format: "%.1f", alone)) s. Concurrent trials each limit allows, first limit first:

        | limit | trials at once | how |
        |---|--:|---|

        """
        for l in limits { text += "| \(l.resource) | \(l.trials) | \(l.detail) |\n" }
        text += "\nFirst limit hit: **\(limits[0].resource)** at \(limits[0].trials) concurrent trials of this kind. "
            + "`run` sizes its default `--parallel` the same way from these per-trial costs (MachineLimits.measured).\n"
        return text
    }
}
