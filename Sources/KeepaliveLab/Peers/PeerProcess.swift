import CKeepaliveShim
import Foundation
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

public enum PeerProcessError: Error, CustomStringConvertible {
    case spawn(errno: Int32, String)

    public var description: String {
        switch self {
        case let .spawn(code, context): return "\(context): \(String(cString: strerror(code)))"
        }
    }
}

/// The harness's handle on one peer process (`keepalive-lab peer …`): spawns it, collects its
/// events on a reader thread, sends commands and reaps it.
///
/// The child gets PR_SET_PDEATHSIG, which fires when the *thread* that spawned it exits: spawn from
/// a thread that outlives the peer.
// @unchecked: reaped/exitStatus guarded by `reapLock`, which a wait releases around its pidfd poll (not a scoped lock).
public final class PeerProcess: @unchecked Sendable {
    public let pid: pid_t
    public let config: PeerConfig

    private let state = SharedState()
    /// Our end of the child's stdin.
    private let control: Int32
    /// Readable once the peer has exited; nil where the kernel has no pidfd_open.
    private let pidfd: PidFD?
    private let reapLock = NSLock()
    private var exitStatus: Int32?
    private var reaped = false

    /// The running executable, resolved (what the harness spawns in production).
    public static var selfExecutable: String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(cString: buffer) : CommandLine.arguments[0]
    }

    /// The lean peer binary (`keepalive-lab-peer`, no Foundation) installed next to `executable`, or
    /// nil: then `executable peer --config JSON` runs the same session at ~10× the start-up cost.
    /// `KEEPALIVE_LAB_PEER=full` forces the latter (to compare the two).
    public static func leanPeer(near executable: String) -> String? {
        if fullPeerForced { return nil }
        if executable.hasSuffix("/keepalive-lab-peer") || executable == "keepalive-lab-peer" { return executable }
        guard let slash = executable.lastIndex(of: "/") else { return nil }
        let candidate = String(executable[...slash]) + "keepalive-lab-peer"
        return access(candidate, X_OK) == 0 ? candidate : nil
    }

    /// `KEEPALIVE_LAB_PEER=full`: every peer is the Foundation one, to compare the two.
    static var fullPeerForced: Bool { getenv("KEEPALIVE_LAB_PEER").map({ String(cString: $0) }) == "full" }

    /// What `run`, `trial` and `bench` say first when their peers will not be the lean binary, and
    /// why (nil when they will): every trial then pays the Foundation peer's start-up.
    public static func slowPeerNotice(near executable: String) -> String? {
        guard leanPeer(near: executable) == nil else { return nil }
        let why = fullPeerForced
            ? "KEEPALIVE_LAB_PEER=full is set"
            : "there is no executable keepalive-lab-peer next to \(executable) (a partial build: "
                + "`swift build -c release` builds both products)"
        return "peers: the Foundation-linked `keepalive-lab peer`, not the lean keepalive-lab-peer, because \(why); "
            + "each trial's peers cost more CPU to start (Reports/benchmark.md measures both)"
    }

    /// Spawns a peer. `executable` is keepalive-lab (or keepalive-lab-peer): the lean peer next to
    /// it runs when it is there.
    public init(executable given: String, netnsPath: String?, config: PeerConfig) throws {
        self.config = config
        let executable: String
        var arguments: [String]
        if let lean = Self.leanPeer(near: given) {
            executable = lean
            arguments = [lean]
            if let netnsPath { arguments += ["--netns", netnsPath] }
            arguments += config.settings.arguments
        } else {
            executable = given
            let json = String(decoding: try JSONEncoder().encode(config), as: UTF8.self)
            arguments = [executable, "peer"]
            if let netnsPath { arguments += ["--netns", netnsPath] }
            arguments += ["--config", json]
        }

        // Socket pairs rather than pipes: they can be created CLOEXEC atomically (Glibc's module lacks
        // pipe2), so peers spawned concurrently never inherit each other's ends (an inherited write end
        // would hide EOF), and writing to a dead peer's stdin gives EPIPE with MSG_NOSIGNAL, not SIGPIPE.
        let unixStream = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        var pairs: [[Int32]] = []
        for _ in 0..<3 {
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, unixStream, 0, &pair) == 0 else {
                let err = errno
                pairs.joined().forEach { close($0) }
                throw PeerProcessError.spawn(errno: err, "socketpair")
            }
            pairs.append(pair)
        }
        let (stdinPair, stdoutPair, stderrPair) = (pairs[0], pairs[1], pairs[2])

        // The peer gets these three and nothing else: libpcap's packet sockets and dump files are
        // not CLOEXEC, and a peer that inherited other trials' captures kept them open (and its
        // exit stalled on them). It starts with no signal blocked and default signal dispositions
        // whatever the harness does with them. Spawn does this without copying the harness's
        // descriptor table (no options, three descriptors: see kal_spawn in kal_spawn.h).
        let childFds = [stdinPair[1], stdoutPair[1], stderrPair[1]]
        let spawned: pid_t
        do {
            spawned = try Spawn.start(path: executable, arguments: arguments, fds: childFds)
        } catch {
            for fd in childFds + [stdinPair[0], stdoutPair[0], stderrPair[0]] { close(fd) }
            throw PeerProcessError.spawn(errno: (error as? SystemCallError)?.errno ?? EINVAL, "spawn \(executable)")
        }
        for fd in childFds { close(fd) }
        let child = spawned
        pid = child
        PeerPriority.current.apply(to: child)
        control = stdinPair[0]
        if case let .opened(fd) = PidFD.open(child) { pidfd = fd } else { pidfd = nil }

        // Only the shared state is captured, so deinit can still run (and kill the child) while
        // the reader thread waits for EOF.
        let (state, outFD, errFD) = (self.state, stdoutPair[0], stderrPair[0])
        let reader = Thread { state.read(stdout: outFD, stderr: errFD) }
        reader.name = "peer-\(child)-reader"
        reader.start()
    }

    deinit {
        reapLock.lock()
        if !reaped {
            kill(pid, SIGKILL)
            reap(blocking: true)
        }
        reapLock.unlock()
        close(control)
    }

    // MARK: Events

    /// Every event so far, in order.
    public var events: [PeerEvent] { state.withLock { state.events } }

    /// True once the peer's stdout has closed: no event will follow, and waits return at once.
    public var outputEnded: Bool { state.outputEnded }

    /// What the peer wrote to stderr (and any stdout line that was not an event).
    public var stderrText: String { state.withLock { String(decoding: state.stderr, as: UTF8.self) } }

    /// The earliest event of `kind` not yet returned by a wait, waiting up to `timeout` seconds.
    /// Returns nil on timeout or when the peer's stdout closed without one.
    public func waitFor(_ kind: PeerEvent.Kind, timeout: Double) -> PeerEvent? {
        waitForAny([kind], timeout: timeout)
    }

    /// Like `waitFor`, for the earliest unreturned event whose kind is in `kinds`.
    public func waitForAny(_ kinds: Set<PeerEvent.Kind>, timeout: Double) -> PeerEvent? {
        state.take(where: { kinds.contains($0.kind) }, until: Date(timeIntervalSinceNow: timeout))
    }

    /// Like `waitForAny(_:timeout:)`, until `deadline` on the events' clock (`PeerEvent.now()`).
    public func waitForAny(_ kinds: Set<PeerEvent.Kind>, until deadline: Double) -> PeerEvent? {
        waitForAny(kinds, timeout: deadline - PeerEvent.now())
    }

    // MARK: Control

    /// Sends one control line ("snapshot", "send", "quit"). False if the peer is gone.
    @discardableResult
    public func send(command: String) -> Bool {
        let line = Array((command + "\n").utf8)
        let n = line.withUnsafeBytes { Glibc.send(control, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return n == line.count
    }

    /// Signals this peer only; a no-op once it has been reaped (its pid may belong to someone else).
    public func signal(_ sig: Int32) {
        reapLock.lock()
        defer { reapLock.unlock() }
        if !reaped { kill(pid, sig) }
    }

    /// Waits for the peer to exit and reaps it. Returns its exit code (128 + signal if killed by a
    /// signal), or nil if it had not exited within `timeout` — it is then SIGKILLed and reaped.
    /// Once it returns, `events` holds everything the peer wrote.
    public func waitExit(timeout: Double) -> Int32? {
        let deadline = PeerEvent.now() + timeout
        var timedOut = false
        reapLock.lock()
        while !reaped {
            if reap(blocking: false) { break }
            if PeerEvent.now() >= deadline {
                kill(pid, SIGKILL)
                reap(blocking: true)
                timedOut = true
                break
            }
            reapLock.unlock()
            if let pidfd {
                _ = pidfd.wait(until: deadline)
            } else {
                usleep(5_000)  // no pidfd_open (Linux < 5.3): nothing to block on
            }
            reapLock.lock()
        }
        let status = exitStatus
        reapLock.unlock()
        state.waitForReaderDone(until: Date(timeIntervalSinceNow: 2))
        return timedOut ? nil : status
    }

    /// Call with reapLock held. True once the child has been reaped.
    @discardableResult
    private func reap(blocking: Bool) -> Bool {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if r == 0 { return false }
            if r < 0 && errno == EINTR { continue }
            reaped = true
            if r < 0 {
                exitStatus = -1  // ECHILD: someone else reaped it (SIGCHLD ignored?)
            } else {
                exitStatus = ChildProcess.shellStatus(status)
            }
            return true
        }
    }
}

