import ArgumentParser
import Foundation
import KeepaliveLab
import KeepaliveNet

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Tell what this machine can run: capabilities, namespaces, veth, netem, nftables, conntrack, user namespaces, UML.",
        discussion: "Every check is a real attempt in a throwaway namespace; each backend (host, userns, uml) is tried for real too "
            + "(the UML one boots a guest, about 2 s). Exit status 0 when some backend can run the lab here.")

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Option(help: ArgumentHelp("Examine only this environment: host (this process, as it is), or userns / uml / auto "
                               + "(the doctor runs inside that backend). Default: this process plus every backend.",
                               valueName: "host|userns|uml|auto"))
    var backend: Backend?

    func run() throws {
        if let backend, backend != .host {
            let choice = try BackendSelection.resolve(backend)
            let run = try BackendLauncher.run(choice.backend, arguments: BackendLauncher.innerArguments(launcherOptions: ["--backend"]),
                                              timeout: 60, uml: UMLOptions(bootTimeout: 30))
            if run.status != 0 { throw ExitCode(run.status) }
            return
        }
        var report = Doctor.examine(environments: backend == nil, userNamespaceProbe: UserNamespaceProbe.runAsNobody)
        if backend == nil {
            let statuses = BackendDoctor.examine(host: report)
            report.backends = statuses
            report.autoBackend = BackendDoctor.autoChoice(statuses)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("kernel        \(report.kernel)")
            let caps = report.capabilities.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value ? "yes" : "no")" }
            print("capabilities  \(caps.joined(separator: " "))")
            for check in report.checks {
                print("\(check.available ? "ok  " : "MISSING") \(check.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(check.why)")
                if !check.available { print("        \("".padding(toLength: 16, withPad: " ", startingAt: 0)) fix: \(check.fix)") }
            }
            if let backends = report.backends {
                print("backends (--backend auto picks \(report.autoBackend ?? "none"))")
                for status in backends { print(Self.describe(status)) }
                print(report.autoBackend.map { "the lab can run here (\($0) backend)" } ?? "the lab cannot run here: no backend works")
            } else {
                print(report.canRun ? "the lab can run here (\(ExecutionEnvironment.backendLabel) backend)" : "the lab cannot run here: see MISSING above")
            }
        }
        // Exit status 0 when some backend can run the lab here.
        let runnable = report.backends.map { $0.contains(where: \.available) } ?? report.canRun
        if !runnable { throw ExitCode(1) }
    }
}

extension DoctorCommand {
    static func describe(_ status: DoctorReport.BackendStatus) -> String {
        let pad = "".padding(toLength: 16, withPad: " ", startingAt: 0)
        var kernel = status.kernel ?? "?"
        if let hz = status.hz { kernel += " (HZ=\(hz))" }
        let features = BackendDoctor.features.compactMap { name in
            status.features[name].map { $0 ? name : "\(name) MISSING" }
        }.joined(separator: " · ")
        var lines = ["\(status.available ? "ok  " : "MISSING") \(status.name.padding(toLength: 16, withPad: " ", startingAt: 0)) "
                     + "kernel \(kernel)\(features.isEmpty ? "" : " · " + features)"
                     + (status.seconds.map { String(format: " · examined in %.1f s", $0) } ?? "")]
        lines.append("        \(pad) \(status.why)")
        for (feature, why) in status.missing.sorted(by: { $0.key < $1.key }) {
            lines.append("        \(pad) \(feature): \(why)")
        }
        if !status.available && !status.fix.isEmpty { lines.append("        \(pad) fix: \(status.fix)") }
        return lines.joined(separator: "\n")
    }
}

/// Runs `keepalive-lab probe-userns` as uid/gid 65534 in a child process and reports its failure.
enum UserNamespaceProbe {
    static func runAsNobody() -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: selfExecutable())
        process.arguments = ["probe-userns", "--uid", "65534"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return "could not start the probe: \(error)" }
        // EOF first (blocking): Foundation's waitUntilExit polls its run loop every 50 ms while the
        // child runs; at EOF the child is on its way out. Also, a full pipe cannot stall the child.
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 ? nil : (text.isEmpty ? "probe exited \(process.terminationStatus)" : text)
    }

    static func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// Hidden: drops to an unprivileged uid, then tries unshare(CLONE_NEWUSER | CLONE_NEWNET).
struct ProbeUserNamespaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "probe-userns", shouldDisplay: false)

    @Option var uid: UInt32 = 65534

    func run() throws {
        if getuid() == 0 {
            var groups: [gid_t] = []
            guard setgroups(0, &groups) == 0, setgid(uid) == 0, setuid(uid) == 0 else {
                print("cannot drop to uid \(uid): \(String(cString: strerror(errno)))")
                throw ExitCode(2)
            }
        }
        do {
            try UserNamespace.enterUnprivileged()
            print("ok")
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
