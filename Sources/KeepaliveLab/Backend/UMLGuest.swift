import CKeepaliveShim
import Foundation
import KeepaliveNet

/// PID 1 of the UML guest (this binary as `init=`, the job file named by KEEPALIVE_LAB_UML_JOB): mounts what a kernel-fresh system lacks,
/// loads the modules, runs the job's command with its output on the guest consoles the host reads,
/// reports its exit on the control console and powers the guest off.
///
/// It never returns: returning from init would panic the guest kernel.
public enum UMLGuest {
    /// The kernel command line's `KEEPALIVE_LAB_UML_JOB=PATH` arrives as init's environment.
    public static let jobVariable = "KEEPALIVE_LAB_UML_JOB"

    /// Becomes the guest's init when this process is PID 1 with a job in its environment; otherwise
    /// returns at once. (It mounts over /proc, /sys and /run and powers the machine off: never on a host.)
    public static func runIfGuestInit() {
        guard getpid() == 1, let job = ProcessInfo.processInfo.environment[jobVariable] else { return }
        runAsInit(jobPath: job)
    }

    public static func runAsInit(jobPath: String) -> Never {
        let control = Console(line: UMLConsole.controlLine)
        do {
            try mountSystemDirectories()
            let job = try JSONDecoder().decode(UMLJob.self, from: Data(contentsOf: URL(fileURLWithPath: jobPath)))
            let (loaded, failed) = loadModules(job.modules, from: job.moduleDirectory)
            let stdout = try Console.open(line: UMLConsole.stdoutLine)
            let stderr = try Console.open(line: UMLConsole.stderrLine)
            control.emit(UMLEvent(event: .ready, kernel: Doctor.kernelRelease(), uptime: uptime(),
                                  loaded: loaded, failed: failed))
            StatusResponder.start(control: control)
            let status = try run(job, stdout: stdout, stderr: stderr)
            endEveryProcess()
            // Everything the command wrote must reach the host's pipes before the machine goes away.
            tcdrain(stdout)
            tcdrain(stderr)
            control.emit(UMLEvent(event: .exit, uptime: uptime(), status: status))
        } catch {
            endEveryProcess()
            control.emit(UMLEvent(event: .error, uptime: uptime(), message: "\(error)"))
        }
        // Flushes hostfs (results, pcaps) before the machine goes away.
        _ = kal_power_off()
        print("keepalive-lab uml-init: power off failed: \(String(cString: strerror(errno)))")
        exit(1)
    }

    /// proc, sys and a private /run (so /run/netns and /run/keepalive-lab are the guest's own, not
    /// the host's seen through hostfs); /dev is the kernel's devtmpfs.
    static func mountSystemDirectories() throws {
        let mounts: [(String, String, String, String?)] = [
            ("proc", "/proc", "proc", nil),
            ("sysfs", "/sys", "sysfs", nil),
            ("tmpfs", "/run", "tmpfs", "mode=0755"),
        ]
        for (source, target, type, data) in mounts {
            guard mount(source, target, type, UInt(MS_NOSUID | MS_NODEV), data) == 0 else {
                throw SystemCallError("mount \(type) on \(target)")
            }
        }
        if !FileManager.default.fileExists(atPath: Console.device(UMLConsole.controlLine)) {
            guard mount("devtmpfs", "/dev", "devtmpfs", UInt(MS_NOSUID), nil) == 0 else {
                throw SystemCallError("mount devtmpfs on /dev")
            }
        }
        guard mkdir(UserNamespace.sandboxTemporaryDirectory, 0o1777) == 0 || errno == EEXIST else {
            throw SystemCallError("mkdir \(UserNamespace.sandboxTemporaryDirectory)")
        }
        chmod(UserNamespace.sandboxTemporaryDirectory, 0o1777)
    }

    static func loadModules(_ modules: [String], from directory: String) -> ([String], [String: String]) {
        var loaded: [String] = [], failed: [String: String] = [:]
        let loader: KernelModules
        do {
            loader = try KernelModules(directory: directory)
        } catch {
            for module in modules { failed[module] = "\(error)" }
            return (loaded, failed)
        }
        for module in modules {
            do { loaded += try loader.load(module) } catch { failed[module] = "\(error)" }
        }
        return (loaded, failed)
    }

