import Foundation

/// The same lab in two clocks — real time on the host kernel, virtual time in the lab kernel —
/// side by side, and the virtual run repeated: does virtual time measure what real time measures,
/// and does it measure it the same way twice?
public enum CrossValidation {
    public struct CellComparison: Sendable {
        public var cell: String
        public var realOutcomes: String
        public var virtualOutcomes: String
        /// Medians over the cell's trials: the measurement from the expectation's anchor (or, with
        /// none, fault → detection), and probes after the fault.
        public var realS: Double?
        public var virtualS: Double?
        public var realProbes: Double?
        public var virtualProbes: Double?
        /// What the two may differ by: 4 ms + 12.5 % of the expected value, and one timer-wheel
        /// bucket of the larger of the two kernels' ticks (their timers land in different buckets).
        public var allowedS: Double?
        public var agrees: Bool
    }

    public struct Determinism: Sendable {
        public var trials: Int
        /// Trials whose every timing field and probe instant was bit-identical in both runs.
        public var identical: Int
        /// Trials whose timings differ by no more than `clockReadSlack`.
        public var withinClockReads: Int
        /// Trials whose timings differ by whole ticks of the kernel's clock (each difference k/HZ
        /// within `clockReadSlack`) with both runs inside every per-event window: the same timers,
        /// landed in a neighbouring timer-wheel bucket because the trial started at another jiffy.
        public var wholeTicks: Int = 0
        /// Trials that differ in any other way (a segment more or less, a fraction of a tick).
        public var unexplained: Int { trials - withinClockReads - wholeTicks }
        /// The largest difference seen in any timing field (seconds).
        public var largestDifferenceS: Double
        public var differing: [String]
    }

    public static func compare(real: [RunRecord], virtual: [RunRecord], lab: Lab) -> [CellComparison] {
        lab.cells.map { cell in
            let r = real.filter { $0.cellKey == cell.key }.compactMap(\.result)
            let v = virtual.filter { $0.cellKey == cell.key }.compactMap(\.result)
            let realS = ReportStats.median(r.compactMap(measurement))
            let virtualS = ReportStats.median(v.compactMap(measurement))
            let expected = (r + v).compactMap(\.expectedS).first ?? max(realS ?? 0, virtualS ?? 0)
            let ticks = (r + v).compactMap(\.kernelHz).map { 1 / Double($0) } + [0.004]
            let allowed = Expectation.tolerance(for: expected) + 8 * (ticks.max() ?? 0.004)
            let realOutcomes = outcomes(r), virtualOutcomes = outcomes(v)
            let realProbes = ReportStats.median(r.map { Double($0.probesSent) })
            let virtualProbes = ReportStats.median(v.map { Double($0.probesSent) })
            var agrees = !r.isEmpty && !v.isEmpty && realOutcomes == virtualOutcomes && realProbes == virtualProbes
            if let a = realS, let b = virtualS { agrees = agrees && abs(a - b) <= allowed }
            else if (realS == nil) != (virtualS == nil) { agrees = false }
            return CellComparison(cell: cell.key, realOutcomes: realOutcomes, virtualOutcomes: virtualOutcomes, realS: realS,
                                  virtualS: virtualS, realProbes: realProbes, virtualProbes: virtualProbes,
                                  allowedS: realS == nil ? nil : allowed, agrees: agrees)
        }
    }

    /// Under inf-cpu every clock read costs 256 ns of virtual time, and the harness's threads
    /// (capture, peer output readers) and the host's console and hostfs I/O interleave differently
    /// from run to run: an instant moves by a handful of reads (measured here: up to 3.3 µs). The
    /// reports print milliseconds; 10 µs is "the same" three orders of magnitude below that.
    public static let clockReadSlack = 0.000_010

    /// Trial by trial (same matrix position) in two runs of the same lab in virtual time.
    public static func determinism(_ a: [RunRecord], _ b: [RunRecord]) -> Determinism {
        let second = Dictionary(b.map { ($0.index, $0) }, uniquingKeysWith: { first, _ in first })
        var identical = 0, withinSlack = 0, wholeTicks = 0, largest = 0.0, differing: [String] = [], beyondReads: [String] = []
        var compared = 0
        for record in a {
            guard let x = record.result, let y = second[record.index]?.result else { continue }
            compared += 1
            let tx = timings(x), ty = timings(y)
            let worst = zip(tx, ty).map { abs($0 - $1) }.max() ?? 0
            let sameShape = tx.count == ty.count
            let ticks = sameShape && worst > clockReadSlack ? wholeTickDifference(x, y, tx, ty) : nil
            if sameShape && worst <= clockReadSlack { withinSlack += 1 }
            if ticks != nil { wholeTicks += 1 }
            // Instants are differences of two clock readings in floating point: below a
            // nanosecond is rounding, not time.
            if worst < 1e-9 && sameShape {
                identical += 1
            } else {
                largest = max(largest, worst)
                let line = "\(record.cellKey) #\(record.trial + 1): "
                    + (!sameShape ? "\(tx.count) vs \(ty.count) instants (a segment more or less)"
                       : ticks.map { "up to \(String(format: "%.3f", worst)) s = \($0) tick(s) (every difference a whole number of ticks, no modelled event outside its window)" }
                       ?? "up to \(String(format: "%.9f", worst)) s")
                if worst > clockReadSlack || !sameShape { beyondReads.append(line) } else { differing.append(line) }
            }
        }
        // Beyond the clock reads first: those are what a reader must look at.
        return Determinism(trials: compared, identical: identical, withinClockReads: withinSlack, wholeTicks: wholeTicks,
                           largestDifferenceS: largest, differing: beyondReads + differing)
    }

