import Foundation
import Testing
@testable import KeepaliveNet

let privilegedSkipReason = Comment(rawValue: Privileges.namespaceUnavailableReason ?? "")

/// Privileged: real namespaces, veths and kernel TCP. Skipped, with the reason, where this process
/// cannot create network namespaces.
@Suite(.enabled(if: Privileges.canCreateNamespaces, privilegedSkipReason))
struct TopologyTests {
    func labNamespaces(of run: String) -> [String] {
        NetworkNamespace.listNames().filter { LabID.runID(inNamespaceName: $0) == run }
    }

    /// Independent witness: iproute2 reading the namespace.
    func ip(_ arguments: String...) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        if !FileManager.default.fileExists(atPath: "/usr/sbin/ip") { process.executableURL = URL(fileURLWithPath: "/sbin/ip") }
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try? process.run()
        process.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test func roundTripWithRealTCP() throws {
        let id = try LabID(run: LabID.newRunID(), trial: "t1")
        let topology = try Topology.build(id: id)
        #expect(Set(labNamespaces(of: id.run)) == [id.namespaceName(.a), id.namespaceName(.r), id.namespaceName(.b)])
        let result = try ConnectivityCheck.exchange(over: topology)
        #expect(result.reply == "pong:ping")
        topology.teardown()
        topology.teardown()  // idempotent
        #expect(labNamespaces(of: id.run).isEmpty)
    }

    @Test func linksSeenFromInside() throws {
        let id = try LabID(run: LabID.newRunID(), trial: "t2")
        let topology = try Topology.build(id: id)
        defer { topology.teardown() }
        let eth0 = try topology.netlinkA!.linkInfo("eth0")
        #expect(eth0.mac == Topology.aMAC)
        #expect(eth0.isUp && eth0.hasCarrier)
        #expect(try topology.netlinkA!.addresses(ifindex: eth0.ifindex) == [Topology.aAddress])
        // The same facts through iproute2, as an independent witness.
        let aName = id.namespaceName(.a)
        #expect(ip("-n", aName, "-4", "addr", "show", "dev", "eth0").contains("198.18.1.2/24"))
        #expect(ip("-n", aName, "route").contains("198.18.0.0/15 via 198.18.1.1 dev eth0"))
        #expect(ip("-n", id.namespaceName(.r), "link", "show", "r-b").contains("02:00:c6:12:02:01"))
        #expect(!ip("-n", aName, "route").contains("default"))
        // No IPv6 on the wire (no link-local address: no DAD, router solicitation or MLD), and R
        // forwards on its two ports only — readied through netlink, not /proc/sys.
        for (ns, dev) in [(aName, "eth0"), (id.namespaceName(.b), "eth0"), (id.namespaceName(.r), "r-a"), (id.namespaceName(.r), "r-b")] {
            #expect(ip("-n", ns, "-6", "addr", "show", "dev", dev).isEmpty, "\(ns) \(dev) has an IPv6 address")
            #expect(ip("-n", ns, "-d", "link", "show", dev).contains("addrgenmode none"))
        }
        #expect(ip("-n", id.namespaceName(.r), "netconf", "show", "dev", "r-a").contains("forwarding on"))
        #expect(ip("-n", aName, "netconf", "show", "dev", "eth0").contains("forwarding off"))

        try topology.netlinkA!.setLink("eth0", up: false)
        #expect(try !topology.netlinkA!.linkInfo("eth0").isUp)
        #expect(try !topology.netlinkR!.linkInfo("r-a").hasCarrier)
        try topology.netlinkA!.setLink("eth0", up: true)
        #expect(try topology.netlinkA!.linkInfo("eth0").isUp)

        let mac = try MACAddress("02:00:c6:12:01:99")
        try topology.netlinkA!.setMAC("eth0", mac)
        #expect(ip("-n", aName, "link", "show", "eth0").contains("02:00:c6:12:01:99"))
    }

