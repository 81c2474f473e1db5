import CKeepaliveShim
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
/// mid-stream packets (as `tcp_loose` 0 would), and drops — or answers with RST — whatever is
/// INVALID. All nftables (`NATFirewallRules`): no /proc/sys write, so it works where /proc/sys is
/// read-only. Must be installed before the connection is opened, so conntrack sees its SYN.
enum NATMiddlebox {
    static let table = "kal_nat"

    static func install(in topology: Topology, timeout: Int, mode: NATIdleMode) throws {
        let script = NATFirewallRules.script(table: table, timeout: timeout, reset: mode == .reset, inside: Topology.rToA,
                                             outside: Topology.rToB, insideNetwork: "\(Topology.aAddress.network)")
        let readBack: Int?
        do {
            try Nftables.run(script, in: topology.r, operation: "make R a NAT/firewall for A")
            readBack = try NATFirewallRules.establishedTimeout(table: table, in: topology.r)
        } catch {
            throw TrialError(message: "set up nat-idle:\(timeout),\(mode.rawValue) in \(topology.r.name): \(error)")
        }
        guard readBack == timeout else {
            throw TrialError(message: "R's conntrack timeout policy reads \(readBack.map { "\($0) s" } ?? "no established timeout") "
                + "after setting \(timeout) s")
        }
    }

    /// The entry conntrack made for A's connection must run on the policy's timeout: an ESTABLISHED
    /// entry with more time left than that means `ct timeout set` did not reach it (a kernel that
    /// ignores the policy would otherwise turn nat-idle into a 5-day timeout without a word).
    static func checkPolicyApplied(_ entry: ConntrackEntry?, timeout: Int) throws {
        guard let entry, entry.tcpState == 3, let left = entry.timeoutSeconds, Int(left) > timeout else { return }
        throw TrialError(message: "R's conntrack entry for A's connection has \(left) s left while ESTABLISHED, more than the "
            + "nat-idle policy's \(timeout) s: the kernel did not apply the nftables ct timeout policy")
    }

    /// Packets R's firewall found INVALID (dropped or answered with RST).
    static func invalidCount(in topology: Topology) -> Int? {
        guard let text = try? Nftables.run("list counters table ip \(table)", in: topology.r,
                                           operation: "read nat-idle counters") else { return nil }
        return NftablesCounters.parse(text)["invalid"]
    }
}

/// What R's conntrack did with A's connection, as seen by looking at its table.
struct ConntrackObservation: Sendable {
    var firstSeen: Double?
    var lastSeen: Double?
    /// Seconds left on the entry at the last look that saw it.
    var lastTimeoutLeft: UInt32?
    /// Smallest timeout left (ESTABLISHED) seen at a look. Looks are few, so this is an upper bound
    /// of the least the entry had; the wire tells that exactly (longest pause between packets).
    var minTimeoutLeft: UInt32?
    var stateAtLastSeen: String?
    /// First look that no longer found the entry (it expired between `lastSeen` and this).
    var goneAt: Double?
    /// The entry came back under a new id after it was gone (a new connection picked up).
    var recreatedAt: Double?
    /// Table dumps made.
    var polls = 0
    var error: String?
}

/// Watches R's conntrack table for A's connection to B without a polling period. It looks (dumps
/// the table) when ctnetlink reports an event (the entry appearing, changing state, going), and
/// when the entry's timeout can have run out: a dump evicts expired entries on the spot, so the
/// look at the expiry instant sees the entry go. ctnetlink gives the time left in whole seconds;
/// looks whole seconds before a candidate instant tell on which side of it the expiry lies, which
/// narrows it to `precision` while it is more than a second away.
// @unchecked: state guarded by `lock`, the wake pipe and the watcher thread handed over through the `done` semaphore.
final class ConntrackWatcher: @unchecked Sendable {
    let socket: ConntrackSocket
    let events: ConntrackEvents
    let client: IPv4Address
    let server: IPv4Address
    let port: UInt16
    /// How closely "gone" follows the real expiry.
    let precision: Double
    private let lock = NSLock()
    /// One dump at a time on the socket: replies of two dumps must not interleave.
    private let dumpLock = NSLock()
    private var observation = ConntrackObservation()
    private var lastID: UInt32?
    /// Where the entry's expiry lies (monotonic seconds, [lo, hi)), as far as looks have told.
    private var expiry: (lo: Double, hi: Double)?
    private var wake: (read: Int32, write: Int32) = (-1, -1)
    private let done = DispatchSemaphore(value: 0)
    private var started = false

