import KeepaliveNet

/// What happens to B (or to the path to it) at the fault instant: the value results, specs and
/// lab files carry (Codable as its text form). Everything about a kind lives in its type in this
/// folder (FaultKind.swift says what a type owns); `kind` hands each case to it.
public enum Fault: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Nothing happens: B stays healthy (a baseline; a closed connection is a false positive).
    case none
    /// B's host dies silently: its cable is cut, then the server is killed. Nothing from B again.
    case crash
    /// A's host dies silently: its cable is cut, then the client is killed. The server in B is the
    /// side that has to notice (real programs only: the built-in peers detect on A).
    case crashClient
    /// As crash, but R answers for the dead host with ICMP host-unreachable.
    case crashICMP
    /// Crash, then after `downtime` seconds a fresh B (same IP and MAC, no connection state).
    case reboot(downtime: Double)
    /// The server process is killed; B's kernel stays up and closes the connection (FIN/RST).
    case kill
    /// The server process is stopped (SIGSTOP); B's kernel still answers keepalive probes.
    case freeze
    /// R drops `percent` % of the packets going `direction`, from the fault to the end of the
    /// trial; B stays healthy.
    case loss(percent: Double, direction: ImpairmentDirection)
    /// R drops everything going `direction` for `seconds`, then heals; B stays healthy.
    case partition(seconds: Double, direction: ImpairmentDirection)
    /// R is a NAT / stateful firewall for A whose conntrack forgets a connection idle for `timeout`
    /// seconds; the connection goes silent, then the client sends. B stays healthy.
    case natIdle(timeout: Int, mode: NATIdleMode)

    /// Parses any kind's text form (`crash`, `reboot:3`, `loss:30,a2b`, …; FaultKinds.all lists them).
    public init(parsing text: String) throws {
        self = try FaultKinds.parse(text)
    }

    /// The kind's type, which owns parsing, injection, stepping, durations and phrases.
    var kind: any FaultKind {
        switch self {
        case .none: return NoFault()
        case .crash: return CrashFault()
        case .crashICMP: return CrashICMPFault()
        case .crashClient: return CrashClientFault()
        case .reboot(let downtime): return RebootFault(downtime: downtime)
        case .kill: return KillFault()
        case .freeze: return FreezeFault()
        case let .loss(percent, direction): return LossFault(percent: percent, direction: direction)
        case let .partition(seconds, direction): return PartitionFault(seconds: seconds, direction: direction)
        case let .natIdle(timeout, mode): return NATIdleFault(timeout: timeout, mode: mode)
        }
    }

    /// The registry (FaultKinds): every kind, in the order help and errors list them.
    static let allKinds: [any FaultKind.Type] = [
        CrashFault.self, CrashICMPFault.self, RebootFault.self, KillFault.self, FreezeFault.self, NoFault.self,
        CrashClientFault.self, LossFault.self, PartitionFault.self, NATIdleFault.self,
    ]

    public var description: String { kind.text }

    /// Where the fault strikes. The predicates below, and where ladders and diagrams draw the
    /// fault, all follow from it: each kind says it once, in its type.
    public enum Site: Sendable, Equatable {
        /// Nowhere: a baseline, everything stays healthy.
        case nowhere
        /// B's host goes down: nothing answers segments sent to it until it is back (if ever).
        case peerHost
        /// B's server process; B's kernel stays up.
        case peerProcess
        /// A's host goes down: the server in B is the side that has to notice.
        case clientHost
        /// R misbehaves (drops, forgets); both hosts stay healthy.
        case router
    }

    public var site: Site { kind.site }

    /// True when B's host or path is broken (so closing the connection is the right answer); for
    /// crash-client, A's host (the server closing its side is the right answer).
    public var peerIsDead: Bool { site != .nowhere && site != .router }

    /// True while B's host is gone: segments sent to it are not answered by anyone.
    var takesHostDown: Bool { site == .peerHost }

    /// The side whose kernel (or program) has to notice: B for crash-client, else A.
    var detectingHost: String { site == .clientHost ? "B" : "A" }

    /// The direction R impairs for loss and partition; nil for the other faults.
    var impairmentDirection: ImpairmentDirection? { kind.impairmentDirection }

    /// The fault needs an impairment engine in R.
    public var usesImpairment: Bool { impairmentDirection != nil }

    /// The fault installs nftables rules in R itself (R answering for a dead B, R as NAT/firewall),
    /// whatever engine impairs the link.
    var installsRulesInR: Bool { kind.installsRulesInR }

    /// What the fault did, as a reader says it.
    var reportPhrase: String { kind.reportPhrase }

    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    // Codable as its text form, so results and lab files read naturally.
    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
