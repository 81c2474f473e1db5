import ArgumentParser
import CKeepaliveShim
import Foundation
import KeepaliveLab

/// Hidden: a peer process (server in B, client in A), spawned by the harness through PeerProcess.
/// Events go to stdout as JSON lines, commands come on stdin ("snapshot", "send", "quit").
struct PeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Run one client or server peer (used by the harness).",
        shouldDisplay: false
    )

    @Option(help: "Network namespace file to enter first, e.g. /run/netns/NAME.")
    var netns: String?

    @Option(help: "The peer configuration (PeerConfig) as JSON.")
    var config: String

    func run() throws {
        // A peer must never outlive the harness, whatever killed it.
        _ = kal_set_parent_death_signal(SIGKILL)
        // Before any socket exists: sockets keep the namespace they were created in.
        if let netns {
            let nsFD = open(netns, O_RDONLY | O_CLOEXEC)
            guard nsFD >= 0 else {
                Foundation.exit(PeerRunner.fail("open \(netns): \(String(cString: strerror(errno)))", errno: errno))
            }
            guard kal_setns(nsFD, KAL_CLONE_NEWNET) == 0 else {
                Foundation.exit(PeerRunner.fail("setns \(netns): \(String(cString: strerror(errno)))", errno: errno))
            }
            close(nsFD)
        }
        let peerConfig: PeerConfig
        do {
            peerConfig = try JSONDecoder().decode(PeerConfig.self, from: Data(config.utf8))
        } catch {
            Foundation.exit(PeerRunner.fail("config: \(error)", errno: nil, exitCode: 2))
        }
        Foundation.exit(PeerRunner.run(peerConfig))
    }
}
