import Foundation

/// The nftables ruleset that makes a namespace a NAT and strict stateful firewall with a short
/// idle timeout for established TCP connections — all of it netlink (nf_tables), none of it
/// /proc/sys, so it works where container runtimes mount /proc/sys read-only. The nat-idle fault
/// installs it in R; `doctor` loads the same script to tell whether a backend can run that fault.
///
/// What used to be per-namespace sysctls:
/// - `nf_conntrack_tcp_timeout_established`: an nftables `ct timeout` object (nfnetlink's
///   per-connection timeout policy, CONFIG_NF_CONNTRACK_TIMEOUT + CONFIG_NFT_CT) assigned to each new
///   TCP connection by `ct timeout set`. The kernel only attaches a policy to an entry that is not
///   confirmed yet, i.e. between conntrack's lookup (prerouting, priority -200) and its confirmation
///   (postrouting, last): the forward chain at filter priority sees the SYN in that window (measured
///   on 6.18 and the lab kernel 6.12). On a confirmed entry `ct timeout set` is silently ignored (a
///   rule matching `ct state established` left 431999 s on the entry), hence `ct state new` here and
///   the check against the real entry at the fault. States the policy does not name keep the
///   namespace's defaults, as with the sysctl.
/// - `nf_conntrack_tcp_loose 0` (do not pick up connections from mid-stream packets): with the
///   default (1) such a packet creates a NEW entry; a rule drops — or answers with RST — every NEW
///   TCP packet that is not a bare SYN (what tcp_loose 0 would have made INVALID: ACK, SYN-ACK, FIN,
///   RST), counted in the same `invalid` counter as INVALID packets. The entry it created is never
///   confirmed, so the table stays as it would have with tcp_loose 0.
/// - `nf_conntrack_events 1`: not needed. The default has been 1 (on) for as long as
///   CONFIG_NF_CONNTRACK_EVENTS exists, and since Linux 5.19 is 2: on for every entry created while
///   a ctnetlink listener exists — the conntrack watcher subscribes before the client connects.
public enum NATFirewallRules {
    /// The `ct timeout` object's name inside the table.
    public static let timeoutPolicy = "idle"
    /// The established-timeout range nf_conntrack accepts from a policy, as the fault allows it.
    public static let timeoutRange = 1...432_000

    /// A complete `table ip NAME { … }`: masquerade what `insideNetwork` sends out of `outside`,
    /// refuse new connections from `outside` to `inside`, idle timeout `timeout` s for established
    /// TCP, and INVALID (or mid-stream NEW) packets dropped — or, with `reset`, TCP ones answered
    /// with RST.
    public static func script(table: String, timeout: Int, reset: Bool, inside: String, outside: String,
                              insideNetwork: String) -> String {
        let refuse = reset ? "reject with tcp reset" : "drop"
        let invalid = reset
            ? "ct state invalid meta l4proto tcp counter name \"invalid\" reject with tcp reset\n"
                + "        ct state invalid counter name \"invalid\" drop"
            : "ct state invalid counter name \"invalid\" drop"
        return """
            table ip \(table) {
                counter invalid { }
                ct timeout \(timeoutPolicy) {
                    protocol tcp; l3proto ip;
                    policy = { established: \(timeout) }
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname "\(outside)" ip saddr \(insideNetwork) masquerade
                }
                chain forward {
                    type filter hook forward priority filter; policy accept;
                    \(invalid)
                    ct state new meta l4proto tcp tcp flags & (syn | ack | rst) != syn counter name "invalid" \(refuse)
                    iifname "\(outside)" oifname "\(inside)" ct state new drop
                    ct state new meta l4proto tcp ct timeout set "\(timeoutPolicy)"
                }
            }
            """
    }

    /// The established timeout of `table`'s policy as the kernel in `namespace` holds it (listed
    /// back through libnftables).
    public static func establishedTimeout(table: String, in namespace: NetworkNamespace) throws -> Int? {
        parseEstablished(try Nftables.run("list ct timeout ip \(table) \(timeoutPolicy)", in: namespace,
                                          operation: "read back the conntrack timeout policy"))
    }

    /// "policy = { established : 5 }" (nft 1.0's listing; other states may stand beside it).
    public static func parseEstablished(_ listing: String) -> Int? {
        guard let range = listing.range(of: #"established\s*:\s*(\d+)"#, options: .regularExpression) else { return nil }
        return Int(listing[range].split(separator: ":").last!.trimmingCharacters(in: .whitespaces))
    }
}
