import Foundation
import Testing
@testable import KeepaliveLab

/// Unprivileged: the typed `marks` read results written when they were a `[String: Double]`, and
/// write them back with the same keys.
@Suite struct TrialMarksTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// How results were read when `marks` was a dictionary.
    struct OldResult: Decodable { var marks: [String: Double] }
    struct OldLine: Decodable { var result: OldResult? }

    /// Lines of a committed run (reports render them again with `keepalive-lab report DIR`): every
    /// key comes back with its value, and writing them again gives the same JSON text.
    @Test func decodesOldResultsLines() throws {
        let url = Self.repository.appendingPathComponent("Tests/KeepaliveLabTests/Fixtures/old-run-seed/results.jsonl")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { Data($0.utf8) }
        #expect(lines.count >= 10)
        var seen = Set<String>()
        for line in lines {
            guard let old = try JSONDecoder().decode(OldLine.self, from: line).result?.marks else { continue }
            let marks = try JSONDecoder().decode(RunRecordMarks.self, from: line).result.marks
            #expect(marks.fault == old["fault"])
            #expect(marks.lastReceived == old["last_rx"])
            #expect(marks.deadline == old["deadline"])
            #expect(marks.detection == old["detection"])
            #expect(marks.bBack == old["b_back"])
            #expect(try Self.dictionary(marks) == old)
            #expect(try Self.sortedJSON(marks) == Self.sortedJSON(old))
            seen.formUnion(old.keys)
        }
        #expect(seen.isSuperset(of: ["fault", "last_rx", "deadline", "detection", "b_back"]))
    }

    struct RunRecordMarks: Decodable {
        struct Result: Decodable { var marks: TrialMarks }
        var result: Result
    }

    /// Every fixture (a whole old TrialResult) decodes, and its marks write back unchanged.
    @Test func fixturesKeepEveryKey() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: ReportFixtures.directory.path).filter { $0.hasSuffix(".json") }
        #expect(files.count >= 10)
        for file in files {
            let data = try Data(contentsOf: ReportFixtures.directory.appendingPathComponent(file))
            let old = try JSONDecoder().decode(OldResult.self, from: data).marks
            let result = try JSONDecoder().decode(TrialResult.self, from: data)
            #expect(try Self.dictionary(result.marks) == old, "\(file)")
            #expect(try Self.sortedJSON(result.marks) == Self.sortedJSON(old), "\(file)")
        }
    }

    /// Every property, set, is written under its old key and read back.
    @Test func typedKeysRoundTrip() throws {
        var marks = TrialMarks()
        let keys: [(String, WritableKeyPath<TrialMarks, Double?>)] = [
            ("fault", \.fault), ("connected", \.connected), ("ready", \.ready), ("last_rx", \.lastReceived),
            ("oldest_unacked", \.oldestUnacked), ("first_rto_retransmission", \.firstTimeoutRetransmission),
            ("first_unanswered_heartbeat", \.firstUnansweredHeartbeat), ("detection", \.detection),
            ("wire_abort", \.wireAbort), ("b_back", \.bBack), ("deadline", \.deadline), ("heal", \.heal),
            ("send", \.send), ("answer", \.answer), ("conntrack_last_seen", \.conntrackLastSeen),
            ("conntrack_expired", \.conntrackExpired), ("app_detection", \.appDetection),
            ("socket_gone", \.socketGone), ("app_exit", \.appExit), ("app_ready", \.appReady),
        ]
        for (i, (_, path)) in keys.enumerated() { marks[keyPath: path] = Double(i) + 0.125 }
        let written = try Self.dictionary(marks)
        #expect(written == Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1.0, Double($0) + 0.125) }))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        #expect(try JSONDecoder().decode(TrialMarks.self, from: encoder.encode(marks)) == marks)
        // Absent instants are absent keys, as in the dictionary.
        #expect(String(decoding: try encoder.encode(TrialMarks()), as: UTF8.self) == "{}")
        // An expectation's anchor names its mark.
        for anchor in [Expectation.Anchor.lastReceived, .oldestUnacked, .firstTimeoutRetransmission, .firstUnansweredHeartbeat] {
            #expect(marks.instant(of: anchor) == written[anchor.rawValue])
        }
    }

    /// A key no version wrote is ignored, not an error.
    @Test func unknownKeyIsIgnored() throws {
        let marks = try JSONDecoder().decode(TrialMarks.self, from: Data(#"{"fault":0,"last_rx":-0.2,"someday":1}"#.utf8))
        #expect(marks.fault == 0 && marks.lastReceived == -0.2)
    }

    static func sortedJSON(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func dictionary(_ marks: TrialMarks) throws -> [String: Double] {
        try JSONDecoder().decode([String: Double].self, from: JSONEncoder().encode(marks))
    }
}
