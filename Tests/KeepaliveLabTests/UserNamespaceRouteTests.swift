import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// The userns backend under the capability sets CI containers give, for real: the built binary runs
/// under setpriv as root with CAP_NET_ADMIN + CAP_SETFCAP (map-root route), root with CAP_NET_ADMIN +
/// CAP_SETUID + CAP_SETGID (drop-uid), root with CAP_NET_ADMIN only (refused, saying why) and uid
/// 65534 with no capabilities (map-self). Root only (setpriv must start with the capabilities it hands out).
/// Nested in BackendTests so that it is serialized with them: their leftover checks (UML processes,
/// lab namespaces) must not see each other's runs.
extension BackendTests {
    @Suite(.enabled(if: CIGate.runs(BackendPrerequisites.rootlessMissing), Comment(rawValue: BackendPrerequisites.rootlessMissing ?? "")))
    struct UserNamespaceRouteTests {
        static func rootWith(_ caps: String) -> [String] {
            ["--reuid", "0", "--bounding-set=-all,\(caps)", "--inh-caps=-all,\(caps)", "--ambient-caps=-all,\(caps)"]
        }
        static let netAdminSetfcap = rootWith("+net_admin,+setfcap")
        static let netAdminSetuid = rootWith("+net_admin,+setuid,+setgid")
        static let netAdminOnly = rootWith("+net_admin")
        static let nobody = ["--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]

        /// The built binary under `setpriv OPTIONS`, from /tmp; the copy uid 65534 can read when the
        /// options drop to it (or may: drop-uid).
        static func run(_ setpriv: [String], _ arguments: [String], environment: [String: String] = [:],
                        timeout: Double = 120) throws -> (status: Int32, out: String, err: String) {
            let (status, out, err) = try LabCommand.run(arguments, setpriv: setpriv, environment: environment, timeout: timeout)
            return (status, out, err)
        }

        static func json(_ text: String) throws -> [String: Any] {
            let start = try #require(text.firstIndex(of: "{"), "no JSON in: \(text)")
            return try #require(try JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: Any])
        }

        /// `doctor --json` under `setpriv`: its userns backend status.
        static func usernsStatus(_ setpriv: [String]) throws -> [String: Any] {
            let (_, out, err) = try Leftovers.checked { try run(setpriv, ["doctor", "--json"]) }
            let report = try json(out + "\n" + err)
            let backends = try #require(report["backends"] as? [[String: Any]])
            return try #require(backends.first { $0["name"] as? String == "userns" })
        }

        static func routes(_ status: [String: Any]) -> [String: String?] {
            var result: [String: String?] = [:]
            for attempt in status["routes"] as? [[String: Any]] ?? [] {
                if let route = attempt["route"] as? String { result[route] = attempt["refusal"] as? String }
            }
            return result
        }

        static func crashTrial(_ setpriv: [String]) throws -> (status: Int32, out: String, err: String) {
            try Leftovers.checked {
                try run(setpriv, ["trial", "--backend", "userns", "--keepalive", "1,1,2", "--fault", "crash", "--deadline", "10", "--json"])
            }
        }

        static func expectDetected(_ trial: (status: Int32, out: String, err: String)) throws {
            #expect(trial.status == 0, "trial exited \(trial.status): \(trial.err)")
            let r = try json(trial.out)
            #expect(r["backend"] as? String == "userns")
            #expect(r["outcome"] as? String == "detected")
            #expect(r["errno"] as? String == "ETIMEDOUT")
            #expect(r["probes_sent"] as? Int == 2)
        }

        @Test func rootWithSetfcapMapsRootDirectly() throws {
            let status = try Self.usernsStatus(Self.netAdminSetfcap)
            #expect(status["available"] as? Bool == true, "userns: \(status["why"] ?? "")")
            #expect(status["route"] as? String == "map-root")
            #expect(Self.routes(status).keys.sorted() == ["map-root"])
            try Self.expectDetected(try Self.crashTrial(Self.netAdminSetfcap))
        }

        @Test func rootWithSetuidDropsToNobodyFirst() throws {
            let status = try Self.usernsStatus(Self.netAdminSetuid)
            #expect(status["available"] as? Bool == true, "userns: \(status["why"] ?? "")")
            #expect(status["route"] as? String == "drop-uid")
            let refusal = Self.routes(status)["map-root"] ?? nil
            #expect(refusal?.contains("CAP_SETFCAP") == true, "map-root refused for lack of CAP_SETFCAP: \(String(describing: refusal))")
            try Self.expectDetected(try Self.crashTrial(Self.netAdminSetuid))
        }

        @Test func rootWithNetAdminOnlyIsRefusedWithTheMissingCapabilities() throws {
            let status = try Self.usernsStatus(Self.netAdminOnly)
            #expect(status["available"] as? Bool == false)
            #expect(status["route"] == nil)
            let routes = Self.routes(status)
            let mapRoot = routes["map-root"] ?? nil, dropUID = routes["drop-uid"] ?? nil
            #expect(mapRoot?.contains("CAP_SETFCAP") == true, "map-root: \(String(describing: mapRoot))")
            #expect(dropUID?.contains("CAP_SETUID") == true, "drop-uid: \(String(describing: dropUID))")
            let why = status["why"] as? String ?? ""
            #expect(why.contains("CAP_SETFCAP") && why.contains("CAP_SETUID"), "why: \(why)")

            let trial = try Self.crashTrial(Self.netAdminOnly)
            #expect(trial.status != 0)
            #expect(trial.err.contains("CAP_SETFCAP") && trial.err.contains("CAP_SETUID"), "the trial says why: \(trial.err)")
            #expect(!trial.err.contains("cannot become uid"), "no bare uid-change failure: \(trial.err)")
        }

        @Test func nobodyMapsItself() throws {
            let status = try Self.usernsStatus(Self.nobody)
            #expect(status["available"] as? Bool == true, "userns: \(status["why"] ?? "")")
            #expect(status["route"] as? String == "map-self")
            try Self.expectDetected(try Self.crashTrial(Self.nobody))
        }

        /// NLCB=debug would make libnl print every netlink message to stderr; the lab's sockets ignore it.
        /// (NLDBG is read by libnl's load-time constructors, before the lab runs: not covered.)
        @Test func libnlStaysQuietUnderNLCBDebug() throws {
            let (status, out, err) = try Self.run(Self.rootWith("+net_admin,+sys_admin"), ["doctor", "--backend", "host", "--json"],
                                                  environment: ["NLCB": "debug"])
            #expect(status == 0, "doctor --backend host exited \(status): \(err)")
            #expect(try Self.json(out)["canRun"] as? Bool == true)
            #expect(err.isEmpty, "nothing on stderr, got: \(err.prefix(400))")
        }
    }
}
