import Foundation
import KeepaliveNet

/// One kind of fault: everything the lab knows about it in one type, one file per kind in this
/// folder. Its text form (syntax, help, parsing), where it strikes, what it does to R and the hosts
/// at the fault instant, its own clock afterwards (B's reboot, R's heal, the nat-idle exchange),
/// how long a trial with it is expected to take, and how a report says it. `Fault` is the value
/// that travels (Codable as its text form); `Fault.kind` hands each case to its type, and
/// `FaultKinds.all` is the registry CLI help and lab-file errors are drawn from.
///
/// A new kind: a file here with its type, and in Fault.swift its case, its line in `Fault.kind` and
/// its entry in `Fault.allKinds`. What the kernel should do (TrialAnalysis.expectation, exhaustive:
/// the compiler points at it) and what the report infers (TrialInference.paths, Findings, with
/// defaults) are still per-analysis switches.
protocol FaultKind: Sendable {
    /// Its name, syntax, help and examples.
    static var facts: FaultFacts { get }
    /// `arguments`: what follows `name:`, nil for the bare name. Errors name the field, the value
    /// and the valid range (PolicyError).
    static func parse(arguments: String?) throws -> Fault

    /// The text form (`Fault.description`).
    var text: String { get }
    /// Where it strikes: ladders, diagrams and the predicates on `Fault` follow from it.
    var site: Fault.Site { get }
    /// What the fault did, as a report says it.
    var reportPhrase: String { get }
    /// The direction R impairs (loss, partition); nil for the rest.
    var impairmentDirection: ImpairmentDirection? { get }
    /// The impairment in force once the fault has struck, on top of the trial's `baseline` shaping;
    /// nil when R's impairment engine has nothing to do with this fault.
    func impairment(over baseline: Impairment) -> Impairment?
    /// The fault installs nftables rules in R itself, whatever engine impairs the link.
    var installsRulesInR: Bool { get }

    /// R before any traffic (conntrack must see the SYN), after the engine is chosen.
    func prepareRouter(_ driver: FaultDriver) throws
    /// The fault instant: what happens to the hosts (cut, kill, stop) and to R.
    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws
    /// The fault's own clock at `now`; returns true once the trial has what it waited for.
    func step(_ driver: FaultDriver, now: Double, peers: any TrialPeers) throws -> Bool
    /// When `step` next has something to do (nil: nothing scheduled), so the trial sleeps until then.
    func nextDeadline(_ driver: FaultDriver) -> Double?
    /// What ends a trial with this fault, in seconds after the fault, and why (TrialDuration takes
    /// the least; none: the deadline).
    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)]
    /// What the kernel (or the heartbeat) should do after this fault, from the trial's record: every
    /// mechanism that applies gives a predicted instant (the analysis takes the earliest). None:
    /// nothing should end the connection.
    func expectations(_ analysis: TrialAnalysis) -> [Expectation]
    /// What became of the segments only this fault explains, in the report's terms (where each one
    /// went and why); TrialInference.paths has marked what every fault shares (segments to a dead
    /// host, R's ICMP). `answers`: per timeline entry, whether a probe was answered (nil: no probe).
    func markPaths(_ r: TrialResult, answers: [Bool?], paths: inout [TrialInference.SegmentPath])
    /// After the trial, before the analysis: what R and the peers can still tell.
    func finish(_ driver: FaultDriver, peers: any TrialPeers)
}

/// What a kind says about itself in help and errors.
struct FaultFacts: Sendable {
    /// The word that starts the text form: `reboot` in `reboot:3`.
    var name: String
    /// The text form with its placeholders and valid ranges: `reboot:SECONDS (0 < SECONDS ≤ 3600)`.
    var syntax: String
    /// What it does, one sentence for `--help` and the docs.
    var help: String
    /// Texts that parse and print back as themselves (the registry test round-trips them).
    var examples: [String]
}

extension FaultKind {
    static var name: String { facts.name }
    static var syntax: String { facts.syntax }
    static var help: String { facts.help }
    static var examples: [String] { facts.examples }
    var impairmentDirection: ImpairmentDirection? { nil }
    func impairment(over baseline: Impairment) -> Impairment? { nil }
    var installsRulesInR: Bool { false }
    func prepareRouter(_ driver: FaultDriver) throws {}
    func inject(_ driver: FaultDriver, peers: any TrialPeers) throws {}
    func step(_ driver: FaultDriver, now: Double, peers: any TrialPeers) throws -> Bool { false }
    func nextDeadline(_ driver: FaultDriver) -> Double? { nil }
    func expectedEnd(_ spec: TrialSpec) -> [(Double, String)] { [] }
    func expectations(_ analysis: TrialAnalysis) -> [Expectation] { [] }
    func markPaths(_ r: TrialResult, answers: [Bool?], paths: inout [TrialInference.SegmentPath]) {}
    func finish(_ driver: FaultDriver, peers: any TrialPeers) {}

}

