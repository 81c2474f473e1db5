import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// The users' own environment, for real: the default lab (`Labs/seed.yaml`, one trial per cell) in
/// what `docker run --cap-add NET_ADMIN` gives (root with only CAP_NET_ADMIN in the bounding,
/// inheritable and ambient sets: no namespace of its own, no user namespace — `auto` must reach
/// the uml backend and its lab kernel, which has nftables for the NAT cells), and as uid 65534 with
/// no capabilities at all. All six expectations must pass, and no library's raw output may reach
/// stderr. Root only (setpriv hands out capabilities it has); nested in BackendTests so the leftover
/// checks of the two suites do not see each other's guests.
extension BackendTests {
    @Suite(.serialized, .enabled(if: CIGate.runs(BackendPrerequisites.rootlessMissing), Comment(rawValue: BackendPrerequisites.rootlessMissing ?? "")))
    struct ContainerEnvironmentTests {
        /// Auto reaches the uml backend here, whose nat-idle cells need the lab kernel (Debian's UML
        /// has no nftables ip family): without one this skips, naming the command that builds it.
        @Test(.enabled(if: CIGate.runs(VirtualTimePrerequisites.missing), Comment(rawValue: VirtualTimePrerequisites.missing ?? "")))
        func netAdminOnlyRootPassesTheDefaultLab() throws {
            try runSeed(as: UserNamespaceRouteTests.netAdminOnly, label: "root with CAP_NET_ADMIN only", expectBackend: "uml")
        }

        @Test func unprivilegedUserPassesTheDefaultLab() throws {
            try runSeed(as: UserNamespaceRouteTests.nobody, label: "uid 65534 without capabilities", expectBackend: nil)
        }

        func runSeed(as setpriv: [String], label: String, expectBackend: String?) throws {
            let doctor = try Leftovers.checked { try UserNamespaceRouteTests.run(setpriv, ["doctor", "--json"]) }
            let report = try UserNamespaceRouteTests.json(doctor.out)
            let auto = try #require(report["autoBackend"] as? String, "\(label): doctor names no working backend: \(doctor.out)")
            if let expectBackend { #expect(auto == expectBackend, "\(label): auto picks \(auto)") }

            // A directory uid 65534 can write, holding a copy of the lab file it can read.
            let directory = try makeTemporaryDirectory(in: "/tmp", prefix: "keepalive-lab-env-")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            chmod(directory, 0o777)
            let lab = "\(directory)/seed.yaml"
            try FileManager.default.copyItem(atPath: Self.seedLab, toPath: lab)
            chmod(lab, 0o644)
            let started = Date()
            let run = try Leftovers.checked {
                try UserNamespaceRouteTests.run(setpriv, ["run", lab, "--trials", "1", "--out", "\(directory)/out"], timeout: 600)
            }
            print("\(label): seed --trials 1 in \(String(format: "%.1f", Date().timeIntervalSince(started))) s, backend \(auto)")
            #expect(run.status == 0, "\(label): run exited \(run.status)\n\(run.err)\n\(run.out)")
            let passes = run.out.split(separator: "\n").filter { $0.hasPrefix("PASS ") }.count
            #expect(passes == 6, "\(label): \(passes) of 6 expectations passed:\n\(run.out)")
            // libnftables' own report (an "Error:" line, the ruleset echoed, carets) must not show.
            for raw in ["Error: Could not process rule", "table ip ", "^^^^"] {
                #expect(!run.err.contains(raw) && !run.out.contains(raw), "\(label): raw library output on the terminal: \(raw)\n\(run.err)")
            }
        }

        static var seedLab: String {
            // Tests run from the package root (swift test); the lab files sit there.
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Labs/seed.yaml").path
        }
    }
}
