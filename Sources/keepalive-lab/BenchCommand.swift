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

    @Option(help: "Where to write the Markdown report.")
    var out: String = "Reports/benchmark.md"

    func validate() throws {
        guard (1...1000).contains(rounds) else { throw ValidationError("--rounds \(rounds) is out of range: 1…1000") }
    }

    func run() throws {
        let run = LabID.newRunID()
        try RunOwnership.register(run: run)
        defer { RunOwnership.unregister(run: run) }
        InterruptCleanup.install(run: run)
        let topology = try TopologyBenchmark.measure(rounds: rounds, run: run)
        let markdown = BenchmarkReport.markdown(topology: topology, kernel: Doctor.kernelRelease(),
                                                command: "keepalive-lab bench --rounds \(rounds)")
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: out).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        try markdown.write(toFile: out, atomically: true, encoding: .utf8)
        print(markdown)
    }
}
