import Foundation

/// Live topologies of this process, so an interrupted run can still tear everything down.
public final class TopologyRegistry: Sendable {
    public static let shared = TopologyRegistry()
    private let live = Locked<[ObjectIdentifier: Topology]>([:])

    func add(_ topology: Topology) { live.withLock { $0[ObjectIdentifier(topology)] = topology } }
    func remove(_ topology: Topology) { live.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(topology)) } }

    public var count: Int { live.withLock { $0.count } }

    /// Tears down every live topology (used on SIGINT/SIGTERM).
    public func teardownAll() {
        let all = live.withLock { Array($0.values) }
        for topology in all { topology.teardown() }
    }
}

/// Kills processes the lab started inside its namespaces and waits until they have left them.
enum ProcessReaper {
    static func killAll(_ pids: [pid_t]) {
        guard !pids.isEmpty else { return }
        for pid in pids where pid != getpid() { kill(pid, SIGKILL) }
        let deadline = PidFD.now() + 2
        var remaining = pids.filter { $0 != getpid() }
        while !remaining.isEmpty && PidFD.now() < deadline {
            remaining = remaining.filter { pid in
                var status: Int32 = 0
                // Our own children: reap them (a zombie would linger in the process table).
                if waitpid(pid, &status, WNOHANG) == pid { return false }
                // Everyone else: gone once /proc no longer shows a network namespace for it.
                return access("/proc/\(pid)/ns/net", F_OK) == 0
            }
            if remaining.isEmpty { break }
            // Block until one of them exits. A pidfd is readable from the exit on (a zombie still
            // shows in /proc, but has left its namespace by then).
            var pidfds: [PidFD] = []
            var pollInstead = false
            for pid in remaining {
                switch PidFD.open(pid) {
                case let .opened(fd): pidfds.append(fd)
                case .gone: break
                case .unsupported: pollInstead = true
                }
            }
            if pollInstead {
                usleep(2_000)  // no pidfd_open (Linux < 5.3): nothing to block on
            } else if pidfds.count == remaining.count {
                _ = PidFD.waitAny(pidfds, until: deadline)
            }
            // else: one vanished meanwhile; look again at once
        }
    }
}

/// Which process owns a run: `/run/keepalive-lab/<run>.owner` holds its pid and start time, so
/// `cleanup` can tell a live run from a crashed one even after pid reuse.
public enum RunOwnership {
    public static let directory = "/run/keepalive-lab"

    /// Starts a run owned by this process: a new run id, registered, with SIGINT/SIGTERM tearing
    /// down its topologies. The caller unregisters it when done.
    public static func begin() throws -> String {
        let run = LabID.newRunID()
        try register(run: run)
        InterruptCleanup.install(run: run)
        return run
    }

    public static func register(run: String) throws {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw SystemCallError("mkdir \(directory)")
        }
        let text = "\(getpid()) \(startTime(of: getpid()) ?? 0)\n"
        guard FileManager.default.createFile(atPath: ownerPath(run), contents: Data(text.utf8)) else {
            throw SystemCallError("write \(ownerPath(run))", errno: EIO)
        }
    }

    public static func unregister(run: String) {
        unlink(ownerPath(run))
    }

    static func ownerPath(_ run: String) -> String { "\(directory)/\(run).owner" }

    /// True when the process recorded as the run's owner still runs (same pid and start time).
    public static func ownerAlive(run: String) -> Bool {
        guard let text = try? String(contentsOfFile: ownerPath(run), encoding: .utf8) else { return false }
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let pid = pid_t(fields[0]), let start = UInt64(fields[1]) else { return false }
        return startTime(of: pid) == start
    }

    /// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
    static func startTime(of pid: pid_t) -> UInt64? {
        guard let fields = ProcStat.fields(of: pid), fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// Run ids that have an owner file.
    static func registeredRuns() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".owner") }.map { String($0.dropLast(".owner".count)) }
    }
}

