import Foundation
import KeepaliveNet

/// N trials of a known duration at once, each on its own topology: how close the batch's wall time
/// stays to one trial alone, how faithful the timing stays, and what memory and CPU it takes.
public enum ParallelBenchmark {
    public struct Batch: Codable, Sendable {
        public var concurrent: Int
        public var wallS: Double
        public var longestTrialS: Double
        public var medianTrialS: Double
        /// wall / longest trial: 1.0 is perfect overlap.
        public var ratio: Double { wallS / longestTrialS }
        public var detected: Int
        public var errors: [String]
        /// Batch start → the last trial's client ready: how long the (gated) setups took.
        public var setupSpanS: Double?
        /// Machine-wide busy CPU time during the batch (/proc/stat, all CPUs, user + system + irq).
        public var cpuSeconds: Double
        public var memory: Memory?
        /// measured − formula (s), per trial with a formula.
        public var formulaErrorsS: [Double]
        /// app detection − A's RST on the wire (ms).
        public var appMinusWireMs: [Double]
        /// Which peer binary ran (keepalive-lab-peer or keepalive-lab peer).
        public var peer: String
        /// How long the batch waited, before it started, for the kernel to finish destroying the
        /// namespaces of earlier batches; nil where that wait failed (`cleanupNote` says why).
        public var cleanupWaitS: Double?
        public var cleanupNote: String?
    }

    /// Memory at the instant the last trial of the batch became ready (every topology, capture and
    /// client up; servers of trials whose fault came already are gone: crash kills them).
    public struct Memory: Codable, Sendable {
        public var trials: Int
        public var harnessPSSKiB: Int
        public var clients: Int
        public var clientPSSKiB: Int
        public var servers: Int
        public var serverPSSKiB: Int
        public var harnessThreads: Int
        public var harnessFDs: Int
        /// /proc/meminfo after − before (KiB), the before taken just before the batch started.
        public var meminfoDeltaKiB: [String: Int]
        /// net_namespace slab objects before and at the sample.
        public var netnsBefore: Int
        public var netnsAtSample: Int

        public static let kernelFields = ["Slab", "SUnreclaim", "KernelStack", "PageTables", "Percpu", "VmallocUsed"]
        /// What the kernel holds: slab + stacks + page tables + per-CPU + vmalloc (SUnreclaim is in Slab).
        public var kernelKiB: Int {
            ["Slab", "KernelStack", "PageTables", "Percpu", "VmallocUsed"].reduce(0) { $0 + (meminfoDeltaKiB[$1] ?? 0) }
        }
        public var meanClientPSSKiB: Double { clients > 0 ? Double(clientPSSKiB) / Double(clients) : 0 }
        /// Servers are the same binary with the same work: where none is alive, a client's PSS stands in.
        public var meanServerPSSKiB: Double { servers > 0 ? Double(serverPSSKiB) / Double(servers) : meanClientPSSKiB }
        /// harness/N + one client + one server.
        public var pssPerTrialKiB: Double { Double(harnessPSSKiB) / Double(trials) + meanClientPSSKiB + meanServerPSSKiB }
        /// Over the topologies that exist at the sample (their namespaces / 3): finished trials'
        /// namespaces the kernel has not freed yet still hold kernel memory.
        public var topologiesAtSample: Double { max(1, Double(netnsAtSample - netnsBefore) / 3) }
        public var kernelPerTrialKiB: Double { Double(kernelKiB) / topologiesAtSample }
        /// Tasks: harness threads/N + the two peers (single-threaded).
        public var tasksPerTrial: Double { Double(harnessThreads) / Double(trials) + 2 }
        public var fdsPerTrial: Double { Double(harnessFDs) / Double(trials) }
    }

    /// keepalive 5,1,5 on a crash: detection 10 s after the last segment A received.
    public static let defaultKeepalive = KeepaliveSetting(idle: 5, interval: 1, count: 5)

    public static func spec(keepalive: KeepaliveSetting) -> TrialSpec {
        let formula = Double(keepalive.idle + keepalive.interval * keepalive.count)
        return TrialSpec(clientPolicy: Policy(keepalive: keepalive), fault: .crash, deadline: max(10, 2 * formula))
    }

