import CKeepaliveShim
import Foundation
import Testing
@testable import KeepaliveLab

@Suite struct PacketCaptureTests {
    @Test func unknownInterfaceThrowsTypedError() {
        do {
            _ = try PacketCapture(interface: "kal-nosuch0", pcapPath: "/dev/null")
            Issue.record("opening a capture on a missing interface should fail")
        } catch let error as CaptureError {
            #expect(error.interface == "kal-nosuch0")
            #expect(!error.message.isEmpty)
            print("expected failure: \(error)")
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }

    /// Real kernel keepalive on loopback: idle 1 s, interval 1 s, ~2.5 s of silence.
    @Test func realKeepaliveProbesOnLoopback() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kal-capture-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("lo.pcap").path

        let capture: PacketCapture
        do {
            capture = try PacketCapture(interface: "lo", pcapPath: path)
        } catch {
            let reason = "cannot capture on lo (euid \(geteuid()); needs root or CAP_NET_RAW): \(error)"
            print("SKIPPED realKeepaliveProbesOnLoopback: \(reason)")
            try Test.cancel(Comment(rawValue: reason))
        }
        capture.start()

        let t0 = Double(kal_monotonic_ns()) / 1e9
        let conn = try LoopbackConnection()
        defer { conn.close() }
        try await Task.sleep(for: .milliseconds(2500))
        // Flushed while running, so a run killed here would still leave a readable file.
        let partial = try PacketCapture.read(pcapPath: path)
        #expect(partial.count >= 5, "handshake and first probe/reply already on disk")
        let t1 = Double(kal_monotonic_ns()) / 1e9
        let packets = capture.stop()
        #expect(capture.stop() == packets, "stop() is idempotent")
        #expect(capture.readError == nil)

        let segs = SegmentClassifier.classify(packets, client: ("127.0.0.1", conn.clientPort),
                                              server: ("127.0.0.1", conn.serverPort))
        let ours = segs.filter { $0.direction != .other }
        print("captured \(packets.count) frames; connection:", ours.map { "\($0.kind.rawValue)@\(String(format: "%.3f", $0.t - t0))" })

        // Loopback shows each packet once: exactly one SYN and one SYN-ACK, nothing "retransmitted".
        let summary = WireSummary(segs)
        #expect(summary.count(.syn) == 1)
        #expect(summary.count(.synAck) == 1)
        #expect(summary.count(.retransmission) == 0)
        #expect(summary.probesSent >= 2)
        #expect(summary.probeReplies == summary.probesSent)
        #expect(summary.count(.keepaliveProbe, .bToA) == 0, "the server has no keepalive")
        // Each probe is answered by the very next segment from B.
        for (i, seg) in ours.enumerated() where seg.kind == .keepaliveProbe {
            #expect(ours.dropFirst(i + 1).first { $0.direction == .bToA }?.kind == .keepaliveReply)
        }
        // Timestamps converted to CLOCK_MONOTONIC land inside the window measured here.
        #expect(ours.allSatisfy { $0.t >= t0 && $0.t <= t1 }, "window \(t0)…\(t1), segments \(ours.map(\.t))")
        if let synAck = ours.first(where: { $0.kind == .synAck }),
           let probe = ours.first(where: { $0.kind == .keepaliveProbe }) {
            let idle = probe.t - synAck.t
            #expect(idle >= 0.99 && idle < 1.5, "first probe \(idle) s after the last segment A received")
        }

        // The file on disk is a valid pcap: our reader and tcpdump agree with the live view.
        let offline = try PacketCapture.read(pcapPath: path, monotonicOffsetNs: capture.monotonicOffsetNs)
        #expect(offline == packets)
        if let lines = tcpdumpLineCount(path) {
            #expect(lines == packets.count)
        } else {
            print("tcpdump not found; skipped the tcpdump -r check")
        }
    }
}

private func tcpdumpLineCount(_ path: String) -> Int? {
    guard let tool = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].first(where: FileManager.default.isExecutableFile) else {
        return nil
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = ["-nn", "-r", path]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return -1 }
    return String(decoding: data, as: UTF8.self).split(separator: "\n").count
}

/// A client/server pair over 127.0.0.1, keepalive on the client only.
private struct LoopbackConnection {
    let listener: Int32, client: Int32, server: Int32
    let clientPort: UInt16, serverPort: UInt16

    init() throws {
        let listener = try check(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0), "socket")
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        try check(withSockaddr(&addr) { bind(listener, $0, $1) }, "bind")
        try check(listen(listener, 1), "listen")
        let serverPort = try localPort(listener)

        let client = try check(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0), "socket")
        // SOL_TCP options by number: TCP_KEEPIDLE = 4, TCP_KEEPINTVL = 5, TCP_KEEPCNT = 6.
        for (level, name, value) in [(SOL_SOCKET, SO_KEEPALIVE, 1), (Int32(IPPROTO_TCP), 4, 1),
                                     (Int32(IPPROTO_TCP), 5, 1), (Int32(IPPROTO_TCP), 6, 9)] {
            var v = Int32(value)
            try check(setsockopt(client, level, name, &v, socklen_t(MemoryLayout<Int32>.size)), "setsockopt \(name)")
        }
        addr.sin_port = serverPort.bigEndian
        try check(withSockaddr(&addr) { connect(client, $0, $1) }, "connect")
        self.clientPort = try localPort(client)
        self.server = try check(accept(listener, nil, nil), "accept")
        self.listener = listener
        self.client = client
        self.serverPort = serverPort
    }

    func close() {
        // Linger 0: an RST, not a FIN handshake that could outlive the test.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        for fd in [client, server, listener] {
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            _ = Glibc.close(fd)
        }
    }
}

private struct SocketError: Error, CustomStringConvertible {
    let call: String, errno: Int32
    var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

@discardableResult
private func check(_ rc: Int32, _ call: String) throws -> Int32 {
    if rc < 0 { throw SocketError(call: call, errno: errno) }
    return rc
}

private func withSockaddr<R>(_ addr: inout sockaddr_in, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

private func localPort(_ fd: Int32) throws -> UInt16 {
    var addr = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    try check(withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }, "getsockname")
    return UInt16(bigEndian: addr.sin_port)
}
