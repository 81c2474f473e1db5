/// The Linux TCP constants the timer model and the formulas use, in one place
/// (include/net/tcp.h, Documentation/networking/ip-sysctl.rst).
public enum KernelConstants {
    /// TCP_RTO_MIN: HZ / 5 jiffies (200 ms), the floor of every retransmission timeout.
    public static func rtoMinJiffies(hz: Int) -> UInt64 { UInt64(hz / 5) }
    /// TCP_RTO_MIN in seconds, whatever HZ.
    public static let rtoMinSeconds = 0.2
    /// net.ipv4.tcp_retries2's default: retransmissions of unacknowledged data before the abort.
    public static let tcpRetries2Default = 15
}
