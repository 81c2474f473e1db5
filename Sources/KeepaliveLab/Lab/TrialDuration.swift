/// How long a trial should take, from its spec alone, before anything runs: to start long cells
/// first and for `run --dry-run`. An estimate, not a measurement — it is the fault delay plus
/// whatever ends the trial first: the kernel's formula (or heartbeat, TCP_USER_TIMEOUT, the
/// nat-idle exchange) where one predicts detection, else the deadline.
public struct TrialDuration: Sendable, Equatable {
    public var seconds: Double
    /// What bounds it, for the dry run: "deadline 15 s", "idle + count × interval = 2 + 3 × 1".
    public var bound: String

    /// Topology, peers and the first exchange before the fault delay starts, plus teardown
    /// (measured on this project's host backend: about 0.3 s per trial; rounded up).
    public static let overhead = 0.5

    public init(_ spec: TrialSpec) {
        let (afterFault, bound) = Self.afterFault(spec)
        let capped = min(afterFault, spec.deadline)
        seconds = Self.overhead + spec.faultDelay + capped
        self.bound = capped < afterFault || afterFault == spec.deadline ? "deadline \(Fault.format(spec.deadline)) s" : bound
    }

    /// The deadline `trial` takes when none is given: 30 s, or — where the spec's formula predicts
    /// the trial to end later (7200,75,9 under virtual time) — 1.15 × that + 10 s, room for the
    /// timer wheel's lateness (at most 1/8 of a timer at its wheel level) and a tail.
    public static func defaultDeadline(for spec: TrialSpec, floor: Double = 30) -> Double {
        var probe = spec
        probe.deadline = TrialSpec.deadlineRange.upperBound
        let (predicted, _) = afterFault(probe)
        guard predicted < TrialSpec.deadlineRange.upperBound, predicted > floor else { return floor }
        return min(TrialSpec.deadlineRange.upperBound, (predicted * 1.15 + 10).rounded(.up))
    }

    /// Seconds from the fault to the end of the trial, and why.
    static func afterFault(_ spec: TrialSpec) -> (Double, String) {
        // Each kind says what ends its trials (the kernel formula, a heartbeat, the nat-idle
        // exchange); none: the deadline.
        let candidates = spec.fault.kind.expectedEnd(spec)
        return candidates.min { $0.0 < $1.0 } ?? (spec.deadline, "deadline")
    }

    /// Wall time of `durations` on `parallel` workers that each take the longest remaining trial
    /// (the runner's order), and the longest single trial: no run can be shorter than that.
    public static func wall(_ durations: [Double], parallel: Int) -> (total: Double, criticalPath: Double) {
        var workers = [Double](repeating: 0, count: max(1, min(parallel, durations.count)))
        for d in durations.sorted(by: >) {
            let i = workers.indices.min { workers[$0] < workers[$1] }!
            workers[i] += d
        }
        return (workers.max() ?? 0, durations.max() ?? 0)
    }
}

extension TrialPlan {
    /// Longest expected trial first; ties keep matrix order, so the order is deterministic.
    public var longestFirst: [Item] {
        items.map { ($0, TrialDuration($0.spec).seconds) }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.index < $1.0.index }
            .map(\.0)
    }

    /// One line per cell, then the totals, for `run --dry-run` and the line `run` prints first.
    public func describe(parallel: Int, virtual: Bool = false) -> String {
        var lines: [String] = []
        var seen: Set<Int> = []
        for item in items where seen.insert(item.cellIndex).inserted {
            let d = TrialDuration(item.spec)
            let count = items.filter { $0.cellIndex == item.cellIndex }.count
            lines.append("  cell \(item.cellIndex) \(item.cell.key): \(count) trial(s) × ~\(Fault.format((d.seconds * 10).rounded() / 10)) s"
                         + " (fault delay \(Fault.format(item.spec.faultDelay)) s + \(d.bound))")
        }
        lines.append(estimateLine(parallel: parallel, virtual: virtual))
        return lines.joined(separator: "\n")
    }

    /// `virtual`: the durations are the guests' virtual time; the wall time is a small fraction of
    /// it (the clock jumps over idle time), so the line says so instead of promising hours.
    public func estimateLine(parallel: Int, virtual: Bool = false) -> String {
        let durations = items.map { TrialDuration($0.spec).seconds }
        let (total, critical) = TrialDuration.wall(durations, parallel: parallel)
        let serial = durations.reduce(0, +)
        if virtual {
            return "\(items.count) trial(s); estimated virtual time \(RunProgress.duration(total)) with --parallel \(parallel)"
                + " (critical path: longest trial \(RunProgress.duration(critical)) of virtual time; \(RunProgress.duration(serial)) one at a time)"
                + "; wall time is seconds per trial: the lab kernel's clock jumps over idle time"
        }
        return "\(items.count) trial(s); estimated wall \(RunProgress.duration(total)) with --parallel \(parallel)"
            + " (critical path: longest trial \(RunProgress.duration(critical)); \(RunProgress.duration(serial)) one at a time)"
    }
}
