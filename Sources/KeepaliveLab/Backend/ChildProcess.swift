import CKeepaliveShim
import Foundation
import KeepaliveNet

/// A process started with `Spawn.start`: its pid, how to wait for it with a bound, and how to kill
/// it (and, when it leads its own process group, everything it started).
///
/// With `.parentDeathKill` the child dies when the *thread* that spawned it exits: spawn from a
/// thread that outlives it.
final class ChildProcess: Sendable {
    typealias Options = Spawn.Options

    let pid: pid_t
    let leadsProcessGroup: Bool
    let guarded: Bool
    /// Readable once the child has exited; nil where the kernel has no pidfd_open.
    private let pidfd: PidFD?
    /// The shell-style exit status once reaped.
    private let status = Locked<Int32?>(nil)

    /// Starts `path` with `arguments` (argv[0] included) and `fds` as its descriptors 0, 1, 2, ….
    /// `cleanupPaths` (with `.guardian`): removed by the guardian when the program is stopped rather
    /// than exiting by itself — they outlive us if we are killed.
    init(path: String, arguments: [String], environment: [String: String], fds: [Int32],
         workingDirectory: String? = nil, options: Options, cleanupPaths: [String] = []) throws {
        let result = try Spawn.start(path: path, arguments: arguments, environment: environment, fds: fds,
                                     workingDirectory: workingDirectory, options: options, cleanupPaths: cleanupPaths)
        pid = result
        guarded = options.contains(.guardian)
        leadsProcessGroup = options.contains(.newProcessGroup) && !guarded
        // Our unreaped child cannot be ESRCH: anything but a descriptor means no pidfd support.
        if case let .opened(fd) = PidFD.open(result) { pidfd = fd } else { pidfd = nil }
        if let pidfd { ChildExits.watch(pidfd, name: "child-\(result)-exit") }
    }

    /// The exit status as a shell reports it (128 + signal when killed), once reaped.
    var exitStatus: Int32? { status.value }

    /// Reaps the child if it has exited. True once it is reaped.
    @discardableResult
    func poll() -> Bool {
        status.withLock { status in
            if status != nil { return true }
            var raw: Int32 = 0
            let r = waitpid(pid, &raw, WNOHANG)
            guard r == pid else {
                if r < 0 && errno == ECHILD { status = -1 }
                return status != nil
            }
            status = Self.shellStatus(raw)
            return true
        }
    }

    /// Waits until the child exits, or `timeout` seconds pass (nil: no bound). True when it exited.
    func wait(timeout: Double?) -> Bool {
        let deadline = timeout.map { PidFD.now() + $0 }
        while !poll() {
            if let deadline, PidFD.now() >= deadline { return false }
            if let pidfd {
                _ = pidfd.wait(until: deadline)
            } else {
                usleep(10_000)  // no pidfd_open (Linux < 5.3): nothing to block on
            }
        }
        return true
    }

    func signal(_ sig: Int32) {
        if exitStatus == nil { kill(pid, sig) }
    }

    /// SIGKILLs the child — and its whole process group when it leads one — then reaps the child and
    /// every member of the group that became ours (orphans come to us with a child subreaper),
    /// waiting at most `timeout` seconds for the group to empty.
    func killAndReap(timeout: Double = 5) {
        if guarded {
            // The guardian kills and reaps the program's group, then exits.
            signal(SIGTERM)
            if !wait(timeout: timeout) {
                signal(SIGKILL)
                _ = wait(timeout: 2)
            }
            return
        }
        if leadsProcessGroup { kill(-pid, SIGKILL) }
        signal(SIGKILL)
        let deadline = PidFD.now() + timeout
        _ = wait(timeout: timeout)
        guard leadsProcessGroup else { return }
        while PidFD.now() < deadline {
            var raw: Int32 = 0
            while waitpid(-pid, &raw, WNOHANG) > 0 {}
            let members = Self.processes(inGroup: pid)
            if members.isEmpty { return }
            kill(-pid, SIGKILL)
            // Members that are not (yet) our children still have a pidfd to block on.
            let opened = members.map { PidFD.open($0) }
            var pidfds: [PidFD] = []
            var unsupported = false, gone = false
            for result in opened {
                switch result {
                case let .opened(fd): pidfds.append(fd)
                case .gone: gone = true
                case .unsupported: unsupported = true
                }
            }
            if gone { continue }  // progress already: look at the group again
            if unsupported {
                usleep(10_000)  // no pidfd_open (Linux < 5.3): nothing to block on
            } else {
                _ = PidFD.waitAny(pidfds, until: deadline)
            }
        }
    }

