import Foundation
import KeepaliveNet

/// Build + tear down of one A–R–B topology: through libnl (the product), and the same topology
/// built with `ip` commands as a baseline (the only place the lab runs `ip`: it is what is measured).
public enum TopologyBenchmark {
    public struct Figures: Codable, Sendable {
        public var rounds: Int
        public var libnlBuildMs: [Double] = []
        public var libnlTeardownMs: [Double] = []
        public var ipBuildMs: [Double] = []
        public var ipTeardownMs: [Double] = []
        public var ipCommandsPerTopology = 0

        public var libnlTotalMs: [Double] { zip(libnlBuildMs, libnlTeardownMs).map { $0 + $1 } }
        public var ipTotalMs: [Double] { zip(ipBuildMs, ipTeardownMs).map { $0 + $1 } }
    }

    public static func measure(rounds: Int, run: String) throws -> Figures {
        var figures = Figures(rounds: rounds)
        for round in 0..<rounds {
            let id = try LabID(run: run, trial: "n\(round)")
            let t0 = PeerEvent.now()
            let topology = try Topology.build(id: id)
            let t1 = PeerEvent.now()
            topology.teardown()
            let t2 = PeerEvent.now()
            figures.libnlBuildMs.append((t1 - t0) * 1000)
            figures.libnlTeardownMs.append((t2 - t1) * 1000)
        }
        for round in 0..<rounds {
            let id = try LabID(run: run, trial: "i\(round)")
            let (build, teardown) = ipScript(id)
            figures.ipCommandsPerTopology = build.count + teardown.count
            let t0 = PeerEvent.now()
            do {
                for command in build { try ip(command) }
            } catch {
                for command in teardown { try? ip(command) }
                throw error
            }
            let t1 = PeerEvent.now()
            for command in teardown { try ip(command) }
            let t2 = PeerEvent.now()
            figures.ipBuildMs.append((t1 - t0) * 1000)
            figures.ipTeardownMs.append((t2 - t1) * 1000)
        }
        return figures
    }

    /// The topology of `Topology.build`, command by command.
    static func ipScript(_ id: LabID) -> (build: [[String]], teardown: [[String]]) {
        let a = id.namespaceName(.a), r = id.namespaceName(.r), b = id.namespaceName(.b)
        var build: [[String]] = [["netns", "add", a], ["netns", "add", r], ["netns", "add", b]]
        for ns in [a, r, b] {
            build.append(["-n", ns, "link", "set", "lo", "up"])
        }
        build.append(["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for (host, rIf, rAddr, rMAC, hAddr, hMAC) in [
            (a, "r-a", "198.18.1.1/24", Topology.raMAC, "198.18.1.2/24", Topology.aMAC),
            (b, "r-b", "198.18.2.1/24", Topology.rbMAC, "198.18.2.2/24", Topology.bMAC),
        ] {
            build.append(["-n", r, "link", "add", rIf, "address", rMAC.description, "type", "veth", "peer", "name", "eth0",
                          "netns", host, "address", hMAC.description])
            build.append(["-n", r, "addr", "add", rAddr, "dev", rIf])
            build.append(["-n", r, "link", "set", rIf, "up"])
            build.append(["-n", r, "neigh", "replace", String(hAddr.prefix { $0 != "/" }), "lladdr", hMAC.description,
                          "dev", rIf, "nud", "permanent"])
            let gateway = String(rAddr.prefix { $0 != "/" })
            build.append(["-n", host, "link", "set", "eth0", "up"])
            build.append(["-n", host, "addr", "add", hAddr, "dev", "eth0"])
            build.append(["-n", host, "neigh", "replace", gateway, "lladdr", rMAC.description, "dev", "eth0", "nud", "permanent"])
            build.append(["-n", host, "route", "add", "198.18.0.0/15", "via", gateway, "dev", "eth0"])
        }
        return (build, [["netns", "del", a], ["netns", "del", r], ["netns", "del", b]])
    }

    static let ipBinary = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ip"

    /// Spawn + waitpid: Foundation's `Process.waitUntilExit` polls its run loop and would add
    /// tens of milliseconds per command to the baseline. stdout goes to /dev/null.
    static func ip(_ arguments: [String]) throws {
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        guard devNull >= 0 else { throw TrialError(message: "open /dev/null: \(String(cString: strerror(errno)))") }
        defer { close(devNull) }
        let ended: Spawn.Termination
        do {
            ended = try Spawn.run(path: ipBinary, arguments: [ipBinary] + arguments, fds: [0, devNull, 2])
        } catch {
            throw TrialError(message: "spawn \(ipBinary): \(error)")
        }
        guard ended == .exited(0) else {
            throw TrialError(message: "ip \(arguments.joined(separator: " ")) failed: \(ended)")
        }
    }

}
