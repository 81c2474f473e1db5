import CKeepaliveShim
import Foundation
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

/// A real program as a peer (`ssh`, `socat`, `redis-cli`, …) running in one of the lab's network
/// namespaces: entered with `nsenter --net=PATH` (so the program's own exec needs no help from us),
/// in its own process group, dying with the thread that spawned it (PR_SET_PDEATHSIG).
///
/// One reader thread blocks in poll() on the program's stdout, stderr, its pidfd (readable when it
/// exits) and, once attached, a copy of its connection (POLLERR/POLLHUP when the kernel aborts or
/// resets it). Nothing polls on a period: every wait ends at an event or a deadline.
// @unchecked: state guarded by an NSCondition (waits need a condition variable, which Mutex lacks).
final class AppProcess: @unchecked Sendable {
    struct Line: Sendable {
        var t: Double
        var stream: String   // "stdout" / "stderr"
        var text: String
    }

    /// What happened to the borrowed connection copy.
    struct SocketEvent: Sendable {
        var t: Double
        /// "error" (POLLERR: the kernel aborted it with an error), "hangup" (closed), "peer-fin" (kalPOLLRDHUP).
        var what: String
        var info: PeerTCPInfo?
    }

    let name: String
    let pid: pid_t
    let pidfd: Int32
    let startedAt: Double
    private let stdinFd: Int32
    private let condition = NSCondition()
    private var lines: [Line] = []
    private var partial: [String: [UInt8]] = [:]
    private var exit: (t: Double, status: Int32)?
    private var socketEvents: [SocketEvent] = []
    private var watched: BorrowedSocket?
    private var watchRDHUP = true
    private var stopping = false
    private var readerDone = false
    private let wakeFds: [Int32]

    /// `argv[0]` is looked up in PATH by nsenter. `netnsPath` nil: run in the caller's namespace.
    init(name: String, argv: [String], environment: [String: String], netnsPath: String?,
         workingDirectory: String? = nil) throws {
        self.name = name
        var full: [String] = []
        if let netnsPath { full = ["/usr/bin/nsenter", "--net=\(netnsPath)", "--"] }
        full += argv
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1], wake: [Int32] = [-1, -1]
        guard kal_pipe_cloexec(&inPipe) == 0, kal_pipe_cloexec(&outPipe) == 0, kal_pipe_cloexec(&errPipe) == 0,
              kal_pipe_cloexec(&wake) == 0 else {
            throw SystemCallError("pipe for \(name)")
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let path = full[0].hasPrefix("/") ? full[0] : (AppProcess.which(full[0]) ?? full[0])
        let fds = [inPipe[0], outPipe[1], errPipe[1]]
        let child: pid_t
        do {
            child = try Spawn.start(path: path, arguments: full, environment: env, fds: fds,
                                    workingDirectory: workingDirectory, options: [.newProcessGroup, .parentDeathKill])
        } catch {
            for fd in fds + [inPipe[1], outPipe[0], errPipe[0], wake[0], wake[1]] { close(fd) }
            throw SystemCallError("start \(name) (\(full.joined(separator: " ")))", errno: (error as? SystemCallError)?.errno ?? EINVAL)
        }
        for fd in fds { close(fd) }
        pid = child
        startedAt = PeerEvent.now()
        stdinFd = inPipe[1]
        wakeFds = wake
        pidfd = kal_pidfd_open(child, 0)
        let thread = Thread { [outFd = outPipe[0], errFd = errPipe[0]] in self.readLoop(stdout: outFd, stderr: errFd) }
        thread.name = "app-\(name)-\(child)"
        thread.start()
    }

    deinit {
        close(stdinFd)
        if pidfd >= 0 { close(pidfd) }
        for fd in wakeFds { close(fd) }
    }

