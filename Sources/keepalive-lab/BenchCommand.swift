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
    var concurrency: String = "1,10,50,100,200"

    @Option(help: "Where to write the Markdown report.")
    var out: String = "Reports/benchmark.md"

    func validate() throws {
        guard (1...1000).contains(rounds) else { throw ValidationError("--rounds \(rounds) is out of range: 1…1000") }
        _ = try batchSizes()
    }

    func batchSizes() throws -> [Int] {
        let sizes = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sizes.allSatisfy({ $0 != nil && (0...500).contains($0!) }) else {
            throw ValidationError("--concurrency \(concurrency) is invalid: comma-separated batch sizes in 0…500")
        }
        return sizes.compactMap { $0 }.filter { $0 > 0 }
    }

    func run() throws {
        let run = try RunOwnership.begin()
        defer { RunOwnership.unregister(run: run) }
        ResourceLimits.raiseOpenFiles()
        let topology = try TopologyBenchmark.measure(rounds: rounds, run: run)
        var batches: [ParallelBenchmark.Batch] = []
        for size in try batchSizes() {
            FileHandle.standardError.write(Data("bench: \(size) concurrent trials…\n".utf8))
            batches.append(try ParallelBenchmark.batch(concurrent: size, run: run, peerExecutable: PeerProcess.selfExecutable))
        }
        let markdown = BenchmarkReport.markdown(topology: topology, batches: batches, kernel: Doctor.kernelRelease(),
                                                command: "keepalive-lab bench --rounds \(rounds) --concurrency \(concurrency)")
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: out).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        try markdown.write(toFile: out, atomically: true, encoding: .utf8)
        print(markdown)
    }
}
