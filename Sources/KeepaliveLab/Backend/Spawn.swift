import CKeepaliveShim
import KeepaliveNet

#if canImport(Glibc)
import Glibc
#endif

/// The one way the lab starts a program: everything goes through `kal_spawn` (kal_spawn.h). The
/// child gets `fds` as its descriptors 0, 1, 2, … and no other descriptor of ours, default signal
/// dispositions and an empty signal mask. With no options, no working directory and three
/// descriptors (the peers' case) it starts without copying our descriptor table (clone with
/// CLONE_FILES + close_range UNSHARE); otherwise through fork.
public enum Spawn {
    public struct Options: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// setpgid(0, 0): the child and its descendants can be killed as a group.
        public static let newProcessGroup = Options(rawValue: KAL_SPAWN_NEW_PROCESS_GROUP)
        /// The child dies (SIGKILL) when the *thread* that spawned it exits.
        public static let parentDeathKill = Options(rawValue: KAL_SPAWN_PARENT_DEATH_KILL)
        public static let noCoreDump = Options(rawValue: KAL_SPAWN_NO_CORE_DUMP)
        public static let hidePtraceXstate = Options(rawValue: KAL_SPAWN_HIDE_PTRACE_XSTATE)
        /// The pid is a guardian that kills and reaps the program's whole process group when the
        /// program exits, when told to stop (SIGTERM) or when we die, even by SIGKILL (kal_spawn.h).
        public static let guardian = Options(rawValue: KAL_SPAWN_GUARDIAN)
    }

    /// How a program ended.
    public enum Termination: Equatable, Sendable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public init(waitStatus raw: Int32) {
            self = raw & 0x7f == 0 ? .exited((raw >> 8) & 0xff) : .signaled(raw & 0x7f)
        }

        /// As a shell reports it: the exit code, or 128 + signal when killed.
        public var shellStatus: Int32 {
            switch self {
            case let .exited(code): return code
            case let .signaled(sig): return 128 + sig
            }
        }

        public var description: String {
            switch self {
            case let .exited(code): return "exit status \(code)"
            case let .signaled(sig): return "killed by signal \(sig) (\(String(cString: strsignal(sig))))"
            }
        }
    }

    /// Starts `path` with `arguments` (argv[0] included). `environment` nil: ours. `fds` become the
    /// child's 0, 1, 2, …. `cleanupPaths` (with `.guardian`): removed by the guardian when the program
    /// is stopped rather than exiting by itself. Throws when the program could not be started (a
    /// missing or non-executable program included), with the errno of the failed step.
    public static func start(path: String, arguments: [String], environment: [String: String]? = nil,
                             fds: [Int32] = [0, 1, 2], workingDirectory: String? = nil,
                             options: Options = [], cleanupPaths: [String] = []) throws -> pid_t {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { $0.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        let cleanup = cleanupPaths.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp?.forEach { free($0) }
            cleanup.forEach { free($0) }
        }
        let result = fds.withUnsafeBufferPointer { fdBuffer in
            argv.withUnsafeBufferPointer { argvBuffer in
                cleanup.withUnsafeBufferPointer { cleanupBuffer in
                    let start = { (env: UnsafePointer<UnsafeMutablePointer<CChar>?>?) in
                        kal_spawn(path, argvBuffer.baseAddress, env, fdBuffer.baseAddress, Int32(fds.count),
                                  workingDirectory, options.rawValue, cleanupPaths.isEmpty ? nil : cleanupBuffer.baseAddress)
                    }
                    guard let envp else { return start(environ) }
                    return envp.withUnsafeBufferPointer { start($0.baseAddress) }
                }
            }
        }
        guard result > 0 else { throw SystemCallError("cannot start \(path)", errno: -result) }
        return result
    }

    /// Starts `path` like `start` and waits for it (a blocking waitpid).
    public static func run(path: String, arguments: [String], environment: [String: String]? = nil,
                           fds: [Int32] = [0, 1, 2], workingDirectory: String? = nil,
                           options: Options = []) throws -> Termination {
        let pid = try start(path: path, arguments: arguments, environment: environment, fds: fds,
                            workingDirectory: workingDirectory, options: options)
        return wait(pid)
    }

    /// Waits for child `pid` and reaps it.
    public static func wait(_ pid: pid_t) -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .exited(-1) }  // ECHILD: reaped elsewhere (SIGCHLD ignored?)
        }
        return Termination(waitStatus: status)
    }
}