/// A kind without arguments (`crash`, `kill`, …): its name is its whole text form, and what it
/// strikes and how a report says it are fixed.
protocol BareFaultKind: FaultKind {
    static var bare: BareFault { get }
}

/// Everything a kind without arguments says about itself.
struct BareFault: Sendable {
    var name: String
    var value: Fault
    var site: Fault.Site
    var help: String
    var phrase: String
}

extension BareFaultKind {
    static var facts: FaultFacts { FaultFacts(name: bare.name, syntax: bare.name, help: bare.help, examples: [bare.name]) }
    var text: String { Self.bare.name }
    var site: Fault.Site { Self.bare.site }
    var reportPhrase: String { Self.bare.phrase }

    /// `name` alone; anything after a colon is an error.
    static func parse(arguments: String?) throws -> Fault {
        guard let arguments else { return bare.value }
        throw PolicyError.malformed(field: "fault \(name)", input: "\(name):\(arguments)", expected: "\(name) alone (it takes no arguments)")
    }
}

/// What the fault side needs from a trial's two peers, whatever they are (the built-in peer or a
/// real program), so each fault's injection and stepping is written once.
protocol TrialPeers: AnyObject {
    /// Delivers `signal` to the server's processes in B.
    func signalServer(_ signal: Int32)
    /// Delivers `signal` to the client's processes in A; throws where the peer cannot be the one
    /// left to notice (the built-in server does not detect).
    func signalClient(_ signal: Int32) throws
    /// B came back (a fresh namespace, same IP and MAC): start a server in it. Returns how the
    /// note says it ("fresh server", "redis-server restarted").
    func restartServer(in topology: Topology) throws -> String
    /// The client sends its request after the nat-idle silence; a note when it has no way to.
    func sendRequest() -> String?
    /// The instant the answer to the request sent at `sent` arrived, if it has.
    func answer(after sent: Double) -> Double?
    /// After the trial: what became of the request (when it left, whether it reached B), as far
    /// as this kind of peer can tell.
    func finishExchange(_ report: inout NetworkFaultReport)
}

/// The registry: every fault kind, in the order help and errors list them.
public enum FaultKinds {
    /// Every kind (`Fault.allKinds`, next to the cases).
    static var all: [any FaultKind.Type] { Fault.allKinds }

    /// Every kind's syntax, for the error an unknown fault gets.
    public static var syntaxList: String {
        all.map { $0.syntax }.joined(separator: ", ") + "; DIR is both (default), a2b or b2a"
    }

    /// One line per kind, for `trial --help` and `run --help`.
    public static var help: String {
        all.map { "\($0.syntax): \($0.help)" }.joined(separator: "\n")
    }

    static func kind(named name: String) -> (any FaultKind.Type)? {
        all.first { $0.name == name }
    }

    /// Parses any fault's text form through its kind.
    static func parse(_ text: String) throws -> Fault {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let kind = kind(named: String(parts[0])) else {
            throw PolicyError.malformed(field: "fault", input: text, expected: syntaxList)
        }
        return try kind.parse(arguments: parts.count == 2 ? String(parts[1]) : nil)
    }

    /// Parses `AMOUNT[,DIR]` (loss, partition): a finite number in `0 < AMOUNT ≤ upper` and a
    /// direction (default both). `what`: the malformed amount's hint; `unit` and `rule` for the range.
    static func amountAndDirection(_ arguments: String?, kind: String, syntax: String, what: String,
                                   upper: Double, unit: String, rule: String) throws -> (Double, ImpairmentDirection) {
        let fields = try fields(arguments, kind: kind, syntax: syntax + "; DIR is both (default), a2b or b2a",
                                text: "\(kind):\(arguments ?? "")")
        guard let value = Double(fields[0]), value.isFinite else {
            throw PolicyError.malformed(field: "fault \(kind)", input: fields[0], expected: what)
        }
        let direction = fields.count == 2 ? try ImpairmentDirection(parsing: fields[1], field: "fault \(kind) direction") : .both
        guard value > 0, value <= upper else {
            throw PolicyError.outOfRange(field: "fault \(kind)", value: "\(fields[0]) \(unit)", rule: rule)
        }
        return (value, direction)
    }

    /// Splits `A[,B]` arguments; `syntax` for the error when the count is wrong.
    static func fields(_ arguments: String?, kind: String, syntax: String, text: String) throws -> [String] {
        let fields = (arguments ?? "").split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard arguments != nil, (1...2).contains(fields.count), !fields[0].isEmpty else {
            throw PolicyError.malformed(field: "fault \(kind)", input: text, expected: syntax)
        }
        return fields
    }
}
