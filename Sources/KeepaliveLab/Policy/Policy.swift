/// Why a policy or workload cannot be used. Messages go straight to the user (lab files, CLI flags),
/// so they name the field, the offending value and what would have been accepted.
public enum PolicyError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The text does not have the expected shape at all.
    case malformed(field: String, input: String, expected: String)
    /// The value parsed but the kernel (or the lab) would reject it; `rule` says what is accepted.
    case outOfRange(field: String, value: String, rule: String)
    /// Two settings that cannot be combined.
    case conflict(String)

    public var description: String {
        switch self {
        case let .malformed(field, input, expected):
            return "\(field) \"\(input)\" is malformed: expected \(expected)"
        case let .outOfRange(field, value, rule):
            return "\(field) \(value) is out of range: \(rule)"
        case let .conflict(message):
            return message
        }
    }
}

/// Per-socket keepalive timers: TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT.
public struct KeepaliveSetting: Codable, Sendable, Equatable, CustomStringConvertible {
    public var idle: Int
    public var interval: Int
    public var count: Int

    // The kernel's own limits (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
    public static let idleRange = 1...32767
    public static let intervalRange = 1...32767
    public static let countRange = 1...127

    public init(idle: Int, interval: Int, count: Int) {
        self.idle = idle
        self.interval = interval
        self.count = count
    }

    /// Parses "IDLE,INTERVAL,COUNT", e.g. "2,1,3".
    public init(parsing text: String) throws {
        let parts = splitFields(text)
        let expected = "IDLE,INTERVAL,COUNT in whole seconds, e.g. \"2,1,3\""
        guard parts.count == 3 else {
            throw PolicyError.malformed(field: "keepalive", input: text, expected: expected)
        }
        var values: [Int] = []
        for (part, name) in zip(parts, ["idle", "interval", "count"]) {
            guard let value = Int(part) else {
                throw PolicyError.malformed(field: "keepalive \(name)", input: part, expected: "an integer (\(expected))")
            }
            values.append(value)
        }
        self.init(idle: values[0], interval: values[1], count: values[2])
        try validate()
    }

    public func validate() throws {
        try check(idle, in: Self.idleRange, field: "keepalive idle", option: "TCP_KEEPIDLE", unit: " s")
        try check(interval, in: Self.intervalRange, field: "keepalive interval", option: "TCP_KEEPINTVL", unit: " s")
        try check(count, in: Self.countRange, field: "keepalive count", option: "TCP_KEEPCNT", unit: "")
    }

    public var description: String { "\(idle),\(interval),\(count)" }

    private func check(_ value: Int, in range: ClosedRange<Int>, field: String, option: String, unit: String) throws {
        guard range.contains(value) else {
            throw PolicyError.outOfRange(
                field: field, value: "\(value)",
                rule: "\(option) accepts \(range.lowerBound)…\(range.upperBound)\(unit)")
        }
    }
}

/// Application-level heartbeat: the client sends a KAHB every `interval` seconds and gives up when
/// the oldest unanswered one is `timeout` seconds old.
public struct HeartbeatSetting: Codable, Sendable, Equatable, CustomStringConvertible {
    public var interval: Double
    public var timeout: Double

    /// One day: anything longer is surely a typo (milliseconds given as seconds).
    public static let maximumSeconds = 86400.0

    public init(interval: Double, timeout: Double) {
        self.interval = interval
        self.timeout = timeout
    }

    /// Parses "INTERVAL,TIMEOUT" in seconds, e.g. "0.2,1".
    public init(parsing text: String) throws {
        let parts = splitFields(text)
        let expected = "INTERVAL,TIMEOUT in seconds, e.g. \"0.2,1\""
        guard parts.count == 2 else {
            throw PolicyError.malformed(field: "heartbeat", input: text, expected: expected)
        }
        var values: [Double] = []
        for (part, name) in zip(parts, ["interval", "timeout"]) {
            guard let value = Double(part) else {
                throw PolicyError.malformed(field: "heartbeat \(name)", input: part, expected: "a number (\(expected))")
            }
            values.append(value)
        }
        self.init(interval: values[0], timeout: values[1])
        try validate()
    }

    public func validate() throws {
        try checkSeconds(interval, field: "heartbeat interval")
        try checkSeconds(timeout, field: "heartbeat timeout")
    }

    public var description: String { "\(formatSeconds(interval)),\(formatSeconds(timeout))" }
}

/// What the lab configures on a socket (and in the application) for one trial.
public struct Policy: Codable, Sendable, Equatable {
    /// Per-socket keepalive timers; implies SO_KEEPALIVE.
    public var keepalive: KeepaliveSetting?
    /// SO_KEEPALIVE without per-socket timers: the namespace's net.ipv4.tcp_keepalive_* sysctls apply.
    public var useSysctlDefaults: Bool
    /// TCP_USER_TIMEOUT in milliseconds; 0 means "kernel default".
    public var userTimeoutMs: UInt32?
    public var heartbeat: HeartbeatSetting?
    /// A real program in place of the built-in peer (its keepalive/user timeout above are handed
    /// to the program's own options, not applied by the lab).
    public var app: AppSpec? = nil

    /// The kernel takes an int and rejects negatives.
    public static let userTimeoutRange: ClosedRange<UInt32> = 0...UInt32(Int32.max)
    public static let none = Policy()

