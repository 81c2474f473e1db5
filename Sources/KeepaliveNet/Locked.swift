import Synchronization

/// A value shared between threads behind a lock. Sendable because a `Mutex` guards the value (no
/// `@unchecked`): a class, so closures and threads can share one (a `Mutex` itself cannot be copied
/// or captured).
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) {
        mutex = Mutex(value)
    }

    /// Runs `body` with the value, the lock held.
    public func withLock<Result: Sendable, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        try mutex.withLock { (value: inout Value) throws(E) -> Result in try body(&value) }
    }

    /// A copy of the value.
    public var value: Value { withLock { $0 } }
}
