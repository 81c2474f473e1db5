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
        var report = Doctor.examine(environments: backend == nil, userNamespaceProbe: UserNamespaceProbe.run)
        if backend == nil {
            let statuses = BackendDoctor.examine(host: report)
            report.backends = statuses
            report.autoBackend = BackendDoctor.autoChoice(statuses)
            report.labKernel = LabKernel.status()
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
            if let lab = report.labKernel {
                if lab.built {
                    print("lab kernel    \(lab.release ?? "?") HZ=\(lab.hz.map(String.init) ?? "?") time-travel=\(lab.timeTravel == true ? "yes" : "no") "
                          + "· linux-source-6.12 \(lab.sourceVersion ?? "?") · \(lab.directory ?? "")")
                    for other in lab.others { print("              also \(other)") }
                } else {
                    print("lab kernel    \(lab.how)")
                }
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
        // A refused route's reason is already in `why` when no route worked.
        for attempt in status.routes ?? [] where !(attempt.refusal.map(status.why.contains) ?? false) {
            lines.append("        \(pad) route \(attempt.route): " + (attempt.refusal.map { "refused — \($0)" } ?? "used"))
        }
        for (feature, why) in status.missing.sorted(by: { $0.key < $1.key }) {
            lines.append("        \(pad) \(feature): \(why)")
        }
        if !status.available && !status.fix.isEmpty { lines.append("        \(pad) fix: \(status.fix)") }
        return lines.joined(separator: "\n")
    }
}

/// The doctor's `userns` check: each route into a user namespace (`UserNamespaceRoute`) tried for
/// real in a throwaway child process, up to the first that works.
enum UserNamespaceProbe {
    static func run() -> (available: Bool, why: String) {
        let entry = UserNamespace.tryRoutes()
        guard let route = entry.route else { return (false, "\(UserNamespaceRefused(entry: entry))") }
        let refused = entry.attempts.compactMap { attempt in attempt.refusal.map { "\(attempt.route) refused: \($0)" } }
        return (true, "created a user + network namespace by the \(route) route (\(route.explanation()))"
                    + (refused.isEmpty ? "" : "; " + refused.joined(separator: "; ")))
    }
}

/// Hidden: unshare(CLONE_NEWUSER | CLONE_NEWNET) by the first route that works (or only `--route`),
/// then says which route it was, or what refused each.
struct ProbeUserNamespaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "probe-userns", shouldDisplay: false)

    @Option(help: "The uid the drop-uid route becomes.")
    var uid: UInt32 = UserNamespaceRoute.unprivilegedUID

    @Option(name: .customLong("route"), help: "Only these routes, in this order (repeatable).")
    var routes: [UserNamespaceRoute] = []

    func run() throws {
        do {
            let entry = try UserNamespace.enterUnprivileged(routes: routes.isEmpty ? UserNamespaceRoute.candidates() : routes,
                                                            dropTo: uid)
            print("ok: \(entry.summary.joined(separator: "; "))")
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