    static func which(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in (path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]) {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    // MARK: State

    var exited: (t: Double, status: Int32)? { condition.withLock { exit } }
    var allLines: [Line] { condition.withLock { lines } }
    var socketEventsSoFar: [SocketEvent] { condition.withLock { socketEvents } }

    /// The last `count` lines of stderr (and stdout), for error messages.
    func tail(_ count: Int = 12) -> String {
        let all = condition.withLock { lines + partial.compactMap { k, v in v.isEmpty ? nil : Line(t: 0, stream: k, text: String(decoding: v, as: UTF8.self)) } }
        let text = all.suffix(count).map { "\($0.stream == "stderr" ? "" : "[stdout] ")\($0.text)" }.joined(separator: "\n")
        return text.isEmpty ? "(no output)" : text
    }

    /// Blocks until `predicate` holds over the state or `deadline` (CLOCK_MONOTONIC seconds) passes.
    /// Returns whether it holds. The predicate runs with the lock held.
    func wait(until deadline: Double, _ predicate: (AppProcess) -> Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if predicate(self) { return true }
            let remaining = deadline - PeerEvent.now()
            if remaining <= 0 { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: min(remaining, 86_400)))
        }
    }

    // Unlocked accessors for predicates (called with the lock held).
    var lockedLines: [Line] { lines }
    var lockedExit: (t: Double, status: Int32)? { exit }
    var lockedSocketEvents: [SocketEvent] { socketEvents }

    /// First line (stdout or stderr, as chosen) matching `regex` after `after`.
    func firstLine(matching regex: NSRegularExpression, streams: Set<String> = ["stdout", "stderr"], after: Double = 0, locked: Bool = false) -> Line? {
        let snapshot = locked ? lines : allLines
        return snapshot.first { line in
            line.t > after && streams.contains(line.stream)
                && regex.firstMatch(in: line.text, range: NSRange(line.text.startIndex..., in: line.text)) != nil
        }
    }

    // MARK: Control

    /// Writes to the program's stdin (false if it is gone).
    @discardableResult
    func write(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(stdinFd, $0.baseAddress, $0.count) }
        return n == bytes.count
    }

    /// Starts watching a copy of the program's connection.
    func watch(_ socket: BorrowedSocket) {
        condition.withLock { watched = socket }
        var one: UInt8 = 1
        _ = Glibc.write(wakeFds[1], &one, 1)
    }

    /// Stops watching and closes the copy (the program's own descriptor is untouched).
    func releaseSocket() {
        let socket = condition.withLock { () -> BorrowedSocket? in
            let s = watched
            watched = nil
            return s
        }
        var one: UInt8 = 1
        _ = Glibc.write(wakeFds[1], &one, 1)
        socket?.close()
    }

    /// Signals the program's whole process group.
    func signalGroup(_ sig: Int32) {
        if condition.withLock({ exit == nil }) { _ = kill(-pid, sig) }
    }

    /// SIGTERM then SIGKILL to the group, waiting for the exit up to `grace` seconds in between.
    /// The reader thread is told to stop.
    func stop(grace: Double = 1) {
        releaseSocket()
        if exited == nil {
            _ = kill(-pid, SIGTERM)
            if !wait(until: PeerEvent.now() + grace, { $0.lockedExit != nil }) {
                _ = kill(-pid, SIGKILL)
                _ = wait(until: PeerEvent.now() + 5, { $0.lockedExit != nil })
            }
        }
        _ = kill(-pid, SIGKILL)  // helpers left in the group
        condition.withLock { stopping = true }
        var one: UInt8 = 1
        _ = Glibc.write(wakeFds[1], &one, 1)
        condition.lock()
        while !readerDone { _ = condition.wait(until: Date(timeIntervalSinceNow: 5)) }
        condition.unlock()
    }

    // MARK: Reader thread

    private func readLoop(stdout outFd: Int32, stderr errFd: Int32) {
        var open: [Int32: String] = [outFd: "stdout", errFd: "stderr"]
        var buffer = [UInt8](repeating: 0, count: 65536)
        var pidfdOpen = pidfd >= 0
        while true {
            let (stop, socket, rdhup) = condition.withLock { (stopping, watched, watchRDHUP) }
            if stop { break }
            var fds = [pollfd(fd: wakeFds[0], events: Int16(POLLIN), revents: 0)]
            for fd in open.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            if pidfdOpen { fds.append(pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)) }
            if let socket, socket.fd >= 0 {
                fds.append(pollfd(fd: socket.fd, events: rdhup ? Int16(kalPOLLRDHUP) : 0, revents: 0))
            }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            let now = PeerEvent.now()
            for pfd in fds where pfd.revents != 0 {
                if pfd.fd == wakeFds[0] {
                    _ = buffer.withUnsafeMutableBytes { Glibc.read(pfd.fd, $0.baseAddress, $0.count) }
                } else if let stream = open[pfd.fd] {
                    let n = buffer.withUnsafeMutableBytes { Glibc.read(pfd.fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 {
                        close(pfd.fd)
                        open[pfd.fd] = nil
                        flushPartial(stream, t: now)
                        continue
                    }
                    append(stream, buffer[0..<n], t: now)
                } else if pfd.fd == pidfd {
                    var status: Int32 = 0
                    var r: pid_t
                    repeat { r = waitpid(pid, &status, 0) } while r < 0 && errno == EINTR
                    pidfdOpen = false
                    condition.withLock {
                        exit = (now, r == pid ? ChildProcess.shellStatus(status) : -1)
                        condition.broadcast()
                    }
                } else if let socket, pfd.fd == socket.fd {
                    let revents = Int32(pfd.revents)
                    let info = socket.tcpInfo
                    condition.withLock {
                        if revents & Int32(POLLERR | POLLHUP) != 0 {
                            socketEvents.append(SocketEvent(t: now, what: revents & Int32(POLLERR) != 0 ? "error" : "hangup", info: info))
                            watched = nil  // reported; the owner closes the copy
                        } else if revents & Int32(kalPOLLRDHUP) != 0 {
                            socketEvents.append(SocketEvent(t: now, what: "peer-fin", info: info))
                            watchRDHUP = false
                        }
                        condition.broadcast()
                    }
                }
            }
        }
        for fd in open.keys { close(fd) }
        if pidfdOpen {
            // Not exited yet: the owner kills the group; reap here so no zombie is left.
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
        condition.withLock {
            readerDone = true
            condition.broadcast()
        }
    }

    private func append(_ stream: String, _ bytes: ArraySlice<UInt8>, t: Double) {
        condition.withLock {
            var p = partial[stream, default: []]
            p.append(contentsOf: bytes)
            while let nl = p.firstIndex(where: { $0 == 10 || $0 == 13 }) {
                let text = String(decoding: p[..<nl], as: UTF8.self)
                if !text.isEmpty { lines.append(Line(t: t, stream: stream, text: text)) }
                p.removeSubrange(...nl)
            }
            partial[stream] = p
            if lines.count > 5000 { lines.removeFirst(lines.count - 5000) }
            condition.broadcast()
        }
    }

    private func flushPartial(_ stream: String, t: Double) {
        condition.withLock {
            if let p = partial[stream], !p.isEmpty {
                lines.append(Line(t: t, stream: stream, text: String(decoding: p, as: UTF8.self)))
                partial[stream] = []
            }
            condition.broadcast()
        }
    }

    /// Runs a short setup command to completion (ssh-keygen, initdb), blocking in waitpid; throws
    /// with its output when it fails.
    static func runToCompletion(_ argv: [String], environment: [String: String] = [:], timeout: Double = 60) throws {
        let p = try AppProcess(name: (argv.first as NSString?)?.lastPathComponent ?? "setup", argv: argv,
                               environment: environment, netnsPath: nil)
        let done = p.wait(until: PeerEvent.now() + timeout) { $0.lockedExit != nil }
        let status = p.exited?.status
        p.stop(grace: 0.2)
        guard done, status == 0 else {
            throw TrialError(message: "setup command failed (\(done ? "exit \(status ?? -1)" : "timed out")): \(argv.joined(separator: " "))\n\(p.tail())")
        }
    }
}

extension NSCondition {
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// POLLRDHUP (0x2000, Linux): Glibc's Swift module leaves it out (it needs _GNU_SOURCE).
let kalPOLLRDHUP: Int32 = 0x2000
