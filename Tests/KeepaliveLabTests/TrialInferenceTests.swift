import Testing
@testable import KeepaliveLab

/// Unprivileged: what the analysis infers from real recorded trials (the fixtures), as values —
/// the ladders and findings that word them are ReportTests'.
@Suite struct TrialInferenceTests {
    @Test func crashSendsToADeadPeerAndAAborts() throws {
        let r = try ReportFixtures.load("crash-keepalive-2-1-3-run1")
        let inference = TrialInference(r)
        for (i, e) in r.timeline.enumerated() where e.direction == .aToB && e.t >= 0 {
            #expect(inference.paths[i].path == .toDeadPeer)
        }
        #expect(inference.roles.filter { $0 == .lastHeardByA }.count == 1)
        #expect(inference.roles.last == .aAborts)
        #expect(inference.longestUnansweredProbeRun == 3)
        #expect(inference.probeSpacingAfterFault.count == 2)
        #expect(inference.natVictim == nil && inference.rebootTrigger == nil && inference.healedUnnoticedS == nil)
    }

    @Test func rebootTriggerIsTheProbeBsFreshKernelReset() throws {
        let r = try ReportFixtures.load("reboot3-keepalive-2-1-3")
        let inference = TrialInference(r)
        let trigger = try #require(inference.rebootTrigger)
        #expect(trigger.entry.kind == .keepaliveProbe && trigger.probeNumber == 3)
        #expect(inference.roles.contains(.freshKernelReset))
    }

    @Test func natIdleDropVictimIsTheRequest() throws {
        let r = try ReportFixtures.load("nat-idle5-no-policy")
        let inference = TrialInference(r)
        let victim = try #require(inference.natVictim)
        #expect(victim.isRequest && victim.requestSent && victim.retransmissions > 0)
        let dropped = inference.paths.filter { $0.why == .invalidConnection(refused: false) }
        #expect(dropped.count == 8 && dropped.allSatisfy { $0.path == .droppedAtR })
        #expect(inference.roles.contains(.request))
        #expect(r.forgottenAfter != nil && r.answerAfterSendS == nil)
    }

    @Test func natIdleResetRSTIsRs() throws {
        let inference = TrialInference(try ReportFixtures.load("nat-idle5-reset-no-policy"))
        #expect(inference.paths.contains { $0.path == .fromR && $0.why == .resetInBsName })
        #expect(inference.paths.contains { $0.path == .droppedAtR && $0.why == .invalidConnection(refused: true) })
    }

    @Test func natIdleKeptFreshHasNoVictim() throws {
        let r = try ReportFixtures.load("nat-idle5-keepalive-2-1-3")
        let inference = TrialInference(r)
        #expect(inference.natVictim == nil && r.forgottenAfter == nil)
        #expect(inference.roles.contains(.answerLastHeardByA))
        #expect(inference.probeSpacingAfterFault.count == 4)
        #expect(try #require(r.answerAfterSendS) > 0)
    }

    @Test func partitionDropsUntilTheHeal() throws {
        let r = try ReportFixtures.load("partition3-keepalive-1-1-10")
        let inference = TrialInference(r)
        let dropped = inference.paths.indices.filter { inference.paths[$0].why == .partitionDropped }
        #expect(dropped.count == r.impairmentDrops?["a2b"]?.dropped)
        let heal = try #require(r.marks.heal)
        #expect(dropped.allSatisfy { r.timeline[$0].t < heal })
        #expect(inference.longestUnansweredProbeRun == 3)
    }

    @Test func lossAttributesUnansweredProbesToR() throws {
        let r = try ReportFixtures.load("loss30-a2b-keepalive-1-1-2")
        let inference = TrialInference(r)
        let lost = inference.paths.filter { $0.why == .lostNoReply }
        #expect(lost.count == r.probesLost)
        #expect(inference.probeAnswers.compactMap { $0 }.filter { $0 }.count >= r.probesAnswered ?? 0)
    }
}
