import ArgumentParser
import KeepaliveLab

@main
struct KeepaliveLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keepalive-lab",
        abstract: "Measure TCP keepalive behaviour on real Linux network namespaces.",
        subcommands: [RunCommand.self, ReportCommand.self, MergeCommand.self, CompareCommand.self, TrialCommand.self, DoctorCommand.self, BenchCommand.self, SmokeCommand.self, CleanupCommand.self,
                      PeerCommand.self, ProbeUserNamespaceCommand.self, UserNamespaceExecCommand.self,
                      NetemCheckCommand.self, KernelCommand.self, SpinCommand.self, CrossCheckCommand.self]
    )

    static func main() {
        // As the init of a UML guest the command line is unreadable (Swift takes it from /proc,
        // not mounted yet): the job comes in the environment instead, and this never returns.
        UMLGuest.runIfGuestInit()
        do {
            var command = try parseAsRoot(nil)
            try command.run()
        } catch {
            exit(withError: PlainErrors.wrap(error))
        }
    }
}
