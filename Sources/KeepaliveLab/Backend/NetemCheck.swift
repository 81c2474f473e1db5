import CKeepaliveShim
import Foundation
import KeepaliveNet

/// A direct measurement of netem on the lab's topology, independent of TCP: R's r-b gets netem with
/// the given loss and delay (A→B), A sends numbered UDP datagrams to B, B records which arrived
/// and when. CLOCK_MONOTONIC is shared by all namespaces, so B's receive time minus A's send time
/// (carried in the datagram) is the one-way delay.
///
/// Requires CAP_NET_ADMIN and CAP_SYS_ADMIN (the host backend, possibly inside userns or UML) and
/// sch_netem.
public enum NetemCheck {
    public struct Result: Codable, Sendable {
        public var kernel: String
        public var backend: String
        public var lossPercent: Double
        public var delayMs: Double
        public var seed: UInt64?
        public var sent: Int
        public var received: Int
        /// Indices (send order) of the datagrams that never arrived: the loss sequence.
        public var lost: [Int]
        public var lossRatio: Double
        /// The loss ratio a Bernoulli(lossPercent) drop process stays within with probability
        /// 1 − 7·10⁻⁶ (mean ± 4.5 standard deviations of the binomial).
        public var expectedLossRange: [Double]
        public var lossWithinBounds: Bool
        /// One-way delay A→B of the datagrams that arrived, in ms.
        public var delayMinMs: Double?
        public var delayMedianMs: Double?
        public var delayMaxMs: Double?

        enum CodingKeys: String, CodingKey {
            case kernel, backend, seed, sent, received, lost
            case lossPercent = "loss_percent"
            case delayMs = "delay_ms"
            case lossRatio = "loss_ratio"
            case expectedLossRange = "expected_loss_range"
            case lossWithinBounds = "loss_within_bounds"
            case delayMinMs = "delay_min_ms"
            case delayMedianMs = "delay_median_ms"
            case delayMaxMs = "delay_max_ms"
        }
    }

    static let port: UInt16 = 5002

    public static func run(lossPercent: Double, delayMs: Double, seed: UInt64?, packets: Int,
                           backend: String = ExecutionEnvironment.backendLabel) throws -> Result {
        let run = LabID.newRunID()
        try RunOwnership.register(run: run)
        defer { RunOwnership.unregister(run: run) }
        let topology = try Topology.build(id: try LabID(run: run, trial: "netem"))
        defer { topology.teardown() }
        try topology.setNetem(NetemSpec(lossPercent: lossPercent, delayMs: delayMs, seed: seed), on: .towardB)

        let receiver = try topology.b.perform { try udpSocket(bindTo: Topology.bAddress.address.description) }
        defer { close(receiver) }
        let sender = try topology.a.perform { try udpSocket(connectTo: Topology.bAddress.address.description) }
        defer { close(sender) }

        let arrivals = Arrivals()
        let reading = Thread { arrivals.read(receiver) }
        reading.start()
        for index in 0..<packets {
            var payload = [UInt8](repeating: 0, count: 16)
            store(UInt64(index), into: &payload, at: 0)
            store(UInt64(bitPattern: kal_monotonic_ns()), into: &payload, at: 8)
            _ = payload.withUnsafeBytes { send(sender, $0.baseAddress, $0.count, 0) }
            // Paced so neither netem's queue (limit 10000) nor B's socket buffer is the one dropping.
            usleep(200)
        }
        // The last datagrams are still in netem's delay line: wait for them, then a margin.
        usleep(UInt32((delayMs + 500) * 1000))
        arrivals.stop(receiver)
        _ = arrivals.waitUntilStopped(timeout: 2)

        let got = arrivals.received
        let lost = (0..<packets).filter { got[$0] == nil }
        let delays = got.values.sorted()
        let p = lossPercent / 100, n = Double(packets)
        let sd = (n * p * (1 - p)).squareRoot() / n
        let ratio = packets > 0 ? Double(lost.count) / n : 0
        let range = [max(0, p - 4.5 * sd), min(1, p + 4.5 * sd)]
        return Result(kernel: Doctor.kernelRelease(), backend: backend, lossPercent: lossPercent, delayMs: delayMs, seed: seed,
                      sent: packets, received: got.count, lost: lost, lossRatio: ratio, expectedLossRange: range,
                      lossWithinBounds: ratio >= range[0] && ratio <= range[1],
                      delayMinMs: delays.first, delayMedianMs: delays.isEmpty ? nil : delays[delays.count / 2],
                      delayMaxMs: delays.last)
    }

