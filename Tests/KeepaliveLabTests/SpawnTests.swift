import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// `Spawn`, the one way the lab starts programs, on both of kal_spawn's mechanisms: the
/// shared-table clone (no options, three descriptors: the peers') and fork (anything else).
struct SpawnTests {
    /// The two mechanisms: options that make kal_spawn take the fork path change nothing visible.
    static let paths: [(name: String, options: Spawn.Options, cwd: String?)] = [
        ("clone", [], nil), ("fork", [.newProcessGroup], nil), ("fork with cwd", [], "/"),
    ]

    /// Runs `arguments` and returns its stdout and how it ended.
    private func output(_ arguments: [String], options: Spawn.Options, cwd: String?) throws -> (String, Spawn.Termination) {
        let pipe = try Pipe2()
        let started = Result {
            try Spawn.start(path: arguments[0], arguments: arguments, fds: [0, pipe.write, 2],
                            workingDirectory: cwd, options: options)
        }
        close(pipe.write)
        let bytes = Pipe2.readToEOF(pipe.read)  // at once when nothing started
        let pid = try started.get()
        return (String(decoding: bytes, as: UTF8.self), Spawn.wait(pid))
    }

    @Test(arguments: paths.indices)
    func childSeesOnlyItsOwnDescriptors(_ index: Int) throws {
        let (_, options, cwd) = Self.paths[index]
        // Descriptors of ours without close-on-exec (as libpcap opens its sockets) must not leak.
        let leaky = open("/dev/null", O_RDONLY)
        let leakySocket = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(leaky); close(leakySocket) }
        #expect(leaky > 2 && leakySocket > 2)
        let (text, ended) = try output(["/bin/ls", "-1", "/proc/self/fd"], options: options, cwd: cwd)
        #expect(ended == .exited(0))
        let fds = text.split(separator: "\n").compactMap { Int($0) }.sorted()
        // 0, 1, 2 and ls's own descriptor of /proc/self/fd (the lowest free one: 3).
        #expect(fds == [0, 1, 2, 3], "open in the child: \(fds)")
    }

    /// One test over all paths (not one per path): the disposition changed here is process-wide,
    /// and parallel cases would restore each other's.
    @Test func signalsStartAtTheirDefaults() throws {
        // Ignored and blocked here while spawning; neither may reach the child.
        let previous = signal(SIGUSR2, SIG_IGN)
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGUSR1)
        pthread_sigmask(SIG_BLOCK, &block, &old)
        defer {
            pthread_sigmask(SIG_SETMASK, &old, nil)
            signal(SIGUSR2, previous)
        }
        for (name, options, cwd) in Self.paths {
            let (text, ended) = try output(["/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"], options: options, cwd: cwd)
            #expect(ended == .exited(0), "\(name)")
            let masks = text.split(separator: "\n").map { $0.split(separator: "\t").last.map(String.init) ?? "" }
            #expect(masks == ["0000000000000000", "0000000000000000"], "\(name): \(text)")
        }
    }

    @Test(arguments: paths.indices)
    func exitAndSignalStatusAreReported(_ index: Int) throws {
        let (_, options, cwd) = Self.paths[index]
        let exited = try output(["/bin/sh", "-c", "exit 7"], options: options, cwd: cwd).1
        #expect(exited == .exited(7))
        #expect(exited.shellStatus == 7)
        let killed = try output(["/bin/sh", "-c", "kill -TERM $$"], options: options, cwd: cwd).1
        #expect(killed == .signaled(SIGTERM))
        #expect(killed.shellStatus == 128 + SIGTERM)
        #expect(try Spawn.run(path: "/bin/sh", arguments: ["sh", "-c", "exit 3"], options: options) == .exited(3))
    }

    @Test(arguments: paths.indices)
    func missingProgramIsAClearError(_ index: Int) throws {
        let (_, options, cwd) = Self.paths[index]
        do {
            _ = try Spawn.start(path: "/nonexistent/keepalive-lab-program", arguments: ["x"], workingDirectory: cwd,
                                options: options)
            Issue.record("a missing program started")
        } catch let error as SystemCallError {
            #expect(error.errno == ENOENT)
            #expect("\(error)".hasPrefix("cannot start /nonexistent/keepalive-lab-program: No such file or directory"),
                    "\(error)")
        }
    }

    @Test func environmentIsPassedOrInherited() throws {
        let given = try output(["/usr/bin/env"], options: [], cwd: nil)
        #expect(given.0.contains("PATH="))  // ours, inherited
        let pipe = try Pipe2()
        let pid = try Spawn.start(path: "/usr/bin/env", arguments: ["env"], environment: ["ONLY": "this"],
                                  fds: [0, pipe.write, 2])
        close(pipe.write)
        let text = String(decoding: Pipe2.readToEOF(pipe.read), as: UTF8.self)
        #expect(Spawn.wait(pid) == .exited(0))
        #expect(text == "ONLY=this\n")
    }
}
