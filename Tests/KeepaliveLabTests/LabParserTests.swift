import Foundation
import Testing
@testable import KeepaliveLab

/// Unprivileged: lab files are checked completely before anything is created.
@Suite struct LabParserTests {
    let good = """
        name: demo
        trials: 3
        policies:
          - name: off
          - name: tuned
            client:
              keepalive: 2,1,3
              user_timeout_ms: 3000
        faults:
          - crash
          - fault: reboot:3
            deadline: 12
        expectations:
          - policy: tuned
            fault: crash
            detect_within: 6
        """

    func parse(_ text: String) throws -> Lab { try LabParser(file: "Labs/demo.yaml").parse(text) }

    func error(_ text: String) -> LabFileError? {
        do {
            _ = try parse(text)
            return nil
        } catch let error as LabFileError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    @Test func parsesAGoodLab() throws {
        let lab = try parse(good)
        #expect(lab.name == "demo" && lab.trials == 3)
        #expect(lab.policies.map(\.name) == ["off", "tuned"])
        #expect(lab.policies[1].client.keepalive == KeepaliveSetting(idle: 2, interval: 1, count: 3))
        #expect(lab.policies[1].client.userTimeoutMs == 3000)
        #expect(lab.faults[1].fault == .reboot(downtime: 3) && lab.faults[1].deadline == 12)
        #expect(lab.cells.count == 4)
        #expect(lab.expectations.first?.rule == .detectWithin(seconds: 6, percentile: 95))
        #expect(lab.expectations.first?.location == "Labs/demo.yaml:14:5")
    }

    @Test func unknownKeyNamesFileLineColumnAndAllowedKeys() throws {
        let e = try #require(error(good.replacingOccurrences(of: "      user_timeout_ms: 3000", with: "      user_timeout: 3000")))
        #expect(e.line == 8 && e.column == 7)
        #expect(e.key == "policies[1].client.user_timeout")
        #expect(e.description.hasPrefix("Labs/demo.yaml:8:7: policies[1].client.user_timeout: unknown key; allowed here: keepalive,"))
    }

    @Test func outOfRangeKeepaliveNamesTheKernelRange() throws {
        let e = try #require(error(good.replacingOccurrences(of: "keepalive: 2,1,3", with: "keepalive: 2,1,200")))
        #expect(e.line == 7)
        #expect(e.description.contains("TCP_KEEPCNT accepts 1…127"))
    }

    @Test func wrongTypesAreRejected() throws {
        let trials = try #require(error(good.replacingOccurrences(of: "trials: 3", with: "trials: many")))
        #expect(trials.line == 2 && trials.key == "trials" && trials.message.contains("not a whole number (allowed 1…1000)"))
        let policies = try #require(error(good.replacingOccurrences(of: "policies:\n  - name: off", with: "policies: off\nx:\n  - name: off")))
        #expect(policies.key == "policies" || policies.key == "x")
    }

    @Test func badFaultAndDanglingExpectation() throws {
        let fault = try #require(error(good.replacingOccurrences(of: "  - crash", with: "  - meteor")))
        #expect(fault.line == 10 && fault.description.contains("crash, crash-icmp, reboot:SECONDS"))
        let dangling = try #require(error(good.replacingOccurrences(of: "  - policy: tuned", with: "  - policy: tunned")))
        #expect(dangling.description.contains("no policy named \"tunned\"; defined: off, tuned"))
    }

    @Test func duplicatePolicyAndMissingSections() throws {
        #expect(try #require(error(good.replacingOccurrences(of: "name: off", with: "name: tuned"))).message.contains("defined twice"))
        #expect(try #require(error("name: x\nfaults: [crash]\n")).key == "policies")
        #expect(try #require(error("name: x\npolicies: [{name: a}]\nfaults: []\n")).message.contains("must not be empty"))
        #expect(try #require(error("name: [unclosed\n")).message.contains("not valid YAML"))
    }

    @Test func expectationNeedsExactlyOneRule() throws {
        let e = try #require(error(good + "\n    survives: true"))
        #expect(e.message.contains("exactly one of"))
    }

    @Test func shardsPartitionTheMatrixDeterministically() throws {
        let lab = try parse(good)
        let all = TrialPlan(lab: lab).items.map(\.index)
        #expect(all == Array(0..<12))
        var union: [Int] = []
        for i in 1...4 {
            let shard = TrialPlan(lab: lab, shard: (i, 4)).items.map(\.index)
            #expect(shard == TrialPlan(lab: lab, shard: (i, 4)).items.map(\.index))
            union += shard
        }
        #expect(union.sorted() == all)
        #expect(TrialPlan(lab: lab, trialsOverride: 1).items.count == 4)
    }

    @Test func shippedLabsParse() throws {
        let labs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Labs")
        let files = try FileManager.default.contentsOfDirectory(atPath: labs.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.contains("seed.yaml"))
        for file in files {
            _ = try LabParser.load(path: labs.appendingPathComponent(file).path)
        }
    }
}

extension LabParserTests {
    @Test func allowErrorsIsABooleanPerExpectation() throws {
        let lab = try parse(good + "\n    allow_errors: true")
        #expect(lab.expectations[0].allowErrors)
        #expect(try parse(good).expectations[0].allowErrors == false)
        let e = try #require(error(good + "\n    allow_errors: sometimes"))
        #expect(e.description == "Labs/demo.yaml:17:19: expectations[0].allow_errors: \"sometimes\" is not a boolean: use true or false")
    }
}
