import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs one peer (client or server) in the calling thread and its network namespace.
///
/// Deliberately single-threaded (one poll loop over the socket and stdin): the harness enters the
/// peer's namespace on the main thread before anything runs, and a thread or Dispatch queue created
/// later could observe another namespace.
public enum PeerRunner {
    /// Exit codes: 0 = the connection ended (any reason: error, eof, heartbeat, quit);
    /// 1 = setup or protocol failure (socket, bind, connect, setsockopt, unexpected bytes);
    /// 2 = invalid configuration.
    public static func run(_ config: PeerConfig) -> Int32 {
        // Sends use MSG_NOSIGNAL; this also covers writes to a stdout whose reader is gone.
        Glibc.signal(SIGPIPE, SIG_IGN)
        do {
            try config.validate()
        } catch {
            return fail("config: \(error)", errno: nil, exitCode: 2)
        }
        return PeerSession(config).run()
    }

    /// Reports a failure that happens before the peer runs (bad --config, setns failed) the same way
    /// the runner would: an "error" then a "closed" event. Returns `exitCode`.
    public static func fail(_ detail: String, errno code: Int32?, exitCode: Int32 = 1) -> Int32 {
        EventOutput.emit(PeerEvent(kind: .error, errno: code, detail: detail))
        EventOutput.emit(PeerEvent(kind: .closed, detail: "setup"))
        return exitCode
    }
}

/// stdout carries events only, one JSON object per line, written straight to fd 1 so nothing is buffered.
private enum EventOutput {
    static func emit(_ event: PeerEvent) {
        let encoder = JSONEncoder()
        // Sorted keys: the same event always reads the same (diffs, golden examples).
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var line = try? encoder.encode(event) else { return }
        line.append(UInt8(ascii: "\n"))
        line.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && Glibc.errno == EINTR {
                    continue
                } else {
                    return  // nobody is reading: the harness is gone and PDEATHSIG will follow
                }
            }
        }
    }
}

// <netinet/tcp.h> options that Swift's Glibc module does not export.
private enum TCPOption {
    static let noDelay: Int32 = 1
    static let keepIdle: Int32 = 4
    static let keepInterval: Int32 = 5
    static let keepCount: Int32 = 6
    static let userTimeout: Int32 = 18
}

/// Stream progress is reported at most every 100 ms: a "sent" per write would flood stdout.
private struct Progress {
    static let period = 0.1
    var total = 0
    var reported = 0
    var lastReport = -Double.infinity

    var deadline: Double? { total == reported ? nil : lastReport + Self.period }
}

private final class PeerSession {
    enum Phase { case listening, connecting, handshake, running }

    let config: PeerConfig
    let streamChunk: [UInt8]
    var phase: Phase
    var listenFD: Int32 = -1
    var fd: Int32 = -1
    var exitCode: Int32?

    var decoder = WireDecoder()
    var outbox: [UInt8] = []
    var receiveBuffer = [UInt8](repeating: 0, count: 65536)
    var controlLine: [UInt8] = []

    var nextRRSeq: UInt32 = 0
    var nextHeartbeatSeq: UInt32 = 0
    var unansweredHeartbeats: [(seq: UInt32, sentAt: Double)] = []
    var nextRR: Double?
    var nextHeartbeat: Double?
    var streaming = false
    var streamStart = 0.0
    var streamBytesQueued = 0
    var bytesSent = 0
    var bytesReceived = 0
    var sendProgress = Progress()
    var receiveProgress = Progress()

    init(_ config: PeerConfig) {
        self.config = config
        self.streamChunk = Wire.streamChunk(bytes: config.streamChunkBytes)
        self.phase = config.role == .server ? .listening : .connecting
    }

