import CKeepaliveShim
import Foundation

/// A process descriptor (pidfd_open(2)). It polls readable once the process has exited, so a wait
/// for a process with a deadline blocks in poll(2) instead of checking waitpid every few
/// milliseconds: under UML time-travel a periodic check keeps the virtual clock crawling.
public final class PidFD: Sendable {
    public let fd: Int32

    public enum OpenResult: Sendable {
        case opened(PidFD)
        /// ESRCH: no such process (any more): it has exited and been reaped.
        case gone
        /// The kernel has no pidfd_open (before 5.3) or refused it: the caller falls back to polling.
        case unsupported
    }

    private init(fd: Int32) { self.fd = fd }

    public static func open(_ pid: pid_t) -> OpenResult {
        let fd = kal_pidfd_open(pid, 0)
        if fd >= 0 { return .opened(PidFD(fd: fd)) }
        return errno == ESRCH ? .gone : .unsupported
    }

    deinit { close(fd) }

    /// Monotonic seconds, the clock every deadline here is on.
    public static func now() -> Double { Double(kal_monotonic_ns()) / 1e9 }

    /// True once the process has exited (without waiting).
    public var exited: Bool { Self.waitAny([self], until: 0) }

    /// Blocks until the process exits or `deadline` (monotonic seconds; nil: no bound) passes.
    /// True when it exited.
    public func wait(until deadline: Double?) -> Bool { Self.waitAny([self], until: deadline) }

    /// Blocks until any of `pidfds` has exited or `deadline` passes. True when one has exited.
    public static func waitAny(_ pidfds: [PidFD], until deadline: Double?) -> Bool {
        var fds = pidfds.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        while true {
            let r = poll(&fds, nfds_t(fds.count), timeoutMs(until: deadline))
            if r > 0 { return true }
            if r < 0 && errno != EINTR { return false }
            // A timeout rounds up to whole milliseconds; a signal may cut the wait short.
            if let deadline, now() >= deadline { return false }
        }
    }

    /// poll(2)'s timeout for `deadline`: -1 without one, never 0 while the deadline is ahead.
    public static func timeoutMs(until deadline: Double?) -> Int32 {
        guard let deadline else { return -1 }
        let ms = ((deadline - now()) * 1000).rounded(.up)
        return Int32(max(0, min(ms, Double(Int32.max))))
    }
}
