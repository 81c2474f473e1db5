import ArgumentParser
import Foundation
import KeepaliveLab

/// `kernel build | list | key`: the lab kernel (UML 6.12 from Debian's source, time-travel, nftables).
struct KernelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Build or list the lab kernel (user-mode-linux 6.12 with virtual time, netem and nftables built in).",
        subcommands: [Build.self, List.self, Key.self],
        defaultSubcommand: List.self)

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build the lab kernel from Debian's linux-source-6.12 (once per machine and HZ; about 6 min on 2 cores).",
            discussion: """
                Installs what the build needs through apt (build-essential flex bison bc xz-utils linux-source-6.12),
                merges kernel/lab.config onto `make ARCH=um defconfig`, refuses a config in which any line of the
                fragment did not survive olddefconfig, builds without host/user/time stamps, and caches the kernel
                under /var/cache/keepalive-lab/kernels (root) or $XDG_CACHE_HOME/keepalive-lab/kernels, keyed by
                the source version, the fragment and HZ. A cached build is reused. Runs scripts/build-lab-kernel.
                """)

        @Option(help: ArgumentHelp("CONFIG_HZ: 100, 250 (Debian's kernels) or 1000 (RHEL/Fedora's).", valueName: "HZ"))
        var hz: Int = LabKernel.defaultHz

        @Option(help: "Parallel make jobs (default: the number of CPUs).")
        var jobs: Int?

        @Flag(help: "Build again even when a cached kernel matches.")
        var force = false

        func validate() throws {
            guard LabKernel.supportedHz.contains(hz) else {
                throw ValidationError("--hz \(hz) is not supported: use 100, 250 or 1000")
            }
            if let jobs, !(1...256).contains(jobs) { throw ValidationError("--jobs \(jobs) is out of range: 1…256") }
        }

        func run() throws {
            let script = try KernelCommand.buildScript()
            var arguments = [script, "--hz", String(hz)]
            if let jobs { arguments += ["--jobs", String(jobs)] }
            if force { arguments.append("--force") }
            let status = try KernelCommand.runForwarding(arguments)
            if status != 0 { throw ExitCode(status) }
        }
    }

    /// The cache key comes from scripts/build-lab-kernel itself (`--key`), so that it is the name
    /// a build writes and `--check` looks for, never a second rendering of the rule.
    struct Key: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the cache key of the lab kernel this checkout would build (for CI caches).",
            discussion: """
                The name of its cache directory, linux-<upstream>-hz<HZ>-<hash>: the hash covers the Debian source \
                version (the installed linux-source-6.12's, else apt's candidate), kernel/lab.config, HZ and the \
                build recipe's revision. Restore …/kernels/<key> from a CI cache under this key and \
                `kernel build` finds it built.
                """)

        @Option(help: ArgumentHelp("CONFIG_HZ: 100, 250 (Debian's kernels) or 1000 (RHEL/Fedora's).", valueName: "HZ"))
        var hz: Int = LabKernel.defaultHz

        @Option(help: ArgumentHelp("This Debian version of linux-source-6.12 instead of the installed or candidate one.",
                                   valueName: "VERSION"))
        var sourceVersion: String?

        func validate() throws {
            guard LabKernel.supportedHz.contains(hz) else {
                throw ValidationError("--hz \(hz) is not supported: use 100, 250 or 1000")
            }
        }

        func run() throws {
            var arguments = [try KernelCommand.buildScript(), "--key", "--hz", String(hz)]
            if let sourceVersion { arguments += ["--source-version", sourceVersion] }
            let status = try KernelCommand.runForwarding(arguments)
            if status != 0 { throw ExitCode(status) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the lab kernels built on this machine.")

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            let builds = LabKernel.builds()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(builds), as: UTF8.self))
                return
            }
            if builds.isEmpty {
                print("no lab kernel is built (looked in \(LabKernel.searchDirectories.joined(separator: ", "))); "
                      + "build one with `\(LabKernel.buildCommand())`")
                return
            }
            for build in builds {
                let i = build.info
                print("\(i.release) HZ=\(i.hz) time-travel=\(i.timeTravel ? "yes" : "no") · linux-source-6.12 \(i.sourceVersion) · "
                      + "built in \(i.buildSeconds) s\(i.jobs.map { " with \($0) jobs" } ?? "") · \(build.directory)")
            }
        }
    }

    /// scripts/build-lab-kernel of the source tree this binary was built from (…/.build/<config>/
    /// keepalive-lab → …), else of the working directory.
    static func buildScript() throws -> String {
        var candidates: [String] = []
        if let source = ProcessInfo.processInfo.environment["KEEPALIVE_LAB_SOURCE"] { candidates.append(source) }
        var url = URL(fileURLWithPath: PeerProcess.selfExecutable).resolvingSymlinksInPath()
        for _ in 0..<4 {
            url.deleteLastPathComponent()
            candidates.append(url.path)
        }
        candidates.append(FileManager.default.currentDirectoryPath)
        for root in candidates where FileManager.default.isExecutableFile(atPath: "\(root)/scripts/build-lab-kernel")
            && FileManager.default.fileExists(atPath: "\(root)/kernel/lab.config") {
            return "\(root)/scripts/build-lab-kernel"
        }
        throw ValidationError("cannot find scripts/build-lab-kernel and kernel/lab.config (looked in \(candidates.joined(separator: ", "))); "
                              + "run this from the keepalive-lab source tree or set KEEPALIVE_LAB_SOURCE")
    }

    /// Runs `arguments` with this process's stdout and stderr and waits for it (a blocking
    /// waitpid); SIGINT from the terminal reaches it too (same process group).
    static func runForwarding(_ arguments: [String]) throws -> Int32 {
        do {
            return try Spawn.run(path: arguments[0], arguments: arguments).shellStatus
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
