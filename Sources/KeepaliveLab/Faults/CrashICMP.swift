import KeepaliveNet

/// `crash-icmp`: as crash, but R answers for the dead host with ICMP host-unreachable.
struct CrashICMPFault: BareFaultKind {
    static let bare = BareFault(name: "crash-icmp", value: .crashICMP, site: .peerHost,
                                help: "as crash, and R answers for the dead B with ICMP host-unreachable",
                                phrase: "B crashed; R answers for it with ICMP host-unreachable")
    var installsRulesInR: Bool { true }

    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws {
        try Nftables.run("""
            table ip kal_fault {
                chain forward {
                    type filter hook forward priority 0; policy accept;
                    ip daddr \(Topology.bAddress.address) reject with icmp type host-unreachable
                }
            }
            """, in: driver.topology.r, operation: "answer for the dead B with ICMP host-unreachable")
        try HostDown.crashB(driver.topology, peers: peers)
    }

    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] {
        HostDown.expectedEnd(spec) { .keepalive($0, userTimeoutMs: $1, hz: nil) }
    }

    func expectations(_ analysis: TrialAnalysis) -> [Expectation] { HostDown.expectations(analysis, rebooted: false, icmpAnswers: true) }
}
