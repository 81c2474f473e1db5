import Foundation

/// What one cell's real program did, over its trials: when it noticed, how (exit and status, error
/// text, its socket ended by the kernel and in which TCP state), what that cost on the wire (kernel
/// probes vs the program's own pings), and the settings read back from its socket next to what the
/// policy asked for. Computed here from the results; `MarkdownReport` only formats it.
public struct ProgramFacts: Codable, Sendable, Equatable {
    /// The detecting program as the lab names it, e.g. "socat", "redis-server tcp-keepalive=2".
    public var program: String
    /// "client" (in A) or "server" (in B: crash-client).
    public var side: String
    /// The other end, e.g. "socat-echo".
    public var partner: String
    /// "exit", "socket-gone", "output:REGEX".
    public var detectMode: String
    public var trials: Int
    /// Trials in which the program noticed before the deadline, and when (seconds after the fault).
    public var noticed: Int
    public var noticedMedianS: Double?
    public var noticedMaxS: Double?
    /// How, most common over the trials that noticed: "exit 255", "socket gone (kernel error, state CLOSE)".
    public var how: String?
    /// Most common exit status of the trials in which the program exited.
    public var exitStatus: Int32?
    /// Trials in which the program exited after the fault.
    public var exited: Int
    /// The program's own words (the line that matched, or its last line), from the representative trial.
    public var errorText: String?
    /// Most common errno and where it came from ("output": the program printed it; "wire": A's or B's RST).
    public var errno: String?
    public var errnoSource: String?
    /// Trials in which the kernel ended the program's socket (POLLERR/POLLHUP on a copy of it), its
    /// state then, and in how many of those sock_diag no longer listed it.
    public var socketGone: Int
    public var socketState: String?
    public var leftSocketTable: Int
    /// Medians over trials, after the fault: keepalive probes the detecting side's kernel sent,
    /// small data segments the program sent itself (application pings), their replies, and bytes.
    public var kernelProbesMedian: Double?
    public var appPingsMedian: Double?
    public var appPingRepliesMedian: Double?
    public var appPingBytesMedian: Double?
    public var bytesAfterFaultMedian: Double?
    /// Medians of `AppTrialReport.clientWakeupsPerS` / `serverWakeupsPerS`: how often each program
    /// woke up per second of the trial's clock after the fault.
    public var clientWakeupsPerSMedian: Double?
    public var serverWakeupsPerSMedian: Double?
    /// What the policy asked for: the lab's keepalive handed to the program, its options, sysctls.
    public var asked: String
    /// What the program's socket really had, read back just before the fault (most common; `readBackVaries`
    /// when trials disagreed).
    public var readBack: AppSocketSettings?
    public var readBackVaries: Bool

    /// nil when the results have no real program.
    public init?(results: [TrialResult]) {
        let apps = results.compactMap { r in r.app.map { (r, $0) } }
        guard let (first, firstApp) = apps.first else { return nil }
        side = firstApp.detectingSide ?? "client"
        program = firstApp.detector
        partner = side == "server" ? firstApp.client : firstApp.server
        detectMode = firstApp.detectMode
        trials = apps.count
        let noticedTrials = apps.filter { $0.0.outcome == .detected || $0.0.outcome == .falsePositive }
        noticed = noticedTrials.count
        let latencies = noticedTrials.compactMap { $0.0.detectionLatencyS }
        noticedMedianS = ReportStats.median(latencies)
        noticedMaxS = latencies.max()
        how = ReportStats.mostCommon(noticedTrials.compactMap { $0.1.noticed.map(Self.howKind) })
        let exits = apps.filter { $0.1.exitS != nil && $0.1.exitStatus != nil }
        exited = exits.count
        exitStatus = ReportStats.mostCommon(exits.map { String($0.1.exitStatus!) }).flatMap { Int32($0) }
        let representative = noticedTrials.first ?? apps.first!
        errorText = representative.1.matchedLine.map(Self.cleanLine)
        errno = ReportStats.mostCommon(noticedTrials.compactMap { $0.0.errno })
        errnoSource = ReportStats.mostCommon(noticedTrials.compactMap { $0.1.errnoSource })
        let gone = apps.filter { $0.1.socketGoneS != nil }
        socketGone = gone.count
        socketState = ReportStats.mostCommon(gone.compactMap { $0.1.socketStateAtGone })
        leftSocketTable = gone.filter { $0.1.inSocketTableAfterGone == false }.count
        kernelProbesMedian = ReportStats.median(apps.map { Double($0.0.probesSent) })
        appPingsMedian = ReportStats.median(apps.map { Double($0.1.appPingsSent) })
        appPingRepliesMedian = ReportStats.median(apps.map { Double($0.1.appPingReplies) })
        appPingBytesMedian = ReportStats.median(apps.map { Double($0.1.appPingBytes) })
        bytesAfterFaultMedian = ReportStats.median(apps.map { Double($0.0.bytesAfterFault) })
        clientWakeupsPerSMedian = ReportStats.median(apps.compactMap { $0.1.clientWakeupsPerS })
        serverWakeupsPerSMedian = ReportStats.median(apps.compactMap { $0.1.serverWakeupsPerS })
        asked = Self.asked(first.spec, side: side)
        let settings = apps.compactMap { $0.1.settings }
        var counts: [String: (AppSocketSettings, Int)] = [:]
        for s in settings { counts[s.summary, default: (s, 0)].1 += 1 }
        readBack = counts.values.max { a, b in a.1 != b.1 ? a.1 < b.1 : a.0.summary > b.0.summary }?.0
        readBackVaries = counts.count > 1
    }

    /// "exit 255: \"Timeout, …\"" → "exit 255".
    static func howKind(_ noticed: String) -> String {
        guard let r = noticed.range(of: ": \"") else { return noticed }
        return String(noticed[..<r.lowerBound])
    }

    /// Drops a log line's own prefix (redis: `PID:ROLE DD Mon YYYY HH:MM:SS.mmm - `; postgres:
    /// `YYYY-MM-DD HH:MM:SS.mmm UTC [PID] `), so lines compare across trials.
    static func cleanLine(_ line: String) -> String {
        let patterns = [#"^\d+:[A-Z] \d{1,2} \w{3} \d{4} [\d:.]+ [-*#.] "#, #"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[\d+\] "#]
        var s = line
        for p in patterns {
            if let r = s.range(of: p, options: .regularExpression) { s.removeSubrange(r) }
        }
        return String(s.prefix(160))
    }

    /// What the lab asked of the detecting program.
    static func asked(_ spec: TrialSpec, side: String) -> String {
        let policy = side == "server" ? spec.serverPolicy : spec.clientPolicy
        var parts: [String] = []
        if let k = policy.keepalive { parts.append("keepalive \(k)") }
        if policy.useSysctlDefaults { parts.append("keepalive (sysctl defaults)") }
        if let u = policy.userTimeoutMs { parts.append("user-timeout \(u) ms") }
        if let options = policy.app?.options, !options.isEmpty {
            parts.append(options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        }
        if let k = spec.namespaceKeepalive { parts.append("sysctl tcp_keepalive \(k)") }
        return parts.isEmpty ? "nothing (the program's defaults)" : parts.joined(separator: "; ")
    }
}

extension Cell {
    /// The cell's real program, if it ran one.
    public var programFacts: ProgramFacts? { ProgramFacts(results: results) }
}
