import ArgumentParser
import CKeepaliveShim
import Foundation
import KeepaliveLab
import KeepaliveNet

extension UserNamespaceRoute: ExpressibleByArgument {}

/// Hidden: becomes the rootless backend's sandbox (user + mount + network namespace, private /run),
/// then executes `COMMAND…` (a keepalive-lab command line) in it. Started by UserNamespaceLauncher.
struct UserNamespaceExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "userns-exec",
        abstract: "Run a keepalive-lab command inside an unprivileged user-namespace sandbox (used by --backend userns).",
        shouldDisplay: false)

    @Option(help: "When started as root without CAP_SETFCAP, become this uid (and gid) first (the drop-uid route).")
    var uid: UInt32 = UserNamespaceRoute.unprivilegedUID

    @Option(name: .customLong("route"),
            help: ArgumentHelp("Only these ways into the user namespace, in this order (repeatable). "
                               + "Default: map-root then drop-uid as root, map-self otherwise.",
                               valueName: "map-root|drop-uid|map-self"))
    var routes: [UserNamespaceRoute] = []

    @Flag(help: "Only check that lab namespaces can be created in the sandbox; print why not.")
    var probe = false

    @Flag(help: "As --probe, and also that a netem qdisc can be added there.")
    var probeNetem = false

    @Flag(help: "As --probe, and also that nat-idle's nftables NAT/firewall with its conntrack timeout policy loads there.")
    var probeNftables = false

    @Flag(help: "As --probe, and also that a per-namespace sysctl can be written there (/proc/sys not read-only).")
    var probeSysctl = false

    @Argument(parsing: .postTerminator, help: "The keepalive-lab command line to run.")
    var command: [String] = []

    func run() throws {
        // Nothing before this may start a thread: the kernel refuses CLONE_NEWUSER to a threaded process.
        let parent = getppid()
        let entry: UserNamespaceEntry
        do {
            entry = try UserNamespace.enterSandbox(routes: routes.isEmpty ? UserNamespaceRoute.candidates() : routes,
                                                   dropTo: uid)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(1)
        }
        setenv(UserNamespaceEntry.environmentVariable, entry.json, 1)
        // A uid change or new user namespace clears the parent-death signal: arm it again.
        _ = kal_set_parent_death_signal(SIGKILL)
        if getppid() != parent { throw ExitCode(1) }
        if probe || probeNetem || probeNftables || probeSysctl {
            if let reason = Privileges.namespaceUnavailableReason {
                print("inside a user namespace: \(reason)")
                throw ExitCode(1)
            }
            let needs = KernelNeeds(netem: probeNetem, nftables: probeNftables, sysctls: probeSysctl)
            if needs.probed, let reason = KernelProbe.unavailableReason(needs: needs) {
                print("inside a user namespace: \(reason)")
                throw ExitCode(1)
            }
            print("ok: \(entry.summary.joined(separator: "; "))")
            return
        }
        guard !command.isEmpty else { throw ValidationError("nothing to run: give a command after --") }
        setenv("TMPDIR", UserNamespace.sandboxTemporaryDirectory, 1)
        let executable = PeerProcess.selfExecutable
        let argv = ([executable] + command).map { strdup($0) } + [nil]
        execv(executable, argv)
        print("exec \(executable): \(String(cString: strerror(errno)))")
        throw ExitCode(127)
    }
}
