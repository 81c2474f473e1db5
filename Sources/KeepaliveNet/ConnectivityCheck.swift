import Foundation

/// A real TCP exchange from A to B through R: proves the topology forwards, with sockets created
/// inside the hosts' namespaces (a socket keeps the namespace it was created in).
public enum ConnectivityCheck {
    public struct Result: Sendable {
        public let connectSeconds: Double
        public let roundTripSeconds: Double
        public let reply: String
    }

    public static func exchange(over topology: Topology, port: UInt16 = 7000, message: String = "ping") throws -> Result {
        let listener = try topology.b.perform { try Socket.listen(on: Topology.bAddress.address, port: port) }
        defer { close(listener) }
        let start = Date()
        let client = try topology.a.perform {
            try Socket.connect(to: Topology.bAddress.address, port: port, timeoutSeconds: 3)
        }
        defer { close(client) }
        let connected = Date()
        let server = accept(listener, nil, nil)
        guard server >= 0 else { throw SystemCallError("accept in \(topology.b.name)") }
        defer { close(server) }
        try Socket.sendAll(client, Array(message.utf8))
        let request = try Socket.receive(server, count: message.utf8.count, timeoutSeconds: 3)
        try Socket.sendAll(server, Array("pong:".utf8) + request)
        let reply = try Socket.receive(client, count: 5 + request.count, timeoutSeconds: 3)
        return Result(connectSeconds: connected.timeIntervalSince(start),
                      roundTripSeconds: Date().timeIntervalSince(connected),
                      reply: String(decoding: reply, as: UTF8.self))
    }
}

/// Minimal blocking IPv4 TCP helpers for checks (the peers have their own loop).
enum Socket {
    static func address(_ ip: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = ip.value.bigEndian
        return sa
    }

    static func listen(on ip: IPv4Address, port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = address(ip, port)
        let bound = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            let error = SystemCallError("bind/listen \(ip):\(port)")
            close(fd)
            throw error
        }
        return fd
    }

    static func connect(to ip: IPv4Address, port: UInt16, timeoutSeconds: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError("socket") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sa = address(ip, port)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let error = SystemCallError("connect to \(ip):\(port)")
            close(fd)
            throw error
        }
        return fd
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SystemCallError("send") }
            offset += n
        }
    }

    static func receive(_ fd: Int32, count: Int, timeoutSeconds: Int) throws -> [UInt8] {
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        while result.count < count {
            let n = recv(fd, &buffer, count - result.count, 0)
            guard n > 0 else { throw SystemCallError("recv", errno: n == 0 ? ECONNRESET : errno) }
            result += buffer[..<n]
        }
        return result
    }
}