    static func udpSocket(bindTo address: String? = nil, connectTo peer: String? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("open a UDP socket") }
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        for (target, isBind) in [(address, true), (peer, false)] {
            guard let target else { continue }
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            inet_pton(AF_INET, target, &sin.sin_addr)
            let rc = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    isBind ? bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        : connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard rc == 0 else {
                let err = errno
                close(fd)
                throw SystemCallError("\(isBind ? "bind" : "connect") UDP \(target):\(port)", errno: err)
            }
        }
        return fd
    }

    static func store(_ value: UInt64, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    static func load(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    /// B's side: index → one-way delay in ms.
    // @unchecked: state guarded by an NSCondition (waits need a condition variable, which Mutex lacks).
    final class Arrivals: @unchecked Sendable {
        private let condition = NSCondition()
        private var stopping = false
        private var stopped = false
        private var byIndex: [Int: Double] = [:]

        var received: [Int: Double] { condition.lock(); defer { condition.unlock() }; return byIndex }

        func read(_ fd: Int32) {
            var buffer = [UInt8](repeating: 0, count: 64)
            while true {
                // Blocks until a datagram or stop()'s shutdown (recv then returns 0 once the queue
                // is empty): no receive timeout to wake up for.
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                let now = kal_monotonic_ns()
                condition.lock()
                if n >= 16 {
                    let index = Int(NetemCheck.load(buffer, at: 0))
                    let sentAt = Int64(bitPattern: NetemCheck.load(buffer, at: 8))
                    byIndex[index] = Double(now - sentAt) / 1e6
                }
                let done = n < 0 || (stopping && n == 0)
                condition.unlock()
                if done { break }
            }
            condition.lock()
            stopped = true
            condition.broadcast()
            condition.unlock()
        }

        /// Ends `read(fd)` once what has arrived is read.
        func stop(_ fd: Int32) {
            condition.lock()
            stopping = true
            condition.unlock()
            // On Linux this wakes a recv blocked on a UDP socket, connected or not.
            shutdown(fd, Int32(SHUT_RD))
        }

        func waitUntilStopped(timeout: Double) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            condition.lock()
            defer { condition.unlock() }
            while !stopped { if !condition.wait(until: deadline) { return stopped } }
            return true
        }
    }
}

/// What the kernel under test offers, probed for real.
public enum KernelProbe {
    /// nil when a netem qdisc can be added in a throwaway namespace here; otherwise why not.
    public static func netemUnavailableReason() -> String? {
        unavailableReason(needs: KernelNeeds(netem: true))
    }

    /// nil when everything `needs` asks of this kernel works in a throwaway namespace here — a netem
    /// qdisc, nat-idle's NAT/firewall with its conntrack timeout policy (the doctor's conntrack
    /// check), a per-namespace sysctl write (the doctor's sysctl check); otherwise why not, naming
    /// the first that failed.
    public static func unavailableReason(needs: KernelNeeds) -> String? {
        if let reason = Privileges.namespaceUnavailableReason { return reason }
        let name = "kal-probe-\(getpid())-\(LabID.newRunID())"
        var netem: (any Error)?
        let ns: NetworkNamespace
        do {
            ns = try NetworkNamespace.create(named: name) {
                guard needs.netem else { return }
                do {
                    let nl = try NetlinkSocket(namespaceName: name)
                    try nl.setLink("lo", up: true)
                    try nl.setNetem(NetemSpec(lossPercent: 1), ifindex: 1, label: "lo")
                } catch {
                    netem = error
                }
            }
        } catch {
            return "\(error)"
        }
        defer { ns.delete() }
        if let netem { return "netem is needed and this kernel has none (\(netem))" }
        if needs.nftables {
            let check = Doctor.conntrackCheck(ns)
            if !check.available { return "nftables faults are needed and nat-idle's rules do not load: \(check.why)" }
        }
        if needs.sysctls {
            let check = Doctor.sysctlCheck(ns)
            if !check.available { return "the policy sets per-namespace sysctls and \(check.why)" }
        }
        return nil
    }
}