/// /proc/PID/stat, split after "pid (comm)" (comm may contain spaces and parentheses): index 0 is
/// proc(5)'s field 3 (state), 1 ppid, 2 pgrp, 19 starttime.
public enum ProcStat {
    public static func fields(of pid: pid_t) -> [Substring]? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }
}

/// Removes what runs left behind.
public enum Cleanup {
    public struct Report: Codable, Sendable {
        public var namespacesRemoved: [String] = []
        public var processesKilled: [Int32] = []
        public var ownerFilesRemoved: [String] = []
        public var tempFilesRemoved: [String] = []
        public var skippedLiveRuns: [String] = []
    }

    /// Temporary files of a run are named `kal-<run>-…` (captures a trial kept only for its
    /// analysis, as versions before in-memory captures wrote them).
    static func removeTempFiles(of run: String, into report: inout Report) {
        let directory = FileManager.default.temporaryDirectory.path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasPrefix("\(LabID.prefix)\(run)-") {
            if (try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")) != nil {
                report.tempFilesRemoved.append(name)
            }
        }
    }

    /// Deletes lab namespaces (and kills the processes in them) of runs whose owner is gone; with
    /// `all`, of every run. The calling process's own run is never touched unless `all`.
    public static func run(all: Bool, namespaceFilter: (String) -> Bool = { _ in true }) -> Report {
        var report = Report()
        var byRun: [String: [String]] = [:]
        for name in NetworkNamespace.listNames() where namespaceFilter(name) {
            if let run = LabID.runID(inNamespaceName: name) { byRun[run, default: []].append(name) }
        }
        for run in RunOwnership.registeredRuns() where byRun[run] == nil && !RunOwnership.ownerAlive(run: run) {
            RunOwnership.unregister(run: run)
            removeTempFiles(of: run, into: &report)
            report.ownerFilesRemoved.append(run)
        }
        for (run, names) in byRun.sorted(by: { $0.key < $1.key }) {
            if !all && RunOwnership.ownerAlive(run: run) {
                report.skippedLiveRuns.append(run)
                continue
            }
            for name in names.sorted() {
                guard let ns = try? NetworkNamespace.open(named: name) else {
                    NetworkNamespace.removeMount(at: "\(NetworkNamespace.directory)/\(name)")
                    report.namespacesRemoved.append(name)
                    continue
                }
                let pids = ns.pids().filter { $0 != getpid() }
                ProcessReaper.killAll(pids)
                report.processesKilled += pids
                ns.delete()
                report.namespacesRemoved.append(name)
            }
            RunOwnership.unregister(run: run)
            removeTempFiles(of: run, into: &report)
            report.ownerFilesRemoved.append(run)
        }
        return report
    }
}

/// SIGINT/SIGTERM: tear down every live topology, forget the runs, exit 128+signal.
///
/// `install` may be called from several places (a run, each UML launch); the handlers and runs
/// they register live under one lock, read by the signal queue as a snapshot, and every run
/// registered is forgotten on the way out.
public enum InterruptCleanup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var handlers: [() -> Void] = []
    nonisolated(unsafe) private static var runs: Set<String> = []
    private static let queue = DispatchQueue(label: "keepalive-lab.signals")

    /// `onInterrupt` runs before the topologies are torn down (e.g. to stop peers, flush results).
    public static func install(run: String?, onInterrupt: @escaping () -> Void = {}) {
        lock.withLock {
            handlers.append(onInterrupt)
            if let run { runs.insert(run) }
            guard sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                source.setEventHandler {
                    FileHandle.standardError.write(Data("keepalive-lab: signal \(sig), cleaning up…\n".utf8))
                    let (toRun, toForget) = lock.withLock { (handlers, runs) }
                    for handler in toRun { handler() }
                    TopologyRegistry.shared.teardownAll()
                    for run in toForget { RunOwnership.unregister(run: run) }
                    exit(128 + sig)
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}
