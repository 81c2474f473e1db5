import CNetlink
import Glibc

/// One connection-tracking entry as ctnetlink reports it (original direction).
public struct ConntrackEntry: Equatable, Sendable {
    public var id: UInt32?
    public var protocolNumber: UInt8
    public var source: IPv4Address
    public var destination: IPv4Address
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// Seconds left before the entry expires (the kernel rounds down).
    public var timeoutSeconds: UInt32?
    /// TCP conntrack state (include/uapi/linux/netfilter/nf_conntrack_tcp.h), e.g. 3 = ESTABLISHED.
    public var tcpState: UInt8?

    public var tcpStateName: String {
        let names = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
                     "TIME_WAIT", "CLOSE", "SYN_SENT2"]
        guard let s = tcpState else { return "?" }
        return Int(s) < names.count ? names[Int(s)] : "STATE\(s)"
    }
}

/// A NETLINK_NETFILTER socket that dumps the conntrack table of the namespace it was opened in.
///
/// A dump also evicts entries whose timeout has passed (the kernel's garbage collector otherwise
/// reaps them lazily, up to a minute late), so polling sees an entry vanish when it expires.
/// Requires CAP_NET_ADMIN in the namespace and nf_conntrack loaded there.
public final class ConntrackSocket: Sendable {
    private let fd: Int32
    /// The last request's sequence number; held for a whole request and its replies, so dumps from
    /// several threads take turns on the socket.
    private let sequence = Locked<UInt32>(1)
    public let namespaceName: String

    // include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h
    static let netlinkNetfilter: Int32 = 12
    static let subsysCtnetlink: UInt16 = 1
    static let msgCtNew: UInt16 = 0, msgCtGet: UInt16 = 1
    static let ctaTupleOrig: UInt16 = 1, ctaProtoinfo: UInt16 = 4, ctaTimeout: UInt16 = 7, ctaID: UInt16 = 12
    static let ctaTupleIP: UInt16 = 1, ctaTupleProto: UInt16 = 2
    static let ctaIPv4Src: UInt16 = 1, ctaIPv4Dst: UInt16 = 2
    static let ctaProtoNum: UInt16 = 1, ctaProtoSrcPort: UInt16 = 2, ctaProtoDstPort: UInt16 = 3
    static let ctaProtoinfoTCP: UInt16 = 1, ctaProtoinfoTCPState: UInt16 = 1

