import ArgumentParser

@main
struct KeepaliveLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keepalive-lab",
        abstract: "Measure TCP keepalive behaviour on real Linux network namespaces.",
        subcommands: [TrialCommand.self, DoctorCommand.self, SmokeCommand.self, CleanupCommand.self,
                      PeerCommand.self, ProbeUserNamespaceCommand.self]
    )
}
