import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// The userns and uml backends for real: the built keepalive-lab binary runs trials in a
/// user-mode-linux guest and, as an unprivileged user, in a user namespace. On this project's
/// machines the host kernel has no sch_netem, so the netem checks here are where netem is tested.
/// Serialized: each test also checks that nothing (UML process, namespace, temp dir) is left behind.
@Suite(.serialized, .enabled(if: BackendPrerequisites.binary != nil, "keepalive-lab executable not found (run `swift build`)"))
struct BackendTests {
    // MARK: UML

    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func umlCrashTrialTimesOutAfterThreeProbes() throws {
        let r = try Leftovers.checked {
            try LabCommand.json(["trial", "--backend", "uml", "--kernel", "debian", "--fault", "crash", "--keepalive", "2,1,3", "--deadline", "12"])
        }
        #expect(r["backend"] as? String == "uml")
        let kernel = try #require(r["kernel"] as? String)
        #expect(kernel.hasPrefix("6.1."), "UML kernel, got \(kernel)")
        #expect(r["outcome"] as? String == "detected")
        #expect(r["errno"] as? String == "ETIMEDOUT")
        #expect(r["probes_sent"] as? Int == 3)
        #expect(r["probe_replies"] as? Int == 0)
        // idle 2 + 3 × interval 1 after the last segment from B; HZ=100: a tick early at most, and
        // late within 4 ms + 12.5 % plus a tick.
        let since = try #require(r["since_last_rx_s"] as? Double)
        #expect(since >= 5 - 0.004 - 0.010 && since <= 5 + 0.004 + 0.625 + 0.010, "since last rx \(since) s")
        #expect(r["within_tolerance"] as? Bool == true)
        let notes = r["notes"] as? [String] ?? []
        #expect(notes.contains { $0.contains("HZ=100") }, "the result says it ran with HZ=100: \(notes)")
    }

    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func umlLossTrialRunsOnNetem() throws {
        let r = try Leftovers.checked {
            try LabCommand.json(["trial", "--backend", "uml", "--kernel", "debian", "--fault", "loss:30", "--impairment", "netem",
                                 "--keepalive", "2,1,3", "--deadline", "8"])
        }
        #expect(r["backend"] as? String == "uml")
        #expect(r["impairment_engine"] as? String == "netem")
        #expect((r["kernel"] as? String)?.hasPrefix("6.1.") == true)
    }

    /// Loss 30 % and delay 100 ms on R toward B, measured with 2000 numbered datagrams.
    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func umlNetemLossIsBinomialAndDelayIsExact() throws {
        let r = try Leftovers.checked {
            try LabCommand.json(["netem-check", "--backend", "uml", "--kernel", "debian", "--loss", "30", "--delay-ms", "100", "--packets", "2000"])
        }
        #expect(r["backend"] as? String == "uml")
        let sent = try #require(r["sent"] as? Int)
        let lost = try #require(r["lost"] as? [Int])
        #expect(sent == 2000)
        // Binomial(2000, 0.3): mean 600, σ ≈ 20.5; ±4.5 σ.
        #expect(lost.count >= 508 && lost.count <= 692, "lost \(lost.count) of 2000")
        #expect(r["loss_within_bounds"] as? Bool == true)
        let minimum = try #require(r["delay_min_ms"] as? Double)
        let median = try #require(r["delay_median_ms"] as? Double)
        #expect(minimum >= 99.5, "netem never delivers early: min \(minimum) ms")
        #expect(median >= 100 && median <= 115, "median one-way delay \(median) ms")
    }

    /// netem delay on both of R's ports shows in the RTT the client's kernel measures (TCP_INFO).
    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func umlNetemDelayShowsInClientRTT() throws {
        let r = try Leftovers.checked {
            try LabCommand.json(["trial", "--backend", "uml", "--kernel", "debian", "--fault", "none", "--delay-ms", "100",
                                 "--keepalive", "1,1,2", "--deadline", "2"])
        }
        #expect(r["impairment_engine"] as? String == "netem")
        let info = try #require(r["tcp_info_at_fault"] as? [String: Any])
        let rtt = try #require(info["rttUs"] as? Int)
        // 100 ms each way.
        #expect(rtt >= 199_000 && rtt <= 260_000, "client srtt \(rtt) µs")
    }

