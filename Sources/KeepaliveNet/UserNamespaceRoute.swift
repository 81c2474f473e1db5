import CKeepaliveShim
import Foundation

/// The ways into a user namespace in which this process is root, by what the process may do:
///
/// - `mapRoot`: root with CAP_SETFCAP maps uid 0 to 0 directly (`uid_map` "0 0 1"). Since Linux 5.12
///   mapping uid 0 needs CAP_SETFCAP at unshare time; CI containers that grant only CAP_NET_ADMIN lack it.
/// - `dropUID`: root with CAP_SETUID and CAP_SETGID becomes an unprivileged uid (65534) first, then
///   maps that uid.
/// - `mapSelf`: a non-root user maps its own uid.
///
/// Root tries `mapRoot`, then `dropUID` (files the command creates stay root's, and the working
/// directory need not be open to nobody); a non-root user has only `mapSelf`.
public enum UserNamespaceRoute: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case mapRoot = "map-root"
    case dropUID = "drop-uid"
    case mapSelf = "map-self"

    public var description: String { rawValue }

    /// The unprivileged uid (and gid) `dropUID` becomes.
    public static let unprivilegedUID: UInt32 = 65534

    /// The routes that apply to a process with effective uid `euid`, in the order they are tried.
    public static func candidates(euid: uid_t = geteuid()) -> [UserNamespaceRoute] {
        euid == 0 ? [.mapRoot, .dropUID] : [.mapSelf]
    }

    /// What the route does, for reports. `uid`: the uid the process started as.
    public func explanation(uid: UInt32 = getuid(), dropTo: UInt32 = unprivilegedUID) -> String {
        switch self {
        case .mapRoot: return "uid 0 mapped to root in a new user namespace (uid_map \"0 0 1\", CAP_SETFCAP)"
        case .dropUID: return "became uid \(dropTo) (CAP_SETUID), then mapped it to root in a new user namespace"
        case .mapSelf: return "uid \(uid) mapped itself to root in a new user namespace"
        }
    }
}

/// One route as it was tried: nil `refusal` means it worked.
public struct UserNamespaceAttempt: Codable, Sendable, Equatable {
    public var route: UserNamespaceRoute
    public var refusal: String?
    public var worked: Bool { refusal == nil }

    public init(route: UserNamespaceRoute, refusal: String?) {
        self.route = route
        self.refusal = refusal
    }
}

/// How the sandbox got into its user namespace, or why it could not: every route tried, in order.
/// Passed to the command run in the sandbox in `KEEPALIVE_LAB_USERNS_ROUTE` (JSON), so its doctor
/// can report it.
public struct UserNamespaceEntry: Codable, Sendable, Equatable {
    /// The uid the process started as.
    public var uid: UInt32
    /// The effective capability set it started with (CapEff, hex).
    public var capabilities: String
    public var attempts: [UserNamespaceAttempt]

    public var route: UserNamespaceRoute? { attempts.first(where: \.worked)?.route }

    public static let environmentVariable = "KEEPALIVE_LAB_USERNS_ROUTE"

    /// What the launcher that started this process recorded, when it runs in the userns sandbox.
    public static var current: UserNamespaceEntry? {
        guard let text = ProcessInfo.processInfo.environment[environmentVariable] else { return nil }
        return try? JSONDecoder().decode(UserNamespaceEntry.self, from: Data(text.utf8))
    }

