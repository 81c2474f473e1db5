import CKeepaliveShim
import CPcap
import Foundation
import KeepaliveNet

/// One frame as libpcap saw it. `data` holds the captured (snaplen-limited) link-layer bytes.
public struct CapturedPacket: Sendable, Equatable {
    public var realtimeNs: Int64
    public var monotonicNs: Int64
    public var data: [UInt8]
    public var origLen: Int

    public init(realtimeNs: Int64, monotonicNs: Int64, data: [UInt8], origLen: Int) {
        self.realtimeNs = realtimeNs
        self.monotonicNs = monotonicNs
        self.data = data
        self.origLen = origLen
    }
}

public struct CaptureError: Error, CustomStringConvertible, Sendable {
    public enum Stage: String, Sendable {
        case create, activate, configure, dumpOpen, read, openOffline
    }
    public let stage: Stage
    /// Interface name for live captures, file path for offline reads.
    public let interface: String
    /// libpcap's own error text.
    public let message: String

    public var description: String { "pcap \(stage.rawValue) on \(interface): \(message)" }
}

/// Live libpcap capture on one interface, written to a pcap file and kept in memory.
///
/// `init` opens the AF_PACKET socket on the calling thread, so it belongs to that thread's
/// network namespace; the reader thread started by `start()` may run anywhere afterwards.
// @unchecked: started/finished/result are guarded by `lock`; the Sink (libpcap handles) is read under it only once its reader has finished.
public final class PacketCapture: @unchecked Sendable {
    public let interface: String
    /// Where the capture is written as pcap; nil: kept in memory only (`stop()` returns it).
    public let pcapPath: String?
    /// CLOCK_MONOTONIC − CLOCK_REALTIME, sampled once in `init`. Pass it to `read(pcapPath:monotonicOffsetNs:)`
    /// to put an offline read on the same timeline.
    public let monotonicOffsetNs: Int64
    /// Why the reader stopped early (e.g. the interface vanished with its namespace). Valid after `stop()`.
    public var readError: CaptureError? { lock.withLock { finished ? sink.readError : nil } }

    // The reader thread holds only `sink`, never `self`, so dropping the last reference runs deinit → stop().
    private let sink: Sink
    private let lock = NSLock()
    private var started = false
    private var finished = false
    private var result: [CapturedPacket] = []

    /// Kernel ring size (PACKET_RX_RING) for a trial that only idles, probes or exchanges small
    /// messages: ~700 frames of 256 bytes, far more than such a trial puts on the wire between
    /// two reads. The kernel allocates and zeroes the whole ring when the capture opens, so its size
    /// is per-trial memory and setup CPU (8 MiB rings were the harness's largest cost at 100 trials).
    public static let smallRingBytes: Int32 = 256 << 10
    /// Ring size for paced streams and other bulk traffic.
    public static let bulkRingBytes: Int32 = 4 << 20

    /// Frames the kernel dropped because the ring was full (pcap_stats ps_drop), read at `stop()`.
    public var droppedFrames: UInt32 { lock.withLock { finished ? sink.dropped : 0 } }

    /// `pcapPath` nil writes no file: a trial that keeps no pcap analyses the packets `stop()`
    /// returns, so a file would only cost a file system inode per trial (ext4 inode allocation
    /// showed in the profile of 1000 trials set up at once) and be left behind by a crash.
    public init(interface: String, pcapPath: String?, snaplen: Int32 = 256,
                ringBytes: Int32 = PacketCapture.bulkRingBytes) throws {
        self.interface = interface
        self.pcapPath = pcapPath
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = pcap_create(interface, &errbuf) else {
            throw CaptureError(stage: .create, interface: interface, message: String(cString: errbuf))
        }
        func fail(_ stage: CaptureError.Stage, _ rc: Int32 = PCAP_ERROR) -> CaptureError {
            let text = String(cString: pcap_geterr(h))
            let status = String(cString: pcap_statustostr(rc))
            pcap_close(h)
            return CaptureError(stage: stage, interface: interface, message: text.isEmpty ? status : text)
        }
        pcap_set_snaplen(h, snaplen)
        pcap_set_immediate_mode(h, 1)
        // A full ring drops frames: the count is read at stop() (droppedFrames) and trials note it.
        pcap_set_buffer_size(h, ringBytes)
        // Nanoseconds where the kernel offers them; otherwise libpcap stays at microseconds.
        _ = pcap_set_tstamp_precision(h, PCAP_TSTAMP_PRECISION_NANO)
        let rc = pcap_activate(h)
        if rc < 0 { throw fail(.activate, rc) }
        let dlt = pcap_datalink(h)
        guard dlt == DLT_EN10MB else {
            pcap_close(h)
            throw CaptureError(stage: .configure, interface: interface,
                               message: "link type \(dlt) is not Ethernet (DLT_EN10MB)")
        }
        if pcap_setnonblock(h, 1, &errbuf) < 0 {
            pcap_close(h)
            throw CaptureError(stage: .configure, interface: interface, message: String(cString: errbuf))
        }
        var dumper: OpaquePointer?
        var openError: FileError?
        if let pcapPath {
            if let opened = pcap_dump_open(h, pcapPath) {
                dumper = opened
            } else if errno == ENOSPC || errno == EDQUOT {
                // A full disk costs the capture file, never the trial: its packets are still analysed.
                openError = FileError("create the capture", path: pcapPath)
            } else {
                throw fail(.dumpOpen)
            }
        }

        monotonicOffsetNs = Self.sampleClockOffset()
        sink = Sink(handle: h, dumper: dumper, interface: interface,
                    nanoPrecision: pcap_get_tstamp_precision(h) == PCAP_TSTAMP_PRECISION_NANO,
                    monotonicOffsetNs: monotonicOffsetNs)
        fileErrorValue = openError
    }

