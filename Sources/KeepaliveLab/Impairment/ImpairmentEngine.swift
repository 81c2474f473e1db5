import Foundation
import KeepaliveNet

/// Packets R saw and dropped in one direction while an impairment was in place.
public struct ImpairmentDropCount: Codable, Sendable, Equatable {
    public var packets: Int
    public var dropped: Int

    public var ratio: Double? { packets > 0 ? Double(dropped) / Double(packets) : nil }
}

/// Something that impairs R's two ports. Everything it installs lives in R, so tearing R down
/// removes it even when `heal` is never called.
protocol ImpairmentEngine: AnyObject {
    var kind: ImpairmentEngineKind { get }
    /// How the engine realises the impairment in force (reports say which loss form ran).
    var form: String { get }
    /// Replaces whatever is in place with `impairment` (an empty one heals).
    func apply(_ impairment: Impairment) throws
    /// Per-direction counts ("a2b", "b2a") over everything applied so far, when the engine counts.
    func dropCounts() -> [String: ImpairmentDropCount]?
}

enum ImpairmentEngines {
    /// Picks the engine for a trial, before any traffic: `auto` tries netem on R's r-b and falls
    /// back to nftables when the kernel has no netem. `purpose` names the job for error messages.
    /// Returns the engine and, for a fallback, a note saying why.
    static func select(_ choice: ImpairmentEngineChoice, for impairment: Impairment, purpose: String,
                       topology: Topology, seed: UInt64?) throws -> (any ImpairmentEngine, note: String?) {
        let netemOnly = impairment.netemOnlyParts
        if choice == .nftables {
            if let netemOnly {
                throw PolicyError.conflict("\(purpose): \(netemOnly) needs netem; nftables can only drop packets (no delay, jitter, duplicate, reorder or loss correlation)")
            }
            return (NftablesImpairment(topology: topology, seed: seed), nil)
        }
        do {
            try topology.setNetem(NetemSpec(), on: .towardB)
            try topology.removeNetem(on: .towardB)
            return (NetemImpairment(topology: topology, seed: seed), nil)
        } catch let error as LabNetworkError {
            guard case .netemUnavailable = error else { throw error }
            if choice == .netem {
                throw ImpairmentError.netemUnavailable(purpose: "\(purpose) with --impairment netem", underlying: error)
            }
            if let netemOnly {
                throw ImpairmentError.netemUnavailable(
                    purpose: "\(purpose): \(netemOnly) needs netem (nftables can only drop packets)", underlying: error)
            }
            let reason = (error.underlyingNetlink?.extack).flatMap { $0.isEmpty ? nil : "kernel says: \($0)" } ?? "\(error)"
            return (NftablesImpairment(topology: topology, seed: seed),
                    "impairment auto: netem is not available in this kernel (\(reason)); nftables ran instead")
        }
    }
}

extension LabNetworkError {
    var underlyingNetlink: NetlinkError? {
        if case .netemUnavailable(let error) = self { return error }
        return nil
    }
}

/// netem on R's egress: r-b for A→B, r-a for B→A. Seeded through TCA_NETEM_PRNG_SEED, one derived
/// seed per direction (Linux ≥ 6.3 honours it; older kernels ignore the attribute).
final class NetemImpairment: ImpairmentEngine {
    let topology: Topology
    let seed: UInt64?
    var kind: ImpairmentEngineKind { .netem }

    init(topology: Topology, seed: UInt64?) {
        self.topology = topology
        self.seed = seed
    }

    var form: String {
        guard seed != nil else { return "netem (kernel PRNG, unseeded)" }
        return Self.kernelHonoursSeed
            ? "netem, seeded per direction (TCA_NETEM_PRNG_SEED)"
            : "netem; this kernel (\(Doctor.kernelRelease())) predates 6.3 and ignores TCA_NETEM_PRNG_SEED: unseeded"
    }

    static var kernelHonoursSeed: Bool {
        let parts = Doctor.kernelRelease().split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return parts[0] > 6 || (parts[0] == 6 && parts[1] >= 3)
    }

    func apply(_ impairment: Impairment) throws {
        for port in RouterPort.allCases {
            let link = impairment[port]
            if link.isNone {
                try topology.removeNetem(on: port)
            } else {
                let derived = seed.map { SplitMix64.derive($0, stream: port == .towardB ? 1 : 2) }
                try topology.setNetem(link.netemSpec(seed: derived), on: port)
            }
        }
    }

    func dropCounts() -> [String: ImpairmentDropCount]? { nil }
}

/// nftables in R's forward hook, one rule per direction matched by the egress port (`oifname`):
/// random loss with `numgen random`, or with a seed a fixed pattern (`numgen inc` against a seeded
/// set of indices, one counter per direction); 100 % is a plain drop. No delay of any kind.
final class NftablesImpairment: ImpairmentEngine {
    static let table = "kal_impair"
    let topology: Topology
    let seed: UInt64?
    private var current = Impairment()
    private var carried: [String: ImpairmentDropCount] = [:]
    private(set) var form = "nftables"
    var kind: ImpairmentEngineKind { .nftables }

