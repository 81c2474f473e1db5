import CKeepaliveShim
import Foundation
import KeepaliveNet

/// The installed user-mode-linux kernel (Debian's `user-mode-linux` package) and its modules.
public struct UMLKernel: Sendable, Equatable {
    public static let defaultBinary = "/usr/bin/linux.uml"
    public static let defaultModuleRoot = "/usr/lib/uml/modules"

    public let binary: String
    /// `linux.uml --version`, e.g. "6.1.176".
    public let release: String
    /// CONFIG_HZ from `linux.uml --showconfig`.
    public let hz: Int
    /// Where the guest finds its modules (seen through hostfs at the same path).
    public let moduleDirectory: String
    /// Kernel options the lab would use that this build lacks ("# CONFIG_X is not set"), e.g.
    /// Debian's 6.1 UML has nf_tables without the ip and inet families.
    public let missingOptions: [String]

    /// Options whose absence takes a lab feature away.
    static let wantedOptions = ["CONFIG_NF_TABLES_IPV4", "CONFIG_NF_TABLES_INET", "CONFIG_NET_SCH_NETEM", "CONFIG_VETH"]

    /// The kernel and its modules, or why they cannot be used.
    public static func installed(binary: String = defaultBinary, moduleRoot: String = defaultModuleRoot) throws -> UMLKernel {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BackendUnavailable(backend: .uml, reason: "\(binary) is missing (apt-get install user-mode-linux)")
        }
        let release = try run(binary, ["--version"]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !release.isEmpty, release.first?.isNumber == true else {
            throw BackendUnavailable(backend: .uml, reason: "\(binary) --version printed no kernel release")
        }
        let config = (try? run(binary, ["--showconfig"])) ?? ""
        let hz = config.split(separator: "\n").first(where: { $0.hasPrefix("CONFIG_HZ=") })
            .flatMap { Int($0.dropFirst("CONFIG_HZ=".count)) } ?? 100
        let modules = "\(moduleRoot)/\(release)"
        guard FileManager.default.fileExists(atPath: "\(modules)/modules.dep") else {
            throw BackendUnavailable(backend: .uml, reason: "no modules for UML \(release) under \(modules) (apt-get install --reinstall user-mode-linux)")
        }
        let missing = wantedOptions.filter { config.contains("# \($0) is not set") }
        return UMLKernel(binary: binary, release: release, hz: hz, moduleDirectory: modules, missingOptions: missing)
    }

    /// UML before 6.13 moves guest FP state with a fixed 832-byte XSAVE buffer (`struct _xstate`);
    /// a host whose XSAVE area is larger (AVX-512, AMX) refuses it and the guest's first process
    /// dies ("ptrace set fp regs failed, errno = 14"). Such hosts get the workaround: ptrace's
    /// NT_X86_XSTATE is hidden from UML (a seccomp filter), which then saves x87/SSE state only,
    /// and the guest's glibc is told not to use AVX (GLIBC_TUNABLES), whose state would not be kept.
    public var needsXstateWorkaround: Bool {
        let size = kal_host_xsave_size()
        guard size > 832 else { return false }
        let parts = release.split(separator: ".").compactMap { Int($0.prefix(while: \.isNumber)) }
        guard parts.count >= 2 else { return true }
        return (parts[0], parts[1]) < (6, 13)
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
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(output.read, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        close(output.read)
        if !child.wait(timeout: 5) { child.killAndReap() }
        return String(decoding: data, as: UTF8.self)
    }
}