    public static func batch(concurrent n: Int, run: String, peerExecutable: String,
                             keepalive: KeepaliveSetting = defaultKeepalive, label: String? = nil) throws -> Batch {
        let spec = spec(keepalive: keepalive)
        struct Tally: Sendable {
            var results: [TrialResult] = []
            var durations: [Double] = []
            var errors: [String] = []
            var ready = 0
            var alive = 0  // ready and not yet finished
            var readyAt: Double?
            var memory: Memory?
        }
        let tally = Locked(Tally())
        let gate = SetupGate()
        let sampled = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        // Start on a settled machine: the kernel destroys deleted namespaces later, in its own
        // work queue, and the previous batch's would otherwise be destroyed during this batch's
        // setup and shrink its memory deltas. (Reports/benchmark.md shows how long it waited.)
        var cleanupWait: Double?
        var cleanupNote: String?
        do { cleanupWait = try NetworkNamespace.awaitKernelCleanup() } catch { cleanupNote = "\(error)" }
        let before = MemorySnapshot.take()
        let cpuBefore = CPUTime.busySeconds()
        let start = PeerEvent.now()
        let tag = label ?? "\(n)"
        // Called on the trial's thread the moment its client is ready; the last one samples memory
        // (one sample at the instant everything is up: no periodic sampling).
        let onReady: @Sendable () -> Void = {
            let (last, aliveNow): (Bool, Int) = tally.withLock { t in
                t.ready += 1
                t.alive += 1
                if t.ready == n { t.readyAt = PeerEvent.now() }
                return (t.ready == n, t.alive)
            }
            // On its own thread: reading ~2 smaps_rollup per trial must not delay this trial's fault.
            if last {
                let sampler = Thread {
                    // Per trial over the trials alive at that instant: when setting up N takes longer
                    // than a trial, the first ones have finished by then.
                    let sample = MemorySnapshot.sample(run: run, trials: aliveNow, before: before)
                    tally.withLock { $0.memory = sample }
                    sampled.signal()
                }
                sampler.start()
            }
        }
        for i in 0..<n {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                let t0 = PeerEvent.now()
                do {
                    let id = try LabID(run: run, trial: "p\(tag)x\(i)")
                    var trial = Trial(spec: spec, id: id, peerExecutable: peerExecutable, pcapPath: nil)
                    trial.setupGate = gate
                    trial.onReady = onReady
                    let result = try trial.run()
                    let t1 = PeerEvent.now()
                    tally.withLock { $0.results.append(result); $0.durations.append(t1 - t0); $0.alive -= 1 }
                } catch {
                    tally.withLock { $0.errors.append("\(error)") }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        let wall = PeerEvent.now() - start
        let cpu = CPUTime.busySeconds() - cpuBefore
        if tally.withLock({ $0.ready == n }) { sampled.wait() }
        let (results, durations, errors, readyAt, memory) = tally.withLock { t in
            (t.results, t.durations, t.errors, t.readyAt, t.memory)
        }
        return Batch(
            concurrent: n, wallS: wall, longestTrialS: durations.max() ?? .nan,
            medianTrialS: ReportStats.median(durations) ?? .nan,
            detected: results.filter { $0.outcome == .detected }.count, errors: errors,
            setupSpanS: readyAt.map { $0 - start }, cpuSeconds: cpu, memory: memory,
            formulaErrorsS: results.compactMap { r in r.measuredS.flatMap { m in r.expectedS.map { m - $0 } } },
            appMinusWireMs: results.compactMap(\.appMinusWireMs),
            peer: PeerProcess.leanPeer(near: peerExecutable).map { URL(fileURLWithPath: $0).lastPathComponent }
                ?? "keepalive-lab peer",
            cleanupWaitS: cleanupWait, cleanupNote: cleanupNote)
    }
}

/// Machine-wide CPU time from /proc/stat.
enum CPUTime {
    /// Busy seconds on all CPUs so far: user + nice + system + irq + softirq + steal.
    static func busySeconds() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return .nan }
        let f = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().compactMap { Double($0) }
        guard f.count >= 8 else { return .nan }
        let ticks = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Honest memory figures: PSS (shared pages divided among the processes that map them, so the
/// Swift runtime is not counted once per peer) and the kernel's own memory from /proc/meminfo.
enum MemorySnapshot {
    struct Before {
        var meminfo: [String: Int]
        var netns: Int
    }

    static func take() -> Before {
        Before(meminfo: MachineLimits.readMeminfo(), netns: MachineLimits.netnsCount().count)
    }

    static func sample(run: String, trials: Int, before: Before) -> ParallelBenchmark.Memory {
        let meminfo = MachineLimits.readMeminfo()
        let netns = MachineLimits.netnsCount().count
        let me = getpid()
        var memory = ParallelBenchmark.Memory(
            trials: trials, harnessPSSKiB: pss(me) ?? 0, clients: 0, clientPSSKiB: 0, servers: 0, serverPSSKiB: 0,
            harnessThreads: (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0,
            harnessFDs: (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0,
            meminfoDeltaKiB: [:], netnsBefore: before.netns, netnsAtSample: netns)
        for key in ParallelBenchmark.Memory.kernelFields + ["MemAvailable", "MemFree", "AnonPages"] {
            memory.meminfoDeltaKiB[key] = (meminfo[key] ?? 0) - (before.meminfo[key] ?? 0)
        }
        // The peers: children whose command line names one of this run's namespaces
        // (--netns /run/netns/kal-<run>-<trial>-a for clients, …-b for servers).
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        let marker = "\(LabID.prefix)\(run)-"
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let ns = args.first(where: { $0.contains(marker) }) else { continue }
            guard let kib = pss(pid) else { continue }
            if ns.hasSuffix("-a") {
                memory.clients += 1
                memory.clientPSSKiB += kib
            } else {
                memory.servers += 1
                memory.serverPSSKiB += kib
            }
        }
        return memory
    }

    /// Pss of /proc/PID/smaps_rollup, KiB.
    static func pss(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }
}
