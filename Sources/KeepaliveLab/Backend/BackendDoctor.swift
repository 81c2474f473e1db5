import Foundation
import CKeepaliveShim
import KeepaliveNet

/// For `doctor`: which backends work on this machine, and why the others do not. Every answer is a
/// real attempt — the doctor's own checks (`doctor --backend host --json`) run inside the user
/// namespace sandbox and inside a booted UML guest.
public enum BackendDoctor {
    public static let features = ["netns", "veth", "netem", "nftables", "conntrack", "sysctl"]

    /// `host` is this process's own report. The userns attempt takes the first route into a user
    /// namespace that this process's capabilities allow (`UserNamespaceRoute`); the status says which
    /// route was used and why the others were refused.
    public static func examine(host: DoctorReport, executable: String = BackendLauncher.defaultExecutable,
                               uml: UMLOptions = UMLOptions(bootTimeout: 15)) -> [DoctorReport.BackendStatus] {
        [hostStatus(host), usernsStatus(executable: executable), umlStatus(executable: executable, options: uml)]
    }

    /// What `auto` picks given the statuses: the first available of host, userns, uml.
    public static func autoChoice(_ statuses: [DoctorReport.BackendStatus]) -> String? {
        statuses.first(where: \.available)?.name
    }

    static func hostStatus(_ report: DoctorReport) -> DoctorReport.BackendStatus {
        var status = summarize(report, name: Backend.host.rawValue)
        if report.canRun {
            status.why = "lab namespaces and veth pairs work on this kernel as this user"
        } else {
            let failed = report.checks.first(where: { ["netns", "veth"].contains($0.name) && !$0.available })
            status.why = failed?.why ?? "namespaces or veth failed"
            status.fix = failed?.fix ?? ""
        }
        return status
    }

