import Glibc
import CKeepaliveShim
import Foundation
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

/// Unprivileged, on a scratch directory under /tmp: the placeholders namespaces are mounted on.
@Suite struct PlaceholderTests {
    @Test func placeholdersShareOneInodeAndSurviveTheirLastName() throws {
        var template = Array("/tmp/kal-placeholder-test-XXXXXX".utf8CString)
        let dir = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        func status(_ path: String) -> stat? {
            var st = stat()
            return lstat(path, &st) == 0 ? st : nil
        }
        let names = ["\(dir)/a", "\(dir)/b", "\(dir)/c"]
        for name in names { #expect(kal_placeholder_create(dir, name) == 0, "create \(name): errno \(errno)") }
        let inodes = Set(names.compactMap { status($0)?.st_ino })
        let st = try #require(status(names[0]))
        // O_TMPFILE works on /tmp here (tmpfs or ext4): one inode, one link per name. Where it
        // does not, each name is its own empty file; both are correct placeholders.
        if inodes.count == 1 { #expect(st.st_nlink == 3) } else { #expect(inodes.count == 3) }
        #expect(st.st_size == 0 && (st.st_mode & S_IFMT) == S_IFREG)

        // An existing name: EEXIST, like open(O_CREAT|O_EXCL); nothing replaced.
        #expect(kal_placeholder_create(dir, names[1]) == -1 && errno == EEXIST)

        // Every name removed (the anchor's link count drops to 0; it cannot be linked again): the
        // next placeholder still appears, on a fresh anchor.
        for name in names { unlink(name) }
        #expect(kal_placeholder_create(dir, "\(dir)/d") == 0, "errno \(errno)")
        #expect(status("\(dir)/d")?.st_nlink == 1)
        unlink("\(dir)/d")

        // A directory that does not exist: -1 with ENOENT, not a crash or a file elsewhere.
        #expect(kal_placeholder_create("\(dir)/missing", "\(dir)/missing/x") == -1)
    }
}
