import CKeepalivePeer

#if canImport(Glibc)
import Glibc
#endif

// The peer itself: one socket, one poll loop, events on stdout. No Foundation: this code runs in
// every peer process (two per trial), and with hundreds of trials starting together the dynamic
// loading and runtime set-up of Foundation was about half of all the lab's CPU (perf, 100 trials).

/// Everything a peer needs: a plain value built by the harness's PeerConfig or parsed from the
/// lean binary's arguments (`PeerSettings.arguments` / `init(arguments:)`).
public struct PeerSettings: Sendable, Equatable {
    public enum Role: String, Sendable { case client, server }
    public enum Load: Sendable, Equatable {
        case idle
        case rr(seconds: Double)
        case stream
    }

    public var role: Role
    public var address: String
    public var port: UInt16
    /// TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT; implies SO_KEEPALIVE.
    public var keepalive: (idle: Int32, interval: Int32, count: Int32)?
    /// SO_KEEPALIVE without per-socket timers (the namespace's sysctls apply).
    public var keepaliveOnly: Bool
    public var userTimeoutMs: UInt32?
    public var heartbeat: (interval: Double, timeout: Double)?
    public var load: Load
    public var streamChunkBytes: Int
    public var streamBytesPerSecond: Int

    public init(role: Role, address: String, port: UInt16, keepalive: (idle: Int32, interval: Int32, count: Int32)? = nil,
                keepaliveOnly: Bool = false, userTimeoutMs: UInt32? = nil, heartbeat: (interval: Double, timeout: Double)? = nil,
                load: Load = .idle, streamChunkBytes: Int = 1000, streamBytesPerSecond: Int = 200_000) {
        self.role = role
        self.address = address
        self.port = port
        self.keepalive = keepalive
        self.keepaliveOnly = keepaliveOnly
        self.userTimeoutMs = userTimeoutMs
        self.heartbeat = heartbeat
        self.load = load
        self.streamChunkBytes = streamChunkBytes
        self.streamBytesPerSecond = streamBytesPerSecond
    }

    public static func == (l: PeerSettings, r: PeerSettings) -> Bool {
        l.role == r.role && l.address == r.address && l.port == r.port
            && l.keepalive.map { [$0.idle, $0.interval, $0.count] } == r.keepalive.map { [$0.idle, $0.interval, $0.count] }
            && l.keepaliveOnly == r.keepaliveOnly && l.userTimeoutMs == r.userTimeoutMs
            && l.heartbeat.map { [$0.interval, $0.timeout] } == r.heartbeat.map { [$0.interval, $0.timeout] }
            && l.load == r.load && l.streamChunkBytes == r.streamChunkBytes
            && l.streamBytesPerSecond == r.streamBytesPerSecond
    }

    var enablesKeepalive: Bool { keepalive != nil || keepaliveOnly }

    /// The lean binary's arguments: `ROLE ADDRESS PORT [key=value | flag]…`.
    public var arguments: [String] {
        var out = [role.rawValue, address, String(port)]
        if let k = keepalive { out.append("keepalive=\(k.idle),\(k.interval),\(k.count)") }
        if keepaliveOnly { out.append("keepalive-sysctl") }
        if let ms = userTimeoutMs { out.append("user-timeout=\(ms)") }
        if let hb = heartbeat { out.append("heartbeat=\(hb.interval),\(hb.timeout)") }
        switch load {
        case .idle: break
        case .rr(let seconds): out.append("workload=rr:\(seconds)")
        case .stream: out.append("workload=stream")
        }
        out.append("chunk=\(streamChunkBytes)")
        out.append("rate=\(streamBytesPerSecond)")
        return out
    }

