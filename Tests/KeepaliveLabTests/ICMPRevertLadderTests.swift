import Testing
@testable import KeepaliveLab

/// RFC 6069 with TCP_USER_TIMEOUT 3000 ms at HZ=250, on instants recorded from real host trials
/// (Reports/data-in-flight, crash-icmp, stream): no network, no privileges.
struct ICMPRevertLadderTests {
    /// R answered the 3rd and 4th retransmissions: each answer undid one backoff step, so the 5th
    /// firing came 0.848 s after the 4th, past U: abort at 3.032 s.
    @Test func recordedTrialWithTwoAnsweredRetransmissionsAbortsInsideItsWindow() throws {
        let events = ICMPRevertLadder.events(userTimeoutMs: 3000, hz: 250, retransmissions: [0, 0.44, 1.304, 2.168],
                                             answered: [false, false, true, true])
        let abort = try #require(events.last { $0.kind == .abort })
        #expect(abort.contains(3.032), "abort window \(abort.earliest)…\(abort.latest)")
        let retransmissions = events.filter { $0.kind == .retransmission }
        for (event, measured) in zip(retransmissions, [0, 0.44, 1.304, 2.168]) {
            #expect(event.contains(measured), "retransmission \(event.index): \(event.earliest)…\(event.latest) vs \(measured)")
        }
    }

    /// The 4th retransmission came before U and was answered too: the unclamped re-arm put the
    /// abort one reverted RTO later, 3.748 s — outside 4 ms + 12.5 % of U, inside the model.
    @Test func answeredRetransmissionJustBeforeTheUserTimeoutDelaysTheAbort() throws {
        let events = ICMPRevertLadder.events(userTimeoutMs: 3000, hz: 250, retransmissions: [0, 0.42, 1.252, 2.084, 2.916],
                                             answered: [false, false, true, true, true])
        let abort = try #require(events.last { $0.kind == .abort })
        #expect(abort.contains(3.748), "abort window \(abort.earliest)…\(abort.latest)")
        #expect(!Expectation.userTimeout(ms: 3000, hz: nil).accepts(3.748), "the plain formula could not explain it")
    }

    /// Without answers the timer is clamped to U: an abort one RTO late is outside the window.
    @Test func withoutAnswersAnAbortOneRTOLateFails() throws {
        let events = ICMPRevertLadder.events(userTimeoutMs: 3000, hz: 250, retransmissions: [0, 0.44, 1.304],
                                             answered: [false, false, false])
        let abort = try #require(events.last { $0.kind == .abort })
        #expect(abort.contains(3.004))
        #expect(!abort.contains(3.004 + 0.848))
    }
}
