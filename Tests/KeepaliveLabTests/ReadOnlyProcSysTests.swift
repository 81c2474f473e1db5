import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Container runtimes mount /proc/sys read-only. Here the built binary runs in a private mount
/// namespace whose /proc/sys is a read-only bind mount (checked: a write of a sysctl's own value
/// fails with EROFS before the command starts): nat-idle must work on the host and userns backends
/// there, doctor must say that sysctl writes are refused, and backend selection must not send a lab
/// whose policies set sysctls to a backend that cannot write them. Root only (mount).
/// Nested in BackendTests so that it is serialized with them (their leftover checks).
extension BackendTests {
    @Suite(.enabled(if: CIGate.runs(ReadOnlyProcSysPrerequisites.missing), Comment(rawValue: ReadOnlyProcSysPrerequisites.missing ?? "")))
    struct ReadOnlyProcSysTests {
        /// Bind-mounts /proc/sys read-only in a private mount namespace, proves it by writing a
        /// sysctl's own value back (must fail with EROFS: a writable /proc/sys changes nothing, as the
        /// value is its own), then execs the binary. Exit 96–98: the read-only /proc/sys could not be made.
        static let wrapper = ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", """
            mount -o bind,ro /proc/sys /proc/sys || exit 96
            f=/proc/sys/net/ipv4/tcp_keepalive_time
            v=$(cat $f)
            if err=$( (printf %s "$v" > $f) 2>&1 ); then echo "kal-ro: /proc/sys is still writable" >&2; exit 97; fi
            case "$err" in *"Read-only file system"*) ;; *) echo "kal-ro: the write failed otherwise: $err" >&2; exit 98;; esac
            echo "kal-ro: verified, a write fails: $err" >&2
            exec "$@"
            """, "sh"]

        static func run(_ arguments: [String], timeout: Double = 120) throws -> (status: Int32, out: String, err: String) {
            let (status, out, err) = try Leftovers.checked {
                try LabCommand.run(arguments, setpriv: nil, wrapper: wrapper, timeout: timeout)
            }
            try #require(![96, 97, 98].contains(status), "no read-only /proc/sys: \(err)")
            try #require(err.contains("kal-ro: verified"), "the read-only check did not run: \(err)")
            return (status, out, err)
        }

        static func json(_ arguments: [String]) throws -> [String: Any] {
            let (status, out, err) = try run(arguments + ["--json"])
            try #require(status == 0, "keepalive-lab \(arguments.joined(separator: " ")) exited \(status): \(err)")
            let start = try #require(out.firstIndex(of: "{"), "no JSON in: \(out) \(err)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out[start...].utf8)) as? [String: Any])
        }

        /// The same windows as NetworkFaultTests' nat-idle tests, for a 2 s timeout: the last packet
        /// ~0.2 s before the fault, so the entry goes ~1.8 s after it.
        @Test(arguments: ["host", "userns"])
        func natIdleWithoutWritingProcSys(backend: String) throws {
            let base = ["trial", "--backend", backend, "--fault", "nat-idle:2", "--silence", "4", "--deadline", "10"]
            let silent = try Self.json(base)
            #expect(silent["backend"] as? String == backend)
            #expect(silent["outcome"] as? String == "broken")
            #expect(silent["data_reached_b"] as? Bool == false)
            let expired = try #require(silent["conntrack_expired_s"] as? Double, "R's entry never expired: \(silent["notes"] ?? "")")
            #expect(expired > 1.5 && expired < 2.5, "expired at \(expired) s")
            let notes = silent["notes"] as? [String] ?? []
            #expect(notes.contains { $0.contains("INVALID packet(s) and dropped them") }, "\(notes)")

            let kept = try Self.json(base + ["--keepalive", "1,1,3"])
            #expect(kept["outcome"] as? String == "survived")
            #expect(kept["conntrack_expired_s"] == nil, "R's entry expired at \(kept["conntrack_expired_s"] ?? "")")
            #expect(kept["answer_received"] as? Bool == true)

            let reset = try Self.json(["trial", "--backend", backend, "--fault", "nat-idle:2,reset", "--silence", "4", "--deadline", "10"])
            #expect(reset["outcome"] as? String == "broken")
            #expect(reset["errno"] as? String == "ECONNRESET")
        }

        @Test func doctorSaysSysctlWritesAreRefused() throws {
            let report = try Self.json(["doctor"])
            let checks = try #require(report["checks"] as? [[String: Any]])
            let sysctl = try #require(checks.first { $0["name"] as? String == "sysctl" }, "no sysctl check: \(checks)")
            #expect(sysctl["available"] as? Bool == false)
            #expect((sysctl["why"] as? String)?.contains("/proc/sys is read-only here") == true, "\(sysctl)")
            #expect((sysctl["fix"] as? String)?.contains("--backend uml") == true, "\(sysctl)")
            let conntrack = try #require(checks.first { $0["name"] as? String == "conntrack" })
            #expect(conntrack["available"] as? Bool == true, "nat-idle's rules need no /proc/sys: \(conntrack)")
            let backends = try #require(report["backends"] as? [[String: Any]])
            func features(_ name: String) -> [String: Bool]? {
                backends.first { $0["name"] as? String == name }?["features"] as? [String: Bool]
            }
            #expect(features("host")?["sysctl"] == false)
            #expect(features("host")?["conntrack"] == true)
            if BackendPrerequisites.rootlessMissing == nil {
                #expect(features("userns")?["sysctl"] == false, "\(features("userns") ?? [:])")
                #expect(features("userns")?["conntrack"] == true)
            }
            // The UML guest has its own /proc/sys.
            if BackendPrerequisites.umlMissing == nil { #expect(features("uml")?["sysctl"] == true, "\(features("uml") ?? [:])") }
        }

        /// A lab whose policy sets sysctls: an explicit userns is refused before anything is built
        /// (exit 3, naming the sysctl need and uml); auto passes host and userns over.
        @Test func backendsThatCannotWriteSysctlsAreNotChosen() throws {
            let directory = try makeTemporaryDirectory(in: "/tmp", prefix: "kal-rosys-")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let lab = "\(directory)/sysctls.yaml"
            try """
                name: ro-sysctls
                trials: 1
                deadline: 10
                policies:
                  - name: retries2-8
                    sysctls:
                      net.ipv4.tcp_retries2: 8
                    client:
                      keepalive: 1,1,2
                faults: [crash]
                """.write(toFile: lab, atomically: true, encoding: .utf8)
            let out = "\(directory)/out"
            let explicit = try Self.run(["run", lab, "--backend", "userns", "--out", out])
            #expect(explicit.status == 3, "exit \(explicit.status): \(explicit.err)")
            #expect(explicit.err.contains("per-namespace sysctls") && explicit.err.contains("--backend uml"), "\(explicit.err)")

            let auto = try Self.run(["run", lab, "--backend", "auto", "--out", out], timeout: 180)
            #expect(auto.err.contains("host: the policy sets per-namespace sysctls and sysctl writes refused"), "\(auto.err)")
            #expect(auto.err.contains("userns: inside a user namespace: the policy sets per-namespace sysctls"), "\(auto.err)")
            #expect(auto.err.contains("/proc/sys is read-only"), "\(auto.err)")
            if BackendPrerequisites.umlMissing == nil {
                #expect(auto.status == 0, "exit \(auto.status): \(auto.err)")
                #expect(auto.err.contains("auto → uml"), "\(auto.err)")
                let summary = try String(contentsOfFile: "\(out)/summary.json", encoding: .utf8)
                #expect(summary.contains("\"uml\""), "\(summary)")
            } else {
                #expect(auto.status == 3, "no backend can write the sysctls: \(auto.err)")
            }
        }
    }
}

/// Why the read-only /proc/sys tests cannot run here, or nil.
enum ReadOnlyProcSysPrerequisites {
    static let missing: String? = {
        guard getuid() == 0 else { return "bind-mounting /proc/sys read-only needs root" }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else {
            return "unshare is missing (apt-get install util-linux)"
        }
        if let reason = TrialPrerequisites.missing { return reason }
        return BackendPrerequisites.binary == nil ? "no keepalive-lab executable" : nil
    }()
}

/// What a trial needs from its backend, and the nat-idle ruleset's read-back (no privileges).
struct KernelNeedsTests {
    @Test func policySysctlsNeedWritableProcSys() {
        #expect(TrialSpec(fault: .crash).kernelNeeds(clock: .real).sysctls == false)
        #expect(TrialSpec(fault: .crash, namespaceKeepalive: KeepaliveSetting(idle: 1, interval: 1, count: 2))
            .kernelNeeds(clock: .real).sysctls == true)
        #expect(TrialSpec(fault: .crash, sysctls: ["net.ipv4.tcp_retries2": "8"]).kernelNeeds(clock: .real).sysctls == true)
        // nat-idle needs nftables, not sysctls, now that its timeout is a ct timeout policy.
        let nat = TrialSpec(fault: .natIdle(timeout: 5, mode: .drop)).kernelNeeds(clock: .real)
        #expect(nat.nftables && !nat.sysctls)
        let both = KernelNeeds(netem: true).union(KernelNeeds(sysctls: true))
        #expect(both.netem && both.sysctls && !both.nftables)
    }

    @Test func natRulesetHasTheTimeoutPolicyAndTheLooseRule() {
        let script = NATFirewallRules.script(table: "t", timeout: 7, reset: true, inside: "r-a", outside: "r-b",
                                             insideNetwork: "198.18.1.0/24")
        #expect(script.contains("policy = { established: 7 }"))
        #expect(script.contains("ct state new meta l4proto tcp ct timeout set \"idle\""))
        #expect(script.contains("tcp flags & (syn | ack | rst) != syn counter name \"invalid\" reject with tcp reset"))
        #expect(!script.contains("/proc/sys"))
    }

    @Test func establishedTimeoutIsReadFromTheListing() {
        let listing = """
            table ip kal_nat {
            \tct timeout idle {
            \t\tprotocol tcp
            \t\tl3proto ip
            \t\tpolicy = { established : 300, close : 10 }
            \t}
            }
            """
        #expect(NATFirewallRules.parseEstablished(listing) == 300)
        #expect(NATFirewallRules.parseEstablished("table ip t {\n}") == nil)
    }
}
