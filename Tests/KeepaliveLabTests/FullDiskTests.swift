import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Privileged: the default lab run into a tmpfs too small for it, as a CI machine's full disk.
/// Results come before captures: every trial that finished is in results.jsonl unless the run said
/// at once that its line was lost; the terminal names the file and ENOSPC in the lab's own words
/// (no Foundation dump); the run exits non-zero and leaves no temporary file or namespace.
enum FullDiskPrerequisites {
    static let missing: String? = TrialPrerequisites.missing ?? (getuid() == 0 ? nil : "mounting a tmpfs needs root")
}

@Suite(.serialized, .enabled(if: CIGate.runs(FullDiskPrerequisites.missing), Comment(rawValue: FullDiskPrerequisites.missing ?? "")))
struct FullDiskTests {
    static let seedLab = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Labs/seed.yaml").path

    /// 64 KiB: results fit, captures do not all fit, the report does not. 24 KiB: not even every
    /// result fits — the run stops starting trials and says which results were lost.
    @Test(arguments: [64, 24])
    func aLabIntoATinyTmpfsKeepsEveryRecordedTrialAndSaysENOSPC(kibibytes: Int) throws {
        let mountPoint = try makeTemporaryDirectory(in: "/tmp", prefix: "keepalive-lab-full-")
        defer { rmdir(mountPoint) }
        guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=\(kibibytes)k") == 0 else {
            Issue.record("mount a \(kibibytes) KiB tmpfs on \(mountPoint): \(String(cString: strerror(errno)))")
            return
        }
        defer { umount2(mountPoint, Int32(MNT_DETACH)) }
        let out = "\(mountPoint)/run"
        let (status, stdout, stderr) = try LabCommand.run(["run", Self.seedLab, "--trials", "1", "--out", out], setpriv: nil, timeout: 300)
        print("\(kibibytes) KiB: exit \(status)\n\(stderr)\(stdout)")
        #expect(status != 0, "a run that could not keep everything exits non-zero")
        #expect(stderr.contains("No space left on device (ENOSPC)"))
        #expect(stderr.contains("\(out)/results.jsonl") || stderr.contains(".pcap"), "the error names the file")
        for raw in ["Error Domain=", "NSCocoaErrorDomain", "NSUnderlyingError"] {
            #expect(!stderr.contains(raw) && !stdout.contains(raw), "Foundation's text on the terminal: \(raw)")
        }
        let lines = stderr.split(separator: "\n")
        let finished = lines.filter { $0.hasPrefix("[") && $0.contains("/6] ") }.count
        let lost = lines.filter { $0.contains(" is lost: ") }.count
        let (records, damaged) = try RunDirectory(path: out).readRecords()
        #expect(damaged.isEmpty, "results.jsonl holds whole lines only: \(damaged)")
        #expect(finished == 6 && records.count == finished - lost, "\(records.count) recorded, \(finished) finished, \(lost) said lost")
        #expect(records.count >= 1, "the reservation keeps room for at least the first results")
        if kibibytes == 64 { #expect(lost == 0, "64 KiB holds every result") }

        // Nothing half-built: no temporary file of an atomic write, no namespace of the run.
        let entries = (try? FileManager.default.subpathsOfDirectory(atPath: out)) ?? []
        #expect(!entries.contains { $0.contains(".tmp-") }, "temporary files left: \(entries)")
        let run = try RunDirectory(path: out).readPlan().run
        let left = NetworkNamespace.listNames().filter { LabID.runID(inNamespaceName: $0) == run }
        #expect(left.isEmpty, "namespaces left: \(left)")
    }
}
