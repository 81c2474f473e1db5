import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// Virtual time for real: the built binary runs trials inside the lab kernel (UML 6.12 with
/// time-travel=inf-cpu), where hours of keepalive timers pass in seconds of wall time. Serialized:
/// each test also checks that no guest, namespace or temporary directory is left behind.
///
/// Needs the lab kernel (`keepalive-lab kernel build`; `.ci/run` builds it). Without one the suite
/// is skipped with the reason — except in CI as root, where a missing kernel fails it.
/// Nested in BackendTests: UML guests and the leftover checks must not overlap with that suite's.
extension BackendTests {
@Suite(.serialized, .enabled(if: CIGate.runs(VirtualTimePrerequisites.missing), Comment(rawValue: VirtualTimePrerequisites.missing ?? "")))
struct VirtualTimeTests {
    /// Linux's defaults, unscaled: 7200 s idle, 9 probes 75 s apart, against a silent B.
    @Test func linuxDefaultsFindADeadPeerAfterTwoHoursInSeconds() throws {
        let kernel = try VirtualTimePrerequisites.requireKernel()
        let started = Date()
        let r = try Leftovers.checked {
            try LabCommand.json(["trial", "--clock", "virtual", "--sysctl-defaults", "--fault", "crash", "--deadline", "9000"],
                                timeout: 600)
        }
        let wall = Date().timeIntervalSince(started)
        print("virtual-time 7200,75,9 crash trial: \(String(format: "%.2f", wall)) s wall, since last rx "
              + "\((r["since_last_rx_s"] as? Double).map { String(format: "%.3f", $0) } ?? "?") s virtual")
        #expect(r["backend"] as? String == "uml")
        #expect(r["clock"] as? String == "virtual")
        #expect(r["kernel"] as? String == kernel.info.release)
        #expect(r["kernel_hz"] as? Int == kernel.info.hz)
        #expect(r["outcome"] as? String == "detected")
        #expect(r["errno"] as? String == "ETIMEDOUT")
        #expect(r["probes_sent"] as? Int == 9, "9 probes in the capture")
        #expect(r["probe_replies"] as? Int == 0)
        let since = try #require(r["since_last_rx_s"] as? Double)
        let window = TimerWheelWindow.keepaliveAbort(idle: 7200, interval: 75, count: 9, hz: kernel.info.hz)
        #expect(window.contains(since), "since last rx \(since) s, the kernel allows \(window) at HZ=\(kernel.info.hz)")
    }

    /// An AWS-like NAT forgets the flow after 350 s; 700 s of silence, then a request.
    @Test func natIdleAtRealScaleBreaksWithoutKeepaliveAndSurvivesWithIt() throws {
        _ = try VirtualTimePrerequisites.requireKernel()
        let none = try Leftovers.checked {
            try LabCommand.json(["trial", "--clock", "virtual", "--fault", "nat-idle:350", "--silence", "700", "--deadline", "820"],
                                timeout: 600)
        }
        #expect(none["clock"] as? String == "virtual")
        #expect(none["outcome"] as? String == "broken", "no keepalive: \(none["outcome"] ?? "?") \(none["notes"] ?? "")")
        let tuned = try Leftovers.checked {
            try LabCommand.json(["trial", "--clock", "virtual", "--keepalive", "60,10,6", "--fault", "nat-idle:350",
                                 "--silence", "700", "--deadline", "820"], timeout: 600)
        }
        #expect(tuned["outcome"] as? String == "survived", "keepalive 60,10,6: \(tuned["outcome"] ?? "?") \(tuned["notes"] ?? "")")
        // A probe (and its answer) every 60 s of silence kept R's entry fresh.
        #expect((tuned["probes_sent"] as? Int ?? 0) >= 11)
    }

