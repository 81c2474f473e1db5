import CNetlink
import Glibc

extension NetlinkSocket {
    /// Adds an IPv4 address to a link (the kernel adds the connected route with it).
    public func addAddress(_ interface: IPv4Interface, ifindex: Int32, label: String) throws {
        guard let made = rtnl_addr_alloc() else { throw SystemCallError("rtnl_addr_alloc", errno: ENOMEM) }
        defer { rtnl_addr_put(made) }
        let local = try NLAddress(ipv4: interface)
        rtnl_addr_set_ifindex(made, ifindex)
        _ = rtnl_addr_set_local(made, local.pointer)
        try request("add address \(interface) to \(label)") { rtnl_addr_add(handle, made, 0) }
    }

    /// IPv4 addresses on a link, as the kernel reports them.
    public func addresses(ifindex: Int32) throws -> [IPv4Interface] {
        var cache: OpaquePointer?
        try request("list addresses") { rtnl_addr_alloc_cache(handle, &cache) }
        defer { nl_cache_free(cache) }
        var result: [IPv4Interface] = []
        var object = nl_cache_get_first(cache)
        while let current = object {
            let addr = current
            if rtnl_addr_get_ifindex(addr) == ifindex, rtnl_addr_get_family(addr) == AF_INET,
               let local = rtnl_addr_get_local(addr) {
                let raw = nl_addr_get_binary_addr(local)!.load(as: UInt32.self)
                result.append(IPv4Interface(address: IPv4Address(value: UInt32(bigEndian: raw)),
                                            prefixLength: Int(rtnl_addr_get_prefixlen(addr))))
            }
            object = nl_cache_get_next(current)
        }
        return result
    }

    /// Adds a route `destination` via `gateway` out of `ifindex`.
    public func addRoute(to destination: IPv4Interface, via gateway: IPv4Address, ifindex: Int32) throws {
        guard let route = rtnl_route_alloc(), let hop = rtnl_route_nh_alloc() else {
            throw SystemCallError("rtnl_route_alloc", errno: ENOMEM)
        }
        defer { rtnl_route_put(route) }
        let dst = try NLAddress(ipv4: destination.network)
        let gw = try NLAddress(ipv4: gateway)
        rtnl_route_set_family(route, UInt8(AF_INET))
        _ = rtnl_route_set_dst(route, dst.pointer)
        rtnl_route_set_table(route, UInt32(RT_TABLE_MAIN.rawValue))
        rtnl_route_set_protocol(route, UInt8(RTPROT_STATIC))
        rtnl_route_nh_set_gateway(hop, gw.pointer)
        rtnl_route_nh_set_ifindex(hop, ifindex)
        rtnl_route_add_nexthop(route, hop)  // the route now owns the hop
        try request("add route \(destination.network) via \(gateway)") {
            rtnl_route_add(handle, route, NLM_F_CREATE | NLM_F_EXCL)
        }
    }

    /// Adds a permanent neighbour entry: no ARP ever runs for it, so a dead peer stays silent
    /// (a failed ARP resolution would make the router send ICMP host-unreachable on its own).
    public func addPermanentNeighbour(_ address: IPv4Address, mac: MACAddress, ifindex: Int32) throws {
        guard let neigh = rtnl_neigh_alloc() else { throw SystemCallError("rtnl_neigh_alloc", errno: ENOMEM) }
        defer { rtnl_neigh_put(neigh) }
        let dst = try NLAddress(ipv4: address)
        let lladdr = try NLAddress(mac: mac)
        rtnl_neigh_set_ifindex(neigh, ifindex)
        _ = rtnl_neigh_set_dst(neigh, dst.pointer)
        rtnl_neigh_set_lladdr(neigh, lladdr.pointer)
        rtnl_neigh_set_state(neigh, Int32(NUD_PERMANENT))
        try request("add neighbour \(address) lladdr \(mac)") {
            rtnl_neigh_add(handle, neigh, NLM_F_CREATE | NLM_F_REPLACE)
        }
    }
}
