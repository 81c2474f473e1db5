import CZlib
import Foundation
import KeepaliveNet

/// CONFIG_HZ of the running kernel: the tick every TCP timer is counted in, and so the size of
/// the timer wheel's buckets (`TimerWheel`). Nothing in /proc or /sys states it directly.
public enum KernelHz {
    /// `KEEPALIVE_LAB_KERNEL_HZ` (set by the UML launcher, or by hand), else the kernel's own
    /// config: /boot/config-$(uname -r), then /proc/config.gz (CONFIG_IKCONFIG_PROC); nil when
    /// neither exists.
    public static let current: Int? = {
        if let value = ProcessInfo.processInfo.environment[ExecutionEnvironment.kernelHzVariable], let hz = Int(value), hz > 0 {
            return hz
        }
        return fromKernelConfig()
    }()

    public static func fromKernelConfig() -> Int? {
        let boot = "/boot/config-\(Doctor.kernelRelease())"
        if let text = try? String(contentsOfFile: boot, encoding: .utf8), let hz = parse(config: text) { return hz }
        if let data = gunzip(path: "/proc/config.gz"), let text = String(data: data, encoding: .utf8) {
            return parse(config: text)
        }
        return nil
    }

    /// The `CONFIG_HZ=` line of a kernel .config.
    public static func parse(config: String) -> Int? {
        for line in config.split(separator: "\n") where line.hasPrefix("CONFIG_HZ=") {
            return Int(line.dropFirst("CONFIG_HZ=".count))
        }
        return nil
    }

    /// Inflates a gzip file with zlib's `gzread` (Foundation has no gzip on Linux).
    static func gunzip(path: String) -> Data? {
        guard let file = gzopen(path, "rb") else { return nil }
        defer { gzclose(file) }
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 { return nil }
            if n == 0 { return out }
            out.append(buffer, count: Int(n))
        }
    }
}
