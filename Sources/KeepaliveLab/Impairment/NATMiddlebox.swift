import Foundation
import KeepaliveNet

/// What a stateful middlebox does with a packet that belongs to no connection it remembers.
public enum NATIdleMode: String, Codable, Sendable, CaseIterable {
    /// Silently dropped: the sender retransmits into the void.
    case drop
    /// Answered with a TCP RST, as many firewalls do: the sender learns at once.
    case reset
}

/// Turns R into a NAT and strict stateful firewall for A: A's connections are masqueraded out of
/// r-b, conntrack forgets an established connection after `timeout` idle seconds, does not pick up
/// mid-stream packets (`tcp_loose` 0), and drops — or answers with RST — whatever is INVALID.
/// Must be installed before the connection is opened, so conntrack sees its SYN.
enum NATMiddlebox {
    static let table = "kal_nat"

    static func install(in topology: Topology, timeout: Int, mode: NATIdleMode) throws {
        let invalid = mode == .reset
            ? "ct state invalid meta l4proto tcp counter name \"invalid\" reject with tcp reset\n        ct state invalid counter name \"invalid\" drop"
            : "ct state invalid counter name \"invalid\" drop"
        let script = """
            table ip \(table) {
                counter invalid { }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname "\(Topology.rToB)" ip saddr \(Topology.aAddress.network) masquerade
                }
                chain forward {
                    type filter hook forward priority filter; policy accept;
                    \(invalid)
                    iifname "\(Topology.rToB)" oifname "\(Topology.rToA)" ct state new drop
                }
            }
            """
        do {
            try Nftables.run(script, in: topology.r, operation: "make R a NAT/firewall for A")
            // The rules above load conntrack in R; only then do its per-namespace sysctls exist.
            try topology.r.perform {
                try Sysctl.write("net.netfilter.nf_conntrack_tcp_timeout_established", String(timeout))
                try Sysctl.write("net.netfilter.nf_conntrack_tcp_loose", "0")
                let readBack = try Sysctl.read("net.netfilter.nf_conntrack_tcp_timeout_established")
                guard readBack == String(timeout) else {
                    throw TrialError(message: "R's conntrack established timeout reads \(readBack) s after writing \(timeout) s")
                }
            }
        } catch let error as TrialError {
            throw error
        } catch {
            throw TrialError(message: "set up nat-idle:\(timeout),\(mode.rawValue) in \(topology.r.name): \(error)")
        }
    }

    /// Packets R's firewall found INVALID (dropped or answered with RST).
    static func invalidCount(in topology: Topology) -> Int? {
        guard let text = try? Nftables.run("list counters table ip \(table)", in: topology.r,
                                           operation: "read nat-idle counters") else { return nil }
        return NftablesCounters.parse(text)["invalid"]
    }
}

/// What R's conntrack did with A's connection, as seen by polling its table.
struct ConntrackObservation: Sendable {
    var firstSeen: Double?
    var lastSeen: Double?
    /// Seconds left on the entry at the last poll that saw it.
    var lastTimeoutLeft: UInt32?
    /// Smallest timeout left ever observed (probes that keep the entry fresh keep this high).
    var minTimeoutLeft: UInt32?
    var stateAtLastSeen: String?
    /// First poll that no longer found the entry (it expired between `lastSeen` and this).
    var goneAt: Double?
    /// The entry came back under a new id after it was gone (a new connection picked up).
    var recreatedAt: Double?
    var polls = 0
    var error: String?
}

/// Polls R's conntrack table every `period` seconds for A's connection to B. A dump evicts expired
/// entries on the spot, so "gone" is within one period of the real expiry.
final class ConntrackWatcher: @unchecked Sendable {
    let socket: ConntrackSocket
    let client: IPv4Address
    let server: IPv4Address
    let port: UInt16
    let period: Double
    private let lock = NSLock()
    /// One dump at a time on the socket: replies of two dumps must not interleave.
    private let dumpLock = NSLock()
    private var observation = ConntrackObservation()
    private var stopRequested = false
    private var lastID: UInt32?
    private let done = DispatchSemaphore(value: 0)
    private var started = false

    init(topology: Topology, port: UInt16, period: Double = 0.05) throws {
        socket = try ConntrackSocket.open(in: topology.r)
        client = Topology.aAddress.address
        server = Topology.bAddress.address
        self.port = port
        self.period = period
    }

    func start() {
        started = true
        let thread = Thread { [self] in
            defer { done.signal() }
            while !lock.withLock({ stopRequested }) {
                poll()
                usleep(UInt32(period * 1_000_000))
            }
        }
        thread.name = "conntrack-watch"
        thread.start()
    }

    func stop() -> ConntrackObservation {
        lock.withLock { stopRequested = true }
        if started { done.wait() }
        started = false
        return lock.withLock { observation }
    }

    /// The entry as the table shows it right now (for a snapshot at the fault).
    func current() -> ConntrackEntry? {
        (try? dumpLock.withLock { try socket.dump() })?.first(where: matches)
    }

    private func matches(_ e: ConntrackEntry) -> Bool {
        e.protocolNumber == 6 && e.source == client && e.destination == server && e.destinationPort == port
    }

    private func poll() {
        let entries: [ConntrackEntry]
        do {
            entries = try dumpLock.withLock { try socket.dump() }
        } catch {
            lock.withLock { observation.error = "\(error)" }
            return
        }
        let now = PeerEvent.now()
        let entry = entries.first(where: matches)
        lock.withLock {
            observation.polls += 1
            if let entry {
                if observation.goneAt != nil, observation.recreatedAt == nil, entry.id != lastID {
                    observation.recreatedAt = now
                }
                if observation.goneAt == nil {
                    observation.firstSeen = observation.firstSeen ?? now
                    observation.lastSeen = now
                    observation.lastTimeoutLeft = entry.timeoutSeconds
                    observation.stateAtLastSeen = entry.tcpStateName
                    if let left = entry.timeoutSeconds, entry.tcpState == 3 {
                        observation.minTimeoutLeft = min(observation.minTimeoutLeft ?? left, left)
                    }
                }
                lastID = entry.id
            } else if observation.lastSeen != nil, observation.goneAt == nil {
                observation.goneAt = now
            }
        }
    }
}
