import Foundation
import KeepaliveNet

/// Where a backend's command output goes.
public struct BackendOutput: Sendable {
    public var stdout: @Sendable ([UInt8]) -> Void
    public var stderr: @Sendable ([UInt8]) -> Void

    public init(stdout: @escaping @Sendable ([UInt8]) -> Void, stderr: @escaping @Sendable ([UInt8]) -> Void) {
        self.stdout = stdout
        self.stderr = stderr
    }

    /// To this process's stdout and stderr, as it arrives.
    public static let forward = BackendOutput(stdout: { writeAll(1, $0) }, stderr: { writeAll(2, $0) })

    /// write(2) until every byte is out (EINTR retried); stops quietly when the reader is gone.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

/// Forwards output line by line, each with `prefix` in front and through `transform`, so that two
/// sources' lines do not interleave mid-line (a guest's console, several guests at once).
public final class LineForwarder: Sendable {
    let prefix: String
    let transform: @Sendable (String) -> String
    private let pending = Locked<[Int32: [UInt8]]>([:])

    public init(prefix: String = "", transform: @escaping @Sendable (String) -> String = { $0 }) {
        self.prefix = prefix
        self.transform = transform
    }

    public var sink: BackendOutput {
        BackendOutput(stdout: { self.append($0, fd: 1) }, stderr: { self.append($0, fd: 2) })
    }

    private func append(_ bytes: [UInt8], fd: Int32) {
        pending.withLock { pending in
            var buffer = pending[fd, default: []] + bytes
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                emit(buffer[..<newline], fd: fd)
                buffer.removeSubrange(...newline)
            }
            pending[fd] = buffer
        }
    }

    private func emit(_ line: ArraySlice<UInt8>, fd: Int32) {
        let text = transform(String(decoding: line, as: UTF8.self))
        BackendOutput.writeAll(fd, Array((prefix + text + "\n").utf8))
    }

    /// Writes what is left of an unfinished line.
    public func flush() {
        pending.withLock { pending in
            for (fd, rest) in pending where !rest.isEmpty { emit(rest[...], fd: fd) }
            pending = [:]
        }
    }
}

/// Collects output in memory (for probes that parse it).
public final class CapturedOutput: Sendable {
    private let out = Locked<[UInt8]>([])
    private let err = Locked<[UInt8]>([])

    public init() {}

    public var sink: BackendOutput {
        BackendOutput(stdout: { bytes in self.out.withLock { $0 += bytes } },
                      stderr: { bytes in self.err.withLock { $0 += bytes } })
    }

    public var stdout: String { String(decoding: out.value, as: UTF8.self) }
    public var stderr: String { String(decoding: err.value, as: UTF8.self) }
}

/// Control-line events, parsed as they arrive.
// @unchecked: state guarded by an NSCondition (waits need a condition variable, which Mutex lacks).
final class EventStream: @unchecked Sendable {
    private let condition = NSCondition()
    private var partial: [UInt8] = []
    private var events: [UMLEvent] = []
    /// Child exits announced while a wait was listening (ChildExits).
    private var exits = 0

    func append(_ bytes: [UInt8]) {
        condition.lock()
        partial += bytes
        while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Data(partial[..<newline])
            partial.removeSubrange(...newline)
            if let event = try? JSONDecoder().decode(UMLEvent.self, from: line) { events.append(event) }
        }
        condition.broadcast()
        condition.unlock()
    }

    /// The next event of one of `kinds`, waiting up to `timeout` seconds (nil: no bound) while
    /// `keepWaiting` holds. That is asked once, then again only when one of our child processes
    /// exits (ChildExits): the wait blocks until an event, an exit or the deadline, never on a
    /// timer. Once it stops holding (the machine is gone), events still in the pipe get a short
    /// grace period.
    func wait(for kinds: Set<UMLEvent.Kind>, timeout: Double?, while keepWaiting: () -> Bool) -> UMLEvent? {
        var deadline = timeout.map { Date().addingTimeInterval($0) }
        var ending = false
        // Listening before the first question, so an exit right after it is not missed.
        let token = ChildExits.shared.listen { [self] in
            condition.lock()
            exits += 1
            condition.broadcast()
            condition.unlock()
        }
        defer { ChildExits.shared.remove(token) }
        condition.lock()
        defer { condition.unlock() }
        var askedAt: Int?
        while true {
            // Events of other kinds stay for a later wait (an exit may arrive while a status is awaited).
            if let index = events.firstIndex(where: { kinds.contains($0.event) }) {
                return events.remove(at: index)
            }
            if let deadline, Date() >= deadline { return nil }
            if !ending && askedAt != exits {
                askedAt = exits
                condition.unlock()
                let alive = keepWaiting()
                condition.lock()
                if !alive {
                    ending = true
                    let grace = Date().addingTimeInterval(1)
                    deadline = deadline.map { min($0, grace) } ?? grace
                }
                continue
            }
            if let deadline {
                _ = condition.wait(until: deadline)
            } else {
                condition.wait()
            }
        }
    }

    /// Like `wait(for:timeout:while:)`, for as long as `machine` has not exited.
    func wait(for kinds: Set<UMLEvent.Kind>, timeout: Double?, untilExitOf machine: ChildProcess) -> UMLEvent? {
        wait(for: kinds, timeout: timeout, while: { !machine.poll() })
    }
}

/// Announces that a child process of ours has exited, to whoever is listening. A pidfd-watching
/// thread per ChildProcess blocks until its exit, so "is the machine still alive?" is asked when
/// the answer may have changed rather than every few milliseconds.
final class ChildExits: Sendable {
    static let shared = ChildExits()
    private let listeners = Locked<(all: [Int: @Sendable () -> Void], next: Int)>(([:], 0))

    /// Announces the exit behind `pidfd` once it happens. The thread ends with the process; it
    /// holds the descriptor until then.
    static func watch(_ pidfd: PidFD, name: String) {
        let thread = Thread {
            _ = pidfd.wait(until: nil)
            ChildExits.shared.announce()
        }
        thread.name = name
        thread.start()
    }

    func listen(_ body: @escaping @Sendable () -> Void) -> Int {
        listeners.withLock {
            $0.next += 1
            $0.all[$0.next] = body
            return $0.next
        }
    }

    func remove(_ token: Int) { listeners.withLock { _ = $0.all.removeValue(forKey: token) } }

    func announce() {
        // Called outside the lock: a listener takes its own.
        let all = listeners.withLock { Array($0.all.values) }
        for body in all { body() }
    }
}

/// What this process has running in other environments, undone when it is interrupted (SIGINT,
/// SIGTERM): the machines are killed and reaped, their private directories removed.
final class ActiveLaunches: Sendable {
    static let shared = ActiveLaunches()
    private struct State {
        var aborts: [Int: @Sendable () -> Void] = [:]
        var next = 0
        var installed = false
    }
    private let state = Locked(State())

    func add(abort: @escaping @Sendable () -> Void) -> Int {
        state.withLock {
            if !$0.installed {
                $0.installed = true
                InterruptCleanup.install(run: nil) { ActiveLaunches.shared.abortAll() }
            }
            $0.next += 1
            $0.aborts[$0.next] = abort
            return $0.next
        }
    }

    func remove(_ id: Int) { state.withLock { _ = $0.aborts.removeValue(forKey: id) } }

    func abortAll() {
        let all = state.withLock { Array($0.aborts.values) }
        for abort in all { abort() }
    }
}
