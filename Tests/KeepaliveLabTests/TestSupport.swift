import Foundation
import KeepaliveNet

/// The built `keepalive-lab` executable (it provides the `peer` subcommand): it sits next to the
/// test bundle in the same build directory.
enum PeerBinary {
    static let path: String? = {
        let candidates: [String] = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("keepalive-lab").path,
            Bundle.main.executableURL?.deletingLastPathComponent().appendingPathComponent("keepalive-lab").path,
        ].compactMap { $0 }
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return found
        }
        print("tests needing peers skipped: no keepalive-lab executable at \(candidates) (run `swift build` first)")
        return nil
    }()
}

/// Why privileged trial tests cannot run here, or nil when they can.
enum TrialPrerequisites {
    static let missing: String? = {
        if let reason = Privileges.namespaceUnavailableReason { return reason }
        if PeerBinary.path == nil { return "no keepalive-lab executable next to the test bundle (run `swift build` first)" }
        return nil
    }()
}

/// CI cannot go green by skipping: with `CI=true` as root, a privileged test whose prerequisite is
/// missing runs (and fails) instead of being skipped, and `CIStrictnessTests` names what is missing.
enum CIGate {
    static var strict: Bool { ProcessInfo.processInfo.environment["CI"] == "true" && getuid() == 0 }

    /// Whether a test with this missing prerequisite (nil: none) runs.
    static func runs(_ missing: String?) -> Bool { missing == nil || strict }
}
