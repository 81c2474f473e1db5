import Foundation

/// What one trial costs and what the machine has: how many trials fit at once under each limit
/// (CPU, memory, pids, file descriptors, network namespaces), and which one binds first.
public enum MachineLimits {
    /// What one running trial (peer workload, crash fault) holds.
    public struct PerTrial: Codable, Sendable, Equatable {
        /// PSS of harness/N + client + server, KiB.
        public var pssKiB: Double
        /// Kernel memory (Slab + KernelStack + PageTables + Percpu + VmallocUsed deltas)/N, KiB.
        public var kernelKiB: Double
        /// Tasks (threads + processes) counted against pid_max / pids.max.
        public var tasks: Double
        /// Descriptors the harness holds for it (RLIMIT_NOFILE is per process: the harness's).
        public var fds: Double
        /// Network namespaces (A, R, B; a reboot adds one for a while).
        public var netns: Double
        /// CPU seconds (all CPUs, user + system, machine-wide) one trial costs from setup to teardown.
        public var cpuSeconds: Double
        /// How long the trial that cost `cpuSeconds` lasted.
        public var trialSeconds: Double

        public init(pssKiB: Double, kernelKiB: Double, tasks: Double, fds: Double, netns: Double,
                    cpuSeconds: Double, trialSeconds: Double) {
            self.pssKiB = pssKiB
            self.kernelKiB = kernelKiB
            self.tasks = tasks
            self.fds = fds
            self.netns = netns
            self.cpuSeconds = cpuSeconds
            self.trialSeconds = trialSeconds
        }
    }

    /// Per-trial costs measured by `keepalive-lab bench` (100 concurrent trials, keepalive 5,1,5
    /// crash, 2 CPUs, kernel 6.18, 2026-12-01, on a machine shared with other work): used by `run`
    /// to size `--parallel` without measuring first. Re-measure with `bench` after changing the
    /// harness or the peer.
    public static let measured = PerTrial(pssKiB: 2_028, kernelKiB: 1_075, tasks: 5.3, fds: 16.5, netns: 3,
                                          cpuSeconds: 0.0198, trialSeconds: 10.6)

    public struct Limit: Codable, Sendable, Equatable {
        /// cpu, memory, pids, fds, netns.
        public var resource: String
        /// Trials that fit at once under this limit alone.
        public var trials: Int
        /// What is available and what a trial takes, in words.
        public var detail: String
    }

    /// Every limit, smallest first. `trialSeconds` is how long the trials to be run last (the CPU
    /// limit: a trial's CPU is spent in setup and teardown, so longer trials overlap more of them).
    public static func limits(perTrial p: PerTrial, trialSeconds: Double) -> [Limit] {
        var out: [Limit] = []
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        // CPU: the machine's CPU-seconds over one trial's length, divided by what a trial costs;
        // half of it, so setup bursts and the trials' own wakeups keep their timing.
        let cpuTrials = p.cpuSeconds > 0 ? Int(0.5 * Double(cpus) * trialSeconds / p.cpuSeconds) : Int.max
        out.append(Limit(resource: "cpu", trials: cpuTrials,
                         detail: "\(cpus) CPUs × \(fmt(trialSeconds)) s trials × 50 % / \(fmt(p.cpuSeconds, 3)) CPU-s per trial"))

        let mem = memoryAvailableKiB()
        let perTrialKiB = p.pssKiB + p.kernelKiB
        // Keep a quarter of what is available for the rest of the machine and for page cache.
        out.append(Limit(resource: "memory", trials: Int(0.75 * Double(mem.kiB) / perTrialKiB),
                         detail: "75 % of \(mem.kiB / 1024) MiB available (\(mem.source)) / \(fmt(perTrialKiB / 1024, 1)) MiB per trial (PSS \(fmt(p.pssKiB / 1024, 1)) + kernel \(fmt(p.kernelKiB / 1024, 1)))"))

        let pids = pidsAvailable()
        out.append(Limit(resource: "pids", trials: Int(Double(pids.available) / p.tasks),
                         detail: "\(pids.available) tasks free (\(pids.source)) / \(fmt(p.tasks, 1)) per trial"))

        var rl = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        // `run` and `bench` raise the soft limit to the hard one first.
        let nofile = rl.rlim_max > rlim_t(Int32.max) ? Int(Int32.max) : Int(rl.rlim_max)
        let openNow = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        out.append(Limit(resource: "fds", trials: Int(Double(nofile - openNow - 64) / p.fds),
                         detail: "RLIMIT_NOFILE \(nofile) (hard) − \(openNow) open − 64 spare / \(fmt(p.fds, 1)) per trial"))

        let ns = netnsAvailable()
        out.append(Limit(resource: "netns", trials: Int(Double(ns.available) / p.netns),
                         detail: "\(ns.available) network namespaces free (\(ns.source)) / \(fmt(p.netns, 0)) per trial"))
        return out.sorted { $0.trials < $1.trials }
    }

