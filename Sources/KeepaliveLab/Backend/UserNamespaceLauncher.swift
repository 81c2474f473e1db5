import Foundation
import KeepaliveNet

/// The rootless backend: the command runs in a child process that turned itself into a user
/// namespace sandbox (`keepalive-lab userns-exec -- COMMAND…`, see `UserNamespace.enterSandbox`).
/// The kernel is the host's; no host privilege is needed. Everything the command creates — lab
/// namespaces, /run/netns, owner files, temporary files — lives in the sandbox's private /run and
/// goes away with its last process.
public enum UserNamespaceLauncher {
    /// Runs `arguments` (a keepalive-lab command line without the executable) in a sandbox with
    /// `--backend host` appended. Output goes straight to this process's stdout/stderr unless
    /// `output` is given. `dropToUID` (when running as root) makes the child an unprivileged user
    /// first — the doctor's way of asking "would this work for a normal user?".
    public static func run(arguments: [String], timeout: Double?, output: BackendOutput? = nil,
                           dropToUID: UInt32? = nil,
                           executable: String = BackendLauncher.defaultExecutable) throws -> Int32 {
        let cwd = FileManager.default.currentDirectoryPath
        if cwd == "/run" || cwd.hasPrefix("/run/") {
            throw BackendUnavailable(backend: .userns, reason: "the sandbox mounts a private /run; run from a directory outside /run (now \(cwd))")
        }
        var command = ["userns-exec"]
        if let dropToUID { command += ["--uid", String(dropToUID)] }
        command += ["--"] + arguments + ["--backend", Backend.host.rawValue]
        return try runSelf(command, timeout: timeout, output: output, executable: executable)
    }

    /// nil when an unprivileged process can build lab namespaces in a user namespace here; else why not.
    /// With `needsNetem`, a netem qdisc must work there too.
    public static func probe(dropToUID: UInt32? = nil, needsNetem: Bool = false,
                             executable: String = BackendLauncher.defaultExecutable) -> String? {
        let captured = CapturedOutput()
        var command = ["userns-exec"]
        if let dropToUID { command += ["--uid", String(dropToUID)] }
        command += [needsNetem ? "--probe-netem" : "--probe"]
        do {
            let status = try runSelf(command, timeout: 20, output: captured.sink, executable: executable)
            if status == 0 { return nil }
            let text = (captured.stdout + captured.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? "the user-namespace probe exited with status \(status)" : text
        } catch {
            return "\(error)"
        }
    }

    static func runSelf(_ command: [String], timeout: Double?, output: BackendOutput?, executable: String) throws -> Int32 {
        var environment = ProcessInfo.processInfo.environment
        environment[ExecutionEnvironment.backendVariable] = Backend.userns.rawValue
        environment.removeValue(forKey: ExecutionEnvironment.kernelHzVariable)
        return try SelfCommand.run(command, environment: environment, timeout: timeout, output: output, backend: .userns,
                                   executable: executable)
    }
}

public struct BackendTimeout: Error, CustomStringConvertible, Sendable {
    public let backend: Backend
    public let seconds: Double
    public var description: String { "the command in the \(backend) backend did not finish within \(String(format: "%.0f", seconds)) s; it was killed" }
}