    init(topology: Topology, port: UInt16, precision: Double = 0.02) throws {
        socket = try ConntrackSocket.open(in: topology.r)
        events = try ConntrackEvents.open(in: topology.r)
        client = Topology.aAddress.address
        server = Topology.bAddress.address
        self.port = port
        self.precision = precision
        var fds: [Int32] = [-1, -1]
        guard kal_pipe_cloexec(&fds) == 0 else { throw SystemCallError("wake-up pipe for the conntrack watcher") }
        wake = (fds[0], fds[1])
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    func start() {
        started = true
        let thread = Thread { [self] in
            defer { done.signal() }
            var fds = [pollfd(fd: events.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            var next: Double? = look()
            while true {
                if poll(&fds, 2, PidFD.timeoutMs(until: next)) < 0 {
                    if errno == EINTR { continue }  // revents are stale then
                    lock.withLock { observation.error = "poll: \(String(cString: strerror(errno)))" }
                    return
                }
                var poked = false
                if fds[1].revents != 0 {
                    // 1: stop(); 0: current() asks for a look.
                    var bytes = [UInt8](repeating: 0, count: 64)
                    let n = read(wake.read, &bytes, bytes.count)
                    if n > 0 && bytes[0..<n].contains(1) { return }
                    poked = true
                }
                let evented = fds[0].revents != 0 && events.drain()
                if poked || evented || next.map({ PidFD.now() >= $0 }) == true { next = look() }
            }
        }
        thread.name = "conntrack-watch"
        thread.start()
    }

    func stop() -> ConntrackObservation {
        if started {
            var byte: UInt8 = 1
            while write(wake.write, &byte, 1) < 0 && errno == EINTR {}
            done.wait()
        }
        started = false
        return lock.withLock { observation }
    }

    /// The entry as the table shows it right now (for a snapshot at the fault). Also a look for the
    /// watcher, in case no event told it the entry exists.
    func current() -> ConntrackEntry? {
        let entry = (try? dumpLock.withLock { try socket.dump() })?.first(where: matches)
        if started { poke() }
        return entry
    }

    private func poke() {
        var byte: UInt8 = 0
        while write(wake.write, &byte, 1) < 0 && errno == EINTR {}
    }

    private func matches(_ e: ConntrackEntry) -> Bool {
        e.protocolNumber == 6 && e.source == client && e.destination == server && e.destinationPort == port
    }

    /// Dumps the table, records what it shows, and returns the next instant worth a look (nil: none
    /// until an event).
    private func look() -> Double? {
        let entries: [ConntrackEntry]
        do {
            entries = try dumpLock.withLock { try socket.dump() }
        } catch {
            lock.withLock { observation.error = "\(error)" }
            return PidFD.now() + 1  // a failed dump says nothing: try again, without spinning
        }
        let now = PidFD.now()
        let entry = entries.first(where: matches)
        return lock.withLock { () -> Double? in
            observation.polls += 1
            guard let entry else {
                if observation.lastSeen != nil, observation.goneAt == nil {
                    observation.goneAt = now
                }
                expiry = nil
                return nil
            }
            if observation.goneAt != nil, observation.recreatedAt == nil, entry.id != lastID {
                observation.recreatedAt = now
            }
            if observation.goneAt == nil {
                observation.firstSeen = observation.firstSeen ?? now
                observation.lastSeen = now
                observation.lastTimeoutLeft = entry.timeoutSeconds
                observation.stateAtLastSeen = entry.tcpStateName
            }
            defer { lastID = entry.id }
            guard let left = entry.timeoutSeconds else { expiry = nil; return nil }
            // The kernel rounds the time left down to whole seconds.
            let seen = (lo: now + Double(left), hi: now + Double(left) + 1)
            var narrowed: (lo: Double, hi: Double)?
            if let known = expiry, entry.id == lastID {
                let both = (lo: max(known.lo, seen.lo), hi: min(known.hi, seen.hi))
                // Tolerance for the kernel's jiffies; a window that has closed or passed while the
                // entry is still there means the timeout was refreshed (or changed with the state).
                if both.hi + precision > both.lo, both.hi > now { narrowed = (both.lo, max(both.lo, both.hi)) }
            }
            expiry = narrowed ?? seen
            if entry.tcpState == 3, observation.goneAt == nil {
                observation.minTimeoutLeft = min(observation.minTimeoutLeft ?? left, left)
            }
            return nextLook(now: now)
        }
    }

    /// Call with `lock` held.
    private func nextLook(now: Double) -> Double? {
        guard let (lo, hi) = expiry else { return nil }
        if hi - lo <= precision { return max(now, hi) }
        // A look k whole seconds before the midpoint shows k seconds left exactly when the expiry
        // is past the midpoint; it must come before the earliest possible expiry.
        let mid = (lo + hi) / 2
        let k = (mid - now).rounded(.down)
        if k >= 1 { return max(now, mid - k) }
        // Less than a second away: only looking tells, one `precision` step at a time.
        return max(now + precision, lo)
    }
}
