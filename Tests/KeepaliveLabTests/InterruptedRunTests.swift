import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

extension BackendTests {
    /// A 2-guest virtual-time run SIGKILLed after its first trial: its guests and their namespaces
    /// go with it, and `report` and `merge` render what the guests had finished, the cells no guest
    /// reached reading NOT RUN (interrupted). Its progress lines say wall time as elapsed and the
    /// guest's virtual time apart.
    @Suite(.serialized, .enabled(if: CIGate.runs(VirtualTimePrerequisites.missing), Comment(rawValue: VirtualTimePrerequisites.missing ?? "")))
    struct InterruptedRunTests {
        static let lab = """
            name: virt-interrupt
            clock: virtual
            trials: 20
            deadline: 600
            policies:
              - name: ka-60-10-3
                client: {keepalive: "60,10,3"}
              - name: ka-120-10-3
                client: {keepalive: "120,10,3"}
            faults:
              - crash
              - reboot:30
            expectations:
              - {policy: ka-60-10-3, fault: crash, outcome: detected}
              - {policy: ka-120-10-3, fault: crash, outcome: detected}
              - {policy: ka-60-10-3, fault: reboot:30, outcome: detected}
              - {policy: ka-120-10-3, fault: reboot:30, outcome: detected}
            """

        @Test func aKilledTwoGuestRunRendersWithReportAndMerge() throws {
            _ = try VirtualTimePrerequisites.requireKernel()
            let directory = try makeTemporaryDirectory(in: "/tmp", prefix: "keepalive-lab-interrupt-")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let labPath = "\(directory)/virt.yaml"
            try Self.lab.write(toFile: labPath, atomically: true, encoding: .utf8)
            let out = "\(directory)/run"

            let firstLine = try Leftovers.checked { () -> String in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: BackendPrerequisites.binary!)
                process.arguments = ["run", labPath, "--backend", "uml", "--guests", "2", "--parallel", "1", "--out", out]
                let err = Pipe()
                process.standardError = err
                process.standardOutput = FileHandle.nullDevice
                try process.run()
                // Killed the moment the first trial is reported: the guests have 39 trials each to go.
                var buffer = Data()
                var line = ""
                while line.isEmpty {
                    let chunk = err.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    buffer.append(chunk)
                    let text = String(decoding: buffer, as: UTF8.self)
                    line = text.split(separator: "\n").first { $0.contains("] [1/40] ") }.map(String.init) ?? ""
                }
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return line
            }
            #expect(!firstLine.isEmpty, "no progress line before the run ended")
            // Wall time as "elapsed", the guest's clock apart: "(elapsed 1s wall, ETA 2s; virtual 2m33s)".
            #expect(firstLine.contains("(elapsed ") && firstLine.contains(" wall, ETA ") && firstLine.contains("; virtual "), "\(firstLine)")

            let report = try LabCommand.run(["report", out], setpriv: nil, timeout: 60)
            #expect(report.0 == 0, "report of the interrupted run exited \(report.0): \(report.2)\(report.1)")
            #expect(report.1.contains("NOT RUN (interrupted)"), "\(report.1)")
            #expect(!report.1.contains("FAIL "), "\(report.1)")
            let (records, damaged) = try RunDirectory(path: out).readRecords()
            #expect(damaged.isEmpty && !records.isEmpty && records.count < 80, "\(records.count) records")
            let markdown = try String(contentsOfFile: "\(out)/report.md", encoding: .utf8)
            #expect(markdown.contains("| Trials | \(records.count) in "), "the header counts the guests' trials")

            let merged = try LabCommand.run(["merge", out, "--out", "\(directory)/merged"], setpriv: nil, timeout: 60)
            #expect(merged.0 == 0 && merged.1.contains("NOT RUN (interrupted)"), "merge: \(merged.2)\(merged.1)")
        }
    }
}
