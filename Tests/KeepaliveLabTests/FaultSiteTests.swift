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
    }
}
