import KeepalivePeerCore

#if canImport(Glibc)
import Glibc
#endif

/// `keepalive-lab peer --config JSON`: the same session as the lean `keepalive-lab-peer` binary
/// (KeepalivePeerCore), configured from a PeerConfig. The harness spawns the lean binary when it is
/// installed next to keepalive-lab; this entry point remains for compatibility.
public enum PeerRunner {
    /// Exit codes: 0 = the connection ended (any reason: error, eof, heartbeat, quit);
    /// 1 = setup or protocol failure (socket, bind, connect, setsockopt, unexpected bytes);
    /// 2 = invalid configuration.
    public static func run(_ config: PeerConfig) -> Int32 {
        do {
            try config.validate()
        } catch {
            return fail("config: \(error)", errno: nil, exitCode: 2)
        }
        return PeerSession(config.settings).run()
    }

    /// Reports a failure that happens before the peer runs (bad --config, setns failed) the same way
    /// the runner would: an "error" then a "closed" event. Returns `exitCode`.
    public static func fail(_ detail: String, errno code: Int32?, exitCode: Int32 = 1) -> Int32 {
        peerSetupFailure(detail, errno: code, exitCode: exitCode)
    }
}

extension PeerConfig {
    /// The session's settings (and, through `PeerSettings.arguments`, the lean binary's arguments).
    public var settings: PeerSettings {
        let load: PeerSettings.Load
        switch workload {
        case .idle: load = .idle
        case .rr(let seconds): load = .rr(seconds: seconds)
        case .stream: load = .stream
        }
        return PeerSettings(
            role: role == .server ? .server : .client, address: address, port: port,
            keepalive: policy.keepalive.map { (Int32($0.idle), Int32($0.interval), Int32($0.count)) },
            keepaliveOnly: policy.keepalive == nil && policy.useSysctlDefaults,
            userTimeoutMs: policy.userTimeoutMs,
            heartbeat: policy.heartbeat.map { ($0.interval, $0.timeout) },
            load: load, streamChunkBytes: streamChunkBytes, streamBytesPerSecond: streamBytesPerSecond)
    }
}
