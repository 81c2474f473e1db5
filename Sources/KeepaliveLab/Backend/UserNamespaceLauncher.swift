import Foundation
import KeepaliveNet

/// The rootless backend: the command runs in a child process that turned itself into a user
/// namespace sandbox (`keepalive-lab userns-exec -- COMMAND…`, see `UserNamespace.enterSandbox`).
/// The kernel is the host's; no host privilege is needed. The child gets in by the first route its
/// capabilities allow (`UserNamespaceRoute`: root with CAP_SETFCAP maps uid 0 directly, root with
/// CAP_SETUID becomes uid 65534 first, anyone else maps itself); when none works it says what
/// refused each (a missing capability, seccomp, AppArmor, a sysctl) and exits 1. Everything the command creates — lab
/// namespaces, /run/netns, owner files, temporary files — lives in the sandbox's private /run and
/// goes away with its last process.
public enum UserNamespaceLauncher {
    /// Runs `arguments` (a keepalive-lab command line without the executable) in a sandbox with
    /// `--backend host` appended. Output goes straight to this process's stdout/stderr unless
    /// `output` is given. `routes` limits the ways in (nil: every one that applies, in order);
    /// `dropToUID` (when running as root) means only the drop-uid route, to that uid — the way to ask
    /// "would this work for a normal user?".
    public static func run(arguments: [String], timeout: Double?, output: BackendOutput? = nil,
                           dropToUID: UInt32? = nil, routes: [UserNamespaceRoute]? = nil,
                           executable: String = BackendLauncher.defaultExecutable) throws -> Int32 {
        let cwd = FileManager.default.currentDirectoryPath
        if cwd == "/run" || cwd.hasPrefix("/run/") {
            throw BackendUnavailable(backend: .userns, reason: "the sandbox mounts a private /run; run from a directory outside /run (now \(cwd))")
        }
        var command = ["userns-exec"] + routeOptions(dropToUID: dropToUID, routes: routes)
        command += ["--"] + arguments + ["--backend", Backend.host.rawValue]
        return try runSelf(command, timeout: timeout, output: output, executable: executable)
    }

    /// nil when this process can build lab namespaces in a user namespace here (by some route);
    /// else why not — for each route, what refused it. What `needs` asks of the kernel (a netem
    /// qdisc, nat-idle's nftables, sysctl writes) must work there too (`KernelProbe`).
    public static func probe(dropToUID: UInt32? = nil, routes: [UserNamespaceRoute]? = nil, needs: KernelNeeds = KernelNeeds(),
                             executable: String = BackendLauncher.defaultExecutable) -> String? {
        let captured = CapturedOutput()
        var command = ["userns-exec"] + routeOptions(dropToUID: dropToUID, routes: routes) + ["--probe"]
        if needs.netem { command.append("--probe-netem") }
        if needs.nftables { command.append("--probe-nftables") }
        if needs.sysctls { command.append("--probe-sysctl") }
        do {
            let status = try runSelf(command, timeout: 20, output: captured.sink, executable: executable)
            if status == 0 { return nil }
            let text = (captured.stdout + captured.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? "the user-namespace probe exited with status \(status)" : text
        } catch {
            return "\(error)"
        }
    }

    static func routeOptions(dropToUID: UInt32?, routes: [UserNamespaceRoute]?) -> [String] {
        var options: [String] = []
        if let dropToUID { options += ["--uid", String(dropToUID), "--route", UserNamespaceRoute.dropUID.rawValue] }
        for route in routes ?? [] where dropToUID == nil { options += ["--route", route.rawValue] }
        return options
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
