import Foundation
import Testing
@testable import KeepaliveLab

/// The fault registry: every kind has its help, syntax, examples, site and phrase, and parses what
/// it prints. Pure: no privileges.
@Suite struct FaultRegistryTests {
    @Test func everyKindHasHelpSyntaxExamplesSiteAndPhrase() throws {
        #expect(FaultKinds.all.count == 10)
        #expect(Set(FaultKinds.all.map { $0.name }).count == FaultKinds.all.count, "names are unique")
        for kind in FaultKinds.all {
            #expect(!kind.help.isEmpty, "\(kind.name)")
            #expect(kind.syntax.hasPrefix(kind.name), "\(kind.name): \(kind.syntax)")
            #expect(!kind.examples.isEmpty, "\(kind.name)")
            #expect(FaultKinds.help.contains("\(kind.syntax): \(kind.help)"), "\(kind.name) in --help")
            #expect(FaultKinds.syntaxList.contains(kind.syntax), "\(kind.name) in the error's list")
            for text in kind.examples {
                let fault = try Fault(parsing: text)
                #expect(fault.description == text, "\(text) prints back as \(fault)")
                #expect(type(of: fault.kind) == kind, "\(text) is a \(kind.name)")
                #expect(!fault.reportPhrase.isEmpty, "\(text)")
                let data = try JSONEncoder().encode(fault)
                #expect(String(decoding: data, as: UTF8.self) == "\"\(text)\"")
                #expect(try JSONDecoder().decode(Fault.self, from: data) == fault)
            }
        }
    }

    /// The ladder draws the fault where its site says, with its phrase.
    @Test func everyKindHasASiteAndALadderPhrase() throws {
        let sites: [String: Fault.Site] = [
            "none": .nowhere, "crash": .peerHost, "crash-icmp": .peerHost, "reboot:3": .peerHost,
            "kill": .peerProcess, "freeze": .peerProcess, "crash-client": .clientHost,
            "loss:30": .router, "partition:3": .router, "nat-idle:5": .router,
        ]
        #expect(Set(sites.keys.map { String($0.split(separator: ":")[0]) }) == Set(FaultKinds.all.map { $0.name }))
        for (text, site) in sites {
            let fault = try Fault(parsing: text)
            #expect(fault.site == site, "\(text)")
            #expect(fault.kind.site == site, "\(text)")
        }
        #expect(try Fault(parsing: "reboot:3").reportPhrase == "B crashed (reboots after 3 s)")
        #expect(try Fault(parsing: "nat-idle:5,reset").reportPhrase.contains("answers with RST"))
    }

