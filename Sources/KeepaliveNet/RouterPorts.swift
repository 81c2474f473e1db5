/// R's two ports, named by where their egress leads. netem acts on egress only, so each direction
/// of the A–B path is impaired on the port it leaves R by: A→B on r-b, B→A on r-a. A's own qdisc is
/// never touched (the kernel would count a local drop as congestion, not loss).
public enum RouterPort: String, CaseIterable, Sendable {
    /// r-b: carries A→B traffic out of R.
    case towardB = "r-b"
    /// r-a: carries B→A traffic out of R.
    case towardA = "r-a"

    public var interfaceName: String { rawValue }

    var ifindex: Int32 { self == .towardB ? Topology.rbIfindex : Topology.raIfindex }
}

extension Topology {
    /// Replaces the root qdisc of one of R's ports with netem. Requires CAP_NET_ADMIN and sch_netem;
    /// throws `LabNetworkError.netemUnavailable` when the kernel has no netem.
    public func setNetem(_ spec: NetemSpec, on port: RouterPort) throws {
        guard let nl = netlinkR else { throw LabNetworkError.notFound("R's netlink socket (topology torn down)") }
        try nl.setNetem(spec, ifindex: port.ifindex, label: port.interfaceName)
    }

    /// Puts the port back on its default qdisc. A port without netem is left as it is.
    public func removeNetem(on port: RouterPort) throws {
        guard let nl = netlinkR else { return }
        try nl.removeRootQdisc(ifindex: port.ifindex, label: port.interfaceName)
    }
}
