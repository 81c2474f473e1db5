import CKeepaliveShim
import Foundation
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

/// A namespace's TCP socket table through sock_diag (inet_diag) netlink, and another process's
/// socket read through a pidfd_getfd copy.
///
/// The dump runs on a thread that has entered the namespace (`NetworkNamespace.perform`): netlink
/// sockets belong to the namespace they are created in, and setns only affects the calling thread.
enum SockDiag {
    struct Entry: Sendable {
        var state: UInt8
        var local: (address: String, port: UInt16)
        var remote: (address: String, port: UInt16)
        var inode: UInt32
        var uid: UInt32
        var info: PeerTCPInfo?

        var stateName: String { info?.stateName ?? Self.name(of: state) }

        static func name(of state: UInt8) -> String {
            let names = ["?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                         "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"]
            return Int(state) < names.count ? names[Int(state)] : "STATE\(state)"
        }
    }

    static let established: UInt8 = 1
    static let listen: UInt8 = 10

    /// Every IPv4 TCP socket in the calling thread's namespace.
    static func dumpHere() throws -> [Entry] {
        var capacity = 256
        while true {
            var raw = [kal_diag_entry](repeating: kal_diag_entry(), count: capacity)
            let n = Int(kal_tcp_diag_dump(&raw, Int32(capacity)))
            if n < 0 { throw SystemCallError("sock_diag dump", errno: Int32(-n)) }
            if n > capacity { capacity = n + 64; continue }
            return raw.prefix(n).map { e in
                Entry(state: e.state,
                      local: (Self.ipv4(e.saddr), e.sport), remote: (Self.ipv4(e.daddr), e.dport),
                      inode: e.inode, uid: e.uid, info: e.has_info != 0 ? PeerTCPInfo(e.info) : nil)
            }
        }
    }

    /// The table of `namespace`.
    static func dump(in namespace: NetworkNamespace) throws -> [Entry] {
        try namespace.perform { try dumpHere() }
    }

    static func ipv4(_ networkOrder: UInt32) -> String {
        let b = withUnsafeBytes(of: networkOrder) { Array($0) }
        return b.map(String.init).joined(separator: ".")
    }

    /// Socket inodes of `pid`'s descriptors: inode → fd.
    static func socketDescriptors(of pid: pid_t) -> [UInt32: Int32] {
        var result: [UInt32: Int32] = [:]
        let dir = "/proc/\(pid)/fd"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [:] }
        for name in names {
            guard let fd = Int32(name),
                  let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\(name)"),
                  target.hasPrefix("socket:["), target.hasSuffix("]"),
                  let inode = UInt32(target.dropFirst("socket:[".count).dropLast())
            else { continue }
            result[inode] = fd
        }
        return result
    }

    /// `pid` and its descendants (through /proc/PID/task/*/children).
    static func processTree(_ pid: pid_t) -> [pid_t] {
        var result: [pid_t] = []
        var queue = [pid]
        while let p = queue.first {
            queue.removeFirst()
            result.append(p)
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p)/task")) ?? []
            for task in tasks {
                let text = (try? String(contentsOfFile: "/proc/\(p)/task/\(task)/children", encoding: .utf8)) ?? ""
                queue += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            if result.count > 256 { break }
        }
        return result
    }
}

/// Socket options a program applied, read back from its own socket.
public struct AppSocketSettings: Codable, Sendable, Equatable {
    public var soKeepalive: Bool?
    public var keepIdle: Int?
    public var keepIntvl: Int?
    public var keepCnt: Int?
    public var userTimeoutMs: Int?

    enum CodingKeys: String, CodingKey {
        case soKeepalive = "so_keepalive"
        case keepIdle = "tcp_keepidle"
        case keepIntvl = "tcp_keepintvl"
        case keepCnt = "tcp_keepcnt"
        case userTimeoutMs = "tcp_user_timeout_ms"
    }

