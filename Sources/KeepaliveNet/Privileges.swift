import Foundation

/// What this process may do, probed for real (once) rather than guessed from the uid.
public enum Privileges {
    /// nil when a throwaway namespace can be created and deleted here; otherwise why not.
    public static let namespaceUnavailableReason: String? = {
        let name = "kal-probe-\(getpid())-\(LabID.newRunID())"
        do {
            let ns = try NetworkNamespace.create(named: name)
            ns.delete()
            return nil
        } catch {
            return "cannot create a network namespace here (\(error)); needs CAP_SYS_ADMIN and CAP_NET_ADMIN "
                + "(docker/podman: --cap-add NET_ADMIN --cap-add SYS_ADMIN, or --privileged)"
        }
    }()

    public static var canCreateNamespaces: Bool { namespaceUnavailableReason == nil }

    /// Effective capability bits from /proc/self/status (CapEff).
    public static func effectiveCapabilities() -> UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
        }
        return 0
    }

    public static let capNetAdmin = 12, capNetRaw = 13, capSysAdmin = 21

    public static func has(capability bit: Int) -> Bool { effectiveCapabilities() & (1 << UInt64(bit)) != 0 }
}