    public var json: String {
        (try? JSONEncoder().encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// One line per route: "map-root: used — …" / "drop-uid: refused — …".
    public var summary: [String] {
        attempts.map { attempt in
            attempt.refusal.map { "\(attempt.route): refused — \($0)" }
                ?? "\(attempt.route): used — \(attempt.route.explanation(uid: uid))"
        }
    }
}

/// No route into a user namespace worked.
public struct UserNamespaceRefused: Error, CustomStringConvertible, Sendable {
    public let entry: UserNamespaceEntry
    public init(entry: UserNamespaceEntry) { self.entry = entry }
    public var description: String {
        "no way into a user namespace as uid \(entry.uid) (CapEff \(entry.capabilities): "
            + "\(CapabilitySet.names(UInt64(entry.capabilities, radix: 16) ?? 0))): "
            + entry.attempts.map { "\($0.route): \($0.refusal ?? "worked")" }.joined(separator: "; ")
    }
}

extension UserNamespace {
    /// unshare(`flags`, which include CLONE_NEWUSER) by the first of `routes` that works, each tried
    /// first in a throwaway child (a half-done attempt cannot be undone), then for real. The caller
    /// must be single-threaded. Throws `UserNamespaceRefused` naming what refused each route.
    public static func enter(flags: Int32, routes: [UserNamespaceRoute] = UserNamespaceRoute.candidates(),
                             dropTo uid: UInt32 = UserNamespaceRoute.unprivilegedUID) throws -> UserNamespaceEntry {
        let entry = attempt(flags: flags, routes: routes, dropTo: uid, forReal: true)
        guard entry.route != nil else { throw UserNamespaceRefused(entry: entry) }
        return entry
    }

    /// Each of `routes` tried in a throwaway child (this process stays as it is; it may have threads),
    /// up to the first that works: what `enter` would do here.
    public static func tryRoutes(flags: Int32 = KAL_CLONE_NEWUSER | KAL_CLONE_NEWNET,
                                 routes: [UserNamespaceRoute] = UserNamespaceRoute.candidates(),
                                 dropTo uid: UInt32 = UserNamespaceRoute.unprivilegedUID) -> UserNamespaceEntry {
        attempt(flags: flags, routes: routes, dropTo: uid, forReal: false)
    }

    static func attempt(flags: Int32, routes: [UserNamespaceRoute], dropTo uid: UInt32, forReal: Bool) -> UserNamespaceEntry {
        let capabilities = Privileges.effectiveCapabilities()
        var entry = UserNamespaceEntry(uid: getuid(), capabilities: String(format: "%016llx", capabilities), attempts: [])
        for route in routes {
            if let refusal = UserNamespaceDiagnosis.inapplicable(route) {
                entry.attempts.append(.init(route: route, refusal: refusal))
                continue
            }
            let drop: Int32 = route == .dropUID ? Int32(bitPattern: uid) : -1
            var step: Int32 = 0
            var rc = kal_userns_try(flags, drop, &step)
            if rc == 0 && forReal { rc = kal_userns_enter(flags, drop, &step) }
            if rc == 0 {
                entry.attempts.append(.init(route: route, refusal: nil))
                return entry
            }
            entry.attempts.append(.init(route: route, refusal: UserNamespaceDiagnosis.explain(
                route: route, step: step, errno: -rc, capabilities: capabilities, dropTo: uid)))
        }
        return entry
    }
}

/// Why a route into a user namespace failed, in terms of what refused it: a missing capability
/// (CapEff), a seccomp filter, AppArmor, or a sysctl.
public enum UserNamespaceDiagnosis {
    /// Refusal without an attempt: the route does not apply to this uid.
    static func inapplicable(_ route: UserNamespaceRoute) -> String? {
        switch route {
        case .mapRoot, .dropUID:
            return geteuid() == 0 ? nil : "only for root (this process is uid \(geteuid()))"
        case .mapSelf:
            return geteuid() == 0 ? "uid 0 mapping itself is the map-root route" : nil
        }
    }

    public static func explain(route: UserNamespaceRoute, step: Int32, errno code: Int32, capabilities: UInt64,
                               dropTo uid: UInt32, facts: Facts = .read()) -> String {
        let failure = "\(String(cString: strerror(code))) (\(Errno.name(code)))"
        let has = { (bit: Int) in capabilities & (UInt64(1) << UInt64(bit)) != 0 }
        switch step {
        case KAL_USERNS_STEP_SETGROUPS, KAL_USERNS_STEP_SETGID, KAL_USERNS_STEP_SETUID:
            let call = ["", "setgroups(0)", "setgid(\(uid))", "setuid(\(uid))"][Int(step)]
            let lacking = [(CapabilitySet.setuid, "CAP_SETUID"), (CapabilitySet.setgid, "CAP_SETGID")].filter { !has($0.0) }.map(\.1)
            var text = "\(call) failed: \(failure): becoming uid \(uid) first needs CAP_SETUID and CAP_SETGID; this process "
            if !lacking.isEmpty {
                return text + "lacks \(lacking.joined(separator: " and ")) (CapEff \(CapabilitySet.names(capabilities)))"
            }
            text += "has both, "
            if code == EINVAL {
                return text + "but \(uid) is not mapped in the user namespace it is in"
            }
            let setgroups = (try? String(contentsOfFile: "/proc/self/setgroups", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if step == KAL_USERNS_STEP_SETGROUPS && setgroups == "deny" {
                return text + "but it is in a user namespace where setgroups is denied (/proc/self/setgroups: deny)"
            }
            return text + "yet was refused"
        case KAL_USERNS_STEP_UNSHARE:
            return "unshare(CLONE_NEWUSER) failed: \(failure): " + unshareCause(code, capabilities: capabilities, facts: facts)
        case KAL_USERNS_STEP_UID_MAP, KAL_USERNS_STEP_GID_MAP, KAL_USERNS_STEP_DENY_SETGROUPS:
            let file = step == KAL_USERNS_STEP_UID_MAP ? "uid_map" : step == KAL_USERNS_STEP_GID_MAP ? "gid_map" : "setgroups"
            let id = step == KAL_USERNS_STEP_GID_MAP ? (route == .mapRoot ? 0 : getegid()) : (route == .dropUID ? uid : geteuid())
            var text = "writing /proc/self/\(file)"
            if step != KAL_USERNS_STEP_DENY_SETGROUPS { text += " \"0 \(id) 1\"" }
            text += " failed: \(failure)"
            if route == .mapRoot && step == KAL_USERNS_STEP_UID_MAP && code == EPERM {
                text += has(CapabilitySet.setfcap)
                    ? ": mapping uid 0 needs CAP_SETFCAP at unshare time (Linux ≥ 5.12), and this process has it — "
                        + mappingCause(facts)
                    : ": mapping uid 0 needs CAP_SETFCAP (Linux ≥ 5.12), which this process lacks (CapEff "
                        + "\(CapabilitySet.names(capabilities)))"
            } else if code == EPERM {
                text += ": " + mappingCause(facts)
            }
            return text
        default:
            return "could not try it: \(failure)"
        }
    }

    static func unshareCause(_ code: Int32, capabilities: UInt64, facts: Facts) -> String {
        let sysAdmin = capabilities & (UInt64(1) << UInt64(CapabilitySet.sysAdmin)) != 0
        var causes: [String] = []
        switch code {
        case ENOSPC:
            if facts.maxUserNamespaces == 0 {
                causes.append("sysctl user.max_user_namespaces = 0 forbids user namespaces")
            } else {
                causes.append("the user-namespace limit is reached (user.max_user_namespaces = "
                              + "\(facts.maxUserNamespaces.map(String.init) ?? "?"))")
            }
        case EUSERS:
            causes.append("too many nested user namespaces (or an old kernel's user.max_user_namespaces limit)")
        case EINVAL:
            causes.append("the process is multi-threaded or the kernel lacks CONFIG_USER_NS")
        case EPERM, EACCES:
            if facts.seccomp == 2 {
                causes.append("a seccomp filter (Seccomp: 2, NoNewPrivs: \(facts.noNewPrivs.map(String.init) ?? "?")) refuses it — "
                              + "container runtimes' default profiles block CLONE_NEWUSER without CAP_SYS_ADMIN")
            }
            if facts.unprivilegedUsernsClone == 0 && !sysAdmin {
                causes.append("sysctl kernel.unprivileged_userns_clone = 0 allows it only with CAP_SYS_ADMIN")
            }
            if facts.apparmorRestrict == 1 {
                causes.append("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)")
            }
            if facts.maxUserNamespaces == 0 {
                causes.append("sysctl user.max_user_namespaces = 0")
            }
            if facts.chrooted {
                causes.append("the process is in a chroot")
            }
            if causes.isEmpty {
                causes.append("no seccomp filter, AppArmor restriction or sysctl explains it (Seccomp: "
                              + "\(facts.seccomp.map(String.init) ?? "?"); user.max_user_namespaces = "
                              + "\(facts.maxUserNamespaces.map(String.init) ?? "?")); an LSM may refuse it")
            }
        default:
            causes.append("unexpected")
        }
        return causes.joined(separator: "; ")
    }

    /// Why writing a map failed with EPERM once the namespace exists.
    static func mappingCause(_ facts: Facts) -> String {
        if facts.apparmorRestrict == 1 {
            return "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1): "
                + "the new namespace gets no capabilities"
        }
        if facts.seccomp == 2 {
            return "a seccomp filter may refuse the write (Seccomp: 2)"
        }
        return "the kernel refused the mapping"
    }

    /// What the kernel and this process say about user namespaces (nil: not present here).
    public struct Facts: Sendable {
        public var seccomp: Int?
        public var noNewPrivs: Int?
        public var maxUserNamespaces: Int?
        public var unprivilegedUsernsClone: Int?
        public var apparmorRestrict: Int?
        public var chrooted: Bool

        public static func read() -> Facts {
            let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
            func field(_ name: String) -> Int? {
                for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                    return Int(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
                }
                return nil
            }
            func sysctl(_ path: String) -> Int? {
                (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            var root = stat(), ours = stat()
            let chrooted = stat("/proc/1/root/.", &root) == 0 && stat("/", &ours) == 0
                && (root.st_dev != ours.st_dev || root.st_ino != ours.st_ino)
            return Facts(seccomp: field("Seccomp"), noNewPrivs: field("NoNewPrivs"),
                         maxUserNamespaces: sysctl("/proc/sys/user/max_user_namespaces"),
                         unprivilegedUsernsClone: sysctl("/proc/sys/kernel/unprivileged_userns_clone"),
                         apparmorRestrict: sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
                         chrooted: chrooted)
        }
    }
}

/// Capability numbers and names (linux/capability.h).
public enum CapabilitySet {
    public static let setgid = 6, setuid = 7, sysAdmin = 21, setfcap = 31

    static let all = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
                      "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
                      "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
                      "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
                      "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
                      "CHECKPOINT_RESTORE"]

    /// "CAP_NET_ADMIN,CAP_SETFCAP"; "none"; "all"; "all but CAP_SYS_RESOURCE" when most are there.
    public static func names(_ bits: UInt64) -> String {
        let held = all.indices.filter { bits & (UInt64(1) << UInt64($0)) != 0 }
        if held.isEmpty { return "none" }
        if held.count == all.count { return "all" }
        if held.count > all.count / 2 {
            return "all but " + all.indices.filter { !held.contains($0) }.map { "CAP_" + all[$0] }.joined(separator: ",")
        }
        return held.map { "CAP_" + all[$0] }.joined(separator: ",")
    }
}