    /// Parses `arguments`; the error text names the argument.
    public init(arguments: [String]) throws(PeerArgumentError) {
        guard arguments.count >= 3 else { throw PeerArgumentError("expected ROLE ADDRESS PORT [options], got \(arguments)") }
        guard let role = Role(rawValue: arguments[0]) else { throw PeerArgumentError("role \"\(arguments[0])\": client or server") }
        guard let port = UInt16(arguments[2]) else { throw PeerArgumentError("port \"\(arguments[2])\": 0…65535") }
        self.init(role: role, address: arguments[1], port: port)
        for argument in arguments.dropFirst(3) {
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            let value = parts.count == 2 ? parts[1] : ""
            func numbers(_ n: Int) throws(PeerArgumentError) -> [Double] {
                let fields = value.split(separator: ",").compactMap { Double(String($0)) }
                guard fields.count == n else { throw PeerArgumentError("\(argument): expected \(n) comma-separated numbers") }
                return fields
            }
            switch parts[0] {
            case "keepalive":
                let k = try numbers(3)
                keepalive = (Int32(k[0]), Int32(k[1]), Int32(k[2]))
            case "keepalive-sysctl": keepaliveOnly = true
            case "user-timeout":
                guard let ms = UInt32(value) else { throw PeerArgumentError("\(argument): milliseconds") }
                userTimeoutMs = ms
            case "heartbeat":
                let h = try numbers(2)
                heartbeat = (h[0], h[1])
            case "workload":
                if value == "idle" { load = .idle } else if value == "stream" { load = .stream } else if value.hasPrefix("rr:"),
                    let s = Double(String(value.dropFirst(3))) { load = .rr(seconds: s) } else {
                    throw PeerArgumentError("\(argument): idle, rr:SECONDS or stream")
                }
            case "chunk":
                guard let n = Int(value) else { throw PeerArgumentError("\(argument): streamChunkBytes, an integer") }
                streamChunkBytes = n
            case "rate":
                guard let n = Int(value) else { throw PeerArgumentError("\(argument): streamBytesPerSecond, an integer") }
                streamBytesPerSecond = n
            default: throw PeerArgumentError("unknown argument \"\(argument)\"")
            }
        }
        try validate()
    }

    /// The same rules as the harness's PeerConfig.validate(), named after its fields.
    public func validate() throws(PeerArgumentError) {
        var addr = in_addr()
        guard inet_pton(AF_INET, address, &addr) == 1 else { throw PeerArgumentError("address \"\(address)\": an IPv4 address") }
        if let k = keepalive {
            guard (1...32767).contains(k.idle), (1...32767).contains(k.interval), (1...127).contains(k.count) else {
                throw PeerArgumentError("keepalive \(k.idle),\(k.interval),\(k.count): TCP_KEEPIDLE 1…32767, TCP_KEEPINTVL 1…32767, TCP_KEEPCNT 1…127")
            }
        }
        if let ms = userTimeoutMs, ms > UInt32(Int32.max) {
            throw PeerArgumentError("userTimeoutMs \(ms): TCP_USER_TIMEOUT accepts 0…\(Int32.max) ms")
        }
        func seconds(_ v: Double, _ field: String) throws(PeerArgumentError) {
            guard v > 0, v <= 86400 else { throw PeerArgumentError("\(field) \(v): must be > 0 and ≤ 86400 s") }
        }
        if let hb = heartbeat {
            try seconds(hb.interval, "heartbeat interval")
            try seconds(hb.timeout, "heartbeat timeout")
        }
        if case .rr(let s) = load { try seconds(s, "workload rr period") }
        guard streamChunkBytes > 0, streamChunkBytes % 4 == 0, streamChunkBytes <= 1 << 20 else {
            throw PeerArgumentError("streamChunkBytes \(streamChunkBytes): must be a multiple of 4 between 4 and 1048576")
        }
        guard (1_000...1_000_000_000).contains(streamBytesPerSecond) else {
            throw PeerArgumentError("streamBytesPerSecond \(streamBytesPerSecond): allowed 1000…1000000000 bytes/s")
        }
    }
}

public struct PeerArgumentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// CLOCK_MONOTONIC in seconds: shared by all network namespaces, so client, server, capture and
/// harness deadlines line up.
@inline(__always) public func peerClock() -> Double { Double(kalp_monotonic_ns()) / 1e9 }