    /// Live (not yet reaped) processes whose process group is `group`, from /proc.
    static func processes(inGroup group: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let fields = ProcStat.fields(of: pid),
                  fields.count > 2, fields[0] != "Z", let pgrp = pid_t(fields[2]) else { return nil }
            return pgrp == group ? pid : nil
        }
    }

    static func shellStatus(_ raw: Int32) -> Int32 {
        Spawn.Termination(waitStatus: raw).shellStatus
    }
}

/// Reads a descriptor on its own thread until EOF and hands every chunk to `onData`.
final class PipeReader: Sendable {
    /// Signalled at EOF, and again by every wait that sees it, so it stays signalled.
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32, name: String, onData: @escaping @Sendable ([UInt8]) -> Void) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                onData(Array(buffer[0..<n]))
            }
            close(fd)
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Waits for EOF, at most `timeout` seconds. True when the reader finished.
    @discardableResult
    func waitForEOF(timeout: Double) -> Bool {
        guard done.wait(timeout: .now() + max(0, timeout)) == .success else { return false }
        done.signal()
        return true
    }
}

/// A pipe whose both ends are close-on-exec (the spawn helper dups the child's end into place).
struct Pipe2 {
    let read: Int32
    let write: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard kal_pipe_cloexec(&fds) == 0 else { throw SystemCallError("pipe2") }
        read = fds[0]
        write = fds[1]
    }

    /// Reads `fd` until EOF (EINTR retried; an error ends it like EOF) and closes it.
    static func readToEOF(_ fd: Int32) -> [UInt8] {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        close(fd)
        return data
    }
}

/// Lines split out of a byte stream; keeps only the last `capacity` lines.
final class LineTail: Sendable {
    private let state = Locked<(lines: [String], partial: [UInt8])>(([], []))
    private let capacity: Int
    private let keep: @Sendable (String) -> Bool

    init(capacity: Int, keep: @escaping @Sendable (String) -> Bool = { _ in true }) {
        self.capacity = capacity
        self.keep = keep
    }

    func append(_ bytes: [UInt8]) {
        state.withLock { state in
            state.partial += bytes
            while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: state.partial[..<newline], as: UTF8.self)
                    .trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
                if keep(line) { state.lines.append(line) }
                state.partial.removeSubrange(...newline)
            }
            if state.lines.count > capacity { state.lines.removeFirst(state.lines.count - capacity) }
        }
    }

    var last: [String] {
        state.withLock { state in
            state.partial.isEmpty ? state.lines : state.lines + [String(decoding: state.partial, as: UTF8.self)]
        }
    }
}

/// Recursively removes a directory tree. The corresponding tool is `rm -rf`.
func removeTree(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// mkdtemp(3) under `parent`: a new directory only this user can enter.
func makeTemporaryDirectory(in parent: String, prefix: String) throws -> String {
    var template = Array("\(parent)/\(prefix)XXXXXX".utf8CString)
    return try template.withUnsafeMutableBufferPointer { buffer in
        guard let made = mkdtemp(buffer.baseAddress!) else {
            throw SystemCallError("create a temporary directory in \(parent)")
        }
        return String(cString: made)
    }
}
