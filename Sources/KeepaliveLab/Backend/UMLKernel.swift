import CKeepaliveShim
import Foundation
import KeepaliveNet

/// Which user-mode-linux kernel the uml backend boots (`--kernel`, lab files' `kernel:`).
public enum KernelChoice: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The lab kernel when one is built, else Debian's.
    case auto
    /// Debian's `user-mode-linux` package: 6.1, HZ=100, modules, no nftables ip/inet, no virtual time.
    case debian
    /// The lab kernel (`keepalive-lab kernel build`), at this HZ (nil: 250 when built, else any).
    case lab(hz: Int?)
    /// A UML kernel binary the user built.
    case path(String)

    /// `auto`, `debian`, `lab`, `lab:HZ` or a path (anything with a `/`).
    public init(parsing text: String) throws {
        switch text {
        case "auto": self = .auto
        case "debian": self = .debian
        case "lab": self = .lab(hz: nil)
        default:
            if text.hasPrefix("lab:"), let hz = Int(text.dropFirst(4)), LabKernel.supportedHz.contains(hz) {
                self = .lab(hz: hz)
            } else if text.contains("/") {
                self = .path(text)
            } else {
                throw PolicyError.malformed(field: "kernel", input: text,
                                            expected: "auto, debian, lab, lab:HZ (HZ: 100, 250, 1000) or a path to a UML kernel")
            }
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .debian: return "debian"
        case .lab(let hz): return hz.map { "lab:\($0)" } ?? "lab"
        case .path(let path): return path
        }
    }

    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A user-mode-linux kernel the uml backend can boot: Debian's `user-mode-linux` (with its modules),
/// the lab kernel, or one the user names.
public struct UMLKernel: Sendable, Equatable {
    public static let defaultBinary = "/usr/bin/linux.uml"
    public static let defaultModuleRoot = "/usr/lib/uml/modules"

    /// Where the kernel came from, for results and reports.
    public enum Origin: String, Codable, Sendable { case debian, lab, path }

    public let binary: String
    /// `linux.uml --version`, e.g. "6.1.176".
    public let release: String
    /// CONFIG_HZ of this build.
    public let hz: Int
    /// Where the guest finds its modules (seen through hostfs at the same path); nil when the
    /// kernel has everything built in (the lab kernel).
    public let moduleDirectory: String?
    /// Kernel options the lab would use that this build lacks ("# CONFIG_X is not set"), e.g.
    /// Debian's 6.1 UML has nf_tables without the ip and inet families.
    public let missingOptions: [String]
    /// CONFIG_UML_TIME_TRAVEL_SUPPORT: can boot with `time-travel=inf-cpu` (virtual time).
    public let timeTravel: Bool
    public let origin: Origin
    /// The lab kernel's Debian source version (e.g. "6.12.117-1~deb12u1"): Debian moves
    /// linux-source-6.12 between point releases, and results name the one they ran on.
    public let sourceVersion: String?

    public init(binary: String, release: String, hz: Int, moduleDirectory: String?, missingOptions: [String],
                timeTravel: Bool = false, origin: Origin = .debian, sourceVersion: String? = nil) {
        self.binary = binary
        self.release = release
        self.hz = hz
        self.moduleDirectory = moduleDirectory
        self.missingOptions = missingOptions
        self.timeTravel = timeTravel
        self.origin = origin
        self.sourceVersion = sourceVersion
    }

    /// Options whose absence takes a lab feature away.
    static let wantedOptions = ["CONFIG_NF_TABLES_IPV4", "CONFIG_NF_TABLES_INET", "CONFIG_NET_SCH_NETEM", "CONFIG_VETH"]

    /// "6.12.117, lab kernel (linux-source-6.12 6.12.117-1~deb12u1), HZ=250, time-travel".
    public var summary: String {
        "\(release), \(originDescription), HZ=\(hz)" + (timeTravel ? ", time-travel" : "")
    }

    /// "Debian's user-mode-linux", "lab kernel (linux-source-6.12 6.12.117-1~deb12u1)" or the path.
    public var originDescription: String {
        switch origin {
        case .debian: return "Debian's user-mode-linux"
        case .lab: return "lab kernel" + (sourceVersion.map { " (linux-source-6.12 \($0))" } ?? "")
        case .path: return binary
        }
    }

    /// Lacks nftables' ip/inet tables (crash-icmp, nftables loss and nat-idle cannot run in it).
    public var lacksNftables: Bool { missingOptions.contains { $0.hasPrefix("CONFIG_NF_TABLES_") } }

