import Foundation
import KeepaliveNet

/// N trials of a known duration at once, each on its own topology: how close the batch's wall time
/// stays to the longest single trial, how faithful the timing stays, and what memory it takes.
public enum ParallelBenchmark {
    public struct Batch: Codable, Sendable {
        public var concurrent: Int
        public var wallS: Double
        public var longestTrialS: Double
        public var medianTrialS: Double
        /// wall / longest trial: 1.0 is perfect overlap.
        public var ratio: Double { wallS / longestTrialS }
        public var detected: Int
        public var errors: [String]
        /// Peak resident memory of the harness plus every peer process of the batch.
        public var peakRSSMiB: Double
        public var rssPerTrialMiB: Double { peakRSSMiB / Double(concurrent) }
        /// measured − formula (s), per trial with a formula.
        public var formulaErrorsS: [Double]
        /// app detection − A's RST on the wire (ms).
        public var appMinusWireMs: [Double]
    }

    /// keepalive 5,1,5 on a crash: detection 10 s after the last segment A received.
    public static let spec = TrialSpec(clientPolicy: Policy(keepalive: KeepaliveSetting(idle: 5, interval: 1, count: 5)),
                                       fault: .crash, deadline: 20)

    public static func batch(concurrent n: Int, run: String, peerExecutable: String) throws -> Batch {
        let lock = NSLock()
        var results: [TrialResult] = []
        var durations: [Double] = []
        var errors: [String] = []
        let group = DispatchGroup()
        let sampler = MemorySampler(run: run)
        sampler.start()
        let start = PeerEvent.now()
        for i in 0..<n {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                let t0 = PeerEvent.now()
                do {
                    let id = try LabID(run: run, trial: "p\(n)x\(i)")
                    let result = try Trial(spec: spec, id: id, peerExecutable: peerExecutable, pcapPath: nil).run()
                    let t1 = PeerEvent.now()
                    lock.withLock { results.append(result); durations.append(t1 - t0) }
                } catch {
                    lock.withLock { errors.append("\(error)") }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        let wall = PeerEvent.now() - start
        let peak = sampler.stop()
        return Batch(
            concurrent: n, wallS: wall, longestTrialS: durations.max() ?? .nan,
            medianTrialS: ReportStats.median(durations) ?? .nan,
            detected: results.filter { $0.outcome == .detected }.count, errors: errors,
            peakRSSMiB: peak,
            formulaErrorsS: results.compactMap { r in r.measuredS.flatMap { m in r.expectedS.map { m - $0 } } },
            appMinusWireMs: results.compactMap(\.appMinusWireMs))
    }
}

/// Samples the summed VmRSS of this process and of every process whose command line names the run.
final class MemorySampler: @unchecked Sendable {
    let run: String
    private let lock = NSLock()
    private var peakKiB = 0
    private var running = true
    private var thread: Thread?

    init(run: String) { self.run = run }

    func start() {
        let thread = Thread { [self] in
            while lock.withLock({ running }) {
                let total = sample()
                lock.withLock { peakKiB = max(peakKiB, total) }
                usleep(200_000)
            }
        }
        self.thread = thread
        thread.start()
    }

    /// Peak in MiB.
    func stop() -> Double {
        lock.withLock { running = false }
        usleep(250_000)
        return Double(lock.withLock { peakKiB }) / 1024
    }

    func sample() -> Int {
        let me = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var total = 0
        for entry in entries {
            guard let pid = Int32(entry) else { continue }
            if pid != me {
                guard let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
                      cmdline.contains("kal-\(run)-") else { continue }
            }
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { continue }
            for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
                total += Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
            }
        }
        return total
    }
}
