/// What happens to B (or to the path to it) at the fault instant.
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

    /// True when B's host or path is broken (so closing the connection is the right answer); for
    /// crash-client, A's host (the server closing its side is the right answer).
    public var peerIsDead: Bool {
        switch self {
        case .none, .loss, .partition, .natIdle: return false
        case .crash, .crashClient, .crashICMP, .reboot, .kill, .freeze: return true
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
