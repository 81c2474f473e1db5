import Foundation

/// What this machine can do for the lab, each answer from a real attempt in a throwaway namespace.
public struct DoctorReport: Codable, Sendable {
    public struct Check: Codable, Sendable {
        public let name: String
        public let available: Bool
        /// What happened when it was tried.
        public let why: String
        /// What to do when it is missing (empty when available).
        public let fix: String
    }

    public let kernel: String
    public let capabilities: [String: Bool]
    public let checks: [Check]
    /// The lab can run on this machine with the host backend (namespaces + veth).
    public let canRun: Bool
    /// Each backend (host, userns, uml): whether it works here and what its kernel offers
    /// (filled by `doctor`; nil when only this environment was examined).
    public var backends: [BackendStatus]? = nil
    /// What `--backend auto` picks here.
    public var autoBackend: String? = nil
    /// The lab kernel (UML with virtual time), filled by `doctor`.
    public var labKernel: LabKernelStatus? = nil

    public struct LabKernelStatus: Codable, Sendable {
        public var built: Bool
        public var release: String?
        public var hz: Int?
        public var timeTravel: Bool?
        /// Debian's source package version it was built from.
        public var sourceVersion: String?
        public var directory: String?
        public var buildSeconds: Int?
        /// Other HZ builds present ("HZ=100 …").
        public var others: [String]
        /// How to build it (or another HZ).
        public var how: String

        public init(built: Bool, release: String? = nil, hz: Int? = nil, timeTravel: Bool? = nil, sourceVersion: String? = nil,
                    directory: String? = nil, buildSeconds: Int? = nil, others: [String] = [], how: String) {
            self.built = built
            self.release = release
            self.hz = hz
            self.timeTravel = timeTravel
            self.sourceVersion = sourceVersion
            self.directory = directory
            self.buildSeconds = buildSeconds
            self.others = others
            self.how = how
        }
    }
    /// When this doctor runs in the userns sandbox: how the sandbox got into its user namespace.
    public var usernsEntry: UserNamespaceEntry? = nil
}

public enum Doctor {
    static let containerFlags = "docker/podman: --cap-add NET_ADMIN --cap-add SYS_ADMIN (or --privileged)"

    /// `userNamespaceProbe` runs the user-namespace attempt in a separate process (it must be
    /// single-threaded, and may change its uid); it returns whether it worked and what happened.
    /// `environments` false: only what this process itself can do (the userns and UML checks are
    /// skipped — the doctor run inside those backends).
    public static func examine(environments: Bool = true,
                               userNamespaceProbe: () -> (available: Bool, why: String)) -> DoctorReport {
        var checks: [DoctorReport.Check] = []
        let caps = [
            "NET_ADMIN": Privileges.has(capability: Privileges.capNetAdmin),
            "SYS_ADMIN": Privileges.has(capability: Privileges.capSysAdmin),
            "NET_RAW": Privileges.has(capability: Privileges.capNetRaw),
            "SETFCAP": Privileges.has(capability: CapabilitySet.setfcap),
            "SETUID": Privileges.has(capability: CapabilitySet.setuid),
            "SETGID": Privileges.has(capability: CapabilitySet.setgid),
        ]
        var probeNS: NetworkNamespace?
        var probeNL: NetlinkSocket?
        let name = "kal-doctor\(getpid())-\(LabID.newRunID())-r"
        do {
            probeNS = try NetworkNamespace.create(named: name) {
                probeNL = try NetlinkSocket(namespaceName: name)
            }
            checks.append(.init(name: "netns", available: true,
                                why: "created and entered a network namespace under /run/netns", fix: ""))
        } catch {
            checks.append(.init(name: "netns", available: false, why: "\(error)",
                                fix: "run as root with CAP_SYS_ADMIN and CAP_NET_ADMIN; \(containerFlags)"))
        }
        defer { probeNS?.delete() }

        if let nl = probeNL, let ns = probeNS {
            checks.append(vethCheck(nl))
            checks.append(netemCheck(nl))
            checks.append(nftablesCheck(ns))
            checks.append(conntrackCheck(ns))
            checks.append(sysctlCheck(ns))
        } else {
            for feature in ["veth", "netem", "nftables", "conntrack", "sysctl"] {
                checks.append(.init(name: feature, available: false, why: "not tried: no network namespace",
                                    fix: "fix netns first"))
            }
        }
        probeNL = nil
        if !environments {
            // Inside a backend: its own features only.
        } else {
            let probe = userNamespaceProbe()
            checks.append(.init(name: "userns", available: probe.available, why: probe.why,
                                fix: probe.available ? "" : "as root: grant CAP_SETFCAP (or CAP_SETUID and CAP_SETGID); otherwise "
                                    + "enable unprivileged user namespaces (user.max_user_namespaces > 0, "
                                    + "kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0 where "
                                    + "they exist; docker: --security-opt seccomp=unconfined)"))
        }
        if environments { checks.append(umlCheck()) }
        let available = Dictionary(uniqueKeysWithValues: checks.map { ($0.name, $0.available) })
        var report = DoctorReport(kernel: kernelRelease(), capabilities: caps, checks: checks,
                                  canRun: available["netns"] == true && available["veth"] == true)
        report.usernsEntry = UserNamespaceEntry.current
        return report
    }

    static func vethCheck(_ nl: NetlinkSocket) -> DoctorReport.Check {
        do {
            try nl.createVeth(VethEnd(name: "kal-v0", up: true), peer: VethEnd(name: "kal-v1"))
            try nl.deleteLink("kal-v0")
            return .init(name: "veth", available: true, why: "created and deleted a veth pair", fix: "")
        } catch {
            return .init(name: "veth", available: false, why: "\(error)",
                         fix: "load the veth module (modprobe veth) on the host")
        }
    }

