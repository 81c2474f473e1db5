import Foundation
import KeepaliveNet

/// Where the kernel under test comes from (DESIGN.md, "Environments").
public enum Backend: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    /// Namespaces on the machine's own kernel. Needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
    case host
    /// The machine's kernel, from inside an unprivileged user namespace: no host privilege.
    case userns
    /// A user-mode-linux kernel (Debian's `user-mode-linux`) booted with the host filesystem as its
    /// root: its own netem, veth, nf_tables; no host privilege.
    case uml
    /// host when privileged, else userns when the kernel allows it, else uml.
    case auto

    public var description: String { rawValue }

    /// The environments a command can actually run in (everything but `auto`).
    public static let concrete: [Backend] = [.host, .userns, .uml]
}

/// What the current process runs in, as declared by the launcher that started it. The launcher
/// sets `KEEPALIVE_LAB_BACKEND` for the command it runs inside userns or UML; a process started
/// any other way is on the host.
public enum ExecutionEnvironment {
    public static let backendVariable = "KEEPALIVE_LAB_BACKEND"
    public static let kernelHzVariable = "KEEPALIVE_LAB_KERNEL_HZ"

    /// "host", "userns" or "uml": what results report as their `backend`.
    public static var backendLabel: String {
        let value = ProcessInfo.processInfo.environment[backendVariable] ?? ""
        return [Backend.userns.rawValue, Backend.uml.rawValue].contains(value) ? value : Backend.host.rawValue
    }

    /// CONFIG_HZ of the running kernel: as the launcher declared it (UML), else from the
    /// kernel's config (`KernelHz`), else nil.
    public static var kernelHz: Int? { KernelHz.current }

    /// A sentence to print next to timing numbers when the kernel is not the host's.
    public static var timingNote: String? {
        guard backendLabel == Backend.uml.rawValue else { return nil }
        let hz = max(kernelHz ?? 100, 1)
        let tick = 1000 / hz
        return "kernel \(Doctor.kernelRelease()) in user-mode-linux, HZ=\(hz): timers run on \(tick) ms ticks, and a "
            + "0.64–5 s timer on the timer wheel's \(8 * tick) ms buckets, so each keepalive timer may fire up to a tick early "
            + "and up to \(8 * tick) ms late (a HZ=250 host: 4 ms, 32 ms); the tolerance allows one tick either way on top of 4 ms + 12.5 %"
    }
}

/// Why a backend cannot be used here.
public struct BackendUnavailable: Error, CustomStringConvertible, Sendable {
    public let backend: Backend
    public let reason: String
    public var description: String { "backend \(backend) is not available here: \(reason)" }
}

/// Picks the environment for `auto`.
public enum BackendSelection {
    public struct Choice: Sendable {
        public let backend: Backend
        /// Why the backends before it were passed over (empty when the first one was taken).
        public let skipped: [String]
    }

    /// host when this process can create namespaces, else userns when the kernel lets an
    /// unprivileged process build the lab in a user namespace, else uml when it is installed.
    /// With `needsNetem` (a netem impairment was asked for), a backend whose kernel has no sch_netem
    /// is passed over too — on a host without netem, auto means uml.
    public static func resolve(_ requested: Backend, needsNetem: Bool = false) throws -> Choice {
        guard requested == .auto else { return Choice(backend: requested, skipped: []) }
        var skipped: [String] = []
        if let reason = Privileges.namespaceUnavailableReason {
            skipped.append("host: \(reason)")
        } else if needsNetem, let reason = KernelProbe.netemUnavailableReason() {
            skipped.append("host: netem is needed and this kernel has none (\(reason))")
        } else {
            return Choice(backend: .host, skipped: skipped)
        }
        if let reason = UserNamespaceLauncher.probe(needsNetem: needsNetem) {
            skipped.append("userns: \(reason)")
        } else {
            return Choice(backend: .userns, skipped: skipped)
        }
        do {
            _ = try UMLKernel.installed()
            return Choice(backend: .uml, skipped: skipped)
        } catch {
            skipped.append("uml: \(error)")
        }
        throw BackendUnavailable(backend: .auto, reason: skipped.joined(separator: "; "))
    }
}
