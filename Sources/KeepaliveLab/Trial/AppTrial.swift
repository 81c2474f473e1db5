import CKeepaliveShim
import Foundation
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

/// What a trial with real programs adds to its result.
public struct AppTrialReport: Codable, Sendable {
    public var client: String
    public var server: String
    public var clientArgv: [String]
    public var serverArgv: [String]
    /// "exit", "socket-gone", "output:REGEX".
    public var detectMode: String
    /// How the program noticed, in words: e.g. `exit 1: "E read(5, …): Connection timed out"`.
    public var noticed: String?
    /// Where the errno came from: "output" (the program printed the error) or "wire" (A's own RST
    /// after unanswered probes → ETIMEDOUT, B's RST → ECONNRESET).
    public var errnoSource: String?
    public var exitStatus: Int32?
    /// Fault → the program's exit.
    public var exitS: Double?
    /// Fault → the kernel's verdict on the program's socket (POLLERR/POLLHUP on a copy of it).
    public var socketGoneS: Double?
    /// The socket's state then ("CLOSE") and whether sock_diag still listed the connection.
    public var socketStateAtGone: String?
    public var inSocketTableAfterGone: Bool?
    public var tcpInfoAtGone: PeerTCPInfo?
    /// The line that matched an output condition (or the program's last words).
    public var matchedLine: String?
    /// The settings the program applied to its socket, read back just before the fault.
    public var settings: AppSocketSettings?
    /// Small data segments on the idle connection after the fault (application pings), per direction.
    public var appPingsSent: Int
    public var appPingReplies: Int
    public var appPingBytes: Int
    /// The last lines the client wrote (stderr and stdout).
    public var clientOutputTail: String?
    /// "client" (the program in A noticed; every fault but crash-client) or "server" (crash-client:
    /// the program in B noticed its dead client). nil in results from before server-side detection.
    public var detectingSide: String? = nil
    /// The last lines the server wrote, when it was the detecting side.
    public var serverOutputTail: String? = nil

    /// Context switches per second of the trial's clock, summed over each program's process tree,
    /// from the fault to the end of the wait (processes alive at both ends): how often the program
    /// wakes up while its connection is idle. A program on a periodic timer shows its frequency
    /// (redis-server's serverCron: hz 10); under virtual time every wakeup costs wall time.
    /// nil when no process of the tree lived through the interval.
    public var clientWakeupsPerS: Double? = nil
    public var serverWakeupsPerS: Double? = nil

    /// The program whose verdict is the detection.
    public var detector: String { detectingSide == "server" ? server : client }

    enum CodingKeys: String, CodingKey {
        case client, server
        case clientArgv = "client_argv"
        case serverArgv = "server_argv"
        case detectMode = "detect_mode"
        case noticed
        case errnoSource = "errno_source"
        case exitStatus = "exit_status"
        case exitS = "exit_s"
        case socketGoneS = "socket_gone_s"
        case socketStateAtGone = "socket_state_at_gone"
        case inSocketTableAfterGone = "in_socket_table_after_gone"
        case tcpInfoAtGone = "tcp_info_at_gone"
        case matchedLine = "matched_line"
        case settings
        case appPingsSent = "app_pings_sent"
        case appPingReplies = "app_ping_replies"
        case appPingBytes = "app_ping_bytes"
        case clientOutputTail = "client_output_tail"
        case detectingSide = "detecting_side"
        case serverOutputTail = "server_output_tail"
        case clientWakeupsPerS = "client_wakeups_per_s"
        case serverWakeupsPerS = "server_wakeups_per_s"
    }
}

extension Trial {
    /// True when a policy names a program instead of the built-in peer.
    var usesApps: Bool { spec.clientPolicy.app != nil || spec.serverPolicy.app != nil }

    /// Largest payload counted as an application ping (ssh's keepalive@openssh.com is 36–100 bytes
    /// encrypted, Redis PING 14, a psql query tens of bytes).
    static let appPingMaxBytes = 256

    /// Where trial directories for programs go: $TMPDIR (the guest's tmpfs under UML) or /tmp.
    static var appTemporaryBase: String {
        let dir = ProcessInfo.processInfo.environment["TMPDIR"] ?? ""
        return dir.hasPrefix("/") ? (dir.hasSuffix("/") ? String(dir.dropLast()) : dir) : "/tmp"
    }

    static func describe(_ d: AppCondition.Detect) -> String {
        switch d {
        case .exit: return "exit"
        case .socketGone: return "socket-gone"
        case .output(let r): return "output:\(r)"
        }
    }

    /// An application-level timer the program runs itself (ssh's ServerAlive).
    static func appExpectation(_ app: AppSpec, analysis: TrialAnalysis) -> Expectation? {
        guard app.profile == "ssh", analysis.spec.fault.peerIsDead, analysis.spec.fault != .kill,
              let interval = sshServerAliveInterval(app), interval > 0 else { return nil }
        let count = Double(sshCount(app))
        let implied = app.options?["ServerAliveInterval"] == nil ? " (Debian's ssh: BatchMode=yes implies ServerAliveInterval 300)" : ""
        return Expectation(anchor: .lastReceived, seconds: interval * (count + 1),
                           formula: "ssh: ServerAliveInterval × (ServerAliveCountMax + 1) = \(Fault.format(interval)) × \(Fault.format(count + 1))\(implied) (accepted from \(Fault.format(interval * count)) s: ssh's check timer is not reset by each received byte)")
    }

