import CKeepaliveShim
import Foundation

/// The lab's network: client host A, middle box R (router, later NAT/firewall/impairment), server
/// host B, each in its own network namespace, joined by two veth pairs.
///
/// ```
///   A eth0 198.18.1.2/24 ── r-a 198.18.1.1/24  R  r-b 198.18.2.1/24 ── eth0 198.18.2.2/24 B
/// ```
/// Every trial has its own three namespaces, so all trials share these addresses and names.
/// Neighbours are permanent: no ARP traffic in captures, and a dead B never makes R answer with a
/// neighbour-failure ICMP on its own. Requires CAP_NET_ADMIN and CAP_SYS_ADMIN.
// @unchecked: namespaces and netlink sockets replaced by rebootB/teardown under `lock`; libnl sockets (C pointers) inside.
public final class Topology: @unchecked Sendable {
    public enum Host: String, Sendable { case a, r, b }

    public static let aAddress = try! IPv4Interface("198.18.1.2/24")
    public static let raAddress = try! IPv4Interface("198.18.1.1/24")
    public static let rbAddress = try! IPv4Interface("198.18.2.1/24")
    public static let bAddress = try! IPv4Interface("198.18.2.2/24")
    /// Both lab subnets; hosts route only this, never a default route.
    public static let labNetwork = try! IPv4Interface("198.18.0.0/15")
    public static let aMAC = try! MACAddress("02:00:c6:12:01:02")
    public static let raMAC = try! MACAddress("02:00:c6:12:01:01")
    public static let rbMAC = try! MACAddress("02:00:c6:12:02:01")
    public static let bMAC = try! MACAddress("02:00:c6:12:02:02")
    /// Interface names, and the ifindexes they get on creation (lo is 1 in a new namespace).
    public static let hostInterface = "eth0", rToA = "r-a", rToB = "r-b"
    static let hostIfindex: Int32 = 2, raIfindex: Int32 = 2, rbIfindex: Int32 = 3

    public let id: LabID
    public private(set) var a: NetworkNamespace
    public private(set) var r: NetworkNamespace
    public private(set) var b: NetworkNamespace
    public private(set) var netlinkA: NetlinkSocket?
    public private(set) var netlinkR: NetlinkSocket?
    public private(set) var netlinkB: NetlinkSocket?
    /// How many times B was rebooted: B's namespace name carries it (…-b, …-b1, …-b2).
    public private(set) var bGeneration = 0
    private var tornDown = false
    private let lock = NSLock()

    /// Builds the whole topology or nothing: a failure half-way tears down what exists.
    public static func build(id: LabID) throws -> Topology {
        var made: [NetworkNamespace] = []
        do {
            let (a, nlA) = try makeHost(id.namespaceName(.a))
            made.append(a)
            let (r, nlR) = try makeHost(id.namespaceName(.r))
            made.append(r)
            let (b, nlB) = try makeHost(id.namespaceName(.b))
            made.append(b)
            let topology = Topology(id: id, a: a, r: r, b: b, nlA: nlA, nlR: nlR, nlB: nlB)
            made.removeAll()
            do {
                try topology.wire()
            } catch {
                topology.teardown()
                throw error
            }
            TopologyRegistry.shared.add(topology)
            return topology
        } catch {
            for ns in made { ns.delete() }
            throw error
        }
    }

    private init(id: LabID, a: NetworkNamespace, r: NetworkNamespace, b: NetworkNamespace,
                 nlA: NetlinkSocket, nlR: NetlinkSocket, nlB: NetlinkSocket) {
        self.id = id
        self.a = a
        self.r = r
        self.b = b
        netlinkA = nlA
        netlinkR = nlR
        netlinkB = nlB
    }

    deinit { teardown() }