    /// Opens the socket in the calling thread's namespace (call inside `NetworkNamespace.perform`).
    public init(namespaceName: String) throws {
        let s = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Self.netlinkNetfilter)
        guard s >= 0 else { throw SystemCallError("open NETLINK_NETFILTER socket in \(namespaceName)") }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        fd = s
        self.namespaceName = namespaceName
    }

    public static func open(in namespace: NetworkNamespace) throws -> ConntrackSocket {
        try namespace.perform { try ConntrackSocket(namespaceName: namespace.name) }
    }

    deinit { close(fd) }

    /// Every IPv4 entry in the namespace's table. The corresponding tool is `conntrack -L`.
    public func dump() throws -> [ConntrackEntry] {
        try sequence.withLock { sequence in
            sequence &+= 1
            return try dump(seq: sequence)
        }
    }

    private func dump(seq: UInt32) throws -> [ConntrackEntry] {
        // nlmsghdr + nfgenmsg(AF_INET, NFNETLINK_V0, res_id 0)
        var request = [UInt8]()
        request += le32(20)
        request += le16(Self.subsysCtnetlink << 8 | Self.msgCtGet)
        request += le16(UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        request += le32(seq)
        request += le32(0)
        request += [UInt8(AF_INET), 0, 0, 0]
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let sent = withUnsafePointer(to: &kernel) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, request, request.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        guard sent == request.count else { throw SystemCallError("request conntrack dump in \(namespaceName)") }

        var entries: [ConntrackEntry] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SystemCallError("read conntrack dump in \(namespaceName)", errno: n == 0 ? EIO : errno) }
            var offset = 0
            while offset + 16 <= n {
                let length = Int(u32le(buffer, offset))
                let type = u16le(buffer, offset + 4)
                let messageSeq = u32le(buffer, offset + 8)
                guard length >= 16, offset + length <= n else { break }
                defer { offset += align4(length) }
                guard messageSeq == seq else { continue }
                switch Int32(type) {
                case NLMSG_DONE:
                    return entries
                case NLMSG_ERROR:
                    let code = Int32(bitPattern: u32le(buffer, offset + 16))
                    if code == 0 { continue }
                    throw SystemCallError("dump conntrack table in \(namespaceName)", errno: -code)
                default:
                    guard type == Self.subsysCtnetlink << 8 | Self.msgCtNew else { continue }
                    if let entry = Self.parseEntry(buffer, from: offset + 20, to: offset + length) {
                        entries.append(entry)
                    }
                }
            }
        }
    }

    static func parseEntry(_ b: [UInt8], from start: Int, to end: Int) -> ConntrackEntry? {
        var entry = ConntrackEntry(protocolNumber: 0, source: IPv4Address(value: 0), destination: IPv4Address(value: 0),
                                   sourcePort: 0, destinationPort: 0)
        var haveTuple = false
        for (type, range) in attributes(b, start, end) {
            switch type {
            case ctaTupleOrig:
                for (t, r) in attributes(b, range.lowerBound, range.upperBound) {
                    if t == ctaTupleIP {
                        for (a, v) in attributes(b, r.lowerBound, r.upperBound) where v.count == 4 {
                            if a == ctaIPv4Src { entry.source = IPv4Address(value: u32be(b, v.lowerBound)); haveTuple = true }
                            if a == ctaIPv4Dst { entry.destination = IPv4Address(value: u32be(b, v.lowerBound)) }
                        }
                    } else if t == ctaTupleProto {
                        for (a, v) in attributes(b, r.lowerBound, r.upperBound) {
                            if a == ctaProtoNum, v.count >= 1 { entry.protocolNumber = b[v.lowerBound] }
                            if a == ctaProtoSrcPort, v.count >= 2 { entry.sourcePort = u16be(b, v.lowerBound) }
                            if a == ctaProtoDstPort, v.count >= 2 { entry.destinationPort = u16be(b, v.lowerBound) }
                        }
                    }
                }
            case ctaTimeout where range.count >= 4:
                entry.timeoutSeconds = u32be(b, range.lowerBound)
            case ctaID where range.count >= 4:
                entry.id = u32be(b, range.lowerBound)
            case ctaProtoinfo:
                for (t, r) in attributes(b, range.lowerBound, range.upperBound) where t == ctaProtoinfoTCP {
                    for (a, v) in attributes(b, r.lowerBound, r.upperBound) where a == ctaProtoinfoTCPState && v.count >= 1 {
                        entry.tcpState = b[v.lowerBound]
                    }
                }
            default:
                break
            }
        }
        return haveTuple ? entry : nil
    }

    /// (type without the NESTED/BYTEORDER flags, payload range) for each netlink attribute.
    static func attributes(_ b: [UInt8], _ start: Int, _ end: Int) -> [(UInt16, Range<Int>)] {
        var result: [(UInt16, Range<Int>)] = []
        var offset = start
        while offset + 4 <= end {
            let length = Int(u16le(b, offset))
            guard length >= 4, offset + length <= end else { break }
            result.append((u16le(b, offset + 2) & 0x3FFF, offset + 4..<offset + length))
            offset += align4(length)
        }
        return result
    }
}

private func align4(_ n: Int) -> Int { (n + 3) & ~3 }
private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
private func le32(_ v: UInt32) -> [UInt8] { le16(UInt16(v & 0xffff)) + le16(UInt16(v >> 16)) }
private func u16le(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
private func u32le(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(u16le(b, i)) | UInt32(u16le(b, i + 2)) << 16 }
private func u16be(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
private func u32be(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(u16be(b, i)) << 16 | UInt32(u16be(b, i + 2)) }

/// A NETLINK_NETFILTER socket subscribed to ctnetlink's NEW, UPDATE and DESTROY events in the
/// namespace it was opened in: entries appearing, changing state and being removed. A refreshed
/// timeout is not an event, and neither is expiry until something evicts the entry (a dump, or the
/// garbage collector, which may be a minute late), so a watcher still has to look at the table —
/// but only when an event arrives or a timeout can have run out.
public final class ConntrackEvents: Sendable {
    public let fd: Int32
    public let namespaceName: String

    // include/uapi/linux/netfilter/nfnetlink.h: NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY
    static let groups: UInt32 = 1 << 0 | 1 << 1 | 1 << 2

    /// Opens the socket in the calling thread's namespace (call inside `NetworkNamespace.perform`).
    public init(namespaceName: String) throws {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let s = socket(AF_NETLINK, type, ConntrackSocket.netlinkNetfilter)
        guard s >= 0 else { throw SystemCallError("open NETLINK_NETFILTER event socket in \(namespaceName)") }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = Self.groups
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(s, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        guard bound == 0 else {
            let err = errno
            close(s)
            throw SystemCallError("subscribe to conntrack events in \(namespaceName)", errno: err)
        }
        fd = s
        self.namespaceName = namespaceName
    }

    public static func open(in namespace: NetworkNamespace) throws -> ConntrackEvents {
        try namespace.perform { try ConntrackEvents(namespaceName: namespace.name) }
    }

    deinit { close(fd) }

    /// Reads every pending event without blocking. True when there was at least one (an overrun,
    /// ENOBUFS, counts: events were lost, so the table is worth a look).
    public func drain() -> Bool {
        var any = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { any = true; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == ENOBUFS { any = true; continue }
            return any
        }
    }
}