    /// Why the capture file was given up (the disk filled while it was written, or before it could
    /// be created), read after `stop()`; the file is then removed and the packets are still
    /// returned by `stop()`. nil when the file was written whole, or none was asked for.
    public var fileError: FileError? { lock.withLock { finished ? fileErrorValue : nil } }
    private var fileErrorValue: FileError?

    /// `pcapPath` holds the whole capture (read after `stop()`).
    public var keptFile: Bool { pcapPath != nil && fileError == nil }

    /// The trial note for a capture file given up: it starts with `notKeptPrefix`.
    public static func notKeptNote(_ error: FileError) -> String {
        notKeptPrefix + "\(error) — results come first: the trial was analysed from memory"
    }
    public static let notKeptPrefix = "capture not kept: "

    deinit { _ = stop() }

    /// Starts the background reader. Calling it twice, or after `stop()`, does nothing.
    public func start() {
        lock.withLock {
            guard !started, !finished else { return }
            let sink = self.sink
            guard sink.prepareWake() else { return }  // readError says why; stop() still drains
            started = true
            let thread = Thread { sink.readLoop() }
            thread.name = "pcap-\(interface)"
            thread.start()
        }
    }

    /// Drains pending packets, stops the reader, closes the file and the handle. Idempotent:
    /// later calls return the same packets.
    @discardableResult
    public func stop() -> [CapturedPacket] {
        lock.withLock {
            if finished { return result }
            finished = true
            if started { sink.stopAndWait() }
            sink.drainAndClose()
            result = sink.packets
            if sink.writeErrno != 0, let pcapPath, fileErrorValue == nil {
                fileErrorValue = FileError("write the capture", path: pcapPath, errno: sink.writeErrno)
                unlink(pcapPath)
            }
            return result
        }
    }

    /// Smallest-gap sandwich of realtime between two monotonic reads, so a preemption in the
    /// middle of one sample does not skew the offset.
    static func sampleClockOffset(samples: Int = 5) -> Int64 {
        var best: (gap: Int64, offset: Int64) = (.max, 0)
        for _ in 0..<samples {
            let m1 = kal_monotonic_ns()
            let r = kal_realtime_ns()
            let m2 = kal_monotonic_ns()
            if m2 - m1 < best.gap { best = (m2 - m1, m1 + (m2 - m1) / 2 - r) }
        }
        return best.offset
    }

    // MARK: - Offline

    /// Reads a pcap file. `monotonicNs` = realtime + `monotonicOffsetNs` (so realtime-based when 0).
    public static func read(pcapPath: String, monotonicOffsetNs: Int64 = 0) throws -> [CapturedPacket] {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = pcap_open_offline_with_tstamp_precision(pcapPath, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            throw CaptureError(stage: .openOffline, interface: pcapPath, message: String(cString: errbuf))
        }
        defer { pcap_close(h) }
        var packets: [CapturedPacket] = []
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var bytes: UnsafePointer<UInt8>?
        while true {
            let rc = pcap_next_ex(h, &header, &bytes)
            if rc == PCAP_ERROR_BREAK { return packets }  // end of file
            if rc < 0 {
                let message = String(cString: pcap_geterr(h))
                // A file still being written (or cut by a crash) may end in half a record: what
                // precedes it is intact, as tcpdump also shows.
                if message.contains("truncated") && !packets.isEmpty { return packets }
                throw CaptureError(stage: .read, interface: pcapPath, message: message)
            }
            guard rc == 1, let header, let bytes else { continue }
            packets.append(makePacket(header.pointee, bytes, nano: true, monotonicOffsetNs: monotonicOffsetNs))
        }
    }
}

func makePacket(_ hdr: pcap_pkthdr, _ bytes: UnsafePointer<UInt8>, nano: Bool, monotonicOffsetNs: Int64) -> CapturedPacket {
    // With nanosecond precision libpcap stores nanoseconds in tv_usec.
    let frac = Int64(hdr.ts.tv_usec) * (nano ? 1 : 1000)
    let realtime = Int64(hdr.ts.tv_sec) * 1_000_000_000 + frac
    return CapturedPacket(realtimeNs: realtime, monotonicNs: realtime + monotonicOffsetNs,
                          data: Array(UnsafeBufferPointer(start: bytes, count: Int(hdr.caplen))),
                          origLen: Int(hdr.len))
}

