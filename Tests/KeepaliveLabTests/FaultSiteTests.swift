import Testing
@testable import KeepaliveLab

/// Unprivileged: every fault kind's site, and the predicates that follow from it (the values they
/// had when each was its own switch).
@Suite struct FaultSiteTests {
    @Test func predicatesFollowFromTheSite() throws {
        // fault, site, peerIsDead, takesHostDown, usesImpairment, detecting host
        let table: [(String, Fault.Site, Bool, Bool, Bool, String)] = [
            ("none", .nowhere, false, false, false, "A"),
            ("crash", .peerHost, true, true, false, "A"),
            ("crash-icmp", .peerHost, true, true, false, "A"),
            ("reboot:3", .peerHost, true, true, false, "A"),
            ("kill", .peerProcess, true, false, false, "A"),
            ("freeze", .peerProcess, true, false, false, "A"),
            ("crash-client", .clientHost, true, false, false, "B"),
            ("loss:30,a2b", .router, false, false, true, "A"),
            ("partition:3", .router, false, false, true, "A"),
            ("nat-idle:5,reset", .router, false, false, false, "A"),
        ]
        for (text, site, dead, hostDown, impairs, host) in table {
            let fault = try Fault(parsing: text)
            #expect(fault.site == site, "\(text)")
            #expect(fault.peerIsDead == dead, "\(text)")
            #expect(fault.takesHostDown == hostDown, "\(text)")
            #expect(fault.usesImpairment == impairs, "\(text)")
            #expect(fault.detectingHost == host, "\(text)")
        }
        #expect(try Fault(parsing: "loss:30,a2b").impairmentDirection == .a2b)
        #expect(try Fault(parsing: "nat-idle:5").impairmentDirection == nil)
        #expect(["crash-icmp", "nat-idle:5"].allSatisfy { (try? Fault(parsing: $0))?.installsRulesInR == true })
        #expect(!["crash", "loss:30", "partition:3", "none"].contains { (try? Fault(parsing: $0))?.installsRulesInR == true })
    }

    /// Which faults need nftables in the kernel under test (for choosing a backend).
    @Test func nftablesNeeds() throws {
        for (text, engine, needs) in [("crash", nil, false), ("crash-icmp", nil, true), ("nat-idle:5", nil, true),
                                      ("loss:30", ImpairmentEngineChoice.auto, false), ("loss:30", .nftables, true),
                                      ("partition:3", .nftables, true), ("partition:3", .netem, false), ("freeze", nil, false)] {
            var spec = TrialSpec(fault: try Fault(parsing: text))
            spec.impairment = engine
            #expect(spec.kernelNeeds(clock: .real).nftables == needs, "\(text) \(engine.map(\.rawValue) ?? "-")")
        }
    }
}