    init(_ o: kal_sockopts) {
        func v(_ x: Int32) -> Int? { x < 0 ? nil : Int(x) }
        soKeepalive = o.so_keepalive < 0 ? nil : o.so_keepalive != 0
        keepIdle = v(o.keepidle)
        keepIntvl = v(o.keepintvl)
        keepCnt = v(o.keepcnt)
        userTimeoutMs = v(o.user_timeout_ms)
    }

    /// The keepalive timers the kernel runs on this socket, when keepalive is on.
    public var keepalive: KeepaliveSetting? {
        guard soKeepalive == true, let i = keepIdle, let n = keepIntvl, let c = keepCnt else { return nil }
        return KeepaliveSetting(idle: i, interval: n, count: c)
    }

    /// "SO_KEEPALIVE on, 2/1/3, TCP_USER_TIMEOUT 0".
    public var summary: String {
        let ka = soKeepalive.map { $0 ? "on" : "off" } ?? "?"
        func s(_ x: Int?) -> String { x.map(String.init) ?? "?" }
        return "SO_KEEPALIVE \(ka), TCP_KEEPIDLE/KEEPINTVL/KEEPCNT \(s(keepIdle))/\(s(keepIntvl))/\(s(keepCnt)), TCP_USER_TIMEOUT \(s(userTimeoutMs)) ms"
    }
}

/// A copy of a program's connected socket (pidfd_getfd): its options and TCP_INFO can be read and
/// it can be polled for the kernel's verdict (POLLERR/POLLHUP when the connection is aborted or
/// reset). Holding the copy keeps the socket alive after the program closes its own descriptor, so
/// the copy is closed as soon as the program is seen to give up (exit, detection, end of trial).
final class BorrowedSocket: Sendable {
    /// -1 once closed.
    private let descriptor: Locked<Int32>
    var fd: Int32 { descriptor.value }
    let ownerPid: pid_t
    let ownerFd: Int32
    let entry: SockDiag.Entry

    init(fd: Int32, ownerPid: pid_t, ownerFd: Int32, entry: SockDiag.Entry) {
        descriptor = Locked(fd)
        self.ownerPid = ownerPid
        self.ownerFd = ownerFd
        self.entry = entry
    }

    deinit { close() }

    func close() {
        descriptor.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    var settings: AppSocketSettings? {
        guard fd >= 0 else { return nil }
        var o = kal_sockopts()
        kal_read_sockopts(fd, &o)
        return AppSocketSettings(o)
    }

    var tcpInfo: PeerTCPInfo? { fd >= 0 ? PeerTCPInfo.read(fd: fd) : nil }

    /// Finds the connection from `pids` (a process tree) to `remote` in `namespace`'s table
    /// (state ESTABLISHED), matching sock_diag inodes against /proc/PID/fd, and copies it.
    static func find(in namespace: NetworkNamespace, pids: [pid_t], remote: (String, UInt16)?, localPort: UInt16? = nil) throws -> BorrowedSocket? {
        let table = try SockDiag.dump(in: namespace)
        let candidates = table.filter { e in
            e.state == SockDiag.established
                && (remote.map { e.remote.address == $0.0 && e.remote.port == $0.1 } ?? true)
                && (localPort.map { e.local.port == $0 } ?? true)
        }
        for pid in pids {
            let fds = SockDiag.socketDescriptors(of: pid)
            for entry in candidates {
                guard let targetFd = fds[entry.inode] else { continue }
                let pidfd = kal_pidfd_open(pid, 0)
                guard pidfd >= 0 else { throw SystemCallError("pidfd_open(\(pid))") }
                defer { Glibc.close(pidfd) }
                let copy = kal_pidfd_getfd(pidfd, targetFd, 0)
                guard copy >= 0 else { throw SystemCallError("pidfd_getfd(pid \(pid), fd \(targetFd))") }
                return BorrowedSocket(fd: copy, ownerPid: pid, ownerFd: targetFd, entry: entry)
            }
        }
        return nil
    }
}