    static func netemCheck(_ nl: NetlinkSocket) -> DoctorReport.Check {
        do {
            try nl.setLink("lo", up: true)
            try nl.setNetem(NetemSpec(lossPercent: 1), ifindex: 1, label: "lo")
            try nl.removeRootQdisc(ifindex: 1, label: "lo")
            return .init(name: "netem", available: true, why: "added and removed a netem qdisc", fix: "")
        } catch {
            return .init(name: "netem", available: false, why: "\(error)",
                         fix: "modprobe sch_netem (Debian: linux-modules-extra / kernel-modules), or use "
                            + "--backend uml (apt-get install user-mode-linux); trials fall back to nftables loss")
        }
    }

    static func nftablesCheck(_ ns: NetworkNamespace) -> DoctorReport.Check {
        do {
            try Nftables.run("add table inet kal_probe\nadd chain inet kal_probe c { type filter hook forward priority 0; }\n"
                             + "add rule inet kal_probe c meta l4proto tcp numgen random mod 100 < 30 drop\n"
                             + "delete table inet kal_probe", in: ns, operation: "nftables probe")
            return .init(name: "nftables", available: true,
                         why: "libnftables added a forward chain with a numgen-random drop rule", fix: "")
        } catch {
            return .init(name: "nftables", available: false, why: "\(error)",
                         fix: "apt-get install libnftables1; the host kernel needs nf_tables")
        }
    }

    /// The nat-idle fault's own ruleset (reset mode: it has the drop rules too), with its conntrack
    /// timeout policy read back: what that fault needs, tried as it does it.
    public static func conntrackCheck(_ ns: NetworkNamespace) -> DoctorReport.Check {
        let table = "kal_probe_nat"
        do {
            try Nftables.run(NATFirewallRules.script(table: table, timeout: 3, reset: true, inside: "kal-in", outside: "kal-out",
                                                     insideNetwork: "198.18.1.0/24"),
                             in: ns, operation: "conntrack probe (nat-idle's NAT/firewall with a ct timeout policy)")
            defer { _ = try? Nftables.run("delete table ip \(table)", in: ns, operation: "conntrack probe cleanup") }
            let established = try NATFirewallRules.establishedTimeout(table: table, in: ns)
            guard established == 3 else {
                return .init(name: "conntrack", available: false,
                             why: "the ct timeout policy reads back \(established.map { "\($0) s" } ?? "without an established timeout") "
                                + "after setting 3 s", fix: "the host kernel needs CONFIG_NF_CONNTRACK_TIMEOUT and CONFIG_NFT_CT")
            }
            return .init(name: "conntrack", available: true,
                         why: "conntrack + NAT rules and a ct timeout policy (established 3 s, read back) loaded", fix: "")
        } catch {
            return .init(name: "conntrack", available: false, why: "\(error)",
                         fix: "the host kernel needs nf_conntrack, nf_nat, nft_ct and conntrack timeout policies "
                            + "(modprobe nf_conntrack nf_nat nft_ct; CONFIG_NF_CONNTRACK_TIMEOUT)")
        }
    }

    /// Only labs that set per-namespace sysctls (namespace_keepalive, sysctls) need these; container
    /// runtimes mount /proc/sys read-only. Writes a namespace's own value back, so nothing changes.
    public static func sysctlCheck(_ ns: NetworkNamespace) -> DoctorReport.Check {
        let key = "net.ipv4.tcp_keepalive_time"
        do {
            let value = try ns.perform { () throws -> String in
                let value = try Sysctl.read(key)
                try Sysctl.write(key, value)
                return value
            }
            return .init(name: "sysctl", available: true,
                         why: "wrote a per-namespace sysctl (\(key) = \(value), its own value)", fix: "")
        } catch let error as SystemCallError where error.errno == EROFS {
            return .init(name: "sysctl", available: false, why: "sysctl writes refused: /proc/sys is read-only here (\(error))",
                         fix: "only labs that set per-namespace sysctls (namespace_keepalive, sysctls) need them: "
                            + "run those with --backend uml (the guest has its own /proc/sys)")
        } catch {
            return .init(name: "sysctl", available: false, why: "sysctl writes refused: \(error)",
                         fix: "only labs that set per-namespace sysctls (namespace_keepalive, sysctls) need them: "
                            + "run those with --backend uml")
        }
    }

    static func umlCheck() -> DoctorReport.Check {
        let binary = "/usr/bin/linux.uml"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            return .init(name: "user-mode-linux", available: false, why: "\(binary) is missing",
                         fix: "apt-get install user-mode-linux")
        }
        let modules = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/uml/modules")) ?? []
        guard let version = modules.sorted().last,
              FileManager.default.fileExists(atPath: "/usr/lib/uml/modules/\(version)/kernel/net/sched/sch_netem.ko") else {
            return .init(name: "user-mode-linux", available: false, why: "no UML modules with sch_netem under /usr/lib/uml/modules",
                         fix: "apt-get install --reinstall user-mode-linux")
        }
        return .init(name: "user-mode-linux", available: true,
                     why: "\(binary) with modules \(version) (sch_netem.ko present); see the uml backend below for a real boot",
                     fix: "")
    }

    public static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafePointer(to: name.release) {
            $0.withMemoryRebound(to: CChar.self, capacity: 65) { String(cString: $0) }
        }
    }
}