    public init(
        keepalive: KeepaliveSetting? = nil, useSysctlDefaults: Bool = false,
        userTimeoutMs: UInt32? = nil, heartbeat: HeartbeatSetting? = nil, app: AppSpec? = nil
    ) {
        self.app = app
        self.keepalive = keepalive
        self.useSysctlDefaults = useSysctlDefaults
        self.userTimeoutMs = userTimeoutMs
        self.heartbeat = heartbeat
    }

    // Written out so that a lab file may omit `useSysctlDefaults`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        keepalive = try c.decodeIfPresent(KeepaliveSetting.self, forKey: .keepalive)
        useSysctlDefaults = try c.decodeIfPresent(Bool.self, forKey: .useSysctlDefaults) ?? false
        userTimeoutMs = try c.decodeIfPresent(UInt32.self, forKey: .userTimeoutMs)
        heartbeat = try c.decodeIfPresent(HeartbeatSetting.self, forKey: .heartbeat)
        app = try c.decodeIfPresent(AppSpec.self, forKey: .app)
    }

    /// Parses a TCP_USER_TIMEOUT in milliseconds: "3000" or "3000ms".
    public static func parseUserTimeout(_ text: String) throws -> UInt32 {
        var digits = text.trimmingWhitespace()
        if digits.hasSuffix("ms") { digits.removeLast(2) }
        guard let value = Int64(digits.trimmingWhitespace()) else {
            throw PolicyError.malformed(field: "user-timeout", input: text, expected: "milliseconds, e.g. \"3000\"")
        }
        guard value >= 0, value <= Int64(userTimeoutRange.upperBound) else {
            throw userTimeoutOutOfRange("\(value)")
        }
        return UInt32(value)
    }

    /// True when the socket gets SO_KEEPALIVE.
    public var enablesKeepalive: Bool { keepalive != nil || useSysctlDefaults }

    /// One line for reports, e.g. "keepalive 2,1,3 + user-timeout 3000ms".
    public var summary: String {
        var parts: [String] = []
        if let app { parts.append("app \(app.summary)") }
        if let keepalive { parts.append("keepalive \(keepalive)") }
        if useSysctlDefaults { parts.append("keepalive (sysctl defaults)") }
        if let userTimeoutMs { parts.append("user-timeout \(userTimeoutMs)ms") }
        if let heartbeat { parts.append("heartbeat \(heartbeat)") }
        return parts.isEmpty ? "none" : parts.joined(separator: " + ")
    }

    public func validate() throws {
        if keepalive != nil && useSysctlDefaults {
            throw PolicyError.conflict(
                "keepalive \(keepalive!) and useSysctlDefaults are mutually exclusive: "
                    + "per-socket timers override the sysctl defaults")
        }
        try keepalive?.validate()
        if let userTimeoutMs, !Self.userTimeoutRange.contains(userTimeoutMs) {
            throw Self.userTimeoutOutOfRange("\(userTimeoutMs)")
        }
        try heartbeat?.validate()
        if let app {
            let role = app.profile.map { AppSpec.serverProfiles.contains($0) } == true ? "server" : "client"
            try app.validate(role: role)
        }
    }

    private static func userTimeoutOutOfRange(_ value: String) -> PolicyError {
        .outOfRange(
            field: "user-timeout", value: value,
            rule: "TCP_USER_TIMEOUT accepts \(userTimeoutRange.lowerBound)…\(userTimeoutRange.upperBound) ms")
    }
}

/// What the application does once connected.
/// Encoded as its text form ("idle", "rr:5", "stream") so lab files and JSON read the same.
public enum Workload: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Nothing after the first exchange: only keepalive (or heartbeats) talk.
    case idle
    /// A request/response every `seconds`.
    case rr(seconds: Double)
    /// The client writes as fast as the socket accepts.
    case stream

    public init(parsing text: String) throws {
        let trimmed = text.trimmingWhitespace()
        let expected = "\"idle\", \"rr:SECONDS\" (e.g. \"rr:5\") or \"stream\""
        switch trimmed {
        case "idle": self = .idle
        case "stream": self = .stream
        default:
            guard trimmed.hasPrefix("rr:") else {
                throw PolicyError.malformed(field: "workload", input: text, expected: expected)
            }
            let number = String(trimmed.dropFirst(3)).trimmingWhitespace()
            guard let seconds = Double(number) else {
                throw PolicyError.malformed(field: "workload rr period", input: number, expected: "seconds (\(expected))")
            }
            self = .rr(seconds: seconds)
            try validate()
        }
    }

    public func validate() throws {
        if case .rr(let seconds) = self { try checkSeconds(seconds, field: "workload rr period") }
    }

    public var description: String {
        switch self {
        case .idle: return "idle"
        case .stream: return "stream"
        case .rr(let seconds): return "rr:\(formatSeconds(seconds))"
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

// MARK: - Helpers shared by the parsers

/// Splits "a, b ,c" into trimmed fields.
private func splitFields(_ text: String) -> [String] {
    text.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingWhitespace() }
}

private func checkSeconds(_ value: Double, field: String) throws {
    guard value.isFinite, value > 0, value <= HeartbeatSetting.maximumSeconds else {
        throw PolicyError.outOfRange(
            field: field, value: formatSeconds(value),
            rule: "must be > 0 and ≤ \(Int(HeartbeatSetting.maximumSeconds)) s")
    }
}

/// "1" rather than "1.0", "0.2" stays "0.2": keeps summaries and round-tripped text tidy.
fileprivate func formatSeconds(_ value: Double) -> String {
    if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return "\(value)"
}

fileprivate extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
