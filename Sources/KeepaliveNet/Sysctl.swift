import Foundation

/// Per-namespace sysctls (`/proc/sys/net/...` shows the namespace of the thread that opens it).
public enum Sysctl {
    /// Writes `value` to `key` (dotted form, e.g. "net.ipv4.ip_forward") in the calling thread's
    /// network namespace. Call inside `NetworkNamespace.perform`.
    public static func write(_ key: String, _ value: String) throws {
        let path = "/proc/sys/" + key.replacingOccurrences(of: ".", with: "/")
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open sysctl \(key)") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw SystemCallError("write \(value) to sysctl \(key)")
        }
    }

    public static func read(_ key: String) throws -> String {
        let path = "/proc/sys/" + key.replacingOccurrences(of: ".", with: "/")
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open sysctl \(key)") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw SystemCallError("read sysctl \(key)") }
        return String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