/// The handle, the dump file and the packets. Touched by one thread at a time: the reader while it
/// runs, then stop() after it has exited.
// @unchecked: holds libpcap C handles; the reader thread owns them until it signals `done`, then stop() reads and closes them.
private final class Sink: @unchecked Sendable {
    private var handle: OpaquePointer?
    private var dumper: OpaquePointer?
    let interface: String
    let nanoPrecision: Bool
    let monotonicOffsetNs: Int64
    var packets: [CapturedPacket] = []
    var readError: CaptureError?
    var dropped: UInt32 = 0
    private var dirty = false
    /// The errno of the first failed write of the dump file (0: none); the dump is closed then.
    var writeErrno: Int32 = 0
    /// stop() writes a byte here: the reader blocks in poll(2) with no timeout until a packet or this.
    private var wake: (read: Int32, write: Int32) = (-1, -1)
    private let done = DispatchSemaphore(value: 0)
    /// Unflushed packets reach the file within this long, for a reader of the file during a trial.
    static let flushAfterNs: Int64 = 200_000_000

    init(handle: OpaquePointer, dumper: OpaquePointer?, interface: String, nanoPrecision: Bool, monotonicOffsetNs: Int64) {
        self.handle = handle
        self.dumper = dumper
        self.interface = interface
        self.nanoPrecision = nanoPrecision
        self.monotonicOffsetNs = monotonicOffsetNs
    }

    /// Creates the wake-up pipe; before the reader thread starts. False (with readError) on failure.
    func prepareWake() -> Bool {
        var fds: [Int32] = [-1, -1]
        guard kal_pipe_cloexec(&fds) == 0 else {
            readError = CaptureError(stage: .read, interface: interface,
                                     message: "wake-up pipe for the reader: \(String(cString: strerror(errno)))")
            return false
        }
        wake = (fds[0], fds[1])
        return true
    }

    func readLoop() {
        defer { done.signal() }
        guard let h = handle, wake.read >= 0 else { return }
        var fds = [pollfd(fd: pcap_get_selectable_fd(h), events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        var lastFlush = kal_monotonic_ns()
        while true {
            // No periodic wakeup: the only deadline is the flush of packets already captured.
            let timeout: Int32 = dirty
                ? Int32(max(0, (lastFlush + Self.flushAfterNs - kal_monotonic_ns() + 999_999) / 1_000_000))
                : -1
            if poll(&fds, 2, timeout) < 0 && errno != EINTR {
                readError = CaptureError(stage: .read, interface: interface, message: "poll: \(String(cString: strerror(errno)))")
                return
            }
            if fds[1].revents != 0 { return }  // stop(): drainAndClose() reads what is left
            if dispatch(h) < 0 {
                readError = CaptureError(stage: .read, interface: interface, message: String(cString: pcap_geterr(h)))
                return
            }
            if dirty, kal_monotonic_ns() - lastFlush >= Self.flushAfterNs, let dumper {
                if pcap_dump_flush(dumper) != 0 { giveUpFile() }
                dirty = false
                lastFlush = kal_monotonic_ns()
            }
        }
    }

    func stopAndWait() {
        var byte: UInt8 = 1
        while write(wake.write, &byte, 1) < 0 && errno == EINTR {}
        done.wait()
    }

    deinit {
        if wake.read >= 0 { close(wake.read) }
        if wake.write >= 0 { close(wake.write) }
    }

    func drainAndClose() {
        guard let h = handle else { return }
        // Non-blocking, so this ends once the ring is empty; the bound guards against a flooding link.
        var rounds = 0
        while readError == nil, rounds < 1000, dispatch(h) > 0 { rounds += 1 }
        var stats = pcap_stat()
        if pcap_stats(h, &stats) == 0 { dropped = stats.ps_drop }
        if let dumper {
            if pcap_dump_flush(dumper) != 0 { giveUpFile() } else { pcap_dump_close(dumper) }
        }
        pcap_close(h)
        dumper = nil
        handle = nil
    }

    /// A write of the dump file failed (ENOSPC, EIO …): keep the errno, stop writing the file.
    private func giveUpFile() {
        writeErrno = errno == 0 ? EIO : errno
        if let dumper { pcap_dump_close(dumper) }
        dumper = nil
    }

    private func dispatch(_ h: OpaquePointer) -> Int32 {
        let user = Unmanaged.passUnretained(self).toOpaque().assumingMemoryBound(to: UInt8.self)
        return pcap_dispatch(h, -1, captureCallback, user)
    }

    func handle(_ header: UnsafePointer<pcap_pkthdr>, _ bytes: UnsafePointer<UInt8>) {
        if let dumper {
            pcap_dump(UnsafeMutablePointer<UInt8>(dumper), header, bytes)
            dirty = true
        }
        packets.append(makePacket(header.pointee, bytes, nano: nanoPrecision, monotonicOffsetNs: monotonicOffsetNs))
    }
}

private let captureCallback: pcap_handler = { user, header, bytes in
    guard let user, let header, let bytes else { return }
    Unmanaged<Sink>.fromOpaque(UnsafeRawPointer(user)).takeUnretainedValue().handle(header, bytes)
}
