import ArgumentParser
import Foundation
import KeepaliveLab

/// `crosscheck LAB --out DIR`: the lab in real time on the host kernel and in virtual time in the
/// lab kernel (twice), side by side, into DIR/cross-validation.md.
struct CrossCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crosscheck",
        abstract: "Run a lab in real time (host kernel) and in virtual time (lab kernel, twice) and compare them.",
        discussion: """
            Writes DIR/real, DIR/virtual and DIR/virtual-again (ordinary run directories with their reports) and
            DIR/cross-validation.md: per cell, the outcomes, median measurement and probe count in both clocks and
            whether they agree within 4 ms + 12.5 % plus one timer-wheel bucket; and, trial by trial, whether the
            two virtual-time runs read identical instants. Exit status 1 when a cell disagrees or a virtual trial differs
            by more than 10 µs (a handful of 256 ns clock reads).
            """)

    @Argument(help: "The lab file (a scaled-down one: real time must finish too).")
    var lab: String

    @Option(help: "Directory for the three runs and cross-validation.md.")
    var out: String

    @Option(help: "Trials per cell (overrides the lab file; 1…1000).")
    var trials: Int?

    @Option(help: "Backend for the real-time run (host or userns: the machine's own kernel).")
    var realBackend: String = "host"

    @Option(help: ArgumentHelp("Trials at once in each UML guest in the virtual runs. 1: a guest's trials never share its clock, "
                               + "fewer clock reads interleave (256 ns each)."))
    var virtualParallel: Int = 1

    @Flag(help: "Only compare the three runs already in --out (re-render cross-validation.md).")
    var renderOnly = false

    func run() throws {
        let parsed: Lab
        do { parsed = try LabParser.load(path: lab) } catch let error as LabFileError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if FileManager.default.fileExists(atPath: out) && !renderOnly {
            throw ValidationError("\(out) exists: choose another --out or remove it (or --render-only)")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let extra = trials.map { ["--trials", String($0)] } ?? []
        let runs: [(name: String, arguments: [String])] = [
            ("real", ["--backend", realBackend, "--clock", "real"]),
            ("virtual", ["--backend", "uml", "--clock", "virtual", "--parallel", String(virtualParallel)]),
            ("virtual-again", ["--backend", "uml", "--clock", "virtual", "--parallel", String(virtualParallel)]),
        ]
        for run in runs where !renderOnly {
            FileHandle.standardError.write(Data("crosscheck: \(run.name) → \(out)/\(run.name)\n".utf8))
            let status = try KernelCommand.runForwarding([PeerProcess.selfExecutable, "run", lab, "--out", "\(out)/\(run.name)",
                                                          "--pcaps", "representative"] + run.arguments + extra)
            // 1: an expectation failed in that run; the comparison is still worth writing.
            guard status == 0 || status == 1 else { throw ExitCode(status) }
        }
        let records = try runs.map { try RunDirectory(path: "\(out)/\($0.name)").readRecords().records }
        let text = CrossValidation.markdown(lab: parsed, realRun: "real", virtualRun: "virtual", againRun: "virtual-again",
                                            real: records[0], virtual: records[1], again: records[2])
        try text.write(toFile: "\(out)/cross-validation.md", atomically: true, encoding: .utf8)
        print(text)
        let cells = CrossValidation.compare(real: records[0], virtual: records[1], lab: parsed)
        let determinism = CrossValidation.determinism(records[1], records[2])
        if cells.contains(where: { !$0.agrees }) || determinism.unexplained > 0 { throw ExitCode(1) }
    }
}
