import CKeepaliveShim
import Glibc

/// Runs a closure on a fresh OS thread and waits for it.
///
/// `setns` and `unshare(CLONE_NEWNET)` change only the calling thread, and Swift concurrency tasks hop
/// between threads, so namespace work gets a thread of its own that exits afterwards: nothing else
/// ever runs in a namespace it did not ask for.
enum NamespaceThread {
    private final class Job {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    static func run<T>(_ body: () throws -> T) throws -> T {
        var outcome: Result<T, Error>?
        try withoutActuallyEscaping(body) { body in
            let job = Job { outcome = Result { try body() } }
            let context = Unmanaged.passRetained(job).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                job.body()
                return nil
            }, context)
            guard rc == 0 else {
                Unmanaged<Job>.fromOpaque(context).release()
                throw SystemCallError("pthread_create for a namespace thread", errno: rc)
            }
            pthread_join(thread, nil)
        }
        return try outcome!.get()
    }
}