    /// The ServerAliveInterval ssh really runs with: the option, else — the profile always passes
    /// BatchMode=yes — 300 s on Debian's OpenSSH ("300 if the BatchMode option is set
    /// (Debian-specific)", ssh_config(5)), else 0.
    static func sshServerAliveInterval(_ app: AppSpec) -> Double? {
        if let value = app.options?["ServerAliveInterval"] { return Double(value) }
        return debianOpenSSH ? 300 : nil
    }

    static let debianOpenSSH = FileManager.default.fileExists(atPath: "/usr/share/doc/openssh-client/changelog.Debian.gz")

    static func sshCount(_ app: AppSpec) -> Int { app.options?["ServerAliveCountMax"].flatMap(Int.init) ?? 3 }

    static func errnoFromText(_ text: String) -> String? {
        let table: [(String, String)] = [
            ("Connection timed out", "ETIMEDOUT"), ("timed out", "ETIMEDOUT"),
            ("Connection reset by peer", "ECONNRESET"), ("No route to host", "EHOSTUNREACH"),
            ("Broken pipe", "EPIPE"), ("Connection refused", "ECONNREFUSED"),
        ]
        return table.first { text.localizedCaseInsensitiveContains($0.0) }?.1
    }

    /// Waits for a program's readiness condition; throws with its output when it exits first or
    /// never gets there. Socket-table conditions are checked when the program writes something and
    /// otherwise with a doubling back-off (5 ms … 500 ms), never on a fixed period.
    static func waitReady(_ app: AppProcess, _ command: AppCommand, role: String, ns: NetworkNamespace, port: UInt16,
                          timeout: Double) throws {
        let deadline = PeerEvent.now() + timeout
        func fail(_ why: String) -> TrialError {
            TrialError(message: "\(role) program \(app.name) \(why):\n\(app.tail())")
        }
        func listening() -> Bool {
            ((try? SockDiag.dump(in: ns)) ?? []).contains { $0.state == SockDiag.listen && $0.local.port == port }
        }
        switch command.ready {
        case .none:
            return
        case .output(let pattern):
            let regex = try NSRegularExpression(pattern: pattern)
            let ok = app.wait(until: deadline) { $0.firstLine(matching: regex, locked: true) != nil || $0.lockedExit != nil }
            if let exit = app.exited { throw fail("exited (status \(exit.status)) before it was ready (/\(pattern)/)") }
            guard ok else { throw fail("never became ready: no line matching /\(pattern)/ within \(Fault.format(timeout)) s") }
            if command.confirmListen {
                try backoff(app, until: deadline, fail: fail, what: "listening on port \(port) in \(ns.name)") { listening() }
            }
        case .listen:
            try backoff(app, until: deadline, fail: fail, what: "listening on port \(port) in \(ns.name)") { listening() }
        case .connected:
            try backoff(app, until: deadline, fail: fail, what: "connected to \(serverAddress):\(port)") {
                let table = (try? SockDiag.dump(in: ns)) ?? []
                let inodes = Set(SockDiag.processTree(app.pid).flatMap { SockDiag.socketDescriptors(of: $0).keys })
                return table.contains { $0.state == SockDiag.established && $0.remote.port == port && inodes.contains($0.inode) }
            }
        }
    }

    private static func backoff(_ app: AppProcess, until deadline: Double, fail: (String) -> TrialError, what: String,
                                _ check: () -> Bool) throws {
        var step = 0.005
        while true {
            if check() { return }
            if let exit = app.exited { throw fail("exited (status \(exit.status)) before it was \(what)") }
            let now = PeerEvent.now()
            if now >= deadline { throw fail("was never \(what)") }
            let count = app.allLines.count
            _ = app.wait(until: min(deadline, now + step)) { $0.lockedLines.count != count || $0.lockedExit != nil }
            step = min(step * 2, 0.5)
        }
    }

    static func waitConnection(_ app: AppProcess, ns: NetworkNamespace, port: UInt16, timeout: Double) throws -> BorrowedSocket? {
        var found: BorrowedSocket?
        do {
            try backoff(app, until: PeerEvent.now() + timeout, fail: { TrialError(message: $0) }, what: "connected") {
                found = try? BorrowedSocket.find(in: ns, pids: SockDiag.processTree(app.pid), remote: (serverAddress, port))
                return found != nil
            }
        } catch let error as TrialError where error.message.hasPrefix("exited") {
            throw TrialError(message: "client program \(app.name) \(error.message) to \(serverAddress):\(port):\n\(app.tail())")
        } catch {
            return nil
        }
        return found
    }

    /// Voluntary + involuntary context switches of each process in `root`'s tree (/proc/PID/status).
    static func contextSwitches(_ root: pid_t) -> [pid_t: Int] {
        var result: [pid_t: Int] = [:]
        for pid in SockDiag.processTree(root) {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { continue }
            var total = 0
            for line in text.split(separator: "\n") where line.contains("ctxt_switches:") {
                total += Int(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) ?? 0
            }
            result[pid] = total
        }
        return result
    }

    /// The server's accepted connection from `client` (crash-client: the server detects).
    static func waitAccepted(_ app: AppProcess, ns: NetworkNamespace, port: UInt16, client: (String, UInt16),
                             timeout: Double) throws -> BorrowedSocket? {
        var found: BorrowedSocket?
        do {
            try backoff(app, until: PeerEvent.now() + timeout, fail: { TrialError(message: $0) }, what: "accepting") {
                found = try? BorrowedSocket.find(in: ns, pids: SockDiag.processTree(app.pid), remote: client, localPort: port)
                return found != nil
            }
        } catch {
            return nil
        }
        return found
    }

}