    /// A namespace with lo up. The netlink socket is opened on the creating thread, inside. No
    /// sysctl is written here: each link is readied through netlink before it goes up
    /// (`prepareLink`: no IPv6 link-local — router solicitations and DAD would only add noise to
    /// captures — and forwarding on R's two ports), because /proc/sys gets slower with every
    /// namespace on the machine.
    private static func makeHost(_ name: String) throws -> (NetworkNamespace, NetlinkSocket) {
        var socket: NetlinkSocket?
        let ns = try NetworkNamespace.create(named: name) {
            let made = try NetlinkSocket(namespaceName: name)
            try made.setLink("lo", up: true)
            socket = made
        }
        return (ns, socket!)
    }

    private func wire() throws {
        guard let nlA = netlinkA, let nlR = netlinkR, let nlB = netlinkB else { return }
        try nlR.createVeth(
            VethEnd(name: Self.rToA, mac: Self.raMAC, ifindex: Self.raIfindex),
            peer: VethEnd(name: Self.hostInterface, namespace: a, mac: Self.aMAC, ifindex: Self.hostIfindex))
        try nlR.createVeth(
            VethEnd(name: Self.rToB, mac: Self.rbMAC, ifindex: Self.rbIfindex),
            peer: VethEnd(name: Self.hostInterface, namespace: b, mac: Self.bMAC, ifindex: Self.hostIfindex))
        for (port, ifindex) in [(Self.rToA, Self.raIfindex), (Self.rToB, Self.rbIfindex)] {
            try nlR.prepareLink(port, ifindex: ifindex, ipv4Forwarding: true)
            try nlR.setLink(port, ifindex: ifindex, up: true)
        }
        try nlR.addAddress(Self.raAddress, ifindex: Self.raIfindex, label: Self.rToA)
        try nlR.addAddress(Self.rbAddress, ifindex: Self.rbIfindex, label: Self.rToB)
        try nlR.addPermanentNeighbour(Self.aAddress.address, mac: Self.aMAC, ifindex: Self.raIfindex)
        try nlR.addPermanentNeighbour(Self.bAddress.address, mac: Self.bMAC, ifindex: Self.rbIfindex)
        try Self.configureHost(nlA, address: Self.aAddress, router: Self.raAddress.address, routerMAC: Self.raMAC)
        try Self.configureHost(nlB, address: Self.bAddress, router: Self.rbAddress.address, routerMAC: Self.rbMAC)
    }

    private static func configureHost(_ nl: NetlinkSocket, address: IPv4Interface, router: IPv4Address,
                                      routerMAC: MACAddress) throws {
        try nl.prepareLink(hostInterface, ifindex: hostIfindex, ipv4Forwarding: false)
        try nl.setLink(hostInterface, ifindex: hostIfindex, up: true)
        try nl.addAddress(address, ifindex: hostIfindex, label: hostInterface)
        try nl.addPermanentNeighbour(router, mac: routerMAC, ifindex: hostIfindex)
        try nl.addRoute(to: labNetwork, via: router, ifindex: hostIfindex)
    }

    public func namespace(_ host: Host) -> NetworkNamespace {
        switch host { case .a: return a; case .r: return r; case .b: return b }
    }

    // MARK: Faults on B's side

    /// Cuts B's cable from B's side: B's eth0 goes down, R's r-b loses carrier and silently drops
    /// everything toward B (permanent neighbour: no ARP, so no ICMP from R).
    public func cutB() throws {
        guard let nlB = netlinkB else { return }
        try nlB.setLink(Self.hostInterface, up: false)
    }

    /// Cuts A's cable from A's side (as `cutB` does for B): A's eth0 goes down, R's r-a loses
    /// carrier and silently drops everything toward A.
    public func cutA() throws {
        guard let nlA = netlinkA else { return }
        try nlA.setLink(Self.hostInterface, up: false)
    }