    @Test func duplicateVethKeepsOperationAndErrno() throws {
        let id = try LabID(run: LabID.newRunID(), trial: "t3")
        let topology = try Topology.build(id: id)
        defer { topology.teardown() }
        let error = #expect(throws: NetlinkError.self) {
            try topology.netlinkR!.createVeth(VethEnd(name: "r-b"), peer: VethEnd(name: "x-b"))
        }
        #expect(error?.kernelErrno == EEXIST)
        #expect(error?.description.hasPrefix("create veth r-b in \(id.namespaceName(.r)): File exists") == true)
    }

    @Test func netemReportsWhenTheKernelLacksIt() throws {
        let id = try LabID(run: LabID.newRunID(), trial: "t4")
        let topology = try Topology.build(id: id)
        defer { topology.teardown() }
        let ifindex = try topology.netlinkR!.ifindex(of: "r-b")
        do {
            try topology.netlinkR!.setNetem(NetemSpec(lossPercent: 30, delayMs: 10, seed: 7), ifindex: ifindex, label: "r-b")
            // This kernel has sch_netem: the qdisc must really be there.
            #expect(ip("-n", id.namespaceName(.r), "qdisc", "show", "dev", "r-b").contains("netem"))
            try topology.netlinkR!.removeRootQdisc(ifindex: ifindex, label: "r-b")
            #expect(!ip("-n", id.namespaceName(.r), "qdisc", "show", "dev", "r-b").contains("netem"))
        } catch LabNetworkError.netemUnavailable(let underlying) {
            print("netem missing in this kernel, as expected here: \(underlying)")
            #expect(underlying.kernelErrno == ENOENT)
            #expect(LabNetworkError.netemUnavailable(underlying).description.contains("netem is not available in this kernel"))
            #expect(underlying.description.contains("add netem qdisc on r-b"))
        }
    }

    @Test func rebootKeepsAddressAndMACButNoState() throws {
        let id = try LabID(run: LabID.newRunID(), trial: "t5")
        let topology = try Topology.build(id: id)
        defer { topology.teardown() }
        try topology.cutB()
        #expect(try !topology.netlinkR!.linkInfo("r-b").hasCarrier)
        let oldB = topology.b.name
        try topology.rebootB()
        #expect(topology.b.name == id.namespaceName(.b, generation: 1))
        #expect(!NetworkNamespace.listNames().contains(oldB))
        #expect(try topology.netlinkB!.linkInfo("eth0").mac == Topology.bMAC)
        #expect(ip("-n", topology.b.name, "-6", "addr", "show", "dev", "eth0").isEmpty, "the moved eth0 got an IPv6 link-local address")
        #expect(try topology.netlinkR!.linkInfo("r-b").hasCarrier)
        #expect(try ConnectivityCheck.exchange(over: topology, port: 7001).reply == "pong:ping")
    }

    /// The witness: a veth whose ends sit in two namespaces dies with either namespace, in the
    /// kernel's deferred cleanup of the one deleted. Once the barrier returns, the end left in the
    /// surviving namespace must be gone.
    @Test func kernelCleanupBarrierWaitsForDeletedNamespaces() throws {
        let id = try LabID(run: LabID.newRunID(), trial: "t9")
        let survivor = try NetworkNamespace.create(named: id.namespaceName(.r))
        defer { survivor.delete() }
        let doomed = try NetworkNamespace.create(named: id.namespaceName(.a))
        let added = ip("-n", survivor.name, "link", "add", "kal-w0", "type", "veth", "peer", "name", "kal-w1", "netns", doomed.name)
        #expect(added.isEmpty, "ip link add: \(added)")
        #expect(ip("-n", survivor.name, "link", "show", "kal-w0").contains("kal-w0"))
        doomed.delete()
        let waited = try NetworkNamespace.awaitKernelCleanup(timeout: 60)
        #expect(waited >= 0 && waited < 60)
        #expect(ip("-n", survivor.name, "link", "show", "kal-w0").contains("does not exist"),
                "the veth end in the surviving namespace outlived the barrier")
        // Nothing released since: the next barrier has nothing to wait for but its own sentinels.
        #expect(try NetworkNamespace.awaitKernelCleanup(timeout: 60) < 60)
    }

    @Test func cleanupRemovesRunsWhoseOwnerIsGone() throws {
        let run = LabID.newRunID()
        let topology = try Topology.build(id: try LabID(run: run, trial: "t6"))
        // Pretend a crashed process owned it: pid 1's start time never matches this record.
        try RunOwnership.register(run: run)
        try "999999 1\n".write(toFile: RunOwnership.ownerPath(run), atomically: true, encoding: .utf8)
        #expect(!RunOwnership.ownerAlive(run: run))
        let report = Cleanup.run(all: false, namespaceFilter: { LabID.runID(inNamespaceName: $0) == run })
        #expect(report.namespacesRemoved.count == 3)
        #expect(labNamespaces(of: run).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: RunOwnership.ownerPath(run)))
        topology.teardown()
    }

    @Test func cleanupSparesLiveRuns() throws {
        let run = LabID.newRunID()
        let topology = try Topology.build(id: try LabID(run: run, trial: "t7"))
        defer { topology.teardown(); RunOwnership.unregister(run: run) }
        try RunOwnership.register(run: run)
        let report = Cleanup.run(all: false, namespaceFilter: { LabID.runID(inNamespaceName: $0) == run })
        #expect(report.skippedLiveRuns == [run])
        #expect(labNamespaces(of: run).count == 3)
    }
}