    static func run(_ job: UMLJob, stdout: Int32, stderr: Int32) throws -> Int32 {
        var environment = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": UserNamespace.sandboxTemporaryDirectory,
            "TMPDIR": UserNamespace.sandboxTemporaryDirectory,
            "LANG": "C.UTF-8",
        ]
        // Set by the host on the kernel command line when the guest must keep to SSE (UMLKernel).
        if let tunables = ProcessInfo.processInfo.environment["GLIBC_TUNABLES"] { environment["GLIBC_TUNABLES"] = tunables }
        environment.merge(job.environment) { _, new in new }
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        let command = try ChildProcess(path: job.executable, arguments: [job.executable] + job.arguments,
                                       environment: environment, fds: [devnull, stdout, stderr],
                                       workingDirectory: job.workingDirectory, options: [])
        close(devnull)
        // As init, every orphan in the guest is ours to reap while we wait for the command.
        while true {
            var raw: Int32 = 0
            let pid = waitpid(-1, &raw, 0)
            if pid == command.pid { return ChildProcess.shellStatus(raw) }
            if pid < 0 && errno == ECHILD { return -1 }
        }
    }

    /// Kills whatever the command left running (as init, kill(-1) reaches everyone else) and reaps it.
    /// A blocking waitpid on a helper thread does the reaping, so the wait needs no polling; the
    /// helper is left behind, blocked, if something unkillable (D state) outlasts the 2 s bound —
    /// the machine powers off next anyway.
    static func endEveryProcess() {
        kill(-1, SIGKILL)
        let reaped = DispatchSemaphore(value: 0)
        let reaper = Thread {
            var raw: Int32 = 0
            while waitpid(-1, &raw, 0) > 0 || errno == EINTR {}
            reaped.signal()  // ECHILD: no children left
        }
        reaper.name = "init-reaper"
        reaper.start()
        _ = reaped.wait(timeout: .now() + 2)
    }

    static func uptime() -> Double? {
        (try? String(contentsOfFile: "/proc/uptime", encoding: .utf8))?
            .split(separator: " ").first.flatMap { Double($0) }
    }

    /// A guest console line in raw mode (no CR/LF translation, no echo); the host reads it from a pipe.
    struct Console: Sendable {
        let fd: Int32
        /// init's main thread and the status responder both write events.
        private static let writing = NSLock()

        init(line: Int) { fd = (try? Self.open(line: line)) ?? 1 }

        static func device(_ line: Int) -> String { UMLConsole.device(line) }

        static func open(line: Int) throws -> Int32 {
            // /dev may not be populated yet when init starts: devtmpfs is mounted by the kernel.
            let path = device(line)
            let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemCallError("open \(path)") }
            var mode = termios()
            if tcgetattr(fd, &mode) == 0 {
                cfmakeraw(&mode)
                tcsetattr(fd, TCSANOW, &mode)
            }
            return fd
        }

        func emit(_ event: UMLEvent) {
            guard var line = try? JSONEncoder().encode(event) else { return }
            line.append(UInt8(ascii: "\n"))
            Self.writing.lock()
            defer { Self.writing.unlock() }
            BackendOutput.writeAll(fd, Array(line))
            tcdrain(fd)
            // Also on the kernel console, so a failure report shows where init got to.
            if fd != 1 { BackendOutput.writeAll(1, Array("keepalive-lab uml-init: ".utf8) + Array(line)) }
        }
    }

    /// Answers the host's `status` requests (UMLControlRequest) on a thread of its own: the guest's
    /// uptime, which is virtual under time-travel, and which processes ran since the previous
    /// request — so that a stalled clock can be blamed on the process that is busy.
    enum StatusResponder {
        static func start(control: Console) {
            let thread = Thread {
                var previous = cpuTimes()
                var pending: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 256)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(control.fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return }
                    pending += buffer[0..<n]
                    while let newline = pending.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
                        let word = String(decoding: pending[..<newline], as: UTF8.self)
                        pending.removeSubrange(...newline)
                        guard word == UMLControlRequest.status else { continue }
                        let now = cpuTimes()
                        control.emit(UMLEvent(event: .status, uptime: uptime(), busiest: busiest(previous: previous, now: now)))
                        previous = now
                    }
                }
            }
            thread.name = "uml-status"
            thread.start()
        }

        struct Sample {
            var ticks: Int
            var state: Substring
            var name: String
        }

        /// pid → utime + stime (clock ticks), state and command line, from /proc.
        static func cpuTimes() -> [pid_t: Sample] {
            var result: [pid_t: Sample] = [:]
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = pid_t(entry), pid != 1, let fields = ProcStat.fields(of: pid), fields.count > 12,
                      let user = Int(fields[11]), let system = Int(fields[12]) else { continue }
                let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?
                    .split(separator: "\0").prefix(4).joined(separator: " ") ?? ""
                result[pid] = Sample(ticks: user + system, state: fields[0], name: String(cmdline.prefix(120)))
            }
            return result
        }

        /// Runnable processes first (a busy loop is runnable whenever init gets to look), then by
        /// CPU time used since the previous sample.
        static func busiest(previous: [pid_t: Sample], now: [pid_t: Sample]) -> [String] {
            let hz = Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
            struct Row { var pid: pid_t; var sample: Sample; var delta: Int; var runnable: Bool }
            var rows: [Row] = []
            for (pid, sample) in now {
                let delta = sample.ticks - (previous[pid]?.ticks ?? 0)
                let runnable = sample.state == "R"
                if runnable || delta > 0 { rows.append(Row(pid: pid, sample: sample, delta: delta, runnable: runnable)) }
            }
            let ranked = rows.sorted { a, b in a.runnable != b.runnable ? a.runnable : a.delta > b.delta }
            return ranked.prefix(3).map { row in
                String(format: "pid %d (%@) state %@, %.2f s of CPU", row.pid, row.sample.name, String(row.sample.state),
                       Double(row.delta) / hz)
            }
        }
    }
}
