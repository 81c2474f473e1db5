/// What happens to B (or to the path to it) at the fault instant.
///
/// A new kind of fault: its case, parsing and description here (R's faults parse in
/// NetworkFault.swift), its `site` and `reportPhrase` (ladders, diagrams and the predicates follow);
/// what it does at the fault instant in HostFault (hosts) or NetworkFaultDriver (R); what the kernel
/// should do in TrialAnalysis.expectation and how long a trial waits in TrialDuration; for R's faults,
/// what became of the segments in TrialInference.paths. The compiler points at the exhaustive ones.
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

    /// Parses `crash`, `crash-icmp`, `reboot:SECONDS`, `kill`, `freeze`, `none`, and the network
    /// faults `loss:PCT[,DIR]`, `partition:SECONDS[,DIR]`, `nat-idle:SECONDS[,drop|reset]`.
    public init(parsing text: String) throws {
        let valid = "crash, crash-icmp, reboot:SECONDS (0 < SECONDS ≤ 3600), kill, freeze, none, crash-client, "
            + Self.networkFaultSyntax
        switch text {
        case "none": self = .none
        case "crash": self = .crash
        case "crash-icmp": self = .crashICMP
        case "crash-client": self = .crashClient
        case "kill": self = .kill
        case "freeze": self = .freeze
        default:
            if let network = try Self.parseNetworkFault(text) {
                self = network
                return
            }
            guard text.hasPrefix("reboot:") else {
                throw PolicyError.malformed(field: "fault", input: text, expected: valid)
            }
            let value = text.dropFirst("reboot:".count)
            guard let downtime = Double(value), downtime.isFinite else {
                throw PolicyError.malformed(field: "fault reboot downtime", input: String(value), expected: "seconds, e.g. reboot:3")
            }
            guard downtime > 0, downtime <= 3600 else {
                throw PolicyError.outOfRange(field: "fault reboot downtime", value: "\(value) s", rule: "allowed 0 < SECONDS ≤ 3600")
            }
            self = .reboot(downtime: downtime)
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .crash: return "crash"
        case .crashICMP: return "crash-icmp"
        case .crashClient: return "crash-client"
        case .reboot(let downtime): return "reboot:\(Self.format(downtime))"
        case .kill: return "kill"
        case .freeze: return "freeze"
        case .loss, .partition, .natIdle: return networkDescription
        }
    }

    /// Where the fault strikes. The predicates below, and where ladders and diagrams draw the
    /// fault, all follow from it: a new kind of fault says it here once.
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

    public var site: Site {
        switch self {
        case .none: return .nowhere
        case .crash, .crashICMP, .reboot: return .peerHost
        case .kill, .freeze: return .peerProcess
        case .crashClient: return .clientHost
        case .loss, .partition, .natIdle: return .router
        }
    }

    /// True when B's host or path is broken (so closing the connection is the right answer); for
    /// crash-client, A's host (the server closing its side is the right answer).
    public var peerIsDead: Bool { site != .nowhere && site != .router }

    /// True while B's host is gone: segments sent to it are not answered by anyone.
    var takesHostDown: Bool { site == .peerHost }

    /// The side whose kernel (or program) has to notice: B for crash-client, else A.
    var detectingHost: String { site == .clientHost ? "B" : "A" }

    /// The direction R impairs for loss and partition; nil for the other faults.
    var impairmentDirection: ImpairmentDirection? {
        switch self {
        case let .loss(_, direction), let .partition(_, direction): return direction
        default: return nil
        }
    }

    /// The fault needs an impairment engine in R.
    public var usesImpairment: Bool { impairmentDirection != nil }

    /// The fault installs nftables rules in R itself (R answering for a dead B, R as NAT/firewall),
    /// whatever engine impairs the link.
    var installsRulesInR: Bool {
        switch self {
        case .crashICMP, .natIdle: return true
        default: return false
        }
    }

    /// What the fault did, as a reader says it.
    var reportPhrase: String {
        switch self {
        case .none: return "none, B stays healthy"
        case .crash: return "B crashed (silent: nothing sent)"
        case .crashICMP: return "B crashed; R answers for it with ICMP host-unreachable"
        case .crashClient: return "A crashed (silent: nothing sent); the server in B has to notice"
        case .reboot(let downtime): return "B crashed (reboots after \(Fault.format(downtime)) s)"
        case .kill: return "B's server process killed (B's kernel stays up)"
        case .freeze: return "B's server frozen by SIGSTOP (B's kernel stays up)"
        case let .loss(percent, direction):
            return "R drops \(Fault.format(percent)) % of packets (\(direction.rawValue)); B stays healthy"
        case let .partition(seconds, direction):
            return "R drops everything (\(direction.rawValue)) for \(Fault.format(seconds)) s, then heals; B stays healthy"
        case let .natIdle(timeout, mode):
            return "R is a NAT/firewall that forgets connections idle for \(timeout) s (then \(mode == .reset ? "answers with RST" : "drops")); B stays healthy"
        }
    }

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