    func run() -> Int32 {
        config.role == .server ? listen() : connect()
        while exitCode == nil {
            let socketFD = phase == .listening ? listenFD : fd
            // One `now` for both: whether a stream chunk is due decides between waiting for
            // POLLOUT and waiting for the chunk's time, and the two must agree.
            let now = PeerEvent.now()
            var fds = [
                pollfd(fd: socketFD, events: socketEvents(now: now), revents: 0),
                pollfd(fd: 0, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&fds, nfds_t(fds.count), pollTimeout(now: now)) < 0 {
                if errno == EINTR { continue }
                setupFailed("poll", errno)
                break
            }
            // Socket first: a reply that arrived in time must be seen before its timeout is checked.
            if fds[0].revents != 0 { handleSocket(fds[0].revents) }
            if exitCode == nil, fds[1].revents != 0 { handleControl() }
            if exitCode == nil { handleTimers(now: PeerEvent.now()) }
        }
        return exitCode ?? 1
    }

    // MARK: Setup

    func listen() {
        listenFD = makeSocket()
        guard listenFD >= 0 else { return }
        guard setOption(listenFD, SOL_SOCKET, SO_REUSEADDR, 1, name: "SO_REUSEADDR") else { return }
        var addr = socketAddress()
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { return setupFailed("bind \(config.address):\(config.port)", errno) }
        guard Glibc.listen(listenFD, 1) == 0 else { return setupFailed("listen", errno) }
        emit(.listening, local: endpoint(listenFD, local: true))
    }

    func connect() {
        fd = makeSocket()
        guard fd >= 0, applyPolicy(fd) else { return }
        var addr = socketAddress()
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result == 0 {
            connected()
        } else if errno != EINPROGRESS {
            setupFailed("connect \(config.address):\(config.port)", errno)
        }
    }

    func makeSocket() -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let s = socket(AF_INET, type, 0)
        if s < 0 { setupFailed("socket", errno) }
        return s
    }

