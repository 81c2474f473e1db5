import Foundation
import KeepaliveNet

/// What R did during a trial, for the analysis.
struct NetworkFaultReport {
    var engine: ImpairmentEngineKind?
    var form: String?
    var drops: [String: ImpairmentDropCount]?
    var healAt: Double?
    /// nat-idle: the client's send after the silence, and the answer to it.
    var sendAt: Double?
    var answerAt: Double?
    var dataReachedB: Bool?
    var conntrack: ConntrackObservation?
    var conntrackAtFault: ConntrackEntry?
    var invalidPackets: Int?
    var notes: [String] = []
}

extension TrialAnalysis {
    /// Adds what R did (engine, drops, NAT state) to a result.
    func applyNetworkFault(to result: inout TrialResult) {
        result.impairmentEngine = network.engine?.rawValue
        result.impairmentForm = network.form
        result.seed = spec.seed
        result.impairmentDrops = network.drops
        result.notes += network.notes
        func sinceFault(_ t: Double?) -> Double? { t.map { $0 - tFault } }
        result.marks.heal = sinceFault(network.healAt)
        if spec.fault.usesImpairment {
            result.probesAnswered = result.probeReplies
            result.probesLost = max(0, result.probesSent - result.probeReplies)
        }
        guard case let .natIdle(timeout, mode) = spec.fault else { return }

        result.marks.send = sinceFault(network.sendAt)
        result.marks.answer = sinceFault(network.answerAt)
        result.dataReachedB = network.dataReachedB
        result.answerReceived = network.answerAt != nil
        if let entry = network.conntrackAtFault {
            result.notes.append("R's conntrack entry at the fault: \(entry.tcpStateName), \(entry.timeoutSeconds.map { "\($0) s" } ?? "?") left of \(timeout) s")
        } else {
            result.notes.append("R's conntrack had no entry for the connection at the fault")
        }
        if let ct = network.conntrack {
            result.marks.conntrackLastSeen = sinceFault(ct.lastSeen)
            if let gone = ct.goneAt {
                result.conntrackExpiredS = gone - tFault
                result.marks.conntrackExpired = sinceFault(gone)
                let lastPacket = segments.last(where: { $0.direction != .other && $0.t < gone })?.t
                if let lastPacket {
                    result.notes.append(String(format: "R's conntrack entry expired %.2f s after the last packet it forwarded (timeout %d s; seen gone within 20 ms)",
                                               gone - lastPacket, timeout))
                }
            } else if let low = leastTimeoutLeft(timeout: timeout, looked: ct.minTimeoutLeft) {
                result.notes.append("R's conntrack entry never expired: the least time it had left was \(low) s of \(timeout) s")
            }
            if let again = ct.recreatedAt {
                result.notes.append(String(format: "a new conntrack entry for the same flow appeared at %+.3f s", again - tFault))
            }
            if let error = ct.error { result.notes.append("conntrack watching: \(error)") }
        }
        if let invalid = network.invalidPackets, invalid > 0 {
            result.notes.append("R's firewall found \(invalid) INVALID packet(s) and \(mode == .reset ? "answered A's with RST" : "dropped them")")
        }
        if let send = network.sendAt, let t = tDetect { result.foundOutAfterSendS = t - send }
        if let send = network.sendAt {
            let resends = segments.filter { $0.direction == .aToB && $0.kind == .retransmission && $0.t > send }
                .prefix(8).map { String(format: "+%.2f", $0.t - send) }
            if !resends.isEmpty {
                result.notes.append("A retransmitted its data at \(resends.joined(separator: ", ")) s after the send"
                                    + (spec.clientPolicy.userTimeoutMs.map { " (TCP_USER_TIMEOUT \($0) ms counts from the first RTO retransmission, not the send; a tail-loss probe may come first)" } ?? ""))
            }
        }
        guard network.answerAt == nil else { return }
        result.brokenHow = brokenHow(mode: mode)
    }

    /// The least time R's entry had left, in whole seconds as conntrack shows it: every packet R
    /// forwards restarts the timeout, so it is the timeout less the longest pause between them on
    /// the wire. The watcher's looks (an upper bound) stand in when the capture has too few packets.
    private func leastTimeoutLeft(timeout: Int, looked: UInt32?) -> UInt32? {
        let times = segments.filter { $0.direction != .other }.map(\.t).sorted()
        guard times.count >= 2 else { return looked }
        let longestPause = zip(times, times.dropFirst()).map { $1 - $0 }.max() ?? 0
        let fromWire = UInt32(max(0, (Double(timeout) - longestPause).rounded(.down)))
        return min(fromWire, looked ?? fromWire)
    }

    /// How A found out that the middlebox had forgotten its connection (or that it did not).
    private func brokenHow(mode: NATIdleMode) -> String {
        let afterSend = network.sendAt.map { send in tDetect.map { $0 >= send } ?? true } ?? false
        let what = afterSend ? "data" : "keepalive probe"
        if let detection {
            switch detection.errnoName {
            case "ECONNRESET"?:
                return "ECONNRESET: R's firewall answered A's \(what) with RST"
            case "ETIMEDOUT"?:
                return afterSend
                    ? "ETIMEDOUT: A's data was retransmitted into the void until TCP_USER_TIMEOUT (or tcp_retries2) gave up"
                    : "ETIMEDOUT: R dropped A's keepalive probes, which went unanswered"
            default:
                return "\(detectedBy ?? "closed") after A's \(what)"
            }
        }
        guard let send = network.sendAt else { return "not found out by the deadline; A never sent" }
        let retransmissions = segments.filter { $0.direction == .aToB && $0.kind == .retransmission && $0.t > send }.count
        return "not found out by the deadline: A's data was retransmitted \(retransmissions) time(s) into the void"
    }
}

extension TrialOutput {
    /// The impairment engine, its drops, and the NAT story, for the human summary.
    static func networkLines(_ r: TrialResult) -> [String] {
        var lines: [String] = []
        if let engine = r.impairmentEngine, engine != "none" {
            lines.append("impairment engine: \(r.impairmentForm ?? engine)\(r.seed.map { " · seed \($0)" } ?? "")")
        }
        for (direction, count) in (r.impairmentDrops ?? [:]).sorted(by: { $0.key < $1.key }) {
            lines.append(String(format: "  R %@: %d of %d packet(s) dropped (%.1f %%)", direction, count.dropped,
                                count.packets, (count.ratio ?? 0) * 100))
        }
        if let lost = r.probesLost, let answered = r.probesAnswered {
            lines.append("probes after the fault: \(answered) answered, \(lost) lost (probe or reply dropped)")
        }
        if case .natIdle = r.spec.fault {
            func at(_ t: Double?) -> String { t.map { String(format: "%+.3f s", $0) } ?? "—" }
            lines.append("nat-idle: client sent at \(at(r.marks.send)), answer \(at(r.marks.answer)), R's conntrack entry expired \(at(r.marks.conntrackExpired))"
                         + (r.dataReachedB.map { " · data reached B: \($0 ? "yes" : "no")" } ?? ""))
            if let how = r.brokenHow {
                lines.append("broken: \(how)" + (r.foundOutAfterSendS.map { String(format: " (%.3f s after the send)", $0) } ?? ""))
            }
        }
        return lines
    }
}