    /// `run --parallel`'s default: what the first limit allows, at least 1.
    public static func defaultParallel(trialSeconds: Double) -> (parallel: Int, limit: Limit) {
        let first = limits(perTrial: measured, trialSeconds: trialSeconds)[0]
        return (max(1, first.trials), first)
    }

    // MARK: Reading the machine

    static func memoryAvailableKiB() -> (kiB: Int, source: String) {
        let meminfo = readMeminfo()
        var kiB = meminfo["MemAvailable"] ?? 0
        var source = "MemAvailable"
        if let (limit, usage) = cgroupMemory(), limit - usage < kiB {
            kiB = max(0, limit - usage)
            source = "cgroup memory limit"
        }
        return (kiB, source)
    }

    static func pidsAvailable() -> (available: Int, source: String) {
        let pidMax = readInt("/proc/sys/kernel/pid_max") ?? 32768
        let threadsMax = readInt("/proc/sys/kernel/threads-max") ?? Int.max
        let tasksNow = readLoadavgTasks() ?? 0
        var available = min(pidMax, threadsMax) - tasksNow
        var source = "pid_max \(pidMax), threads-max \(threadsMax), \(tasksNow) tasks now"
        if let (max, current) = cgroupPids(), max - current < available {
            available = max - current
            source = "cgroup pids.max \(max), \(current) in use"
        }
        return (Swift.max(0, available), source)
    }

    static func netnsAvailable() -> (available: Int, source: String) {
        let max = readInt("/proc/sys/user/max_net_namespaces") ?? 0
        let now = netnsCount()
        return (Swift.max(0, max - now.count), "user.max_net_namespaces \(max), \(now.count) exist (\(now.source))")
    }

    /// Live network namespaces: the net_namespace slab's active objects where /proc/slabinfo is
    /// readable, else the names under /run/netns (which misses unnamed ones).
    public static func netnsCount() -> (count: Int, source: String) {
        if let slab = try? String(contentsOfFile: "/proc/slabinfo", encoding: .utf8),
           let line = slab.split(separator: "\n").first(where: { $0.hasPrefix("net_namespace ") }),
           let active = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) {
            return (active, "slab net_namespace")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns").count) ?? 0
        return (names, "/run/netns")
    }

    /// /proc/meminfo in KiB.
    public static func readMeminfo() -> [String: Int] {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return [:] }
        var out: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let value = Int(parts[1]) else { continue }
            out[String(parts[0].dropLast())] = value
        }
        return out
    }

    /// This process's cgroup directories (v2 unified path, and v1 per-controller paths).
    static func cgroupPath(controller: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            if parts[1].split(separator: ",").contains(Substring(controller)) {
                return "/sys/fs/cgroup/\(controller)\(parts[2])"
            }
            if parts[0] == "0" && parts[1].isEmpty && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") {
                return "/sys/fs/cgroup\(parts[2])"
            }
        }
        return nil
    }

    static func cgroupPids() -> (max: Int, current: Int)? {
        guard let dir = cgroupPath(controller: "pids"),
              let max = readInt("\(dir)/pids.max"), let current = readInt("\(dir)/pids.current") else { return nil }
        return (max, current)
    }

    /// (limit, usage) in KiB, when a limit is set.
    static func cgroupMemory() -> (Int, Int)? {
        guard let dir = cgroupPath(controller: "memory") else { return nil }
        for (limitFile, usageFile) in [("memory.max", "memory.current"), ("memory.limit_in_bytes", "memory.usage_in_bytes")] {
            if let limit = readInt("\(dir)/\(limitFile)"), let usage = readInt("\(dir)/\(usageFile)"),
               limit < (1 << 60) {
                return (limit / 1024, usage / 1024)
            }
        }
        return nil
    }

    /// The fourth field of /proc/loadavg is "running/total" scheduling entities (all tasks).
    static func readLoadavgTasks() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 4, let total = fields[3].split(separator: "/").last else { return nil }
        return Int(total)
    }

    static func readInt(_ path: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }
}