/// How peers are scheduled relative to the lab's own work (namespace set-up and teardown, capture,
/// analysis of other trials). `KEEPALIVE_LAB_PEER_PRIORITY=normal|nice|fifo`.
public enum PeerPriority: String, Sendable {
    /// Like every other process.
    case normal
    /// nice −10: woken peers preempt the harness's and the kernel workers' CFS time sooner.
    case nice
    /// SCHED_FIFO 1: a woken peer runs before any ordinary task (kernel paths that do not yield
    /// still delay it: this kernel is PREEMPT_NONE by default). Falls back to nice −10 where refused.
    /// A peer leaves SCHED_FIFO once it has stamped its detection (PeerSession.leaveRealtimePriority).
    case fifo

    /// fifo unless KEEPALIVE_LAB_PEER_PRIORITY says otherwise. The peers only wait (no busy loop
    /// anywhere), so running them first costs the machine nothing, and it is what keeps the
    /// detection instant a peer reports close to the kernel's: 200 trials at once on 2 CPUs while
    /// other work ran, app − wire p95 18.2 ms at normal priority, 3.6 ms at fifo (bench).
    public static let current: PeerPriority =
        getenv("KEEPALIVE_LAB_PEER_PRIORITY").flatMap { PeerPriority(rawValue: String(cString: $0)) } ?? .fifo

