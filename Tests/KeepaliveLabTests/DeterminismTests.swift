import Testing
@testable import KeepaliveLab

/// CrossValidation.determinism on a REAL trial (Fixtures/crash-keepalive-2-1-3-run1.json) compared
/// with FAKE copies of it whose instants were shifted by hand.
@Suite struct DeterminismTests {
    func record(_ r: TrialResult) -> RunRecord {
        var record = RunRecord(lab: "fake", run: "fake", index: 0, cell: 0, policy: "keepalive-2-1-3", policySummary: "",
                               fault: "crash", faultLabel: "crash", workload: "idle", trial: 0)
        record.result = r
        return record
    }

    func shifted(_ r: TrialResult, by d: Double) -> TrialResult {
        var s = r
        s.detectionLatencyS = r.detectionLatencyS.map { $0 + d }
        s.sinceLastRxS = r.sinceLastRxS.map { $0 + d }
        s.measuredS = r.measuredS.map { $0 + d }
        s.wireAbortS = r.wireAbortS.map { $0 + d }
        for i in s.timeline.indices where s.timeline[i].t > 0 { s.timeline[i].t += d }
        return s
    }

    func base() throws -> TrialResult {
        var r = try ReportFixtures.load("crash-keepalive-2-1-3-run1")
        r.kernelHz = 250
        return r
    }

    @Test func aFakeShiftOfTwoTicksIsWholeTicksNotUnexplained() throws {
        let r = try base()
        let d = CrossValidation.determinism([record(r)], [record(shifted(r, by: 0.008))])
        #expect(d.trials == 1 && d.withinClockReads == 0 && d.wholeTicks == 1 && d.unexplained == 0)
        #expect(d.differing.first?.contains("2 tick(s)") == true, "\(d.differing)")
    }

    @Test func aFakeShiftOfAFractionOfATickIsUnexplained() throws {
        let r = try base()
        let d = CrossValidation.determinism([record(r)], [record(shifted(r, by: 0.005))])
        #expect(d.wholeTicks == 0 && d.unexplained == 1)
    }

    @Test func aFakeShiftOfWholeTicksOutsideTheWindowIsUnexplained() throws {
        let r = try base()
        var late = shifted(r, by: 0.008)
        late.withinTolerance = false
        let d = CrossValidation.determinism([record(r)], [record(late)])
        #expect(d.wholeTicks == 0 && d.unexplained == 1)
    }

    @Test func clockReadsAreWithinSlack() throws {
        let r = try base()
        let d = CrossValidation.determinism([record(r)], [record(shifted(r, by: 0.000_002_56))])
        #expect(d.withinClockReads == 1 && d.wholeTicks == 0 && d.unexplained == 0)
    }
}
