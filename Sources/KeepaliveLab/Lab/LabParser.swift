import Foundation
import Yams

/// A lab file problem, pointing at the exact place: `file:line:column: key: what is wrong`.
public struct LabFileError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let column: Int
    public let key: String
    public let message: String

    public var description: String { "\(file):\(line):\(column): \(key.isEmpty ? "" : "\(key): ")\(message)" }
}

/// Reads `Labs/*.yaml` into a `Lab`, checking every key, type and range before anything is created.
public struct LabParser {
    let file: String

    public static func load(path: String) throws -> Lab {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw LabFileError(file: path, line: 0, column: 0, key: "", message: "cannot read the lab file: \(error.localizedDescription)")
        }
        return try LabParser(file: path).parse(text)
    }

    public func parse(_ text: String) throws -> Lab {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw fail(nil, "", "the file is empty") }
            root = node
        } catch let error as YamlError {
            throw LabFileError(file: file, line: Self.line(of: error), column: 0, key: "", message: "not valid YAML: \(error)")
        }
        let top = try mapping(root, "", allowed: [
            "name", "description", "trials", "seed", "deadline", "workload", "fault_delay", "namespace_keepalive",
            "impairment", "policies", "faults", "expectations", "clock", "kernel",
        ])
        let name = try string(top["name"], "name", required: true, node: root)!
        guard name.range(of: "^[A-Za-z0-9._-]{1,60}$", options: .regularExpression) != nil else {
            throw fail(top["name"], "name", "\"\(name)\" is not allowed: use 1…60 letters, digits, '.', '_' or '-'")
        }
        let trials = try int(top["trials"], "trials", range: 1...1000) ?? 5
        let seed = try int(top["seed"], "seed", range: 0...Int.max) ?? 1
        let defaults = FaultDefaults(
            workload: try workload(top["workload"], "workload") ?? .idle,
            deadline: try double(top["deadline"], "deadline", range: TrialSpec.deadlineRange) ?? 30,
            faultDelay: try double(top["fault_delay"], "fault_delay", range: TrialSpec.faultDelayRange) ?? 0.2,
            impairment: try impairment(top["impairment"], "impairment"))
        let labKeepalive = try keepalive(top["namespace_keepalive"], "namespace_keepalive")

        let policies = try sequence(top["policies"], "policies", required: true, node: root).enumerated().map {
            try policy($1, "policies[\($0)]", labKeepalive: labKeepalive)
        }
        var seen: Set<String> = []
        for (i, p) in policies.enumerated() where !seen.insert(p.name).inserted {
            throw fail(try sequence(top["policies"], "policies")[i], "policies[\(i)].name", "policy \"\(p.name)\" is defined twice")
        }
        let faults = try sequence(top["faults"], "faults", required: true, node: root).enumerated().map {
            try faultCase($1, "faults[\($0)]", defaults: defaults)
        }
        for (i, f) in faults.enumerated() {
            for name in f.policies ?? [] where !policies.contains(where: { $0.name == name }) {
                throw fail(try sequence(top["faults"], "faults")[i], "faults[\(i)].policies",
                           "no policy named \"\(name)\"; defined: \(policies.map(\.name).joined(separator: ", "))")
            }
        }
        let expectations = try sequence(top["expectations"], "expectations").enumerated().map {
            try expectation($1, "expectations[\($0)]", policies: policies, faults: faults)
        }
        let lab = Lab(name: name, description: try string(top["description"], "description") ?? "",
                      policies: policies, faults: faults, trials: trials, seed: UInt64(seed),
                      expectations: expectations, source: file,
                      clock: try clock(top["clock"], "clock"), kernel: try kernelChoice(top["kernel"], "kernel"))
        // Every cell must make a valid trial before anything is created.
        for cell in lab.cells {
            do {
                try TrialPlan.spec(for: cell, lab: lab, trial: 0).validate()
            } catch let error as PolicyError {
                throw fail(root, cell.key, error.description)
            }
        }
        return lab
    }

    struct FaultDefaults {
        var workload: Workload
        var deadline: Double
        var faultDelay: Double
        var impairment: ImpairmentEngineChoice?
    }

    // MARK: Sections

    func policy(_ node: Node, _ key: String, labKeepalive: KeepaliveSetting?) throws -> NamedPolicy {
        let map = try mapping(node, key, allowed: ["name", "client", "server", "namespace_keepalive", "sysctls"])
        let name = try string(map["name"], "\(key).name", required: true, node: node)!
        guard name.range(of: "^[A-Za-z0-9._+-]{1,40}$", options: .regularExpression) != nil else {
            throw fail(map["name"], "\(key).name", "\"\(name)\" is not allowed: use 1…40 letters, digits, '.', '_', '+' or '-'")
        }
        return NamedPolicy(
            name: name,
            client: try socketPolicy(map["client"], "\(key).client"),
            server: try socketPolicy(map["server"], "\(key).server"),
            namespaceKeepalive: try keepalive(map["namespace_keepalive"], "\(key).namespace_keepalive") ?? labKeepalive,
            sysctls: try sysctls(map["sysctls"], "\(key).sysctls"))
    }

    /// `sysctls: {net.ipv4.tcp_retries2: 8}`: per-namespace knobs for A and B.
    func sysctls(_ node: Node?, _ key: String) throws -> [String: String]? {
        guard let node else { return nil }
        guard case .mapping(let map) = node else { throw fail(node, key, "expected a mapping of sysctl name: value") }
        var result: [String: String] = [:]
        for (name, value) in map {
            guard case .scalar(let n) = name else { throw fail(name, key, "expected a sysctl name") }
            let entry = "\(key).\(n.string)"
            guard let text = try string(value, entry) else { continue }
            do { try TrialSpec.validateSysctl(name: n.string, value: text) } catch let error as PolicyError {
                throw fail(name, entry, error.description)
            }
            result[n.string] = text
        }
        return result.isEmpty ? nil : result
    }

    func clock(_ node: Node?, _ key: String) throws -> LabClock? {
        guard let text = try string(node, key) else { return nil }
        guard let clock = LabClock(rawValue: text) else {
            throw fail(node, key, "\"\(text)\" is not a clock: use real or virtual (the lab kernel's time-travel)")
        }
        return clock
    }

    func kernelChoice(_ node: Node?, _ key: String) throws -> KernelChoice? {
        guard let text = try string(node, key) else { return nil }
        do { return try KernelChoice(parsing: text) } catch let error as PolicyError { throw fail(node, key, error.description) }
    }

    func socketPolicy(_ node: Node?, _ key: String) throws -> Policy {
        guard let node else { return .none }
        if case .scalar(let s) = node, s.string == "none" { return .none }
        let map = try mapping(node, key, allowed: ["keepalive", "sysctl_defaults", "user_timeout_ms", "heartbeat",
                                                   "app", "command", "env", "ready", "detect", "options"])
        var policy = Policy(
            keepalive: try keepalive(map["keepalive"], "\(key).keepalive"),
            useSysctlDefaults: try bool(map["sysctl_defaults"], "\(key).sysctl_defaults") ?? false,
            userTimeoutMs: try int(map["user_timeout_ms"], "\(key).user_timeout_ms", range: 0...Int(Int32.max)).map { UInt32($0) },
            heartbeat: try heartbeat(map["heartbeat"], "\(key).heartbeat"))
        policy.app = try appSpec(map, key, node: node)
        do { try policy.validate() } catch let error as PolicyError { throw fail(node, key, error.description) }
        return policy
    }

    /// `app: PROFILE` and/or `command: [argv…]`, `env:`, `ready:`, `detect:`, `options:` (a real program).
    func appSpec(_ map: [String: Node], _ key: String, node: Node) throws -> AppSpec? {
        let keys = ["app", "command", "env", "ready", "detect", "options"]
        guard keys.contains(where: { map[$0] != nil }) else { return nil }
        var spec = AppSpec(profile: try string(map["app"], "\(key).app"))
        if let c = map["command"] {
            if case .scalar = c {
                spec.command = try string(c, "\(key).command")!.split(separator: " ").map(String.init)
            } else {
                spec.command = try sequence(c, "\(key).command").enumerated().map { try string($1, "\(key).command[\($0)]", required: true, node: c)! }
            }
        }
        func stringMap(_ n: Node?, _ k: String) throws -> [String: String]? {
            guard let n else { return nil }
            guard case .mapping(let m) = n else { throw fail(n, k, "expected a mapping of NAME: value") }
            var out: [String: String] = [:]
            for (name, value) in m {
                guard case .scalar(let s) = name else { throw fail(name, k, "expected a name") }
                out[s.string] = try string(value, "\(k).\(s.string)", required: true, node: value)!
            }
            return out
        }
        spec.env = try stringMap(map["env"], "\(key).env")
        spec.options = try stringMap(map["options"], "\(key).options")
        func condition(_ n: Node?, _ k: String, mapKey: String, prefix: String) throws -> String? {
            guard let n else { return nil }
            if case .mapping = n {
                let m = try mapping(n, k, allowed: [mapKey])
                return prefix + (try string(m[mapKey], "\(k).\(mapKey)", required: true, node: n)!)
            }
            return try string(n, k)
        }
        spec.ready = try condition(map["ready"], "\(key).ready", mapKey: "stdout", prefix: "stdout:")
        spec.detect = try condition(map["detect"], "\(key).detect", mapKey: "output", prefix: "output:")
        do {
            let role = spec.profile.map { AppSpec.serverProfiles.contains($0) } == true || key.hasSuffix(".server") ? "server" : "client"
            try spec.validate(role: role)
        } catch let error as PolicyError { throw fail(node, key, error.description) }
        return spec
    }

    func faultCase(_ node: Node, _ key: String, defaults: FaultDefaults) throws -> FaultCase {
        if case .scalar = node {
            return FaultCase(fault: try fault(node, key), workload: defaults.workload, deadline: defaults.deadline,
                             faultDelay: defaults.faultDelay, silence: nil, impairment: defaults.impairment, shape: nil)
        }
        let map = try mapping(node, key, allowed: [
            "fault", "workload", "deadline", "fault_delay", "silence", "impairment",
            "delay_ms", "jitter_ms", "duplicate", "reorder", "loss_correlation", "policies",
        ])
        guard let faultNode = map["fault"] else { throw fail(node, "\(key).fault", "missing: every fault entry needs `fault:`") }
        let shape = NetemShape(
            delayMs: try double(map["delay_ms"], "\(key).delay_ms", range: 0...60_000) ?? 0,
            jitterMs: try double(map["jitter_ms"], "\(key).jitter_ms", range: 0...60_000) ?? 0,
            duplicatePercent: try double(map["duplicate"], "\(key).duplicate", range: 0...100) ?? 0,
            reorderPercent: try double(map["reorder"], "\(key).reorder", range: 0...100) ?? 0,
            lossCorrelationPercent: try double(map["loss_correlation"], "\(key).loss_correlation", range: 0...100) ?? 0)
        return FaultCase(
            fault: try fault(faultNode, "\(key).fault"),
            workload: try workload(map["workload"], "\(key).workload") ?? defaults.workload,
            deadline: try double(map["deadline"], "\(key).deadline", range: TrialSpec.deadlineRange) ?? defaults.deadline,
            faultDelay: try double(map["fault_delay"], "\(key).fault_delay", range: TrialSpec.faultDelayRange) ?? defaults.faultDelay,
            silence: try double(map["silence"], "\(key).silence", range: 0.001...86_400),
            impairment: try impairment(map["impairment"], "\(key).impairment") ?? defaults.impairment,
            shape: shape.isActive ? shape : nil,
            policies: try map["policies"].map { list in
                try sequence(list, "\(key).policies").enumerated().map { i, n in
                    try string(n, "\(key).policies[\(i)]", required: true)!
                }
            })
    }

    func impairment(_ node: Node?, _ key: String) throws -> ImpairmentEngineChoice? {
        guard let text = try string(node, key) else { return nil }
        do { return try ImpairmentEngineChoice(parsing: text) } catch let error as PolicyError { throw fail(node, key, error.description) }
    }

    func expectation(_ node: Node, _ key: String, policies: [NamedPolicy], faults: [FaultCase]) throws -> LabExpectation {
        let map = try mapping(node, key, allowed: [
            "policy", "fault", "detect_within", "percentile", "false_positive_rate_max", "survives", "outcome",
            "matches_formula", "allow_errors",
        ])
        let policy = try string(map["policy"], "\(key).policy") ?? "*"
        guard policy == "*" || policies.contains(where: { $0.name == policy }) else {
            throw fail(map["policy"], "\(key).policy",
                       "no policy named \"\(policy)\"; defined: \(policies.map(\.name).joined(separator: ", ")) or \"*\"")
        }
        let fault = try string(map["fault"], "\(key).fault") ?? "*"
        guard fault == "*" || faults.contains(where: { $0.label == fault || $0.fault.description == fault }) else {
            throw fail(map["fault"], "\(key).fault",
                       "no fault \"\(fault)\" in this lab; defined: \(faults.map(\.label).joined(separator: ", ")) or \"*\"")
        }
        var rules: [LabExpectation.Rule] = []
        if let seconds = try double(map["detect_within"], "\(key).detect_within", range: 0.001...86_400) {
            let percentile = try double(map["percentile"], "\(key).percentile", range: 1...100) ?? 95
            rules.append(.detectWithin(seconds: seconds, percentile: percentile))
        } else if map["percentile"] != nil {
            throw fail(map["percentile"], "\(key).percentile", "only meaningful with detect_within")
        }
        if let rate = try double(map["false_positive_rate_max"], "\(key).false_positive_rate_max", range: 0...1) {
            rules.append(.falsePositiveRateAtMost(rate))
        }
        if let survives = try bool(map["survives"], "\(key).survives") {
            guard survives else { throw fail(map["survives"], "\(key).survives", "only `true` is allowed (use outcome: for others)") }
            rules.append(.survives)
        }
        if let text = try string(map["outcome"], "\(key).outcome") {
            let allowed = ["detected", "missed", "false_positive", "survived", "broken"]
            guard let outcome = TrialResult.Outcome(rawValue: text) else {
                throw fail(map["outcome"], "\(key).outcome", "\"\(text)\" is not an outcome: allowed \(allowed.joined(separator: ", "))")
            }
            rules.append(.outcome(outcome))
        }
        if let matches = try bool(map["matches_formula"], "\(key).matches_formula") {
            guard matches else { throw fail(map["matches_formula"], "\(key).matches_formula", "only `true` is allowed") }
            rules.append(.matchesKernelFormula)
        }
        guard rules.count == 1 else {
            throw fail(node, key, "needs exactly one of detect_within, false_positive_rate_max, survives, outcome, matches_formula (found \(rules.count))")
        }
        let allowErrors = try bool(map["allow_errors"], "\(key).allow_errors") ?? false
        let mark = node.mark.map { "\(file):\($0.line):\($0.column)" } ?? file
        return LabExpectation(policy: policy, fault: fault, rule: rules[0], location: mark, allowErrors: allowErrors)
    }

    // MARK: Typed values

    func fault(_ node: Node, _ key: String) throws -> Fault {
        let text = try string(node, key, required: true, node: node)!
        do { return try Fault(parsing: text) } catch let error as PolicyError { throw fail(node, key, error.description) }
    }

    func workload(_ node: Node?, _ key: String) throws -> Workload? {
        guard let text = try string(node, key) else { return nil }
        do { return try Workload(parsing: text) } catch let error as PolicyError { throw fail(node, key, error.description) }
    }

    func keepalive(_ node: Node?, _ key: String) throws -> KeepaliveSetting? {
        guard let node else { return nil }
        do {
            if case .mapping = node {
                let map = try mapping(node, key, allowed: ["idle", "interval", "count"])
                let setting = KeepaliveSetting(
                    idle: try int(map["idle"], "\(key).idle", range: KeepaliveSetting.idleRange, required: true, node: node)!,
                    interval: try int(map["interval"], "\(key).interval", range: KeepaliveSetting.intervalRange, required: true, node: node)!,
                    count: try int(map["count"], "\(key).count", range: KeepaliveSetting.countRange, required: true, node: node)!)
                try setting.validate()
                return setting
            }
            return try KeepaliveSetting(parsing: try string(node, key, required: true, node: node)!)
        } catch let error as PolicyError {
            throw fail(node, key, error.description)
        }
    }

    func heartbeat(_ node: Node?, _ key: String) throws -> HeartbeatSetting? {
        guard let node else { return nil }
        do {
            if case .mapping = node {
                let map = try mapping(node, key, allowed: ["interval", "timeout"])
                let setting = HeartbeatSetting(
                    interval: try double(map["interval"], "\(key).interval", range: 0.001...86_400, required: true, node: node)!,
                    timeout: try double(map["timeout"], "\(key).timeout", range: 0.001...86_400, required: true, node: node)!)
                try setting.validate()
                return setting
            }
            return try HeartbeatSetting(parsing: try string(node, key, required: true, node: node)!)
        } catch let error as PolicyError {
            throw fail(node, key, error.description)
        }
    }

    // MARK: Primitives (each failure names file:line:column, the key and what is allowed)

    func fail(_ node: Node?, _ key: String, _ message: String) -> LabFileError {
        LabFileError(file: file, line: node?.mark?.line ?? 0, column: node?.mark?.column ?? 0, key: key, message: message)
    }

    func mapping(_ node: Node, _ key: String, allowed: [String]) throws -> [String: Node] {
        guard case .mapping(let map) = node else {
            throw fail(node, key, "expected a mapping with keys \(allowed.joined(separator: ", "))")
        }
        var result: [String: Node] = [:]
        for (k, v) in map {
            guard case .scalar(let scalar) = k, allowed.contains(scalar.string) else {
                let name = k.scalar?.string ?? "\(k)"
                // `{keepalive: 2,1,3}` splits at the commas in YAML's flow style.
                let hint = Double(name) != nil ? " (inside { } a comma separates keys: quote values like \"2,1,3\")" : ""
                throw fail(k, key.isEmpty ? name : "\(key).\(name)",
                           "unknown key; allowed here: \(allowed.joined(separator: ", "))\(hint)")
            }
            result[scalar.string] = v
        }
        return result
    }

    func sequence(_ node: Node?, _ key: String, required: Bool = false, node parent: Node? = nil) throws -> [Node] {
        guard let node else {
            if required { throw fail(parent, key, "missing: a non-empty list is required") }
            return []
        }
        guard case .sequence(let seq) = node else { throw fail(node, key, "expected a list") }
        if required && seq.isEmpty { throw fail(node, key, "must not be empty") }
        return Array(seq)
    }

    func string(_ node: Node?, _ key: String, required: Bool = false, node parent: Node? = nil) throws -> String? {
        guard let node else {
            if required { throw fail(parent, key, "missing: a value is required") }
            return nil
        }
        guard case .scalar(let scalar) = node else { throw fail(node, key, "expected a single value, not a list or mapping") }
        return scalar.string
    }

    func int(_ node: Node?, _ key: String, range: ClosedRange<Int>, required: Bool = false, node parent: Node? = nil) throws -> Int? {
        guard let text = try string(node, key, required: required, node: parent) else { return nil }
        guard let value = Int(text) else { throw fail(node, key, "\"\(text)\" is not a whole number (allowed \(range.lowerBound)…\(range.upperBound))") }
        guard range.contains(value) else { throw fail(node, key, "\(value) is out of range: allowed \(range.lowerBound)…\(range.upperBound)") }
        return value
    }

    func double(_ node: Node?, _ key: String, range: ClosedRange<Double>, required: Bool = false, node parent: Node? = nil) throws -> Double? {
        guard let text = try string(node, key, required: required, node: parent) else { return nil }
        guard let value = Double(text), value.isFinite else {
            throw fail(node, key, "\"\(text)\" is not a number (allowed \(Fault.format(range.lowerBound))…\(Fault.format(range.upperBound)))")
        }
        guard range.contains(value) else {
            throw fail(node, key, "\(text) is out of range: allowed \(Fault.format(range.lowerBound))…\(Fault.format(range.upperBound))")
        }
        return value
    }

    func bool(_ node: Node?, _ key: String) throws -> Bool? {
        guard let text = try string(node, key) else { return nil }
        switch text {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(node, key, "\"\(text)\" is not a boolean: use true or false")
        }
    }

    static func line(of error: YamlError) -> Int {
        if case .scanner(_, _, let mark, _) = error { return mark.line }
        if case .parser(_, _, let mark, _) = error { return mark.line }
        return 0
    }
}