    /// Power-cycles B: a fresh namespace takes over B's eth0 (same MAC, same address, no sockets)
    /// and the old B — with every process and socket in it — is destroyed. R's side never changes,
    /// so R never loses its route to B. Processes still in the old B are killed (they are the lab's).
    ///
    /// Safe against a concurrent `teardown` (SIGINT arrives on the signal queue): the swap of B is
    /// made under the topology's lock, and a reboot that finds the topology torn down removes the
    /// fresh namespace instead of leaving it behind.
    public func rebootB() throws {
        let (name, currentB): (String, NetlinkSocket?) = try lock.withLock {
            guard !tornDown else { throw LabNetworkError.tornDown(id.description) }
            bGeneration += 1
            return (id.namespaceName(.b, generation: bGeneration), netlinkB)
        }
        let (fresh, nlFresh) = try Self.makeHost(name)
        do {
            try currentB?.moveLink(Self.hostInterface, to: fresh)
            try Self.configureHost(nlFresh, address: Self.bAddress, router: Self.rbAddress.address,
                                   routerMAC: Self.rbMAC)
        } catch {
            fresh.delete()
            throw error
        }
        let old: NetworkNamespace? = lock.withLock {
            guard !tornDown else { return nil }
            let old = b
            b = fresh
            netlinkB = nlFresh
            return old
        }
        guard let old else {
            Self.destroy(fresh)
            throw LabNetworkError.tornDown(id.description)
        }
        Self.destroy(old)
    }

    // MARK: Teardown

    /// Kills what runs in the namespaces, deletes the veths and the namespaces. Idempotent.
    ///
    /// Finding what runs in a namespace means a stat of /proc/PID/ns/net for every process on the
    /// machine, three times per topology: with hundreds of trials at once that scan was quadratic
    /// (11 % of the harness's CPU at 100 trials). A caller that started every process it put in
    /// the namespaces and has reaped them all passes `onlyReapedProcesses: true` to skip it.
    public func teardown(onlyReapedProcesses: Bool = false) {
        let namespaces: [NetworkNamespace] = lock.withLock {
            guard !tornDown else { return [] }
            tornDown = true
            return [a, r, b]
        }
        guard !namespaces.isEmpty else { return }
        // The veths go with the namespaces: the kernel destroys them in its own cleanup work, so
        // deleting them here first would only wait for RCU grace periods (~25 ms each).
        lock.withLock {
            netlinkA = nil
            netlinkR = nil
            netlinkB = nil
        }
        for ns in namespaces {
            if onlyReapedProcesses { ns.delete() } else { Self.destroy(ns) }
        }
        TopologyRegistry.shared.remove(self)
    }

    static func destroy(_ ns: NetworkNamespace) {
        ProcessReaper.killAll(ns.pids())
        ns.delete()
    }
}

/// Identifies a run and a trial; both go into every namespace name:
/// `kal-<run>-<trial>-<host>`, so `ip netns list` tells which run owns what.
public struct LabID: Sendable, Hashable, CustomStringConvertible {
    public static let prefix = "kal-"
    public let run: String
    public let trial: String

    public init(run: String, trial: String) throws {
        for (label, part) in [("run id", run), ("trial id", trial)] {
            guard !part.isEmpty, part.utf8.count <= 16,
                  part.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) }) else {
                throw LabNetworkError.invalidName(part, reason: "a \(label) has 1…16 characters from [0-9a-z]")
            }
        }
        self.run = run
        self.trial = trial
    }

    /// A random 8-hex-digit run id.
    public static func newRunID() -> String {
        let value = UInt32.random(in: 0...UInt32.max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    public func namespaceName(_ host: Topology.Host, generation: Int = 0) -> String {
        "\(Self.prefix)\(run)-\(trial)-\(host.rawValue)\(generation == 0 ? "" : String(generation))"
    }

    public var description: String { "\(run)/\(trial)" }

    /// The run id in a lab namespace name, or nil if the name is not a lab's.
    public static func runID(inNamespaceName name: String) -> String? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dash = rest.firstIndex(of: "-") else { return nil }
        return String(rest[..<dash])
    }
}