    func socketAddress() -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = config.port.bigEndian
        _ = inet_pton(AF_INET, config.address, &addr.sin_addr)  // validated by PeerConfig.validate()
        return addr
    }

    /// The client applies the policy before connect (so the SYN already carries it), the server on
    /// the accepted socket.
    func applyPolicy(_ s: Int32) -> Bool {
        let policy = config.policy
        let tcp = Int32(IPPROTO_TCP)
        var ok = setOption(s, tcp, TCPOption.noDelay, 1, name: "TCP_NODELAY")
        if ok && policy.enablesKeepalive {
            ok = setOption(s, SOL_SOCKET, SO_KEEPALIVE, 1, name: "SO_KEEPALIVE")
        }
        if ok, let k = policy.keepalive {
            ok = setOption(s, tcp, TCPOption.keepIdle, Int32(k.idle), name: "TCP_KEEPIDLE")
                && setOption(s, tcp, TCPOption.keepInterval, Int32(k.interval), name: "TCP_KEEPINTVL")
                && setOption(s, tcp, TCPOption.keepCount, Int32(k.count), name: "TCP_KEEPCNT")
        }
        if ok, let ms = policy.userTimeoutMs {
            ok = setOption(s, tcp, TCPOption.userTimeout, Int32(ms), name: "TCP_USER_TIMEOUT")
        }
        return ok
    }

    func setOption(_ s: Int32, _ level: Int32, _ option: Int32, _ value: Int32, name: String) -> Bool {
        var v = value
        if setsockopt(s, level, option, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 { return true }
        setupFailed("setsockopt \(name)=\(value)", errno)
        return false
    }

    // MARK: Socket events

    func socketEvents(now: Double) -> Int16 {
        switch phase {
        case .listening: return Int16(POLLIN)
        case .connecting: return Int16(POLLOUT)
        case .handshake, .running:
            let wantsWrite = !outbox.isEmpty || (phase == .running && streamChunkDue(now: now))
            return Int16(POLLIN) | (wantsWrite ? Int16(POLLOUT) : 0)
        }
    }

    func handleSocket(_ revents: Int16) {
        switch phase {
        case .listening:
            accept()
        case .connecting:
            let err = pendingError()
            if err == 0 { connected() } else { setupFailed("connect \(config.address):\(config.port)", err) }
        case .handshake, .running:
            // The pending error (ETIMEDOUT after the last probe, ECONNRESET, EHOSTUNREACH) is the
            // news; read it before recv/send turn it into a generic EPIPE.
            if revents & Int16(POLLERR) != 0 {
                let err = pendingError()
                if err != 0 { return connectionFailed(err, context: "SO_ERROR") }
            }
            if revents & (Int16(POLLIN) | Int16(POLLHUP)) != 0 { receive() }
            if exitCode == nil, revents & Int16(POLLOUT) != 0 { flush() }
        }
    }

    func accept() {
        let s = Glibc.accept(listenFD, nil, nil)
        guard s >= 0 else {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED { return }
            return setupFailed("accept", errno)
        }
        fd = s
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        // One connection per trial: later SYNs should be refused, not queued.
        close(listenFD)
        listenFD = -1
        guard applyPolicy(fd) else { return }
        phase = .running
        emit(.accepted, local: endpoint(fd, local: true), remote: endpoint(fd, local: false))
    }

    func connected() {
        emit(.connected, local: endpoint(fd, local: true), remote: endpoint(fd, local: false))
        phase = .handshake
        sendMessage(.rrRequest)  // "exchange once": seq 0, answered by KARS 0 → ready
    }

    func becomeReady() {
        phase = .running
        emit(.ready)
        let now = PeerEvent.now()
        switch config.workload {
        case .idle: break
        case .rr(let seconds): nextRR = now + seconds
        case .stream:
            streaming = true
            streamStart = now
        }
        if let heartbeat = config.policy.heartbeat { nextHeartbeat = now + heartbeat.interval }
        if streaming { flush() }
    }

    func receive() {
        let n = receiveBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return finish("eof") }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            return connectionFailed(errno, context: "recv")
        }
        bytesReceived += n
        for item in decoder.feed(receiveBuffer[0..<n]) {
            handle(item)
            if exitCode != nil { return }
        }
        reportProgress(now: PeerEvent.now())
        flush()
    }

    func handle(_ item: WireItem) {
        switch item {
        case .message(.rrRequest, let seq):
            emit(.received, bytes: Wire.messageLength, seq: seq, detail: WireTag.rrRequest.rawValue)
            sendMessage(.rrReply, seq: seq)
        case .message(.heartbeatRequest, let seq):
            emit(.received, bytes: Wire.messageLength, seq: seq, detail: WireTag.heartbeatRequest.rawValue)
            sendMessage(.heartbeatReply, seq: seq)
        case .message(.rrReply, let seq):
            emit(.received, bytes: Wire.messageLength, seq: seq, detail: WireTag.rrReply.rawValue)
            if phase == .handshake && seq == 0 { becomeReady() }
        case .message(.heartbeatReply, let seq):
            emit(.heartbeatReply, bytes: Wire.messageLength, seq: seq)
            // Replies come in order, so one reply also settles every older heartbeat.
            unansweredHeartbeats.removeAll { $0.seq <= seq }
        case .message(.stream, _), .stream:
            receiveProgress.total = bytesReceived
        case .invalid(let bytes):
            let hex = bytes.map { String(format: "%02x", $0) }.joined()
            emit(.error, detail: "protocol: unexpected bytes 0x\(hex)")
            finish("protocol", exitCode: 1)
        }
    }

    /// Queues a message and tries to send it right away; KARQ/KAHB take the next sequence number.
    func sendMessage(_ tag: WireTag, seq given: UInt32? = nil) {
        var seq = given ?? 0
        switch tag {
        case .rrRequest:
            seq = nextRRSeq
            nextRRSeq &+= 1
        case .heartbeatRequest:
            seq = nextHeartbeatSeq
            nextHeartbeatSeq &+= 1
        default: break
        }
        outbox.append(contentsOf: Wire.message(tag, seq: seq))
        if tag == .heartbeatRequest {
            let now = PeerEvent.now()
            unansweredHeartbeats.append((seq, now))
            emit(.heartbeatSent, t: now, bytes: Wire.messageLength, seq: seq)
        } else {
            emit(.sent, bytes: Wire.messageLength, seq: seq, detail: tag.rawValue)
        }
        flush()
    }

    /// Writes queued messages, then stream chunks while the socket takes them. Bounded so stdin and
    /// timers still get their turn on a fast link.
    func flush() {
        for _ in 0..<64 {
            if outbox.isEmpty {
                guard phase == .running, streamChunkDue(now: PeerEvent.now()) else { break }
                outbox = streamChunk
                streamBytesQueued += streamChunk.count
            }
            let n = outbox.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                return connectionFailed(errno, context: "send")
            }
            bytesSent += n
            outbox.removeFirst(n)
            if streaming { sendProgress.total = bytesSent }
            if !outbox.isEmpty { break }  // partial write: the send buffer is full
        }
        reportProgress(now: PeerEvent.now())
    }

    func reportProgress(now: Double) {
        if let due = sendProgress.deadline, now >= due {
            emit(.sent, t: now, bytes: sendProgress.total, detail: WireTag.stream.rawValue)
            sendProgress.reported = sendProgress.total
            sendProgress.lastReport = now
        }
        if let due = receiveProgress.deadline, now >= due {
            emit(.received, t: now, bytes: receiveProgress.total, detail: WireTag.stream.rawValue)
            receiveProgress.reported = receiveProgress.total
            receiveProgress.lastReport = now
        }
    }

    // MARK: Timers

    /// The paced stream may queue its next chunk once the rate allows it.
    func streamChunkDue(now: Double) -> Bool {
        streaming && now >= nextStreamChunk
    }

    var nextStreamChunk: Double {
        streamStart + Double(streamBytesQueued) / Double(config.streamBytesPerSecond)
    }

    /// Until the next timer. A stream chunk counts only while it is not yet due: once due, it waits
    /// for POLLOUT like a queued one (a full send buffer means nothing can progress, and a 0 ms
    /// timeout would spin until the buffer drains — forever if the peer is dead).
    func pollTimeout(now: Double) -> Int32 {
        let deadlines = [
            heartbeatDeadline, nextRR, nextHeartbeat, sendProgress.deadline, receiveProgress.deadline,
            streaming && outbox.isEmpty && !streamChunkDue(now: now) ? nextStreamChunk : nil,
        ].compactMap { $0 }
        guard let earliest = deadlines.min() else { return -1 }
        return Int32(min(max(0, ((earliest - now) * 1000).rounded(.up)), 3_600_000))
    }

    var heartbeatDeadline: Double? {
        guard let oldest = unansweredHeartbeats.first, let hb = config.policy.heartbeat else { return nil }
        return oldest.sentAt + hb.timeout
    }

    func handleTimers(now: Double) {
        if let deadline = heartbeatDeadline, now >= deadline, let oldest = unansweredHeartbeats.first {
            let timeout = config.policy.heartbeat!.timeout
            emit(.heartbeatTimeout, t: now, seq: oldest.seq, detail: "no KAHR for KAHB \(oldest.seq) within \(timeout) s")
            return finish("heartbeat")
        }
        if let due = nextRR, now >= due, case .rr(let period) = config.workload {
            nextRR = reschedule(due, period: period, now: now)
            sendMessage(.rrRequest)
        }
        if exitCode == nil, let due = nextHeartbeat, now >= due, let hb = config.policy.heartbeat {
            nextHeartbeat = reschedule(due, period: hb.interval, now: now)
            sendMessage(.heartbeatRequest)
        }
        if exitCode == nil { reportProgress(now: now) }
    }

    /// Keeps a fixed cadence, but never fires a burst to catch up after a stall.
    func reschedule(_ due: Double, period: Double, now: Double) -> Double {
        let next = due + period
        return next > now ? next : now + period
    }

    // MARK: Control channel (stdin)

    func handleControl() {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
        guard n > 0 else { return finish("stdin closed") }  // the harness went away: same as quit
        controlLine.append(contentsOf: buffer[0..<n])
        while exitCode == nil, let newline = controlLine.firstIndex(of: UInt8(ascii: "\n")) {
            let command = String(decoding: controlLine[..<newline], as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            controlLine.removeSubrange(...newline)
            execute(command)
        }
    }

    func execute(_ command: String) {
        let connected = phase == .handshake || phase == .running
        switch command {
        case "": break
        case "quit": finish("quit")
        case "snapshot" where connected: emitTCPInfo(detail: "snapshot")
        case "send" where connected: sendMessage(.rrRequest)
        case "snapshot", "send": complain("\(command): not connected yet")
        default: complain("unknown command \"\(command)\"")
        }
    }

    /// Control-channel mistakes go to stderr: an "error" event means the connection failed.
    func complain(_ message: String) {
        let line = Array("keepalive-lab peer: \(message)\n".utf8)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    // MARK: Endings

    /// The kernel reported the connection dead: snapshot TCP_INFO while the fd still exists, then report.
    func connectionFailed(_ err: Int32, context: String) {
        emitTCPInfo(detail: context)
        emit(.error, errno: err, detail: "\(context): \(String(cString: strerror(err)))")
        closeAbortively(&fd)
        emit(.closed, detail: "error")
        exitCode = 0
    }

    /// Ends the peer on its own terms. SO_LINGER 0 sends RST, so no FIN retransmissions
    /// leak into the next measurement.
    func finish(_ reason: String, exitCode code: Int32 = 0) {
        if phase == .handshake || phase == .running { emitTCPInfo(detail: reason) }
        closeAbortively(&fd)
        closeAbortively(&listenFD)
        emit(.closed, detail: reason)
        exitCode = code
    }

    func setupFailed(_ context: String, _ err: Int32) {
        emit(.error, errno: err, detail: "\(context): \(String(cString: strerror(err)))")
        closeAbortively(&fd)
        closeAbortively(&listenFD)
        emit(.closed, detail: "setup")
        exitCode = 1
    }

    func closeAbortively(_ s: inout Int32) {
        guard s >= 0 else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(s, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(s)
        s = -1
    }

    // MARK: Helpers

    func pendingError() -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 { return errno }
        return err
    }

    func emitTCPInfo(detail: String) {
        if let info = PeerTCPInfo.read(fd: fd) {
            emit(.tcpInfo, detail: detail, tcpInfo: info)
        } else {
            emit(.tcpInfo, errno: errno, detail: "\(detail): TCP_INFO unavailable")
        }
    }

    func endpoint(_ s: Int32, local: Bool) -> String? {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                local ? getsockname(s, $0, &len) : getpeername(s, $0, &len)
            }
        }
        guard ok == 0 else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &addr.sin_addr, &text, socklen_t(text.count)) != nil else { return nil }
        return "\(String(cString: text)):\(UInt16(bigEndian: addr.sin_port))"
    }

    func emit(
        _ kind: PeerEvent.Kind, t: Double = PeerEvent.now(), errno code: Int32? = nil, bytes: Int? = nil,
        seq: UInt32? = nil, detail: String? = nil, local: String? = nil, remote: String? = nil,
        tcpInfo: PeerTCPInfo? = nil
    ) {
        EventOutput.emit(
            PeerEvent(
                kind: kind, t: t, errno: code, bytes: bytes, seq: seq, detail: detail, local: local,
                remote: remote, tcpInfo: tcpInfo))
    }
}