    /// The kernel `choice` names, or why it cannot be used. `needsTimeTravel`: `auto` must find a
    /// kernel that can run virtual time.
    public static func resolve(_ choice: KernelChoice, needsTimeTravel: Bool = false) throws -> UMLKernel {
        switch choice {
        case .auto:
            if let build = LabKernel.find() { return try lab(build) }
            if needsTimeTravel {
                throw BackendUnavailable(backend: .uml, reason: "virtual time needs the lab kernel (UML with time-travel), "
                    + "and none is built: run `\(LabKernel.buildCommand())` (about 6 min on 2 cores, once per machine)")
            }
            return try installed()
        case .debian:
            return try installed()
        case .lab(let hz):
            guard let build = LabKernel.find(hz: hz) else {
                let have = LabKernel.builds().map { "HZ=\($0.info.hz) in \($0.directory)" }
                throw BackendUnavailable(backend: .uml, reason: "no lab kernel\(hz.map { " with HZ=\($0)" } ?? "") is built"
                    + (have.isEmpty ? "" : " (found: \(have.joined(separator: ", ")))")
                    + "; build it with `\(LabKernel.buildCommand(hz: hz ?? LabKernel.defaultHz))`")
            }
            return try lab(build)
        case .path(let path):
            return try inspect(binary: path, origin: .path)
        }
    }

    /// Debian's kernel and its modules, or why they cannot be used.
    public static func installed(binary: String = defaultBinary, moduleRoot: String = defaultModuleRoot) throws -> UMLKernel {
        let kernel = try inspect(binary: binary, origin: .debian, moduleRoot: moduleRoot)
        guard kernel.moduleDirectory != nil else {
            throw BackendUnavailable(backend: .uml, reason: "no modules for UML \(kernel.release) under \(moduleRoot)/\(kernel.release) "
                + "(apt-get install --reinstall user-mode-linux)")
        }
        return kernel
    }

    static func lab(_ build: LabKernelBuild) throws -> UMLKernel {
        let config = (try? String(contentsOfFile: "\(build.directory)/config", encoding: .utf8)) ?? ""
        return UMLKernel(binary: build.binary, release: build.info.release, hz: build.info.hz, moduleDirectory: nil,
                         missingOptions: missing(in: config), timeTravel: build.info.timeTravel, origin: .lab,
                         sourceVersion: build.info.sourceVersion)
    }

    /// Asks the binary itself (`--version`, `--showconfig`: UML embeds its .config).
    static func inspect(binary: String, origin: Origin, moduleRoot: String = defaultModuleRoot) throws -> UMLKernel {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            let fix = origin == .debian ? " (apt-get install user-mode-linux)" : ""
            throw BackendUnavailable(backend: .uml, reason: "\(binary) is missing or not executable\(fix)")
        }
        let release = try run(binary, ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !release.isEmpty, release.first?.isNumber == true else {
            throw BackendUnavailable(backend: .uml, reason: "\(binary) --version printed no kernel release (is it a UML kernel?)")
        }
        let config = (try? run(binary, ["--showconfig"])) ?? ""
        let hz = config.split(separator: "\n").first(where: { $0.hasPrefix("CONFIG_HZ=") })
            .flatMap { Int($0.dropFirst("CONFIG_HZ=".count)) } ?? 100
        let modules = "\(moduleRoot)/\(release)"
        let hasModules = FileManager.default.fileExists(atPath: "\(modules)/modules.dep")
        return UMLKernel(binary: binary, release: release, hz: hz, moduleDirectory: hasModules ? modules : nil,
                         missingOptions: missing(in: config),
                         timeTravel: config.contains("CONFIG_UML_TIME_TRAVEL_SUPPORT=y"), origin: origin, sourceVersion: nil)
    }

    static func missing(in config: String) -> [String] {
        wantedOptions.filter { !config.contains("\($0)=y") && !config.contains("\($0)=m") }
    }

    /// UML before 6.13 moves guest FP state with a fixed-size XSAVE buffer (`struct _xstate`: 832
    /// bytes in 6.1, 2696 bytes in 6.12); a host whose XSAVE area is larger (AVX-512, AMX)
    /// refuses it and the guest's first process dies ("ptrace set fp regs failed, errno = 14").
    /// Such hosts get the workaround: ptrace's NT_X86_XSTATE is hidden from UML (a seccomp
    /// filter), which then saves x87/SSE state only, and the guest's glibc is told not to use AVX
    /// (GLIBC_TUNABLES), whose state would not be kept.
    public var needsXstateWorkaround: Bool {
        let size = kal_host_xsave_size()
        let parts = release.split(separator: ".").compactMap { Int($0.prefix(while: \.isNumber)) }
        guard parts.count >= 2 else { return size > 832 }
        let version = (parts[0], parts[1])
        if version >= (6, 13) { return false }
        return size > (version >= (6, 12) ? 2696 : 832)
    }

    /// glibc string functions restricted to SSE: the state UML keeps per guest process.
    static let sseOnlyTunables = "glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512BW,-AVX512CD,-AVX512DQ,-AVX512VL,"
        + "-AVX_Fast_Unaligned_Load,-ERMS,-FSRM"

    private static func run(_ binary: String, _ arguments: [String]) throws -> String {
        let output = try Pipe2()
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(devnull) }
        let child: ChildProcess
        do {
            child = try ChildProcess(path: binary, arguments: [binary] + arguments, environment: [:],
                                     fds: [devnull, output.write, devnull], options: [.parentDeathKill])
        } catch {
            close(output.read)
            close(output.write)
            throw error
        }
        close(output.write)
        let data = Pipe2.readToEOF(output.read)
        if !child.wait(timeout: 5) { child.killAndReap() }
        return String(decoding: data, as: UTF8.self)
    }
}
