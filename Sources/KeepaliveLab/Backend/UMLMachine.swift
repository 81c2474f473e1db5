import CKeepaliveShim
import Foundation
import KeepaliveNet

/// How a UML guest is sized and bounded.
public struct UMLOptions: Sendable {
    /// Guest memory. It is a sparse file in the private directory (on /dev/shm when it is a tmpfs),
    /// so only what the guest touches costs host memory.
    public var memoryMB: Int = 1024
    /// Seconds from starting linux.uml to the guest's init reporting "ready".
    public var bootTimeout: Double = 30
    /// Loaded (with dependencies) before the command starts. The lab needs veth and sch_netem; the
    /// netfilter modules serve nftables faults where the UML kernel supports their family.
    /// (Kernels with everything built in, like the lab kernel, load none.)
    public var modules: [String] = UMLOptions.defaultModules
    /// Which UML kernel to boot.
    public var kernel: KernelChoice = .auto
    /// `.virtual`: boot with `time-travel=inf-cpu`, so the guest's clock jumps over idle time.
    public var clock: LabClock = .real
    /// Virtual time only: wall seconds without a sign of life from the guest after which the host
    /// asks it whether its clock still moves. A guest whose clock moved less than a virtual second
    /// since the last answer is stalled (a process is busy: inf-cpu time only advances when every
    /// process is idle) and is stopped with an error naming the busiest processes.
    public var stallSeconds: Double = 60

    public static let defaultModules = ["veth", "sch_netem", "nf_conntrack", "nf_nat", "nf_tables", "nft_ct",
                                        "nft_numgen", "nft_reject", "nft_masq", "nf_conntrack_netlink"]

    public init(memoryMB: Int = 1024, bootTimeout: Double = 30, modules: [String] = UMLOptions.defaultModules,
                kernel: KernelChoice = .auto, clock: LabClock = .real, stallSeconds: Double = 60) {
        self.stallSeconds = stallSeconds
        self.memoryMB = memoryMB
        self.bootTimeout = bootTimeout
        self.modules = modules
        self.kernel = kernel
        self.clock = clock
    }

    /// The kernel these options boot, or why there is none.
    public func resolveKernel() throws -> UMLKernel {
        let kernel = try UMLKernel.resolve(self.kernel, needsTimeTravel: clock == .virtual)
        if clock == .virtual && !kernel.timeTravel {
            throw BackendUnavailable(backend: .uml, reason: "virtual time needs a UML kernel with time-travel "
                + "(CONFIG_UML_TIME_TRAVEL_SUPPORT); \(kernel.binary) (\(kernel.release)) has none: "
                + "build the lab kernel with `\(LabKernel.buildCommand())` and use --kernel lab")
        }
        return kernel
    }
}

/// What came back from a UML run.
public struct UMLOutcome: Sendable {
    /// The command's exit status inside the guest.
    public var status: Int32
    /// The guest kernel's release (uname -r inside).
    public var kernel: String
    /// Host seconds from starting linux.uml to the guest's init being ready.
    public var bootSeconds: Double
    /// Host seconds from starting linux.uml until it was reaped.
    public var totalSeconds: Double
    public var modulesLoaded: [String]
    /// Module → why it did not load.
    public var modulesFailed: [String: String]
    /// The last lines of the guest's kernel console.
    public var consoleTail: [String]
}

public enum UMLError: Error, CustomStringConvertible, Sendable {
    case bootTimedOut(seconds: Double, console: [String])
    case commandTimedOut(seconds: Double, console: [String])
    /// The guest's init reported a failure.
    case guestFailed(String, console: [String])
    /// linux.uml ended without the guest reporting the command's exit.
    case machineDied(status: Int32, console: [String])
    /// Virtual time stood still: a process in the guest is busy (see `UMLOptions.stallSeconds`).
    case clockStalled(seconds: Double, detail: String, console: [String])

    public var description: String {
        func tail(_ console: [String]) -> String {
            console.isEmpty ? "(the console was empty)" : "last console lines:\n" + console.map { "  | \($0)" }.joined(separator: "\n")
        }
        switch self {
        case let .bootTimedOut(seconds, console):
            return "the UML guest did not come up within \(Self.format(seconds)) s; \(tail(console))"
        case let .commandTimedOut(seconds, console):
            return "the command in the UML guest did not finish within \(Self.format(seconds)) s; \(tail(console))"
        case let .guestFailed(message, console):
            return "the UML guest's init failed: \(message); \(tail(console))"
        case let .machineDied(status, console):
            return "linux.uml exited (status \(status)) before the command in it finished; \(tail(console))"
        case let .clockStalled(seconds, detail, console):
            return "the guest's virtual clock stalled: it moved less than 1 s in the last \(Self.format(seconds)) s of wall time, "
                + "so some process in the guest is busy (under time-travel=inf-cpu the clock only advances when every process "
                + "waits); \(detail); the machine was stopped; \(tail(console))"
        }
    }

