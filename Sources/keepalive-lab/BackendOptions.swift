import ArgumentParser
import Foundation
import KeepaliveLab

extension Backend: ExpressibleByArgument {}

/// `--backend` and its UML knobs, shared by the commands that run trials (`@OptionGroup`).
///
/// In `run()`, call `runElsewhere(timeout:)` first: when the chosen backend is not this process it
/// re-runs the same command line there (with `--backend host`) and returns its exit status.
struct BackendOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Where the kernel under test comes from: host (this kernel; needs NET_ADMIN and SYS_ADMIN), "
            + "userns (this kernel, inside an unprivileged user namespace), uml (a user-mode-linux 6.1 kernel, HZ=100, "
            + "with netem; no privileges), auto (host, else userns, else uml).",
        valueName: "host|userns|uml|auto"))
    var backend: Backend = .auto

    @Option(help: ArgumentHelp("Memory of the UML guest in MiB (uml backend, 128…16384).", valueName: "MiB"))
    var umlMemory: Int = 1024

    @Option(help: ArgumentHelp("Seconds the UML guest may take to boot before the run fails (uml backend).", valueName: "seconds"))
    var umlBootTimeout: Double = 30

    /// The options above, by the names that take a value: stripped from the inner command line.
    static let launcherOptions: Set<String> = ["--backend", "--uml-memory", "--uml-boot-timeout"]

    func validate() throws {
        guard (128...16384).contains(umlMemory) else {
            throw ValidationError("--uml-memory \(umlMemory) is out of range: 128…16384 MiB")
        }
        guard umlBootTimeout.isFinite, (1...600).contains(umlBootTimeout) else {
            throw ValidationError("--uml-boot-timeout \(umlBootTimeout) is out of range: 1…600 s")
        }
    }

    var umlOptions: UMLOptions { UMLOptions(memoryMB: umlMemory, bootTimeout: umlBootTimeout) }

    /// Runs this command line in the chosen backend unless that is this very process (host).
    /// Returns the inner command's exit status, or nil when the caller should do the work itself.
    /// `timeout` bounds the inner command (UML: after boot).
    /// `needsNetem`: the command asked for netem, so `auto` passes over kernels without it.
    func runElsewhere(timeout: Double?, needsNetem: Bool = false) throws -> Int32? {
        let choice = try BackendSelection.resolve(backend, needsNetem: needsNetem)
        guard choice.backend != .host else { return nil }
        if backend == .auto {
            let why = choice.skipped.map { "\n  \($0)" }.joined()
            FileHandle.standardError.write(Data("keepalive-lab: backend auto → \(choice.backend)\(why)\n".utf8))
        }
        let run = try BackendLauncher.run(choice.backend,
                                          arguments: BackendLauncher.innerArguments(launcherOptions: Self.launcherOptions),
                                          timeout: timeout, uml: umlOptions)
        for (module, why) in run.modulesFailed.sorted(by: { $0.key < $1.key }) where ["veth", "sch_netem"].contains(module) {
            FileHandle.standardError.write(Data("keepalive-lab: UML module \(module) did not load: \(why)\n".utf8))
        }
        if run.status != 0, run.backend == .uml, let kernel = try? UMLKernel.installed(),
           kernel.missingOptions.contains(where: { $0.hasPrefix("CONFIG_NF_TABLES_") }) {
            FileHandle.standardError.write(Data(("keepalive-lab: note: the UML kernel \(kernel.release) has no nftables ip/inet "
                + "families (\(kernel.missingOptions.joined(separator: ", ")) not set): if the error above comes from nftables, "
                + "that fault (crash-icmp, nftables loss, nat-idle) needs the host or userns backend\n").utf8))
        }
        return run.status
    }
}
