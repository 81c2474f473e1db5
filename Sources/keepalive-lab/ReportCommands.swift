import ArgumentParser
import Foundation
import KeepaliveLab

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Render report.md, charts, summary.json and junit.xml from a run directory (also an interrupted one).",
        discussion: """
            Expectations over cells with no trial in the run read NOT RUN (other shard) or NOT RUN (interrupted)
            and do not fail it. Exit status 1 when an expectation fails or a trial errored (unless allow_errors).
            """)

    @Argument(help: "Run directory (holds plan.json and results.jsonl).")
    var directory: String

    func run() throws {
        let outcome = try RunReporting.render(directory: RunDirectory(path: directory))
        print(outcome.summaryText)
        if outcome.failed { throw ExitCode(1) }
    }
}

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge the run directories of one lab's shards into one run and render its report.",
        discussion: """
            Every expectation is evaluated over the merged run: a cell no shard ran fails. Shards of different
            labs, lab files, trial counts, shard splits, backends or kernels are refused.
            """)

    @Argument(help: "Run directories of the shards.")
    var directories: [String]

    @Option(help: "The merged run directory.")
    var out: String

    func validate() throws {
        guard !directories.isEmpty else { throw ValidationError("give at least one run directory to merge") }
    }

    func run() throws {
        let outcome = try RunReporting.merge(directories.map(RunDirectory.init(path:)), into: RunDirectory(path: out))
        print(outcome.summaryText)
        if outcome.failed { throw ExitCode(1) }
    }
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Markdown diff of two runs: latency and overhead per cell, expectations that flipped.",
        discussion: "Exit status 1 when an expectation fails in HEAD_DIR.")

    @Argument(help: "The base run directory (its summary.json).")
    var base: String

    @Argument(help: "The head run directory (its summary.json).")
    var head: String

    func run() throws {
        let (text, failing) = RunComparison.markdown(base: try summary(base), head: try summary(head))
        print(text)
        if failing > 0 { throw ExitCode(1) }
    }

    func summary(_ directory: String) throws -> SummaryJSON {
        let path = "\(directory)/summary.json"
        do {
            return try SummaryJSON.read(from: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("\(path): cannot read a run summary (run `keepalive-lab report \(directory)` first): \(error)")
        }
    }
}