    /// TCA_NETEM_PRNG_SEED exists since Linux 6.3. Kernels that know it give the same loss sequence
    /// for the same seed; the 6.1 UML kernel ignores the attribute (netem parses its options
    /// liberally), so there the sequences differ — and the lab says the run was unseeded.
    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func umlSeededLossSequence() throws {
        let runs = try (0..<2).map { _ in
            try Leftovers.checked {
                try LabCommand.json(["netem-check", "--backend", "uml", "--kernel", "debian", "--loss", "30", "--delay-ms", "0",
                                     "--packets", "1000", "--seed", "424242"])
            }
        }
        let kernel = try #require(runs[0]["kernel"] as? String)
        let a = try #require(runs[0]["lost"] as? [Int]), b = try #require(runs[1]["lost"] as? [Int])
        if Self.knowsNetemSeed(release: kernel) {
            #expect(a == b, "kernel \(kernel) honours the seed: the same drops")
        } else {
            #expect(a != b, "kernel \(kernel) predates TCA_NETEM_PRNG_SEED: two runs must not match by chance")
            let trial = try Leftovers.checked {
                try LabCommand.json(["trial", "--backend", "uml", "--kernel", "debian", "--fault", "loss:30", "--impairment", "netem",
                                     "--seed", "424242", "--keepalive", "2,1,3", "--deadline", "3"])
            }
            let form = trial["impairment_form"] as? String ?? ""
            #expect(form.contains("ignores TCA_NETEM_PRNG_SEED"), "the result says the seed was ignored: \(form)")
        }
    }

    /// Linux 6.3 added TCA_NETEM_PRNG_SEED.
    static func knowsNetemSeed(release: String) -> Bool {
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return parts.count == 2 && (parts[0], parts[1]) >= (6, 3)
    }

    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func umlGuestFailureIsReportedWithTheConsoleAndReaped() throws {
        // /bin/true as init exits at once: the guest kernel panics ("Attempted to kill init").
        let error = try Leftovers.checked { () -> UMLError? in
            do {
                _ = try UMLMachine.run(arguments: ["trial"], options: UMLOptions(bootTimeout: 20), timeout: 10,
                                       output: CapturedOutput().sink, executable: "/bin/true")
                return nil
            } catch let error as UMLError {
                return error
            }
        }
        let failure = try #require(error, "a guest whose init dies must fail")
        #expect(failure.consoleTail.contains { $0.contains("Kernel panic") }, "console tail: \(failure.consoleTail)")
        // A guest that never comes up within the bound is killed, not waited for.
        let started = Date()
        let slow = try Leftovers.checked { () -> UMLError? in
            do {
                _ = try UMLMachine.run(arguments: ["trial"], options: UMLOptions(bootTimeout: 0.3), timeout: 10,
                                       output: CapturedOutput().sink, executable: BackendPrerequisites.binary!)
                return nil
            } catch let error as UMLError {
                return error
            }
        }
        guard case .bootTimedOut = try #require(slow) else {
            Issue.record("expected a boot timeout, got \(String(describing: slow))")
            return
        }
        #expect(Date().timeIntervalSince(started) < 8, "bounded by the boot timeout")
    }

    // MARK: userns

    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.rootlessMissing), Comment(rawValue: BackendPrerequisites.rootlessMissing ?? "")))
    func usernsCrashTrialAsAnUnprivilegedUser() throws {
        let r = try Leftovers.checked {
            try LabCommand.json(["trial", "--backend", "userns", "--fault", "crash", "--keepalive", "2,1,3", "--deadline", "12"],
                                asNobody: true)
        }
        #expect(r["backend"] as? String == "userns")
        #expect(r["outcome"] as? String == "detected")
        #expect(r["errno"] as? String == "ETIMEDOUT")
        #expect(r["probes_sent"] as? Int == 3)
        #expect(r["within_tolerance"] as? Bool == true)
    }

    // MARK: doctor

    @Test(.enabled(if: CIGate.runs(BackendPrerequisites.umlMissing), Comment(rawValue: BackendPrerequisites.umlMissing ?? "")))
    func doctorTellsWhichBackendsWork() throws {
        let r = try Leftovers.checked { try LabCommand.json(["doctor"], allowFailure: true) }
        let backends = try #require(r["backends"] as? [[String: Any]])
        #expect(backends.map { $0["name"] as? String } == ["host", "userns", "uml"])
        let uml = try #require(backends.first { $0["name"] as? String == "uml" })
        #expect(uml["available"] as? Bool == true, "uml: \(uml["why"] ?? "")")
        // The uml backend boots the lab kernel when one is built, else Debian's.
        if let lab = LabKernel.find() {
            #expect(uml["kernel"] as? String == lab.info.release)
            #expect(uml["hz"] as? Int == lab.info.hz)
            let status = try #require(r["labKernel"] as? [String: Any])
            #expect(status["built"] as? Bool == true)
            #expect(status["sourceVersion"] as? String == lab.info.sourceVersion)
        } else {
            #expect((uml["kernel"] as? String)?.hasPrefix("6.1.") == true)
            #expect(uml["hz"] as? Int == 100)
        }
        #expect((uml["features"] as? [String: Bool])?["netem"] == true)
        #expect(r["autoBackend"] as? String != nil)
    }
}