    public var consoleTail: [String] {
        switch self {
        case let .bootTimedOut(_, c), let .commandTimedOut(_, c), let .guestFailed(_, c), let .machineDied(_, c),
             let .clockStalled(_, _, c): return c
        }
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// Runs one command inside a freshly booted user-mode-linux kernel and brings its output back.
///
/// The guest's root is the host's `/` through hostfs, so the same binary, working directory and
/// output paths (pcaps, run directories) are used in place. Its consoles are host pipes: the
/// command's stdout and stderr stream out live, a control line carries "ready"/"exit", and the
/// kernel console is kept to explain failures. linux.uml runs in its own process group under a
/// guardian process: on exit, timeout, interrupt — or if this process is killed — the whole group is
/// killed and reaped and the private directories removed. No host privilege is needed.
public enum UMLMachine {
    /// The kernel command line, for reports and docs (`init` and the job path vary per run).
    public static func commandLine(kernel: UMLKernel, options: UMLOptions, initPath: String, jobPath: String,
                                   umid: String, umlDirectory: String, workaround: Bool) -> [String] {
        var arguments = [kernel.binary, "mem=\(options.memoryMB)M", "rootfstype=hostfs", "rootflags=/", "rw",
                         "init=\(initPath)",
                         "con\(UMLConsole.kernelLine)=null,fd:1",
                         "con\(UMLConsole.stdoutLine)=null,fd:3",
                         "con\(UMLConsole.stderrLine)=null,fd:4",
                         "con\(UMLConsole.controlLine)=fd:6,fd:5",
                         "con=null", "ssl=null", "umid=\(umid)", "uml_dir=\(umlDirectory)"]
        if options.clock == .virtual {
            // The clock jumps to the next timer whenever the guest is idle; CPU time is free. The wall
            // clock starts at the host's time (dates in plans stay true); timers run on the monotonic
            // clock, which starts at boot, so repeated trials read the same instants.
            arguments.append("time-travel=inf-cpu")
        }
        // Unknown NAME=VALUE parameters become the environment of init.
        if workaround { arguments.append("GLIBC_TUNABLES=\(UMLKernel.sseOnlyTunables)") }
        arguments.append("\(UMLGuest.jobVariable)=\(jobPath)")
        return arguments
    }

    /// Boots the guest, runs `arguments` (a keepalive-lab command line without the executable) in
    /// it with `--backend host`, and returns when linux.uml is gone. `timeout` bounds the command
    /// once the guest is up (nil: no bound). Output goes to `output` as it arrives.
    public static func run(arguments: [String], environment: [String: String] = [:], options: UMLOptions = UMLOptions(),
                           timeout: Double?, output: BackendOutput = .forward,
                           kernel: UMLKernel? = nil,
                           executable: String = BackendLauncher.defaultExecutable) throws -> UMLOutcome {
        let kernel = try kernel ?? options.resolveKernel()
        let cwd = FileManager.default.currentDirectoryPath
        for (label, path) in [("the keepalive-lab binary", executable), ("the working directory", cwd)]
            where hiddenInGuest(path) {
            throw BackendUnavailable(backend: .uml, reason: "\(label) \(path) is under a directory the guest mounts over (/proc, /sys, /dev, /run)")
        }
        let workaround = kernel.needsXstateWorkaround
        let directory = try makeTemporaryDirectory(in: privateParent(), prefix: "kal-uml-")
        var memoryDirectory: String?
        defer {
            removeTree(directory)
            if let memoryDirectory { removeTree(memoryDirectory) }
        }
        // Guest memory is a file UML maps: on a tmpfs it is plain RAM. Only where the whole of it fits
        // (docker's /dev/shm is 64 MB by default; a guest touching more would die of SIGBUS) and may
        // be mapped executable (UML refuses a noexec mount: Docker and podman mount /dev/shm noexec,
        // whatever --shm-size says).
        if access("/dev/shm", W_OK) == 0, isTmpfs("/dev/shm"), allowsExec("/dev/shm"),
           freeBytes("/dev/shm") >= UInt64(options.memoryMB) << 20 {
            memoryDirectory = try? makeTemporaryDirectory(in: "/dev/shm", prefix: "kal-uml-")
        }
        let jobPath = "\(directory)/job.json"
        var innerEnvironment = environment
        innerEnvironment[ExecutionEnvironment.backendVariable] = Backend.uml.rawValue
        innerEnvironment[ExecutionEnvironment.kernelHzVariable] = String(kernel.hz)
        innerEnvironment[ExecutionEnvironment.kernelSourceVariable] = kernel.originDescription
        let job = UMLJob(executable: executable, arguments: arguments + ["--backend", Backend.host.rawValue],
                         workingDirectory: cwd, environment: innerEnvironment,
                         modules: kernel.moduleDirectory == nil ? [] : options.modules,
                         moduleDirectory: kernel.moduleDirectory ?? "")
        try JSONEncoder().encode(job).write(to: URL(fileURLWithPath: jobPath))

        let umid = "kal-\(getpid())-\(LabID.newRunID())"
        let argv = commandLine(kernel: kernel, options: options, initPath: executable, jobPath: jobPath,
                               umid: umid, umlDirectory: directory, workaround: workaround)
        let hostEnvironment = ["HOME": directory, "TMPDIR": memoryDirectory ?? directory,
                               "PATH": "/usr/local/bin:/usr/bin:/bin"]

        let console = try Pipe2(), stdout = try Pipe2(), stderr = try Pipe2(), control = try Pipe2(), request = try Pipe2()
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        // fd 6: the control console's input, for questions to init (is your clock moving?).
        let childEnds = [devnull, console.write, console.write, stdout.write, stderr.write, control.write, request.read]
        let started = Date()
        let machine: ChildProcess
        do {
            // linux.uml leaves helper processes running when it is killed: a guardian reaps its whole
            // process group, and removes the private directories if we die first.
            var spawnOptions: ChildProcess.Options = [.guardian, .noCoreDump]
            if workaround { spawnOptions.insert(.hidePtraceXstate) }
            machine = try ChildProcess(path: kernel.binary, arguments: argv, environment: hostEnvironment,
                                       fds: childEnds, options: spawnOptions,
                                       cleanupPaths: [directory] + (memoryDirectory.map { [$0] } ?? []))
        } catch {
            for fd in Set(childEnds) { close(fd) }
            for fd in [console.read, stdout.read, stderr.read, control.read, request.write] { close(fd) }
            throw error
        }
        for fd in Set(childEnds) { close(fd) }
        defer { close(request.write) }
        let registration = ActiveLaunches.shared.add { [memoryDirectory] in
            machine.killAndReap(timeout: 2)
            removeTree(directory)
            if let memoryDirectory { removeTree(memoryDirectory) }
        }
        defer { ActiveLaunches.shared.remove(registration) }

        let consoleTail = LineTail(capacity: 40, keep: isTellingConsoleLine)
        let events = EventStream()
        let readers = [
            PipeReader(fd: console.read, name: "uml-console") { consoleTail.append($0) },
            PipeReader(fd: stdout.read, name: "uml-stdout") { output.stdout($0) },
            PipeReader(fd: stderr.read, name: "uml-stderr") { output.stderr($0) },
            PipeReader(fd: control.read, name: "uml-control") { events.append($0) },
        ]
        func finish() {
            machine.killAndReap()
            for reader in readers { reader.waitForEOF(timeout: 2) }
        }

        // Boot: until init says it is ready (or fails, or the machine dies).
        guard let ready = events.wait(for: [.ready, .error], timeout: options.bootTimeout, while: { !machine.poll() }) else {
            let died = machine.poll()
            finish()
            if died { throw UMLError.machineDied(status: machine.exitStatus ?? -1, console: consoleTail.last) }
            throw UMLError.bootTimedOut(seconds: options.bootTimeout, console: consoleTail.last)
        }
        let bootSeconds = Date().timeIntervalSince(started)
        if ready.event == .error {
            finish()
            throw UMLError.guestFailed(ready.message ?? "unknown error", console: consoleTail.last)
        }
        // The command: until init reports its exit.
        let watchdog = options.clock == .virtual
            ? StallWatchdog(request: request.write, events: events, stallSeconds: options.stallSeconds, lastUptime: ready.uptime)
            : nil
        let commandDeadline = timeout.map { Date().addingTimeInterval($0) }
        var end: UMLEvent?
        while end == nil {
            let remaining = commandDeadline.map { $0.timeIntervalSinceNow }
            if let remaining, remaining <= 0 { break }
            let step = [remaining, watchdog?.stallSeconds].compactMap { $0 }.min()
            end = events.wait(for: [.exit, .error], timeout: step, while: { !machine.poll() })
            if end != nil || machine.poll() { break }
            if let watchdog, let stall = watchdog.check(alive: { !machine.poll() }) {
                finish()
                throw UMLError.clockStalled(seconds: watchdog.stallSeconds, detail: stall, console: consoleTail.last)
            }
        }
        guard let end else {
            let died = machine.poll()
            finish()
            if died { throw UMLError.machineDied(status: machine.exitStatus ?? -1, console: consoleTail.last) }
            throw UMLError.commandTimedOut(seconds: timeout ?? 0, console: consoleTail.last)
        }
        // Init powers off right after reporting; give it a moment to flush hostfs and halt.
        _ = machine.wait(timeout: 10)
        finish()
        if end.event == .error {
            throw UMLError.guestFailed(end.message ?? "unknown error", console: consoleTail.last)
        }
        return UMLOutcome(status: end.status ?? -1, kernel: ready.kernel ?? kernel.release, bootSeconds: bootSeconds,
                          totalSeconds: Date().timeIntervalSince(started), modulesLoaded: ready.loaded ?? [],
                          modulesFailed: ready.failed ?? [:], consoleTail: consoleTail.last)
    }

    /// Kernel stack dumps (" [<6002d37a>] show_stack+0x184/0x193", rows of hex words) only push the
    /// message that explains a failure out of the tail.
    static func isTellingConsoleLine(_ line: String) -> Bool {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("[<") { return false }
        let words = trimmed.split(separator: " ")
        return words.isEmpty || !words.allSatisfy { $0.count == 8 && $0.allSatisfy(\.isHexDigit) }
    }

    /// The guest mounts its own /proc, /sys, /dev and /run over the host's: paths there are not the host's.
    static func hiddenInGuest(_ path: String) -> Bool {
        ["/proc", "/sys", "/dev", "/run"].contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    /// TMPDIR when the guest can see it through hostfs, else /tmp.
    static func privateParent() -> String {
        // The job path goes on the kernel command line, which splits at blanks.
        if let tmp = ProcessInfo.processInfo.environment["TMPDIR"], !tmp.isEmpty, !hiddenInGuest(tmp),
           !tmp.contains(where: \.isWhitespace), access(tmp, W_OK) == 0 {
            return tmp
        }
        return "/tmp"
    }

    static func isTmpfs(_ path: String) -> Bool { kal_is_tmpfs(path) == 1 }

    /// Whether `path`'s file system lets files be mapped PROT_EXEC (not mounted noexec).
    static func allowsExec(_ path: String) -> Bool {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return false }
        let noexec: UInt = 8    // ST_NOEXEC (<sys/statvfs.h>: an enum Swift does not import)
        return fs.f_flag & noexec == 0
    }

    static func freeBytes(_ path: String) -> UInt64 {
        let attributes = try? FileManager.default.attributesOfFileSystem(forPath: path)
        return (attributes?[.systemFreeSize] as? NSNumber)?.uint64Value ?? 0
    }
}

/// Virtual time only moves when every process in the guest waits: one busy process stops it, and a
/// trial would hang for ever. When the guest has said nothing for `stallSeconds` of wall time, the
/// host asks init for its uptime (virtual) and its busiest processes; less than a virtual second
/// of progress since the previous answer is a stall.
final class StallWatchdog: Sendable {
    let request: Int32
    let events: EventStream
    let stallSeconds: Double
    /// Guest uptime at the previous answer (or at ready).
    private let lastUptime: Locked<Double?>

    init(request: Int32, events: EventStream, stallSeconds: Double, lastUptime: Double?) {
        self.request = request
        self.events = events
        self.stallSeconds = stallSeconds
        self.lastUptime = Locked(lastUptime)
    }

    /// nil while the clock moves; else what init said about its busiest processes.
    func check(alive: () -> Bool) -> String? {
        BackendOutput.writeAll(request, Array("\(UMLControlRequest.status)\n".utf8))
        // init answers as soon as the scheduler lets its reader run; a busy loop gets preempted.
        guard let answer = events.wait(for: [.status], timeout: 10, while: alive) else {
            return "init did not answer within 10 s (the guest is too busy to schedule it)"
        }
        let previous = lastUptime.withLock { last in
            defer { last = answer.uptime }
            return last
        }
        guard let now = answer.uptime, let before = previous, now - before < 1 else { return nil }
        let busiest = answer.busiest ?? []
        return String(format: "guest uptime %.6f s → %.6f s; ", before, now)
            + (busiest.isEmpty ? "init found no process that ran" : "busiest since then: " + busiest.joined(separator: "; "))
    }
}