    init(topology: Topology, seed: UInt64?) {
        self.topology = topology
        self.seed = seed
    }

    func apply(_ impairment: Impairment) throws {
        if let netemOnly = impairment.netemOnlyParts {
            throw PolicyError.conflict("\(netemOnly) needs netem; nftables can only drop packets")
        }
        // Re-creating the table resets its counters: keep what they counted.
        accumulate(readCounters())
        var script = "add table ip \(Self.table)\ndelete table ip \(Self.table)\n"
        var forms: [String] = []
        if !impairment.isNone {
            var rules: [String] = []
            var counters: [String] = []
            for (name, port, link, stream) in [("a2b", RouterPort.towardB, impairment.a2b, UInt64(1)),
                                               ("b2a", RouterPort.towardA, impairment.b2a, UInt64(2))]
            where link.lossPercent > 0 {
                let (match, form) = lossMatch(link.lossPercent, stream: stream)
                forms.append("\(name): \(form)")
                counters.append("counter \(name)_seen { }\ncounter \(name)_dropped { }")
                rules.append("oifname \"\(port.interfaceName)\" counter name \"\(name)_seen\"")
                rules.append("oifname \"\(port.interfaceName)\" \(match)counter name \"\(name)_dropped\" drop")
            }
            script += """
                table ip \(Self.table) {
                \(counters.joined(separator: "\n"))
                    chain forward {
                        type filter hook forward priority filter - 10; policy accept;
                \(rules.joined(separator: "\n"))
                    }
                }

                """
        }
        do {
            try Nftables.run(script, in: topology.r, operation: "apply nftables impairment")
        } catch {
            throw ImpairmentError.engineFailed(operation: "impair R's forwarding with nftables", underlying: error)
        }
        current = impairment
        if !forms.isEmpty { form = "nftables (" + forms.joined(separator: "; ") + ")" }
    }

    /// The match that selects the dropped packets (empty for 100 %), and its description.
    private func lossMatch(_ percent: Double, stream: UInt64) -> (String, String) {
        if percent >= 100 { return ("", "plain drop rule, 100 %") }
        if let seed {
            let pattern = SeededDropPattern(lossPercent: percent, seed: SplitMix64.derive(seed, stream: stream))
            let set = pattern.indices.map(String.init).joined(separator: ", ")
            return ("numgen inc mod \(SeededDropPattern.period) { \(set) } ",
                    "seeded pattern: numgen inc mod \(SeededDropPattern.period), \(pattern.indices.count) drop indices from SplitMix64 = \(Fault.format(pattern.effectivePercent)) %")
        }
        let threshold = Int((percent * 100).rounded())
        return ("numgen random mod 10000 < \(threshold) ",
                "numgen random mod 10000 < \(threshold) = \(Fault.format(Double(threshold) / 100)) %, unseeded")
    }

    func dropCounts() -> [String: ImpairmentDropCount]? {
        var total = carried
        for (name, count) in readCounters() {
            total[name, default: ImpairmentDropCount(packets: 0, dropped: 0)].packets += count.packets
            total[name, default: ImpairmentDropCount(packets: 0, dropped: 0)].dropped += count.dropped
        }
        return total
    }

    private func accumulate(_ counts: [String: ImpairmentDropCount]) {
        for (name, count) in counts {
            carried[name, default: ImpairmentDropCount(packets: 0, dropped: 0)].packets += count.packets
            carried[name, default: ImpairmentDropCount(packets: 0, dropped: 0)].dropped += count.dropped
        }
    }

    /// The named counters of the table now in R (empty when there is none).
    private func readCounters() -> [String: ImpairmentDropCount] {
        guard !current.isNone,
              let text = try? Nftables.run("list counters table ip \(Self.table)", in: topology.r,
                                           operation: "read nftables impairment counters")
        else { return [:] }
        let values = NftablesCounters.parse(text)
        var result: [String: ImpairmentDropCount] = [:]
        for name in ["a2b", "b2a"] {
            if let seen = values["\(name)_seen"] {
                result[name] = ImpairmentDropCount(packets: seen, dropped: values["\(name)_dropped"] ?? 0)
            }
        }
        return result
    }
}

enum NftablesCounters {
    /// Packet counts of named counters in `nft list counters` text output.
    static func parse(_ text: String) -> [String: Int] {
        var result: [String: Int] = [:]
        var name: String?
        for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let words = line.split(separator: " ")
            if words.first == "counter", words.count >= 2 {
                name = String(words[1])
            } else if let current = name, words.first == "packets", words.count >= 2, let packets = Int(words[1]) {
                result[current] = packets
                name = nil
            }
        }
        return result
    }
}