/// Unit tests of the launcher's pieces: no privileges, no UML.
struct BackendUnitTests {
    @Test func innerArgumentsDropOnlyTheLauncherOptions() {
        let options: Set<String> = ["--backend", "--uml-memory"]
        #expect(BackendLauncher.innerArguments(["trial", "--backend", "uml", "--fault", "crash", "--uml-memory=512", "--json"],
                                               launcherOptions: options) == ["trial", "--fault", "crash", "--json"])
        #expect(BackendLauncher.innerArguments(["run", "lab.yaml", "--backend=userns", "--", "--backend", "x"],
                                               launcherOptions: options) == ["run", "lab.yaml", "--", "--backend", "x"])
    }

    @Test func moduleNamesAreNormalized() {
        #expect(KernelModules.name(ofPath: "kernel/net/sched/sch_netem.ko") == "sch_netem")
        #expect(KernelModules.name(ofPath: "kernel/net/netfilter/nf-conntrack.ko.xz") == "nf_conntrack")
    }

    /// Guest memory goes to /dev/shm only where UML may map it executable: container runtimes
    /// mount /dev/shm noexec (a real tmpfs mounted noexec and exec here, as a container has it;
    /// root, to mount).
    @Test(.enabled(if: CIGate.runs(getuid() == 0 ? nil : "mounting a tmpfs needs root"), "mounting a tmpfs needs root"))
    func guestMemoryNeedsAnExecMount() throws {
        #expect(UMLMachine.allowsExec("/"))
        #expect(!UMLMachine.allowsExec("/nonexistent-\(getpid())"), "an unreadable mount is not used")
        let directory = try makeTemporaryDirectory(in: "/tmp", prefix: "keepalive-lab-shm-")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (options, exec) in [("noexec,size=1m", false), ("size=1m", true)] {
            let mount = try Spawn.run(path: "/bin/mount", arguments: ["mount", "-t", "tmpfs", "-o", options, "tmpfs", directory])
            #expect(mount.shellStatus == 0, "mount -o \(options)")
            defer { _ = try? Spawn.run(path: "/bin/umount", arguments: ["umount", directory]) }
            #expect(UMLMachine.isTmpfs(directory))
            #expect(UMLMachine.allowsExec(directory) == exec, "tmpfs -o \(options)")
        }
    }

    @Test func umlCommandLineHasNoTerminalAndPassesTheJobInTheEnvironment() {
        let kernel = UMLKernel(binary: "/usr/bin/linux.uml", release: "6.1.176", hz: 100,
                               moduleDirectory: "/usr/lib/uml/modules/6.1.176", missingOptions: [])
        let line = UMLMachine.commandLine(kernel: kernel, options: UMLOptions(memoryMB: 512), initPath: "/bin/kal",
                                          jobPath: "/tmp/kal-uml-x/job.json", umid: "kal-1", umlDirectory: "/tmp/kal-uml-x",
                                          workaround: true)
        #expect(line.first == "/usr/bin/linux.uml")
        for expected in ["mem=512M", "rootfstype=hostfs", "rootflags=/", "init=/bin/kal", "con=null", "ssl=null",
                         "con0=null,fd:1", "con3=fd:6,fd:5", "KEEPALIVE_LAB_UML_JOB=/tmp/kal-uml-x/job.json"] {
            #expect(line.contains(expected), "\(expected) in \(line)")
        }
        #expect(line.contains { $0.hasPrefix("GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX") })
    }

    @Test func stackDumpsStayOutOfTheConsoleTail() {
        #expect(!UMLMachine.isTellingConsoleLine(" [<6002d37a>] show_stack+0x184/0x193"))
        #expect(!UMLMachine.isTellingConsoleLine(" 606944ba 607e7fcd 62c8bc60 6067bb96"))
        #expect(UMLMachine.isTellingConsoleLine("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000"))
    }

    @Test func controlEventsAreParsedAcrossChunks() {
        let stream = EventStream()
        stream.append(Array(#"{"event":"ready","kernel":"6.1.176"}"#.utf8) + [10] + Array(#"{"event":"ex"#.utf8))
        stream.append(Array(#"it","status":3}"#.utf8) + [10])
        #expect(stream.wait(for: [.ready], timeout: 1, while: { true })?.kernel == "6.1.176")
        #expect(stream.wait(for: [.exit], timeout: 1, while: { true })?.status == 3)
    }
}

enum BackendPrerequisites {
    static let binary: String? = PeerBinary.path

    /// Why the UML tests cannot run here, or nil.
    static let umlMissing: String? = {
        do {
            _ = try UMLKernel.installed()
            return nil
        } catch {
            return "\(error)"
        }
    }()

    /// Why the rootless test cannot run here, or nil. It needs root (to become nobody with setpriv)
    /// and setpriv.
    static let rootlessMissing: String? = {
        guard getuid() == 0 else { return "the rootless test starts as root to drop to uid 65534 with setpriv" }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            return "setpriv is missing (apt-get install util-linux)"
        }
        return binary == nil ? "no keepalive-lab executable" : nil
    }()

    /// The binary as uid 65534 can run it: the built one when every directory above it lets others
    /// in, else a copy in a world-readable temporary directory (removed at exit of the test run).
    static let binaryForOthers: String? = {
        guard let binary else { return nil }
        var path = URL(fileURLWithPath: binary).resolvingSymlinksInPath().path
        var reachable = true
        while path != "/" {
            var st = stat()
            if stat(path, &st) != 0 || st.st_mode & 0o001 == 0 { reachable = false }
            path = URL(fileURLWithPath: path).deletingLastPathComponent().path
        }
        if reachable { return binary }
        guard let directory = try? makeTemporaryDirectory(in: "/tmp", prefix: "kal-rootless-") else { return nil }
        chmod(directory, 0o755)
        let copy = "\(directory)/keepalive-lab"
        guard (try? FileManager.default.copyItem(atPath: binary, toPath: copy)) != nil else { return nil }
        chmod(copy, 0o755)
        copyDirectory = directory
        atexit { if let directory = BackendPrerequisites.copyDirectory { try? FileManager.default.removeItem(atPath: directory) } }
        return copy
    }()

    nonisolated(unsafe) static var copyDirectory: String?
}

/// Runs the built binary and parses its single JSON object.
enum LabCommand {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func json(_ arguments: [String], asNobody: Bool = false, allowFailure: Bool = false,
                     timeout: Double = 120) throws -> [String: Any] {
        let (status, out, err) = try run(arguments + ["--json"], asNobody: asNobody, timeout: timeout)
        guard status == 0 || allowFailure else {
            throw Failure(description: "keepalive-lab \(arguments.joined(separator: " ")) exited \(status): \(err)\(out)")
        }
        guard let start = out.firstIndex(of: "{"),
              let object = try? JSONSerialization.jsonObject(with: Data(out[start...].utf8)) as? [String: Any] else {
            throw Failure(description: "no JSON from keepalive-lab \(arguments.joined(separator: " ")): \(out) \(err)")
        }
        return object
    }

    static func run(_ arguments: [String], asNobody: Bool, timeout: Double) throws -> (Int32, String, String) {
        if asNobody {
            return try run(arguments, setpriv: ["--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
                                                "--bounding-set=-all"], timeout: timeout)
        }
        return try run(arguments, setpriv: nil, timeout: timeout)
    }

    /// The built binary, under `setpriv OPTIONS` when given (then the copy uid 65534 can read), from
    /// /tmp (writable by everyone, so an unprivileged run can write its temporary capture).
    /// `wrapper`: a command line the binary is appended to instead (e.g. `unshare … sh -c '…; exec "$@"' sh`).
    static func run(_ arguments: [String], setpriv: [String]?, wrapper: [String]? = nil, environment: [String: String] = [:],
                    timeout: Double) throws -> (Int32, String, String) {
        let process = Process()
        if let wrapper {
            process.executableURL = URL(fileURLWithPath: wrapper[0])
            process.arguments = Array(wrapper.dropFirst()) + [BackendPrerequisites.binary!] + arguments
        } else if let setpriv {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = setpriv + [BackendPrerequisites.binaryForOthers!] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: BackendPrerequisites.binary!)
            process.arguments = arguments
        }
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.currentDirectoryURL = URL(fileURLWithPath: "/tmp")
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let watchdog = DispatchWorkItem { process.terminate() }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

/// What a backend run must not leave behind: linux.uml processes, processes in a user namespace
/// (the rootless sandbox), lab namespaces of the commands these tests run (trial "t1", netem-check
/// "netem": other suites' namespaces on a shared machine are theirs), private directories.
/// Inside UML or the sandbox, namespaces live only as long as those processes do.
enum Leftovers {
    static func checked<T>(_ body: () throws -> T) throws -> T {
        let before = snapshot()
        let result = try body()
        var after = snapshot()
        let deadline = Date().addingTimeInterval(5)
        while !after.isSubset(of: before) && Date() < deadline {
            usleep(100_000)
            after = snapshot()
        }
        #expect(after.umlProcesses.subtracting(before.umlProcesses).isEmpty,
                "linux.uml processes left: \(after.umlProcesses.subtracting(before.umlProcesses))")
        #expect(after.sandboxProcesses.subtracting(before.sandboxProcesses).isEmpty,
                "processes left in a user namespace: \(after.sandboxProcesses.subtracting(before.sandboxProcesses))")
        #expect(after.namespaces.subtracting(before.namespaces).isEmpty,
                "namespaces left: \(after.namespaces.subtracting(before.namespaces))")
        #expect(after.directories.subtracting(before.directories).isEmpty,
                "temporary directories left: \(after.directories.subtracting(before.directories))")
        #expect(after.sharedMemory.subtracting(before.sharedMemory).isEmpty,
                "shared memory left: \(after.sharedMemory.subtracting(before.sharedMemory))")
        return result
    }

    struct Snapshot {
        var umlProcesses: Set<Int32>
        var sandboxProcesses: Set<Int32>
        var namespaces: Set<String>
        var directories: Set<String>
        /// Everything in /dev/shm and every System V segment (programs such as postgres leave them
        /// when killed).
        var sharedMemory: Set<String> = []

        func isSubset(of other: Snapshot) -> Bool {
            umlProcesses.isSubset(of: other.umlProcesses) && sandboxProcesses.isSubset(of: other.sandboxProcesses)
                && namespaces.isSubset(of: other.namespaces) && directories.isSubset(of: other.directories)
                && sharedMemory.isSubset(of: other.sharedMemory)
        }
    }

    /// The lab kernels' binaries: their guests must be gone too.
    static let labKernels = Set(LabKernel.builds().map(\.binary))

    static func snapshot() -> Snapshot {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init)
        let uml = pids.filter { pid in
            guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe") else { return false }
            return exe.hasPrefix(UMLKernel.defaultBinary) || labKernels.contains(exe)
        }
        let ownUserNamespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/user")
        let sandboxed = pids.filter { pid in
            guard let ns = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/user") else { return false }
            return ns != ownUserNamespace
        }
        var directories: Set<String> = []
        for parent in ["/tmp", "/dev/shm", ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix("kal-uml-") {
                directories.insert("\(parent)/\(name)")
            }
        }
        let namespaces = NetworkNamespace.listNames().filter { $0.contains("-t1-") || $0.contains("-netem-") }
        return Snapshot(umlProcesses: Set(uml), sandboxProcesses: Set(sandboxed), namespaces: Set(namespaces),
                        directories: directories, sharedMemory: sharedMemory())
    }

    /// /dev/shm's entries and the System V segments (/proc/sysvipc/shm: key and id) of this IPC
    /// namespace. UML guests' memory directories (kal-uml-*) are `directories`' business: suites
    /// that run in parallel start guests of their own.
    static func sharedMemory() -> Set<String> {
        var found = Set(((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [])
            .filter { !$0.hasPrefix("kal-uml-") }.map { "/dev/shm/\($0)" })
        let table = (try? String(contentsOfFile: "/proc/sysvipc/shm", encoding: .utf8)) ?? ""
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            if fields.count > 1 { found.insert("System V segment key \(fields[0]) id \(fields[1])") }
        }
        return found
    }
}
