import Foundation

/// Whose time a trial runs in.
public enum LabClock: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// Wall-clock time on the kernel under test: a 2-hour keepalive takes 2 hours.
    case real
    /// The lab kernel's virtual time (UML `time-travel=inf-cpu`): the guest's clock jumps to the
    /// next timer whenever every process is idle, so the kernel's own timers fire at their own
    /// instants and hours pass in seconds. CPU time is free (a veth RTT is ~0, RTO sits at its
    /// 200 ms floor) and nothing on the host can delay a timer.
    case virtual

    public var description: String { rawValue }

    /// The clock of the kernel this process runs on: virtual when that kernel was booted with
    /// time-travel (read from its own command line, not from anything a launcher said).
    public static var current: LabClock {
        guard let cmdline = try? String(contentsOfFile: "/proc/cmdline", encoding: .utf8) else { return .real }
        return cmdline.split(separator: " ").contains { $0.hasPrefix("time-travel=inf-cpu") } ? .virtual : .real
    }

    /// What a reader must know about timings in this clock (reports print it).
    public var meaning: String {
        switch self {
        case .real:
            return "real time: timings include the host's scheduling noise"
        case .virtual:
            return "virtual time (UML time-travel=inf-cpu): the guest's clock jumps over idle time, so the kernel's timers fire "
                + "at their own instants with no host-scheduling noise; CPU time is free — a veth round trip takes ~0 s and "
                + "the retransmission timeout sits at its 200 ms floor unless netem adds delay"
        }
    }
}
