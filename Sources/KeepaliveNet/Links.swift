import CKeepaliveShim
import CNetlink
import Glibc

/// One end of a veth pair as it should be created.
public struct VethEnd: Sendable {
    public var name: String
    /// Namespace the end lives in; nil means the namespace of the socket that sends the request.
    public var namespace: NetworkNamespace?
    public var mac: MACAddress?
    /// Fixed ifindex (the kernel accepts one on creation): saves a lookup per later request.
    public var ifindex: Int32?
    /// Only honoured on the first end: the kernel opens the peer before pairing it, and opening an
    /// unpaired veth fails with ENOTCONN. Bring the peer up afterwards from its namespace.
    public var up: Bool

    public init(name: String, namespace: NetworkNamespace? = nil, mac: MACAddress? = nil,
                ifindex: Int32? = nil, up: Bool = false) {
        self.name = name
        self.namespace = namespace
        self.mac = mac
        self.ifindex = ifindex
        self.up = up
    }
}

/// Owned `rtnl_link`.
final class RTNLLink {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { rtnl_link_put(pointer) }
}

extension NetlinkSocket {
    /// Interface names are at most 15 bytes (IFNAMSIZ − 1) and cannot contain '/', ':' or spaces.
    public static func validate(interfaceName name: String) throws {
        guard !name.isEmpty, name.utf8.count <= 15 else {
            throw LabNetworkError.invalidName(name, reason: "an interface name has 1…15 bytes")
        }
        guard !name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }), name != ".", name != ".." else {
            throw LabNetworkError.invalidName(name, reason: "an interface name cannot contain '/', ':' or spaces")
        }
    }

    /// Creates a veth pair in one request, each end directly in its namespace (IFLA_NET_NS_FD), so no
    /// end ever appears in the wrong namespace.
    public func createVeth(_ end: VethEnd, peer: VethEnd) throws {
        try Self.validate(interfaceName: end.name)
        try Self.validate(interfaceName: peer.name)
        guard let made = rtnl_link_veth_alloc() else { throw SystemCallError("rtnl_link_veth_alloc", errno: ENOMEM) }
        let link = RTNLLink(made)
        guard let peerPointer = rtnl_link_veth_get_peer(made) else {
            throw SystemCallError("rtnl_link_veth_get_peer", errno: ENOMEM)
        }
        let peerLink = RTNLLink(peerPointer)
        var keep: [NLAddress] = []
        for (spec, pointer) in [(end, link.pointer), (peer, peerLink.pointer)] {
            rtnl_link_set_name(pointer, spec.name)
            if let ns = spec.namespace { rtnl_link_set_ns_fd(pointer, ns.fd) }
            if let index = spec.ifindex { rtnl_link_set_ifindex(pointer, index) }
            if let mac = spec.mac {
                let address = try NLAddress(mac: mac)
                rtnl_link_set_addr(pointer, address.pointer)
                keep.append(address)
            }
        }
        if end.up { rtnl_link_set_flags(link.pointer, UInt32(IFF_UP.rawValue)) }
        let where_ = peer.namespace.map { " (peer \(peer.name) in \($0.name))" } ?? ""
        try request("create veth \(end.name)\(where_)") {
            rtnl_link_add(handle, link.pointer, NLM_F_CREATE | NLM_F_EXCL)
        }
        withExtendedLifetime(keep) {}
    }

    /// The ifindex of a link in this socket's namespace.
    public func ifindex(of name: String) throws -> Int32 {
        var result: OpaquePointer?
        try request("look up link \(name)") { rtnl_link_get_kernel(handle, 0, name, &result) }
        let link = RTNLLink(result!)
        return rtnl_link_get_ifindex(link.pointer)
    }

    /// Current state of a link: ifindex, flags, MAC, operstate.
    public func linkInfo(_ name: String) throws -> LinkInfo {
        var result: OpaquePointer?
        try request("look up link \(name)") { rtnl_link_get_kernel(handle, 0, name, &result) }
        let link = RTNLLink(result!)
        var mac: MACAddress?
        if let addr = rtnl_link_get_addr(link.pointer), nl_addr_get_len(addr) == 6 {
            let bytes = UnsafeRawBufferPointer(start: nl_addr_get_binary_addr(addr), count: 6)
            mac = try? MACAddress(Array(bytes))
        }
        let flags = rtnl_link_get_flags(link.pointer)
        return LinkInfo(
            name: name, ifindex: rtnl_link_get_ifindex(link.pointer), mac: mac,
            isUp: flags & UInt32(IFF_UP.rawValue) != 0,
            hasCarrier: flags & UInt32(IFF_LOWER_UP.rawValue) != 0)
    }

    /// Sets a link administratively up or down ("cut the cable" from that side). A known ifindex
    /// saves a lookup.
    public func setLink(_ name: String, ifindex: Int32? = nil, up: Bool) throws {
        try changeLink(name, ifindex: ifindex, verb: up ? "set link \(name) up" : "set link \(name) down") { change in
            if up {
                rtnl_link_set_flags(change, UInt32(IFF_UP.rawValue))
            } else {
                rtnl_link_unset_flags(change, UInt32(IFF_UP.rawValue))
            }
        }
    }

    /// Readies a link that is still down for the lab's wire, through netlink (IFLA_AF_SPEC) rather
    /// than /proc/sys: no IPv6 link-local address (`IN6_ADDR_GEN_MODE_NONE`, so no DAD, router
    /// solicitation or MLD on the wire) and, with `ipv4Forwarding`, IPv4 forwarding on this device
    /// (what the kernel checks for a packet arriving on it).
    ///
    /// /proc/sys costs what the kernel's dcache makes it cost: every sysctl directory entry of
    /// every network namespace hangs off the same /proc/sys dentries, so each path step of an open
    /// walks one hash-chain entry per namespace on the machine. With 1000 trials (3000
    /// namespaces) the seven sysctl writes of a topology were 52 % of the harness's CPU (perf).
    /// A kernel without IPv6 (EAFNOSUPPORT) gets the IPv4 part alone.
    /// `IN6_ADDR_GEN_MODE_NONE` (linux/if_link.h) and `IPV4_DEVCONF_FORWARDING` (linux/ip.h, which
    /// would collide with glibc's netinet/ip.h if imported): kernel ABI, stable.
    static let addrGenModeNone: UInt8 = 1
    static let ipv4DevconfForwarding: UInt32 = 1

    public func prepareLink(_ name: String, ifindex: Int32? = nil, ipv4Forwarding: Bool) throws {
        do {
            try changeLink(name, ifindex: ifindex, verb: "configure link \(name) (no IPv6 link-local\(ipv4Forwarding ? ", IPv4 forwarding" : ""))") { change in
                _ = rtnl_link_inet6_set_addr_gen_mode(change, Self.addrGenModeNone)
                if ipv4Forwarding { _ = rtnl_link_inet_set_conf(change, Self.ipv4DevconfForwarding, 1) }
            }
        } catch let error as NetlinkError where error.isAddressFamilyNotSupported {
            guard ipv4Forwarding else { return }
            try changeLink(name, ifindex: ifindex, verb: "enable IPv4 forwarding on \(name)") { change in
                _ = rtnl_link_inet_set_conf(change, Self.ipv4DevconfForwarding, 1)
            }
        }
    }

    public func setMAC(_ name: String, _ mac: MACAddress) throws {
        let address = try NLAddress(mac: mac)
        try changeLink(name, verb: "set MAC of \(name) to \(mac)") { rtnl_link_set_addr($0, address.pointer) }
    }

    /// Moves a link into another namespace. The kernel drops its addresses on the way.
    public func moveLink(_ name: String, to namespace: NetworkNamespace) throws {
        try changeLink(name, verb: "move link \(name) to \(namespace.name)") { rtnl_link_set_ns_fd($0, namespace.fd) }
    }

    public func deleteLink(_ name: String) throws {
        guard let made = rtnl_link_alloc() else { throw SystemCallError("rtnl_link_alloc", errno: ENOMEM) }
        let link = RTNLLink(made)
        rtnl_link_set_name(link.pointer, name)
        try request("delete link \(name)") { rtnl_link_delete(handle, link.pointer) }
    }

    /// libnl addresses a change by the original link's ifindex, so the link is looked up first
    /// unless the caller knows it (lo is always ifindex 1 in a namespace).
    private func changeLink(_ name: String, ifindex: Int32? = nil, verb: String,
                            _ edit: (OpaquePointer) -> Void) throws {
        let orig: RTNLLink
        if let known = ifindex ?? (name == "lo" ? 1 : nil) {
            guard let made = rtnl_link_alloc() else { throw SystemCallError("rtnl_link_alloc", errno: ENOMEM) }
            orig = RTNLLink(made)
            rtnl_link_set_ifindex(made, known)
            rtnl_link_set_name(made, name)
        } else {
            var found: OpaquePointer?
            try request("look up link \(name)") { rtnl_link_get_kernel(handle, 0, name, &found) }
            orig = RTNLLink(found!)
        }
        guard let changeMade = rtnl_link_alloc() else { throw SystemCallError("rtnl_link_alloc", errno: ENOMEM) }
        let change = RTNLLink(changeMade)
        edit(change.pointer)
        try request(verb) { rtnl_link_change(handle, orig.pointer, change.pointer, 0) }
    }
}

public struct LinkInfo: Sendable, Equatable {
    public let name: String
    public let ifindex: Int32
    public let mac: MACAddress?
    public let isUp: Bool
    public let hasCarrier: Bool
}
