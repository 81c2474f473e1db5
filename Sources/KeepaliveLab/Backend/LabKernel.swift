import Foundation
import KeepaliveNet

/// The lab kernel: user-mode-linux 6.12 built from Debian's `linux-source-6.12` with time-travel
/// (virtual time), netem and nftables ip/inet built in (`kernel/lab.config`), by
/// `scripts/build-lab-kernel` (or `keepalive-lab kernel build`). Each build is a directory in the
/// cache holding `linux`, `config`, `lab.config` and `info.json`; one per source version, fragment
/// and HZ.
public struct LabKernelBuild: Codable, Sendable, Equatable {
    /// `info.json`, written by the build script.
    public struct Info: Codable, Sendable, Equatable {
        public var release: String
        public var sourcePackage: String
        /// Debian's version of the source package, e.g. "6.12.117-1~deb12u1": results name it.
        public var sourceVersion: String
        public var hz: Int
        public var timeTravel: Bool
        public var key: String
        public var buildSeconds: Int
        public var jobs: Int?
        public var builtOn: String?
        public var sha256: String?

        enum CodingKeys: String, CodingKey {
            case release
            case sourcePackage = "source_package"
            case sourceVersion = "source_version"
            case hz
            case timeTravel = "time_travel"
            case key
            case buildSeconds = "build_seconds"
            case jobs
            case builtOn = "built_on"
            case sha256
        }
    }

    public var directory: String
    public var info: Info

    public var binary: String { "\(directory)/linux" }
}

public enum LabKernel {
    /// Where builds are looked for, in order: `KEEPALIVE_LAB_KERNEL_CACHE`, the user's cache
    /// (`$XDG_CACHE_HOME` or `~/.cache`, `/keepalive-lab/kernels`), and the machine's
    /// (`/var/cache/keepalive-lab/kernels`, where root builds: readable by every user, so a lab run
    /// as an unprivileged uid finds it too). The build script uses the same rule to write.
    public static var searchDirectories: [String] {
        let environment = ProcessInfo.processInfo.environment
        var directories: [String] = []
        if let explicit = environment["KEEPALIVE_LAB_KERNEL_CACHE"], !explicit.isEmpty { directories.append(explicit) }
        if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            directories.append("\(xdg)/keepalive-lab/kernels")
        } else if let home = environment["HOME"], !home.isEmpty {
            directories.append("\(home)/.cache/keepalive-lab/kernels")
        }
        directories.append(machineCache)
        var seen = Set<String>()
        return directories.filter { seen.insert($0).inserted }
    }

    public static let machineCache = "/var/cache/keepalive-lab/kernels"

    /// HZ values the build script accepts: Debian's 250, UML's historic 100, RHEL/Fedora's 1000.
    public static let supportedHz = [100, 250, 1000]
    /// What `--kernel lab` boots when no HZ is asked for: Debian's own kernels tick at 250.
    public static let defaultHz = 250

    /// Every complete build in the search directories (an executable `linux` and a readable
    /// `info.json`), the first directory's first.
    public static func builds() -> [LabKernelBuild] {
        var found: [LabKernelBuild] = []
        for directory in searchDirectories {
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for entry in entries.sorted() where !entry.hasPrefix(".") {
                let path = "\(directory)/\(entry)"
                guard FileManager.default.isExecutableFile(atPath: "\(path)/linux"),
                      let data = FileManager.default.contents(atPath: "\(path)/info.json"),
                      let info = try? JSONDecoder().decode(LabKernelBuild.Info.self, from: data) else { continue }
                found.append(LabKernelBuild(directory: path, info: info))
            }
        }
        return found
    }

    /// The build to boot for `hz` (nil: the default HZ if built, else any), newest source first.
    public static func find(hz: Int? = nil) -> LabKernelBuild? {
        let all = builds().sorted { versionOrder($0.info.release, $1.info.release) }
        if let hz { return all.first { $0.info.hz == hz } }
        return all.first { $0.info.hz == defaultHz } ?? all.first
    }

    /// For `doctor`: whether a lab kernel is built, which, and how to build it.
    public static func status() -> DoctorReport.LabKernelStatus {
        let how = "\(buildCommand()) (UML 6.12 from Debian's linux-source-6.12, ~6 min on 2 cores, cached; --hz 100|250|1000)"
        guard let build = find() else {
            return .init(built: false, how: "not built: " + how)
        }
        let others = builds().filter { $0 != build }.map { "HZ=\($0.info.hz) \($0.info.release) in \($0.directory)" }
        return .init(built: true, release: build.info.release, hz: build.info.hz, timeTravel: build.info.timeTravel,
                     sourceVersion: build.info.sourceVersion, directory: build.directory, buildSeconds: build.info.buildSeconds,
                     others: others, how: how)
    }

    /// The one command that builds it, for messages.
    public static func buildCommand(hz: Int = defaultHz) -> String {
        "keepalive-lab kernel build" + (hz == defaultHz ? "" : " --hz \(hz)")
    }

    /// "6.12.117" before "6.12.9"? No: numeric, newest first.
    static func versionOrder(_ a: String, _ b: String) -> Bool {
        let pa = a.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let pb = b.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        return pa.lexicographicallyPrecedes(pb) == false && pa != pb
    }
}