    func apply(to pid: pid_t) {
        switch self {
        case .normal: break
        case .nice: _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), -10)
        case .fifo:
            var param = sched_param(sched_priority: 1)
            if sched_setscheduler(pid, SCHED_FIFO, &param) != 0 {
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), -10)
            }
        }
    }
}

/// State shared between a PeerProcess and its reader thread.
// @unchecked: state guarded by an NSCondition (waits need a condition variable, which Mutex lacks).
private final class SharedState: @unchecked Sendable {
    private let condition = NSCondition()
    var events: [PeerEvent] = []
    var stderr: [UInt8] = []
    private var returned: Set<Int> = []
    private var readerDone = false

    func withLock<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    func take(where matches: (PeerEvent) -> Bool, until deadline: Date) -> PeerEvent? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let index = events.indices.first(where: { !returned.contains($0) && matches(events[$0]) }) {
                returned.insert(index)
                return events[index]
            }
            if readerDone || !condition.wait(until: deadline) { break }
        }
        return nil
    }

    var outputEnded: Bool { withLock { readerDone } }

    func waitForReaderDone(until deadline: Date) {
        condition.lock()
        while !readerDone && condition.wait(until: deadline) {}
        condition.unlock()
    }

    /// Reader thread body: splits stdout into event lines and keeps stderr, until both reach EOF.
    func read(stdout: Int32, stderr errFD: Int32) {
        let decoder = JSONDecoder()
        var partial: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var open = [stdout, errFD]
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for pfd in fds where pfd.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(pfd.fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    close(pfd.fd)
                    open.removeAll { $0 == pfd.fd }
                    continue
                }
                if pfd.fd == errFD {
                    withLock { stderr.append(contentsOf: buffer[0..<n]) }
                    continue
                }
                partial.append(contentsOf: buffer[0..<n])
                var lines: [[UInt8]] = []
                while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(Array(partial[..<newline]))
                    partial.removeSubrange(...newline)
                }
                let parsed = lines.map { line -> (PeerEvent?, [UInt8]) in
                    var event = try? decoder.decode(PeerEvent.self, from: Data(line))
                    // The lean peer sends errno only; the name is the harness's to add.
                    if let code = event?.errno, event?.errnoName == nil { event?.errnoName = PeerEvent.errnoName(for: code) }
                    return (event, line)
                }
                condition.lock()
                for (event, line) in parsed {
                    if let event {
                        events.append(event)
                    } else {
                        stderr.append(contentsOf: Array("stdout: ".utf8) + line + [UInt8(ascii: "\n")])
                    }
                }
                condition.broadcast()
                condition.unlock()
            }
        }
        for fd in open { close(fd) }
        condition.lock()
        readerDone = true
        condition.broadcast()
        condition.unlock()
    }
}