    /// The doctor inside the sandbox reports how the sandbox got in (`usernsEntry`); when no route
    /// worked, the same attempts are repeated here in throwaway children to say what refused each.
    static func usernsStatus(executable: String) -> DoctorReport.BackendStatus {
        let started = Date()
        let who = "uid \(getuid())"
        let fix = "as root: grant CAP_SETFCAP (map root directly) or CAP_SETUID and CAP_SETGID (become uid 65534 first); "
            + "otherwise allow unprivileged user namespaces: sysctl user.max_user_namespaces > 0 (and "
            + "kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0 where they exist); "
            + "docker/podman: --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
        let captured = CapturedOutput()
        var status = DoctorReport.BackendStatus(name: Backend.userns.rawValue, available: false, why: "", fix: fix)
        do {
            let exit = try UserNamespaceLauncher.run(arguments: ["doctor", "--json"], timeout: 30, output: captured.sink,
                                                     executable: executable)
            if let report = decode(captured.stdout) {
                status = summarize(report, name: Backend.userns.rawValue)
                let entry = report.usernsEntry
                status.route = entry?.route
                status.routes = entry?.attempts
                let how = entry.flatMap { entry in entry.route.map { "\($0) route: \($0.explanation(uid: entry.uid))" } }
                    ?? "in a user namespace"
                status.why = report.canRun
                    ? "as \(who), \(how), with a private /run: lab namespaces and veth work"
                    : "as \(who), \(how): " + (report.checks.first(where: { !$0.available })?.why ?? "namespaces failed")
                status.fix = report.canRun ? "" : fix
            } else {
                let text = (captured.stdout + captured.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
                status.why = "as \(who): " + (text.isEmpty ? "the sandbox exited with status \(exit)" : text)
            }
        } catch {
            status.why = "as \(who): \(error)"
        }
        if status.routes == nil {
            let entry = UserNamespace.tryRoutes(flags: KAL_CLONE_NEWUSER | KAL_CLONE_NEWNS | KAL_CLONE_NEWNET)
            status.routes = entry.attempts
            if entry.route == nil { status.why = "as \(who): \(UserNamespaceRefused(entry: entry))" }
        }
        status.seconds = Date().timeIntervalSince(started)
        return status
    }

    static func umlStatus(executable: String, options: UMLOptions) -> DoctorReport.BackendStatus {
        let started = Date()
        let kernel: UMLKernel
        do {
            kernel = try options.resolveKernel()
        } catch {
            return .init(name: Backend.uml.rawValue, available: false, why: "\(error)",
                         fix: "apt-get install user-mode-linux, or build the lab kernel: \(LabKernel.buildCommand())")
        }
        let captured = CapturedOutput()
        do {
            let outcome = try UMLMachine.run(arguments: ["doctor", "--json"], options: options, timeout: 20,
                                             output: captured.sink, kernel: kernel, executable: executable)
            guard let report = decode(captured.stdout) else {
                return .init(name: Backend.uml.rawValue, available: false, kernel: outcome.kernel, hz: kernel.hz,
                             why: "the guest booted but its doctor printed no report (status \(outcome.status)): \(captured.stderr)",
                             fix: "", seconds: Date().timeIntervalSince(started), bootSeconds: outcome.bootSeconds)
            }
            var result = summarize(report, name: Backend.uml.rawValue)
            result.hz = kernel.hz
            result.seconds = Date().timeIntervalSince(started)
            result.bootSeconds = outcome.bootSeconds
            let nftablesOptions = kernel.missingOptions.filter { $0.hasPrefix("CONFIG_NF_TABLES_") }
            if !nftablesOptions.isEmpty {
                for feature in ["nftables", "conntrack"] where result.features[feature] == false {
                    result.missing[feature] = "this UML kernel is built without \(nftablesOptions.joined(separator: " and ")) "
                        + "(no ip/inet nftables tables): faults that use nftables in R (crash-icmp, nftables loss, nat-idle) "
                        + "cannot run in it; netem and the other faults can; the lab kernel has them: \(LabKernel.buildCommand())"
                }
            }
            for (module, why) in outcome.modulesFailed where ["veth", "sch_netem"].contains(module) {
                result.missing["module \(module)"] = why
            }
            let workaround = kernel.needsXstateWorkaround ? "; this CPU's XSAVE area is larger than UML \(kernel.release) "
                + "handles: guest processes keep to SSE (ptrace NT_X86_XSTATE hidden, GLIBC_TUNABLES)" : ""
            result.why = String(format: "%@ (%@) booted in %.1f s with the host's / as its root (hostfs), %@%@",
                                kernel.binary, kernel.summary, outcome.bootSeconds,
                                kernel.moduleDirectory.map { "modules from \($0)" } ?? "everything built in", workaround)
            if !report.canRun { result.fix = "see the guest's checks: \(report.checks.filter { !$0.available }.map(\.why).joined(separator: "; "))" }
            return result
        } catch {
            return .init(name: Backend.uml.rawValue, available: false, kernel: kernel.release, hz: kernel.hz,
                         why: "\(error)", fix: "check that \(kernel.binary) runs here (it needs ptrace and a writable TMPDIR)",
                         seconds: Date().timeIntervalSince(started))
        }
    }

    static func summarize(_ report: DoctorReport, name: String) -> DoctorReport.BackendStatus {
        var features: [String: Bool] = [:], missing: [String: String] = [:]
        for check in report.checks where Self.features.contains(check.name) {
            features[check.name] = check.available
            // nft's own error text spans lines (the script, carets): its first line says enough.
            if !check.available && !check.why.hasPrefix("not tried") {
                missing[check.name] = String(check.why.split(separator: "\n").first ?? "")
            }
        }
        return .init(name: name, available: report.canRun, kernel: report.kernel, why: "", features: features, missing: missing)
    }

    static func decode(_ text: String) -> DoctorReport? {
        // The report is the JSON object on stdout; anything before it is not.
        guard let start = text.firstIndex(of: "{") else { return nil }
        return try? JSONDecoder().decode(DoctorReport.self, from: Data(text[start...].utf8))
    }
}
