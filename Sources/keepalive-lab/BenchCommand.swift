import ArgumentParser
import Foundation
import KeepaliveLab
import KeepaliveNet

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the lab itself on this machine and write Reports/benchmark.md.")

    @Option(help: "Topology build+teardown repetitions per method (1…1000).")
    var rounds: Int = 50

    @Option(help: "Concurrent-trial batch sizes for the parallel-efficiency figures (comma-separated; 0 skips).")
    var concurrency: String = "1,10,100,200,1000"

    @Option(help: "The trials' client keepalive IDLE,INTERVAL,COUNT (B crashes; detection after IDLE + INTERVAL × COUNT s). A short one (2,1,2) makes a quick CI run.")
    var keepalive: String = "5,1,5"

    @Option(help: "How many times the smallest batch (one trial alone) runs; the median is the baseline.")
    var aloneRuns: Int = 3

    @Option(help: "How many times each larger batch runs (1…20); the verdict uses the median of its runs, every run is listed.")
    var runs: Int = 1

    @Option(help: "Where to write the Markdown report.")
    var out: String = "Reports/benchmark.md"

    func validate() throws {
        guard (1...1000).contains(rounds) else { throw ValidationError("--rounds \(rounds) is out of range: 1…1000") }
        guard (1...20).contains(aloneRuns) else { throw ValidationError("--alone-runs \(aloneRuns) is out of range: 1…20") }
        guard (1...20).contains(runs) else { throw ValidationError("--runs \(runs) is out of range: 1…20") }
        _ = try batchSizes()
        do { _ = try KeepaliveSetting(parsing: keepalive) } catch { throw ValidationError("--keepalive: \(error)") }
    }

    func batchSizes() throws -> [Int] {
        let sizes = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sizes.allSatisfy({ $0 != nil && (0...5000).contains($0!) }) else {
            throw ValidationError("--concurrency \(concurrency) is invalid: comma-separated batch sizes in 0…5000")
        }
        return sizes.compactMap { $0 }.filter { $0 > 0 }
    }

    func run() throws {
        StartupNotices.peers()
        let run = try RunOwnership.begin()
        defer { RunOwnership.unregister(run: run) }
        ResourceLimits.raiseOpenFiles()
        let topology = try TopologyBenchmark.measure(rounds: rounds, run: run)
        var batches: [ParallelBenchmark.Batch] = []
        let keepalive = try KeepaliveSetting(parsing: self.keepalive)
        let sizes = try batchSizes()
        for size in sizes {
            let repeats = size == sizes.min() ? aloneRuns : runs
            for repeat_ in 0..<repeats {
                FileHandle.standardError.write(Data("bench: \(size) concurrent trial(s)\(repeats > 1 ? " (\(repeat_ + 1)/\(repeats))" : "")…\n".utf8))
                let batch = try ParallelBenchmark.batch(concurrent: size, run: run, peerExecutable: PeerProcess.selfExecutable,
                                                        keepalive: keepalive, label: "\(size)r\(repeat_)")
                FileHandle.standardError.write(Data(String(format: "bench: %d trial(s): wall %.2f s, %d detected, %d error(s)\n",
                                                           size, batch.wallS, batch.detected, batch.errors.count).utf8))
                batches.append(batch)
            }
        }
        let markdown = BenchmarkReport.markdown(topology: topology, batches: batches, kernel: Doctor.kernelRelease(),
                                                command: "keepalive-lab bench --rounds \(rounds) --concurrency \(concurrency) --keepalive \(keepalive) --alone-runs \(aloneRuns)"
                                                    + (runs > 1 ? " --runs \(runs)" : ""),
                                                keepalive: keepalive)
        if let p = BenchmarkReport.perTrial(batches, alone: BenchmarkReport.alone(batches)) {
            let first = MachineLimits.limits(perTrial: p, trialSeconds: BenchmarkReport.alone(batches))[0]
            FileHandle.standardError.write(Data("bench: first limit on this machine: \(first.resource) at \(first.trials) concurrent trials (\(first.detail))\n".utf8))
        }
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: out).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        try markdown.write(toFile: out, atomically: true, encoding: .utf8)
        print(markdown)
    }
}