    /// When every timing of `x` and `y` (`tx`, `ty`: their `timings`) differs by a whole number of the
    /// kernel's ticks (within the clock-read slack) and neither run has an event outside its
    /// timer-wheel window: the largest difference in ticks. nil otherwise.
    static func wholeTickDifference(_ x: TrialResult, _ y: TrialResult, _ tx: [Double], _ ty: [Double]) -> Int? {
        guard let hz = x.kernelHz, hz > 0, y.kernelHz == hz,
              x.withinTolerance != false, y.withinTolerance != false else { return nil }
        let tick = 1 / Double(hz)
        var most = 0
        for (a, b) in zip(tx, ty) {
            let d = abs(a - b), k = (d / tick).rounded()
            guard abs(d - k * tick) <= clockReadSlack else { return nil }
            most = max(most, Int(k))
        }
        return most
    }

    /// The detection measurement a cell is judged on.
    static func measurement(_ r: TrialResult) -> Double? { r.measuredS ?? r.detectionLatencyS }

    static func outcomes(_ results: [TrialResult]) -> String {
        let counts = Dictionary(grouping: results, by: { $0.outcome.rawValue }).mapValues(\.count)
        return counts.sorted { $0.key < $1.key }.map { "\($0.value)× \($0.key)" }.joined(separator: ", ")
    }

    /// Every instant a trial measured, in a fixed order: the detection figures and each segment.
    static func timings(_ r: TrialResult) -> [Double] {
        [r.detectionLatencyS, r.sinceLastRxS, r.measuredS, r.wireAbortS].map { $0 ?? -1 } + r.timeline.map(\.t)
    }

    public static func markdown(lab: Lab, realRun: String, virtualRun: String, againRun: String,
                                real: [RunRecord], virtual: [RunRecord], again: [RunRecord]) -> String {
        let cells = compare(real: real, virtual: virtual, lab: lab)
        let determinism = determinism(virtual, again)
        let kernels = { (records: [RunRecord]) -> String in
            Set(records.compactMap { r in r.result.map { "\($0.kernel) (\($0.backend)\($0.kernelHz.map { ", HZ=\($0)" } ?? ""), \($0.clock ?? "real") clock)" } })
                .sorted().joined(separator: ", ")
        }
        var md = ["# Cross-validation: real time vs virtual time — \(lab.name)", ""]
        md.append("The same lab (`\(lab.source)`) run in real time on the host's kernel and in virtual time in the lab kernel "
                  + "(UML time-travel=inf-cpu), and the virtual run once more. Real: \(kernels(real)) → `\(realRun)`. "
                  + "Virtual: \(kernels(virtual)) → `\(virtualRun)`; again → `\(againRun)`.")
        md.append("")
        md.append("| Cell | Outcomes real | Outcomes virtual | Median real (s) | Median virtual (s) | Δ (ms) | Allowed (ms) | Probes real / virtual | Agree |")
        md.append("|---|---|---|--:|--:|--:|--:|--:|---|")
        for c in cells {
            let delta = c.realS.flatMap { a in c.virtualS.map { b in String(format: "%.1f", (b - a) * 1000) } } ?? "—"
            md.append("| " + [c.cell, c.realOutcomes, c.virtualOutcomes, fmt(c.realS), fmt(c.virtualS), delta,
                              c.allowedS.map { String(format: "%.1f", $0 * 1000) } ?? "—",
                              "\(fmtCount(c.realProbes)) / \(fmtCount(c.virtualProbes))", c.agrees ? "✅" : "❌"]
                .map(markdownCell).joined(separator: " | ") + " |")
        }
        let agreeing = cells.filter(\.agrees).count
        md.append("")
        md.append("\(agreeing) of \(cells.count) cells agree: same outcomes, same median probe count, and medians within 4 ms + "
                  + "12.5 % of the expected value plus one timer-wheel bucket (8 ticks of the coarser kernel: the two kernels' "
                  + "timers land in different buckets). Medians are of the measurement from the formula's anchor (last "
                  + "segment received, first retransmission …), or fault → detection where the cell has no formula.")
        md.append("")
        md.append("## Determinism")
        md.append("")
        md.append("The virtual-time run twice, trial by trial (same matrix position), every timing field and every segment's instant: "
                  + "\(determinism.identical) of \(determinism.trials) trials bit-identical, \(determinism.withinClockReads) of "
                  + "\(determinism.trials) within 10 µs, \(determinism.wholeTicks) by whole ticks, \(determinism.unexplained) otherwise. "
                  + "No host-scheduling noise reaches the kernel's timers, but under inf-cpu each clock read costs 256 ns of virtual "
                  + "time, and the harness's threads and the host's console and file I/O interleave differently from run to run: an "
                  + "instant can move by a handful of reads, and trials that share a guest start in an order that varies, so a trial "
                  + "can start at another jiffy and its timers land in a neighbouring timer-wheel bucket (whole ticks, no modelled "
                  + "event outside its window; a single trial in its own guest repeats within 10 µs)"
                  + (determinism.differing.isEmpty ? "." : String(format: "; the largest difference %.9f s:", determinism.largestDifferenceS)))
        for line in determinism.differing.prefix(20) { md.append("- \(line)") }
        md.append("")
        return md.joined(separator: "\n")
    }

    static func fmt(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "—" }
    static func fmtCount(_ v: Double?) -> String { v.map { $0 == $0.rounded() ? String(Int($0)) : String(format: "%.1f", $0) } ?? "—" }
}
