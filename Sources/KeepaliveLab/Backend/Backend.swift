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
    public static let kernelSourceVariable = "KEEPALIVE_LAB_KERNEL_SOURCE"

    /// Where the kernel under test came from, as the launcher that booted it knew (UML: Debian's
    /// package, the lab kernel and its source version, or a path); nil on the host.
    public static var kernelSource: String? {
        ProcessInfo.processInfo.environment[kernelSourceVariable].flatMap { $0.isEmpty ? nil : $0 }
    }

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
        let clock = LabClock.current == .virtual ? "; " + LabClock.virtual.meaning : ""
        return "kernel \(Doctor.kernelRelease()) in user-mode-linux (\(kernelSource ?? "UML")), HZ=\(hz)\(clock); timers run on "
            + "\(1000 / hz) ms ticks and land in the timer wheel's buckets (8^level ticks: a 1 s timer up to \(8 * 1000 / hz) ms late "
            + "at this HZ, a 2 h one up to minutes), which the per-event windows in `events` allow for"
    }
}

/// Why a backend cannot be used here.
public struct BackendUnavailable: Error, CustomStringConvertible, Sendable {
    public let backend: Backend
    public let reason: String
    public var description: String { "backend \(backend) is not available here: \(reason)" }
}

/// What a command needs from the kernel that runs it, so that `auto` (and an explicit choice)
/// can be checked before anything is built.
public struct KernelNeeds: Sendable, Equatable {
    /// A netem impairment was asked for.
    public var netem = false
    /// A fault uses nftables in R: crash-icmp, nat-idle, or the nftables loss engine.
    public var nftables = false
    /// A policy sets per-namespace sysctls in A and B (namespace_keepalive, sysctls): /proc/sys
    /// must be writable, which container runtimes refuse.
    public var sysctls = false
    public var clock: LabClock = .real

    public init(netem: Bool = false, nftables: Bool = false, sysctls: Bool = false, clock: LabClock = .real) {
        self.netem = netem
        self.nftables = nftables
        self.sysctls = sysctls
        self.clock = clock
    }

    /// What both need.
    public func union(_ other: KernelNeeds) -> KernelNeeds {
        KernelNeeds(netem: netem || other.netem, nftables: nftables || other.nftables, sysctls: sysctls || other.sysctls,
                    clock: clock)
    }

    /// The needs a probe of the kernel can check (the rest is the UML kernel's configuration or the clock).
    public var probed: Bool { netem || nftables || sysctls }
}

/// Picks the environment for `auto`, and checks an explicit choice against what the command needs.
public enum BackendSelection {
    public struct Choice: Sendable {
        public let backend: Backend
        /// Why the backends before it were passed over (empty when the first one was taken).
        public let skipped: [String]
        /// uml: the kernel to boot.
        public var umlKernel: UMLKernel? = nil
    }

    /// host when this process can create namespaces, else userns when the kernel lets an
    /// unprivileged process build the lab in a user namespace, else uml when it is installed.
    /// With `needsNetem` (a netem impairment was asked for), a backend whose kernel has no sch_netem
    /// is passed over too — on a host without netem, auto means uml.
    public static func resolve(_ requested: Backend, needsNetem: Bool = false) throws -> Choice {
        try resolve(requested, needs: KernelNeeds(netem: needsNetem))
    }

    /// As above, for everything `needs` says: virtual time only exists in a UML kernel with
    /// time-travel; nftables faults are never sent to a UML kernel without nftables ip/inet tables
    /// when another backend or kernel can run them — and when none can, this refuses up front and
    /// names the command that fixes it.
    public static func resolve(_ requested: Backend, needs: KernelNeeds, uml: UMLOptions = UMLOptions()) throws -> Choice {
        // Already inside a kernel with virtual time (the command a guest runs): this process is the lab.
        if needs.clock == .virtual && requested == .host && LabClock.current == .virtual {
            return Choice(backend: .host, skipped: [])
        }
        if needs.clock == .virtual {
            guard requested == .auto || requested == .uml else {
                throw BackendUnavailable(backend: requested, reason: "--clock virtual runs in the lab kernel's virtual time, "
                    + "which only the uml backend has: use --backend uml (or auto)")
            }
            var options = uml
            options.clock = .virtual
            let kernel = try checked(try options.resolveKernel(), needs: needs)
            return Choice(backend: .uml, skipped: requested == .auto ? ["host, userns: virtual time needs the uml backend"] : [],
                          umlKernel: kernel)
        }
        switch requested {
        case .host, .userns:
            // An explicit choice is the user's; only what would fail every trial of the lab on it
            // (a policy's sysctls where /proc/sys is read-only) is refused here, with the way out.
            if needs.sysctls, let reason = probe(requested, needs: KernelNeeds(sysctls: true)) {
                throw BackendUnavailable(backend: requested, reason: "\(reason); use --backend uml (or auto): the guest has its own /proc/sys")
            }
            return Choice(backend: requested, skipped: [])
        case .uml:
            return Choice(backend: .uml, skipped: [], umlKernel: try checked(try uml.resolveKernel(), needs: needs))
        case .auto:
            break
        }
        var skipped: [String] = []
        if let reason = Privileges.namespaceUnavailableReason {
            skipped.append("host: \(reason)")
        } else if let reason = probe(.host, needs: needs) {
            skipped.append("host: \(reason)")
        } else {
            return Choice(backend: .host, skipped: skipped)
        }
        if let reason = UserNamespaceLauncher.probe(needs: needs) {
            skipped.append("userns: \(reason)")
        } else {
            return Choice(backend: .userns, skipped: skipped)
        }
        do {
            return Choice(backend: .uml, skipped: skipped, umlKernel: try checked(try uml.resolveKernel(), needs: needs))
        } catch {
            skipped.append("uml: \(error)")
        }
        throw BackendUnavailable(backend: .auto, reason: skipped.joined(separator: "; "))
    }

    /// nil when `backend` (host or userns) does what `needs` asks, tried for real; else why not.
    static func probe(_ backend: Backend, needs: KernelNeeds) -> String? {
        guard needs.probed else { return nil }
        return backend == .userns ? UserNamespaceLauncher.probe(needs: needs) : KernelProbe.unavailableReason(needs: needs)
    }

    /// The kernel, unless it lacks what `needs` asks for.
    static func checked(_ kernel: UMLKernel, needs: KernelNeeds) throws -> UMLKernel {
        if needs.nftables && kernel.lacksNftables {
            let fix = LabKernel.find() == nil
                ? "build the lab kernel (nftables built in) with `\(LabKernel.buildCommand())`"
                : "boot the lab kernel: --kernel lab"
            throw BackendUnavailable(backend: .uml, reason: "this lab has faults that use nftables in R (crash-icmp, nat-idle "
                + "or the nftables loss engine), and the UML kernel \(kernel.summary) has no nftables ip/inet tables "
                + "(\(kernel.missingOptions.joined(separator: ", ")) not set): \(fix)")
        }
        if needs.netem && kernel.missingOptions.contains("CONFIG_NET_SCH_NETEM") {
            throw BackendUnavailable(backend: .uml, reason: "netem is needed and the UML kernel \(kernel.summary) has no sch_netem")
        }
        return kernel
    }
}
