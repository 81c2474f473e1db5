import Foundation
import KeepaliveNet

/// How one command ran in a backend.
public struct BackendRun: Sendable {
    public var backend: Backend
    /// The command's exit status.
    public var status: Int32
    /// The kernel that ran it (uname -r where it ran).
    public var kernel: String
    /// UML only: host seconds until the guest was up.
    public var bootSeconds: Double?
    /// UML only: modules that did not load, and why.
    public var modulesFailed: [String: String]
}

/// Runs a keepalive-lab command line in another environment and brings its output back — the one
/// entry point for `trial`, `run` and `doctor`. Arguments in (the subcommand and its options, no
/// executable, no `--backend`: `--backend host` is appended for the inner command), exit status and
/// streamed output out. Results are written by the inner command exactly as on the host (same
/// `results.jsonl` format, same paths); each result's `backend` and `kernel` say where it ran.
public enum BackendLauncher {
    /// The running executable, resolved: the command re-runs itself elsewhere.
    public static var defaultExecutable: String { PeerProcess.selfExecutable }

    /// `timeout` bounds the command (for UML: once the guest is up; the boot has its own bound).
    /// `output` nil: straight to this process's stdout and stderr.
    /// `executable` is the keepalive-lab binary to run (this one by default; tests pass the built one).
    public static func run(_ backend: Backend, arguments: [String], timeout: Double?,
                           uml: UMLOptions = UMLOptions(), output: BackendOutput? = nil,
                           executable: String = defaultExecutable) throws -> BackendRun {
        try run(try BackendSelection.resolve(backend, needs: KernelNeeds(clock: uml.clock), uml: uml), arguments: arguments,
                timeout: timeout, uml: uml, output: output, executable: executable)
    }

    /// Runs in an environment already chosen (and checked against what the command needs).
    public static func run(_ choice: BackendSelection.Choice, arguments: [String], timeout: Double?,
                           uml: UMLOptions = UMLOptions(), output: BackendOutput? = nil,
                           executable: String = defaultExecutable) throws -> BackendRun {
        switch choice.backend {
        case .host, .auto:
            var environment = ProcessInfo.processInfo.environment
            environment.removeValue(forKey: ExecutionEnvironment.backendVariable)
            environment.removeValue(forKey: ExecutionEnvironment.kernelHzVariable)
            let status = try SelfCommand.run(arguments + ["--backend", Backend.host.rawValue], environment: environment,
                                             timeout: timeout, output: output, backend: .host,
                                             executable: executable)
            return BackendRun(backend: .host, status: status, kernel: Doctor.kernelRelease(), bootSeconds: nil, modulesFailed: [:])
        case .userns:
            let status = try UserNamespaceLauncher.run(arguments: arguments, timeout: timeout, output: output,
                                                      executable: executable)
            return BackendRun(backend: .userns, status: status, kernel: Doctor.kernelRelease(), bootSeconds: nil, modulesFailed: [:])
        case .uml:
            let outcome = try UMLMachine.run(arguments: arguments, options: uml, timeout: timeout, output: output ?? .forward,
                                             kernel: choice.umlKernel, executable: executable)
            return BackendRun(backend: .uml, status: outcome.status, kernel: outcome.kernel, bootSeconds: outcome.bootSeconds,
                              modulesFailed: outcome.modulesFailed)
        }
    }

    /// The command line of this process without its `--backend` choice and the options that only
    /// the launcher uses (`launcherOptions`: names that take a value), for re-running it elsewhere.
    public static func innerArguments(_ arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                                      launcherOptions: Set<String>) -> [String] {
        var result: [String] = []
        var index = 0
        var passthrough = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if passthrough || argument == "--" {
                passthrough = true
                result.append(argument)
                continue
            }
            if let equals = argument.firstIndex(of: "="), launcherOptions.contains(String(argument[..<equals])) { continue }
            if launcherOptions.contains(argument) {
                index += 1
                continue
            }
            result.append(argument)
        }
        return result
    }
}

/// This binary as a child process, its output forwarded or captured, bounded by `timeout`.
/// On SIGINT the child (same process group) gets the signal too and cleans up itself; SIGTERM is
/// passed on; anything left is killed with us (parent-death signal).
enum SelfCommand {
    static func run(_ arguments: [String], environment: [String: String], timeout: Double?, output: BackendOutput?,
                    backend: Backend, executable: String) throws -> Int32 {
        var pipes: [Pipe2] = []
        var fds: [Int32] = [0, 1, 2]
        if output != nil {
            pipes = [try Pipe2(), try Pipe2()]
            fds = [0, pipes[0].write, pipes[1].write]
        }
        let child: ChildProcess
        do {
            child = try ChildProcess(path: executable, arguments: [executable] + arguments, environment: environment,
                                     fds: fds, options: [.parentDeathKill])
        } catch {
            for pipe in pipes { close(pipe.read); close(pipe.write) }
            throw error
        }
        for pipe in pipes { close(pipe.write) }
        let readers = output.map { sink in
            [PipeReader(fd: pipes[0].read, name: "\(backend)-stdout") { sink.stdout($0) },
             PipeReader(fd: pipes[1].read, name: "\(backend)-stderr") { sink.stderr($0) }]
        } ?? []
        let registration = ActiveLaunches.shared.add {
            child.signal(SIGTERM)
            if !child.wait(timeout: 5) { child.killAndReap() }
        }
        defer { ActiveLaunches.shared.remove(registration) }
        if !child.wait(timeout: timeout) {
            child.killAndReap()
            for reader in readers { reader.waitForEOF(timeout: 2) }
            throw BackendTimeout(backend: backend, seconds: timeout ?? 0)
        }
        for reader in readers { reader.waitForEOF(timeout: 5) }
        return child.exitStatus ?? -1
    }
}