    @Test func unknownFaultListsEveryKind() {
        #expect(throws: PolicyError.self) { try Fault(parsing: "meteor") }
        do { _ = try Fault(parsing: "meteor") } catch {
            for kind in FaultKinds.all { #expect("\(error)".contains(kind.syntax), "\(kind.name)") }
            #expect("\(error)".contains("crash, crash-icmp, reboot:SECONDS"))
        }
    }

    /// The trial's duration estimate comes from each kind's expectedEnd (the parallel switch is gone).
    @Test func expectedDurationComesFromTheKind() throws {
        var spec = TrialSpec(fault: .crash, deadline: 30)
        spec.clientPolicy = Policy(keepalive: KeepaliveSetting(idle: 2, interval: 1, count: 3))
        #expect(TrialDuration.afterFault(spec).1 == spec.fault.kind.expectedEnd(spec).first?.1)
        spec.fault = .kill
        #expect(spec.fault.kind.expectedEnd(spec).isEmpty)
        #expect(TrialDuration.afterFault(spec) == (30, "deadline"))
        spec.fault = .natIdle(timeout: 5, mode: .reset)
        #expect(TrialDuration.afterFault(spec).1 == "silence 10 s, then the exchange (keepalive keeps the entry)")
    }
}

/// Per kind: malformed input names the field and the value; out-of-range input the valid range.
/// Each row: the text, then what the error must say.
@Suite struct FaultParseErrorTests {
    static let cases: [String: [(String, [String])]] = [
        "none": [("none:3", ["fault none", "none:3", "takes no arguments"])],
        "crash": [("crash:3", ["fault crash", "crash:3", "takes no arguments"])],
        "crash-icmp": [("crash-icmp:on", ["fault crash-icmp", "crash-icmp:on", "takes no arguments"])],
        "crash-client": [("crash-client:1", ["fault crash-client", "takes no arguments"])],
        "kill": [("kill:9", ["fault kill", "kill:9", "takes no arguments"])],
        "freeze": [("freeze:2", ["fault freeze", "freeze:2", "takes no arguments"])],
        "reboot": [
            ("reboot", ["fault reboot downtime", "seconds, e.g. reboot:3"]),
            ("reboot:soon", ["fault reboot downtime", "\"soon\"", "seconds"]),
            ("reboot:0", ["fault reboot downtime", "0 s", "0 < SECONDS ≤ 3600"]),
            ("reboot:3601", ["3601 s", "0 < SECONDS ≤ 3600"]),
            ("reboot:inf", ["fault reboot downtime", "\"inf\""]),
        ],
        "loss": [
            ("loss", ["fault loss", "loss:PCT[,DIR]"]), ("loss:", ["fault loss", "loss:PCT"]),
            ("loss:abc", ["fault loss", "\"abc\"", "percentage"]), ("loss:0", ["fault loss", "0 %", "0 < PCT ≤ 100"]),
            ("loss:101", ["101 %", "0 < PCT ≤ 100"]), ("loss:30,up", ["fault loss direction", "both, a2b or b2a"]),
            ("loss:30,a2b,b2a", ["fault loss", "loss:PCT[,DIR]"]),
        ],
        "partition": [
            ("partition:", ["fault partition", "partition:SECONDS"]),
            ("partition:x", ["fault partition", "\"x\"", "seconds, e.g. partition:3"]),
            ("partition:0", ["0 s", "0 < SECONDS ≤ 3600"]), ("partition:3601", ["3601 s", "0 < SECONDS ≤ 3600"]),
            ("partition:3,sideways", ["fault partition direction", "both, a2b or b2a"]),
        ],
        "nat-idle": [
            ("nat-idle", ["fault nat-idle", "nat-idle:SECONDS[,drop|reset]"]),
            ("nat-idle:2.5", ["fault nat-idle timeout", "\"2.5\"", "whole seconds"]),
            ("nat-idle:0", ["fault nat-idle timeout", "0 s", "1…432000"]),
            ("nat-idle:432001", ["432001 s", "1…432000"]),
            ("nat-idle:5,ignore", ["fault nat-idle mode", "\"ignore\"", "drop or reset"]),
        ],
    ]

    @Test func everyKindHasParseErrorCases() {
        #expect(Set(Self.cases.keys) == Set(FaultKinds.all.map { $0.name }))
    }

    @Test(arguments: FaultKinds.all.map { $0.name })
    func badInputNamesFieldValueAndRange(_ kind: String) {
        for (text, pieces) in Self.cases[kind] ?? [] {
            do {
                let fault = try Fault(parsing: text)
                Issue.record("\(text) parsed as \(fault)")
            } catch {
                #expect(error is PolicyError, "\(text): \(error)")
                for piece in pieces { #expect("\(error)".contains(piece), "\(text): \(error)") }
            }
        }
    }
}

/// One results.jsonl record of each fault kind, copied from the committed Reports/ (Fixtures/README.md
/// says which line): it decodes, re-encodes byte for byte, and renders (ladder and report).
@Suite struct GoldenResultsTests {
    static let lines: [String] = {
        let url = ReportFixtures.directory.appendingPathComponent("golden-results.jsonl")
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }()

    @Test func oneRecordOfEachKind() throws {
        let records = try Self.lines.map { try JSONDecoder().decode(RunRecord.self, from: Data($0.utf8)) }
        let kinds = try records.map { type(of: try Fault(parsing: $0.fault).kind).name }
        #expect(Set(kinds) == Set(FaultKinds.all.map { $0.name }) && kinds.count == FaultKinds.all.count)
    }

    @Test func decodesReencodesIdenticallyAndRenders() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var results: [TrialResult] = []
        for line in Self.lines {
            let record = try JSONDecoder().decode(RunRecord.self, from: Data(line.utf8))
            let again = String(decoding: try encoder.encode(record), as: UTF8.self)
            #expect(again == line, "\(record.fault) re-encodes differently")
            let result = try #require(record.result, "\(record.fault)")
            #expect(result.spec.fault.description == record.fault)
            let ladder = Ladder.render(result)
            #expect(ladder.contains("fault: "), "\(record.fault): the ladder draws the fault")
            #expect(ladder.contains(result.spec.fault.reportPhrase), "\(record.fault): the ladder says the kind's phrase")
            results.append(result)
        }
        let report = MarkdownReport.render(ReportFixtures.input(Cell.grouping(results)), chartsPrefix: "charts")
        for line in Self.lines {
            let record = try JSONDecoder().decode(RunRecord.self, from: Data(line.utf8))
            #expect(report.contains(record.faultLabel), "\(record.fault) in the report")
        }
    }
}