    /// Virtual time has no host-scheduling noise: the same trial twice reads the same instants.
    @Test func theSameVirtualTrialTwiceGivesIdenticalTimings() throws {
        _ = try VirtualTimePrerequisites.requireKernel()
        let runs = try (0..<2).map { _ in
            try Leftovers.checked {
                try LabCommand.json(["trial", "--clock", "virtual", "--keepalive", "2,1,3", "--fault", "crash", "--deadline", "12"],
                                    timeout: 300)
            }
        }
        // Identical up to a handful of 256 ns clock reads (CrossValidation.clockReadSlack): the
        // harness's threads and the host's I/O interleave differently; nothing else may vary.
        let slack = CrossValidation.clockReadSlack
        for key in ["since_last_rx_s", "detection_latency_s", "wire_abort_s"] {
            let a = try #require(runs[0][key] as? Double), b = try #require(runs[1][key] as? Double)
            print("determinism \(key): \(a) vs \(b) (Δ \(abs(a - b) * 1e9) ns)")
            #expect(abs(a - b) <= slack, "\(key): \(a) vs \(b)")
        }
        let probes = runs.map { ($0["timeline"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "keepalive_probe" }
            .compactMap { $0["t"] as? Double } }
        #expect(probes[0].count == 3 && probes[1].count == 3, "probe instants: \(probes[0]) vs \(probes[1])")
        #expect(zip(probes[0], probes[1]).allSatisfy { abs($0 - $1) <= slack }, "probe instants: \(probes[0]) vs \(probes[1])")
    }

    /// A lab that needs virtual time refuses a backend without it, before building anything.
    @Test func virtualTimeIsRefusedOutsideTheUMLBackend() throws {
        let (status, _, err) = try LabCommand.run(["trial", "--clock", "virtual", "--backend", "host", "--fault", "crash"],
                                                  asNobody: false, timeout: 60)
        #expect(status == 3)
        #expect(err.contains("only the uml backend has"), "stderr: \(err)")
    }
}

}

/// The timer wheel's window for a silent-peer abort: each of the 1 + count timers (idle, then
/// count × interval) fires no earlier than a tick before its instant and at most its level's
/// granularity late (kernel/time/timer.c, calc_wheel_index); lateness accumulates across re-arms.
enum TimerWheelWindow {
    static func granularityJiffies(delta: Int) -> Int {
        var level = 0
        while level < 8 && delta >= (63 << (3 * level)) { level += 1 }
        return 1 << (3 * level)
    }

    static func keepaliveAbort(idle: Int, interval: Int, count: Int, hz: Int) -> ClosedRange<Double> {
        let tick = 1 / Double(hz)
        let nominal = Double(idle + count * interval)
        let late = Double(granularityJiffies(delta: idle * hz)) * tick
            + Double(count) * (Double(granularityJiffies(delta: interval * hz)) + 1) * tick
        return (nominal - tick)...(nominal + late + 0.004)
    }
}

enum VirtualTimePrerequisites {
    /// Why the virtual-time tests cannot run here, or nil.
    static let missing: String? = {
        if PeerBinary.path == nil { return "no keepalive-lab executable (run `swift build`)" }
        guard let kernel = LabKernel.find() else {
            return "no lab kernel is built (looked in \(LabKernel.searchDirectories.joined(separator: ", "))): "
                + "run `\(LabKernel.buildCommand())` (scripts/build-lab-kernel)"
        }
        guard kernel.info.timeTravel else { return "the lab kernel in \(kernel.directory) has no time-travel support" }
        return nil
    }()

    static func requireKernel() throws -> LabKernelBuild {
        if let missing { throw LabCommand.Failure(description: "virtual time cannot be tested: \(missing)") }
        return try #require(LabKernel.find())
    }
}

extension BackendTests {
/// The stall watchdog, with a process that spins on purpose.
@Suite(.serialized, .enabled(if: CIGate.runs(VirtualTimePrerequisites.missing), Comment(rawValue: VirtualTimePrerequisites.missing ?? "")))
struct VirtualTimeStallTests {
    @Test func aBusyProcessStopsTheGuestWithAnErrorNamingIt() throws {
        _ = try VirtualTimePrerequisites.requireKernel()
        let error = try Leftovers.checked { () -> UMLError? in
            do {
                _ = try UMLMachine.run(arguments: ["spin"],
                                       options: UMLOptions(bootTimeout: 30, kernel: .lab(hz: nil), clock: .virtual, stallSeconds: 3),
                                       timeout: 120, output: CapturedOutput().sink, executable: BackendPrerequisites.binary!)
                return nil
            } catch let error as UMLError {
                return error
            }
        }
        guard case .clockStalled(_, let detail, _) = try #require(error, "a spinning guest must be stopped") else {
            Issue.record("expected a stalled clock, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("spin") && detail.contains("state R"), "the busy process is named: \(detail)")
    }
}
}
