import CKeepaliveShim
import CNetlink
import Glibc

/// A netem impairment on one interface's egress.
public struct NetemSpec: Codable, Equatable, Sendable {
    /// Loss probability in percent, 0…100.
    public var lossPercent: Double = 0
    public var lossCorrelationPercent: Double = 0
    public var delayMs: Double = 0
    public var jitterMs: Double = 0
    public var duplicatePercent: Double = 0
    public var reorderPercent: Double = 0
    public var reorderCorrelationPercent: Double = 0
    /// TCA_NETEM_PRNG_SEED (Linux ≥ 6.3 honours it; older kernels ignore the attribute).
    public var seed: UInt64?

    public init(lossPercent: Double = 0, lossCorrelationPercent: Double = 0, delayMs: Double = 0,
                jitterMs: Double = 0, duplicatePercent: Double = 0, reorderPercent: Double = 0,
                reorderCorrelationPercent: Double = 0, seed: UInt64? = nil) {
        self.lossPercent = lossPercent
        self.lossCorrelationPercent = lossCorrelationPercent
        self.delayMs = delayMs
        self.jitterMs = jitterMs
        self.duplicatePercent = duplicatePercent
        self.reorderPercent = reorderPercent
        self.reorderCorrelationPercent = reorderCorrelationPercent
        self.seed = seed
    }

    public func validate() throws {
        for (name, value) in [("loss", lossPercent), ("loss correlation", lossCorrelationPercent),
                              ("duplicate", duplicatePercent), ("reorder", reorderPercent),
                              ("reorder correlation", reorderCorrelationPercent)] {
            guard value.isFinite, (0...100).contains(value) else {
                throw NetemError.outOfRange("netem \(name) \(value) % is out of range: allowed 0…100 %")
            }
        }
        for (name, value) in [("delay", delayMs), ("jitter", jitterMs)] {
            guard value.isFinite, (0...60_000).contains(value) else {
                throw NetemError.outOfRange("netem \(name) \(value) ms is out of range: allowed 0…60000 ms")
            }
        }
        if reorderPercent > 0 && delayMs == 0 {
            throw NetemError.outOfRange("netem reorder needs a delay > 0 ms (the kernel reorders by skipping the delay)")
        }
    }

    /// netem probabilities are fractions of 2^32 − 1.
    static func probability(_ percent: Double) -> Int32 {
        Int32(bitPattern: UInt32((percent / 100 * Double(UInt32.max)).rounded()))
    }
}

public enum NetemError: Error, CustomStringConvertible, Sendable {
    case outOfRange(String)
    public var description: String {
        switch self { case .outOfRange(let text): return text }
    }
}

extension NetlinkSocket {
    /// Replaces the root qdisc of `ifindex` with netem. Requires CAP_NET_ADMIN and sch_netem.
    /// On a kernel without sch_netem this throws `LabNetworkError.netemUnavailable`, keeping the
    /// kernel's errno and extack.
    public func setNetem(_ spec: NetemSpec, ifindex: Int32, label: String) throws {
        try spec.validate()
        guard let qdisc = rtnl_qdisc_alloc() else { throw SystemCallError("rtnl_qdisc_alloc", errno: ENOMEM) }
        defer { rtnl_qdisc_put(qdisc) }
        let tc = qdisc
        rtnl_tc_set_ifindex(tc, ifindex)
        rtnl_tc_set_parent(tc, kal_tc_h_root())
        rtnl_tc_set_handle(tc, kal_tc_handle(1, 0))
        try request("select qdisc kind netem") { rtnl_tc_set_kind(tc, "netem") }
        rtnl_netem_set_limit(qdisc, 10_000)
        if spec.lossPercent > 0 {
            rtnl_netem_set_loss(qdisc, NetemSpec.probability(spec.lossPercent))
            if spec.lossCorrelationPercent > 0 {
                rtnl_netem_set_loss_correlation(qdisc, NetemSpec.probability(spec.lossCorrelationPercent))
            }
        }
        if spec.delayMs > 0 { rtnl_netem_set_delay(qdisc, Int32(spec.delayMs * 1000)) }
        if spec.jitterMs > 0 { rtnl_netem_set_jitter(qdisc, Int32(spec.jitterMs * 1000)) }
        if spec.duplicatePercent > 0 { rtnl_netem_set_duplicate(qdisc, NetemSpec.probability(spec.duplicatePercent)) }
        if spec.reorderPercent > 0 {
            rtnl_netem_set_reorder_probability(qdisc, NetemSpec.probability(spec.reorderPercent))
            rtnl_netem_set_reorder_correlation(qdisc, NetemSpec.probability(spec.reorderCorrelationPercent))
            rtnl_netem_set_gap(qdisc, 1)
        }
        var message: OpaquePointer?
        try request("build netem request for \(label)") {
            rtnl_qdisc_build_add_request(qdisc, NLM_F_CREATE | NLM_F_REPLACE, &message)
        }
        if let seed = spec.seed {
            let rc = kal_netem_append_seed(UnsafeMutableRawPointer(message), seed)
            if rc < 0 {
                nlmsg_free(message)
                throw NetlinkError(operation: "add netem seed for \(label) in \(namespaceName)",
                                   libnlCode: -rc, kernelErrno: 0, extack: "")
            }
        }
        do {
            // nl_send_sync frees the message on every path.
            try request("add netem qdisc on \(label)") { nl_send_sync(handle, message) }
        } catch let error as NetlinkError where error.kernelErrno == ENOENT {
            throw LabNetworkError.netemUnavailable(error)
        }
    }

    /// Removes the root qdisc of `ifindex` (back to the default). Missing qdisc is not an error.
    public func removeRootQdisc(ifindex: Int32, label: String) throws {
        guard let qdisc = rtnl_qdisc_alloc() else { throw SystemCallError("rtnl_qdisc_alloc", errno: ENOMEM) }
        defer { rtnl_qdisc_put(qdisc) }
        let tc = qdisc
        rtnl_tc_set_ifindex(tc, ifindex)
        rtnl_tc_set_parent(tc, kal_tc_h_root())
        do {
            try request("remove root qdisc of \(label)") { rtnl_qdisc_delete(handle, qdisc) }
        } catch let error as NetlinkError where error.kernelErrno == ENOENT || error.kernelErrno == EINVAL {
            return
        }
    }
}