/// stdout carries events only, one JSON object per line (keys sorted), formatted by hand and
/// written straight to fd 1 so nothing is buffered.
public enum PeerOutput {
    public static func emit(
        _ kind: String, t: Double, errno code: Int32? = nil, bytes: Int? = nil, seq: UInt32? = nil,
        detail: String? = nil, local: String? = nil, remote: String? = nil, tcpInfo: kal_tcp_info? = nil
    ) {
        var line = line(kind, t: t, errno: code, bytes: bytes, seq: seq, detail: detail, local: local,
                        remote: remote, tcpInfo: tcpInfo)
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

    /// One event as JSON, without the newline.
    public static func line(
        _ kind: String, t: Double, errno code: Int32? = nil, bytes: Int? = nil, seq: UInt32? = nil,
        detail: String? = nil, local: String? = nil, remote: String? = nil, tcpInfo: kal_tcp_info? = nil
    ) -> [UInt8] {
        var fields: [(String, String)] = []
        if let bytes { fields.append(("bytes", String(bytes))) }
        if let detail { fields.append(("detail", quoted(detail))) }
        if let code { fields.append(("errno", String(code))) }
        fields.append(("kind", quoted(kind)))
        if let local { fields.append(("local", quoted(local))) }
        if let remote { fields.append(("remote", quoted(remote))) }
        if let seq { fields.append(("seq", String(seq))) }
        fields.append(("t", t.description))
        if let i = tcpInfo {
            let info: [(String, String)] = [
                ("backoff", String(i.backoff)), ("lastAckRecvMs", String(i.last_ack_recv_ms)),
                ("lastDataRecvMs", String(i.last_data_recv_ms)), ("lastDataSentMs", String(i.last_data_sent_ms)),
                ("lost", String(i.lost)), ("probes", String(i.probes)), ("retrans", String(i.retrans)),
                ("retransmits", String(i.retransmits)), ("rtoUs", String(i.rto_us)), ("rttUs", String(i.rtt_us)),
                ("rttvarUs", String(i.rttvar_us)), ("sndCwnd", String(i.snd_cwnd)), ("state", String(i.state)),
                ("totalRetrans", String(i.total_retrans)), ("unacked", String(i.unacked)),
            ]
            fields.append(("tcpInfo", object(info)))
        }
        return Array(object(fields).utf8)
    }

    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Reports a failure that happens before the session runs (bad arguments, setns failed) the way a
/// session would: an "error" then a "closed" event. Returns `exitCode`.
public func peerSetupFailure(_ detail: String, errno code: Int32?, exitCode: Int32 = 1) -> Int32 {
    let now = peerClock()
    PeerOutput.emit("error", t: now, errno: code, detail: detail)
    PeerOutput.emit("closed", t: now, detail: "setup")
    return exitCode
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

/// Runs one peer (client or server) in the calling thread and its network namespace.
///
/// Deliberately single-threaded (one poll loop over the socket and stdin): the peer enters its
/// namespace on the main thread before anything runs, and a thread created later could observe
/// another namespace.
///
/// Exit codes: 0 = the connection ended (any reason: error, eof, heartbeat, quit);
/// 1 = setup or protocol failure (socket, bind, connect, setsockopt, unexpected bytes).
public final class PeerSession {
    enum Phase { case listening, connecting, handshake, running }

    let config: PeerSettings
    let streamChunk: [UInt8]
    var phase: Phase
    var listenFD: Int32 = -1
    var fd: Int32 = -1
    var exitCode: Int32?
    /// When the last poll returned: the instant the application learned what that poll reported.
    var wokeAt = 0.0

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
    private var sendProgress = Progress()
    private var receiveProgress = Progress()

    public init(_ config: PeerSettings) {
        self.config = config
        self.streamChunk = Wire.streamChunk(bytes: config.streamChunkBytes)
        self.phase = config.role == .server ? .listening : .connecting
    }

    public func run() -> Int32 {
        // Sends use MSG_NOSIGNAL; this also covers writes to a stdout whose reader is gone.
        Glibc.signal(SIGPIPE, SIG_IGN)
        config.role == .server ? listen() : connect()
        while exitCode == nil {
            let socketFD = phase == .listening ? listenFD : fd
            // One `now` for both: whether a stream chunk is due decides between waiting for
            // POLLOUT and waiting for the chunk's time, and the two must agree.
            let now = peerClock()
            var fds = [
                pollfd(fd: socketFD, events: socketEvents(now: now), revents: 0),
                pollfd(fd: 0, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&fds, nfds_t(fds.count), pollTimeout(now: now)) < 0 {
                if errno == EINTR { continue }
                setupFailed("poll", errno)
                break
            }
            wokeAt = peerClock()
            // Socket first: a reply that arrived in time must be seen before its timeout is checked.
            if fds[0].revents != 0 { handleSocket(fds[0].revents) }
            if exitCode == nil, fds[1].revents != 0 { handleControl() }
            if exitCode == nil { handleTimers(now: peerClock()) }
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
        emit("listening", local: endpoint(listenFD, local: true))
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
        _ = inet_pton(AF_INET, config.address, &addr.sin_addr)  // validated by the caller
        return addr
    }

    /// The client applies the policy before connect (so the SYN already carries it), the server on
    /// the accepted socket.
    func applyPolicy(_ s: Int32) -> Bool {
        let tcp = Int32(IPPROTO_TCP)
        var ok = setOption(s, tcp, TCPOption.noDelay, 1, name: "TCP_NODELAY")
        if ok && config.enablesKeepalive {
            ok = setOption(s, SOL_SOCKET, SO_KEEPALIVE, 1, name: "SO_KEEPALIVE")
        }
        if ok, let k = config.keepalive {
            ok = setOption(s, tcp, TCPOption.keepIdle, k.idle, name: "TCP_KEEPIDLE")
                && setOption(s, tcp, TCPOption.keepInterval, k.interval, name: "TCP_KEEPINTVL")
                && setOption(s, tcp, TCPOption.keepCount, k.count, name: "TCP_KEEPCNT")
        }
        if ok, let ms = config.userTimeoutMs {
            ok = setOption(s, tcp, TCPOption.userTimeout, Int32(bitPattern: ms), name: "TCP_USER_TIMEOUT")
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
        emit("accepted", local: endpoint(fd, local: true), remote: endpoint(fd, local: false))
    }

    func connected() {
        emit("connected", local: endpoint(fd, local: true), remote: endpoint(fd, local: false))
        phase = .handshake
        sendMessage(.rrRequest)  // "exchange once": seq 0, answered by KARS 0 → ready
    }

    func becomeReady() {
        phase = .running
        emit("ready")
        let now = peerClock()
        switch config.load {
        case .idle: break
        case .rr(let seconds): nextRR = now + seconds
        case .stream:
            streaming = true
            streamStart = now
        }
        if let heartbeat = config.heartbeat { nextHeartbeat = now + heartbeat.interval }
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
        reportProgress(now: peerClock())
        flush()
    }

    func handle(_ item: WireItem) {
        switch item {
        case .message(.rrRequest, let seq):
            emit("received", bytes: Wire.messageLength, seq: seq, detail: WireTag.rrRequest.rawValue)
            sendMessage(.rrReply, seq: seq)
        case .message(.heartbeatRequest, let seq):
            emit("received", bytes: Wire.messageLength, seq: seq, detail: WireTag.heartbeatRequest.rawValue)
            sendMessage(.heartbeatReply, seq: seq)
        case .message(.rrReply, let seq):
            emit("received", bytes: Wire.messageLength, seq: seq, detail: WireTag.rrReply.rawValue)
            if phase == .handshake && seq == 0 { becomeReady() }
        case .message(.heartbeatReply, let seq):
            emit("heartbeat_reply", bytes: Wire.messageLength, seq: seq)
            // Replies come in order, so one reply also settles every older heartbeat.
            unansweredHeartbeats.removeAll { $0.seq <= seq }
        case .message(.stream, _), .stream:
            receiveProgress.total = bytesReceived
        case .invalid(let bytes):
            let digits = Array("0123456789abcdef".utf8)
            let hex = String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
            emit("error", detail: "protocol: unexpected bytes 0x\(hex)")
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
            let now = peerClock()
            unansweredHeartbeats.append((seq, now))
            emit("heartbeat_sent", t: now, bytes: Wire.messageLength, seq: seq)
        } else {
            emit("sent", bytes: Wire.messageLength, seq: seq, detail: tag.rawValue)
        }
        flush()
    }

    /// Writes queued messages, then stream chunks while the socket takes them. Bounded so stdin and
    /// timers still get their turn on a fast link.
    func flush() {
        for _ in 0..<64 {
            if outbox.isEmpty {
                guard phase == .running, streamChunkDue(now: peerClock()) else { break }
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
        reportProgress(now: peerClock())
    }

    func reportProgress(now: Double) {
        if let due = sendProgress.deadline, now >= due {
            emit("sent", t: now, bytes: sendProgress.total, detail: WireTag.stream.rawValue)
            sendProgress.reported = sendProgress.total
            sendProgress.lastReport = now
        }
        if let due = receiveProgress.deadline, now >= due {
            emit("received", t: now, bytes: receiveProgress.total, detail: WireTag.stream.rawValue)
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
        guard let oldest = unansweredHeartbeats.first, let hb = config.heartbeat else { return nil }
        return oldest.sentAt + hb.timeout
    }

    func handleTimers(now: Double) {
        if let deadline = heartbeatDeadline, now >= deadline, let oldest = unansweredHeartbeats.first {
            let timeout = config.heartbeat!.timeout
            leaveRealtimePriority()
            emit("heartbeat_timeout", t: now, seq: oldest.seq, detail: "no KAHR for KAHB \(oldest.seq) within \(timeout) s")
            return finish("heartbeat")
        }
        if let due = nextRR, now >= due, case .rr(let period) = config.load {
            nextRR = reschedule(due, period: period, now: now)
            sendMessage(.rrRequest)
        }
        if exitCode == nil, let due = nextHeartbeat, now >= due, let hb = config.heartbeat {
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
            let blank: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0A]
            let bytes = controlLine[..<newline].drop { blank.contains($0) }
            let command = String(decoding: bytes.reversed().drop { blank.contains($0) }.reversed(), as: UTF8.self)
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

    /// The harness may start peers at SCHED_FIFO 1 so that a wakeup is stamped the moment the
    /// kernel reports; once this peer has stamped its detection, the reporting work (TCP_INFO,
    /// formatting, writes) must not hold up other peers woken by the same timer tick. Under
    /// SCHED_FIFO, equal-priority peers run one after another until each blocks: trials that
    /// share keepalive settings and started within one timer-wheel bucket expire in the same tick,
    /// and each peer's report then delayed the next peer's stamp. Back to SCHED_OTHER (its nice
    /// value kept); a no-op where the peer was not realtime.
    func leaveRealtimePriority() {
        guard sched_getscheduler(0) == SCHED_FIFO else { return }
        var param = sched_param(sched_priority: 0)
        _ = sched_setscheduler(0, SCHED_OTHER, &param)
    }

    /// Control-channel mistakes go to stderr: an "error" event means the connection failed.
    func complain(_ message: String) {
        let line = Array("keepalive-lab peer: \(message)\n".utf8)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }

    // MARK: Endings

    /// The kernel reported the connection dead. The error event carries the instant the poll that
    /// reported it returned (when the application learned), not the time after the formatting
    /// work; TCP_INFO is snapshotted while the fd still exists.
    func connectionFailed(_ err: Int32, context: String) {
        let learned = wokeAt
        leaveRealtimePriority()
        emitTCPInfo(detail: context)
        emit("error", t: learned, errno: err, detail: "\(context): \(String(cString: strerror(err)))")
        closeAbortively(&fd)
        emit("closed", detail: "error")
        exitCode = 0
    }

    /// Ends the peer on its own terms. SO_LINGER 0 sends RST, so no FIN retransmissions
    /// leak into the next measurement.
    func finish(_ reason: String, exitCode code: Int32 = 0) {
        if phase == .handshake || phase == .running { emitTCPInfo(detail: reason) }
        closeAbortively(&fd)
        closeAbortively(&listenFD)
        emit("closed", detail: reason)
        exitCode = code
    }

    func setupFailed(_ context: String, _ err: Int32) {
        emit("error", errno: err, detail: "\(context): \(String(cString: strerror(err)))")
        closeAbortively(&fd)
        closeAbortively(&listenFD)
        emit("closed", detail: "setup")
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
        var info = kal_tcp_info()
        if kal_tcp_info(fd, &info) == 0 {
            emit("tcp_info", detail: detail, tcpInfo: info)
        } else {
            emit("tcp_info", errno: errno, detail: "\(detail): TCP_INFO unavailable")
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
        _ kind: String, t: Double = peerClock(), errno code: Int32? = nil, bytes: Int? = nil,
        seq: UInt32? = nil, detail: String? = nil, local: String? = nil, remote: String? = nil,
        tcpInfo: kal_tcp_info? = nil
    ) {
        PeerOutput.emit(kind, t: t, errno: code, bytes: bytes, seq: seq, detail: detail, local: local,
                        remote: remote, tcpInfo: tcpInfo)
    }
}
