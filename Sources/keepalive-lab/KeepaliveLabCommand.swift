import ArgumentParser

@main
struct KeepaliveLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keepalive-lab",
        abstract: "Measure TCP keepalive behaviour on real Linux network namespaces.",
        subcommands: [RunCommand.self, TrialCommand.self, DoctorCommand.self, BenchCommand.self, SmokeCommand.self, CleanupCommand.self,
                      PeerCommand.self, ProbeUserNamespaceCommand.self]
    )
}
