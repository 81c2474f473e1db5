import Glibc
import Testing
@testable import KeepaliveNet

/// Unprivileged: parsing, validation and error text.
@Suite struct ValidationTests {
    @Test func parsesLabAddresses() throws {
        let interface = try IPv4Interface("198.18.1.2/24")
        #expect(interface.address.description == "198.18.1.2")
        #expect(interface.network.description == "198.18.1.0/24")
        #expect(interface.address.isLabAddress)
        #expect(try IPv4Address("198.19.255.1").isLabAddress)
        #expect(try !IPv4Address("198.20.0.1").isLabAddress)
        #expect(try !IPv4Address("10.0.0.1").isLabAddress)
    }

    @Test(arguments: ["198.18.1/24", "198.18.1.256/24", "198.18.1.2/33", "198.18.1.2", "a.b.c.d/8", "1.2.3.4/-1"])
    func rejectsBadAddresses(_ text: String) {
        #expect(throws: LabNetworkError.self) { try IPv4Interface(text) }
    }

    @Test func parsesMAC() throws {
        #expect(try MACAddress("02:00:C6:12:01:02").description == "02:00:c6:12:01:02")
        #expect(throws: LabNetworkError.self) { try MACAddress("02:00:c6:12:01") }
        #expect(throws: LabNetworkError.self) { try MACAddress("02:00:c6:12:01:zz") }
    }

    @Test func namespaceAndInterfaceNames() throws {
        try NetworkNamespace.validate(name: "kal-0123abcd-t1-a")
        #expect(throws: LabNetworkError.self) { try NetworkNamespace.validate(name: "../etc") }
        #expect(throws: LabNetworkError.self) { try NetworkNamespace.validate(name: "") }
        try NetlinkSocket.validate(interfaceName: "r-b")
        #expect(throws: LabNetworkError.self) { try NetlinkSocket.validate(interfaceName: "sixteen-chars-xx") }
        #expect(throws: LabNetworkError.self) { try NetlinkSocket.validate(interfaceName: "a/b") }
    }

    @Test func labIDsNameNamespaces() throws {
        let id = try LabID(run: "0a1b2c3d", trial: "t7")
        #expect(id.namespaceName(.r) == "kal-0a1b2c3d-t7-r")
        #expect(id.namespaceName(.b, generation: 2) == "kal-0a1b2c3d-t7-b2")
        #expect(LabID.runID(inNamespaceName: "kal-0a1b2c3d-t7-b2") == "0a1b2c3d")
        #expect(LabID.runID(inNamespaceName: "other") == nil)
        #expect(throws: LabNetworkError.self) { try LabID(run: "UPPER", trial: "t") }
        #expect(LabID.newRunID().count == 8)
    }

    @Test func netlinkErrorKeepsEverything() {
        let error = NetlinkError(operation: "create veth r-b in kal-x-r", libnlCode: 6, kernelErrno: EEXIST, extack: "")
        #expect(error.description == "create veth r-b in kal-x-r: File exists (EEXIST)")
        let withExtack = NetlinkError(operation: "add netem qdisc on r-b in kal-x-r", libnlCode: 12,
                                      kernelErrno: ENOENT, extack: "Specified qdisc kind is unknown")
        #expect(withExtack.description.contains("kernel says: Specified qdisc kind is unknown"))
        #expect(LabNetworkError.netemUnavailable(withExtack).description.hasPrefix("netem is not available in this kernel"))
        let local = NetlinkError(operation: "connect", libnlCode: 1, kernelErrno: 0, extack: "")
        #expect(local.description.contains("libnl error 1"))
    }

    @Test func netemRanges() {
        #expect(throws: NetemError.self) { try NetemSpec(lossPercent: 101).validate() }
        #expect(throws: NetemError.self) { try NetemSpec(delayMs: -1).validate() }
        #expect(throws: NetemError.self) { try NetemSpec(reorderPercent: 10).validate() }
        #expect(NetemSpec.probability(100) == -1)
        #expect(NetemSpec.probability(0) == 0)
    }

    @Test func errnoNames() {
        #expect(Errno.name(ETIMEDOUT) == "ETIMEDOUT")
        #expect(Errno.name(ECONNRESET) == "ECONNRESET")
        #expect(Errno.name(4242) == "E4242")
    }
}
