import Foundation
import KeepaliveNet

/// Lets a bounded number of trials set up at once (topology, capture, peers until the client is
/// ready); the rest wait their turn in arrival order, blocked on a condition, not polling.
///
/// Hundreds of trials started together otherwise all create namespaces, allocate capture rings
/// and exec peers in the same instant: the CPU work is the same, but every trial's setup then
/// finishes at the end of the pile-up instead of one after another. Pipelined, the first trials
/// are already waiting on their kernel timers while later ones set up.
public final class SetupGate: Sendable {
    public let width: Int
    private struct State {
        var inside = 0
        /// Waiters in arrival order, each on its own semaphore: a release wakes exactly the next one
        /// (a shared condition would wake all of them, a thousand context switches per release).
        var waiting: [DispatchSemaphore] = []
        var head = 0
    }
    private let state = Locked(State())

    /// Four setups per CPU: a setup mostly blocks (kernel locks while namespaces are made, a
    /// peer's exec and first exchange), so a few per CPU keep the CPUs busy. Measured on 2 CPUs,
    /// 1000 trials at once: 2 per CPU set up in 7.2 s, 4 per CPU in 4.9 s, 1 per CPU in 14.4 s.
    public static var defaultWidth: Int {
        if let text = getenv("KEEPALIVE_LAB_SETUP_WIDTH"), let n = Int(String(cString: text)), n > 0 { return n }
        return max(4, 4 * ProcessInfo.processInfo.activeProcessorCount)
    }

    public init(width: Int = SetupGate.defaultWidth) { self.width = max(1, width) }

    /// Blocks until this caller may set up (first come, first served). `Pass.leave()` is
    /// idempotent.
    public func enter() -> Pass {
        let wait: DispatchSemaphore? = state.withLock { s in
            if s.inside < width && s.head == s.waiting.count {
                s.inside += 1
                return nil
            }
            let semaphore = DispatchSemaphore(value: 0)
            s.waiting.append(semaphore)
            return semaphore
        }
        wait?.wait()  // the releasing caller handed its place over: `inside` already counts us
        return Pass(gate: self)
    }

    fileprivate func release() {
        let next: DispatchSemaphore? = state.withLock { s in
            guard s.head < s.waiting.count else {
                s.inside -= 1
                return nil
            }
            let next = s.waiting[s.head]
            s.head += 1
            if s.head == s.waiting.count {
                s.waiting.removeAll(keepingCapacity: true)
                s.head = 0
            }
            return next
        }
        next?.signal()
    }

    public final class Pass: Sendable {
        private let gate: SetupGate
        private let left = Locked(false)
        fileprivate init(gate: SetupGate) { self.gate = gate }

        public func leave() {
            let first = left.withLock { left -> Bool in
                defer { left = true }
                return !left
            }
            if first { gate.release() }
        }
    }
}
