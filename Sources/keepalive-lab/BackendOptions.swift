import ArgumentParser
import Foundation
import KeepaliveLab

extension Backend: ExpressibleByArgument {}
extension LabClock: ExpressibleByArgument {}
extension KernelChoice: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
}

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

    @Option(help: ArgumentHelp(
        "real: wall-clock time on the kernel under test. virtual: the lab kernel's virtual time (UML time-travel): the "
            + "guest's clock jumps over idle time, so hours of keepalive timers pass in seconds (uml backend, lab kernel). "
            + "Default: the lab file's `clock:`, else real.",
        valueName: "real|virtual"))
    var clock: LabClock?

    @Option(help: ArgumentHelp(
        "The UML kernel to boot (uml backend): lab (built by `keepalive-lab kernel build`; lab:HZ for one HZ), "
            + "debian (the user-mode-linux package: 6.1, HZ=100, no nftables ip/inet, no virtual time), or a path. "
            + "Default: the lab file's `kernel:`, else the lab kernel when built, else Debian's.",
        valueName: "lab|lab:HZ|debian|PATH"))
    var kernel: KernelChoice?

    @Option(help: ArgumentHelp("Memory of the UML guest in MiB (uml backend, 128…16384).", valueName: "MiB"))
    var umlMemory: Int = 1024

    @Option(help: ArgumentHelp("Seconds the UML guest may take to boot before the run fails (uml backend).", valueName: "seconds"))
    var umlBootTimeout: Double = 30

    /// The options above, by the names that take a value: stripped from the inner command line.
    static let launcherOptions: Set<String> = ["--backend", "--uml-memory", "--uml-boot-timeout", "--clock", "--kernel"]

    func validate() throws {
        guard (128...16384).contains(umlMemory) else {
            throw ValidationError("--uml-memory \(umlMemory) is out of range: 128…16384 MiB")
        }
        guard umlBootTimeout.isFinite, (1...600).contains(umlBootTimeout) else {
            throw ValidationError("--uml-boot-timeout \(umlBootTimeout) is out of range: 1…600 s")
        }
    }

    func umlOptions(clock: LabClock, labKernel: KernelChoice? = nil) -> UMLOptions {
        UMLOptions(memoryMB: umlMemory, bootTimeout: umlBootTimeout, kernel: kernel ?? labKernel ?? .auto, clock: clock)
    }

    /// Runs this command line in the chosen backend unless that is this very process (host).
    /// Returns the inner command's exit status, or nil when the caller should do the work itself.
    /// `timeout` bounds the inner command (UML: after boot).
    /// `needs`: what the command's faults need from the kernel (netem, nftables) and its clock
    /// (`--clock`, else the lab's, else real); checked before anything is built.
    func runElsewhere(timeout: Double?, needs: KernelNeeds = KernelNeeds(), labKernel: KernelChoice? = nil) throws -> Int32? {
        let (choice, options) = try choose(needs: needs, labKernel: labKernel)
        guard choice.backend != .host else { return nil }
        let run = try BackendLauncher.run(choice, arguments: BackendLauncher.innerArguments(launcherOptions: Self.launcherOptions),
                                          timeout: timeout, uml: options)
        Self.reportModules(run)
        return run.status
    }

    /// The backend (and UML kernel) for a command that needs `needs`, said on stderr when it is not
    /// simply this process; a backend that cannot serve it ends the command here, before anything
    /// is built (exit status 3), with the reason and the fix.
    func choose(needs: KernelNeeds, labKernel: KernelChoice? = nil) throws -> (BackendSelection.Choice, UMLOptions) {
        let options = umlOptions(clock: needs.clock, labKernel: labKernel)
        let choice: BackendSelection.Choice
        do {
            choice = try BackendSelection.resolve(backend, needs: needs, uml: options)
        } catch let error as BackendUnavailable {
            FileHandle.standardError.write(Data("keepalive-lab: \(error)\n".utf8))
            throw ExitCode(3)
        }
        if choice.backend != .host && (backend == .auto || choice.umlKernel != nil) {
            let why = choice.skipped.map { "\n  \($0)" }.joined()
            let kernel = choice.umlKernel.map { " (kernel \($0.summary); \(needs.clock) clock)" } ?? ""
            FileHandle.standardError.write(Data("keepalive-lab: backend \(backend == .auto ? "auto → " : "")\(choice.backend)\(kernel)\(why)\n".utf8))
        }
        return (choice, options)
    }

    static func reportModules(_ run: BackendRun) {
        for (module, why) in run.modulesFailed.sorted(by: { $0.key < $1.key }) where ["veth", "sch_netem"].contains(module) {
            FileHandle.standardError.write(Data("keepalive-lab: UML module \(module) did not load: \(why)\n".utf8))
        }
    }
}
