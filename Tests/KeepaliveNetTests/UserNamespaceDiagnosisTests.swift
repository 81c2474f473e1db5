import CKeepaliveShim
import Foundation
import Testing
@testable import KeepaliveNet

/// What the refusal of each route says, for each thing that can refuse it (no privileges needed:
/// the facts are given). The real refusals are exercised under setpriv in UserNamespaceRouteTests.
struct UserNamespaceDiagnosisTests {
    typealias Facts = UserNamespaceDiagnosis.Facts
    static let open = Facts(seccomp: 0, noNewPrivs: 0, maxUserNamespaces: 1000, unprivilegedUsernsClone: nil,
                            apparmorRestrict: nil, chrooted: false)
    static let netAdmin: UInt64 = 1 << 12

    func explain(_ route: UserNamespaceRoute, _ step: Int32, _ code: Int32, caps: UInt64 = netAdmin,
                 facts: Facts = open) -> String {
        UserNamespaceDiagnosis.explain(route: route, step: step, errno: code, capabilities: caps, dropTo: 65534, facts: facts)
    }

    @Test func missingCapabilitiesAreNamed() {
        let mapRoot = explain(.mapRoot, KAL_USERNS_STEP_UID_MAP, EPERM)
        #expect(mapRoot.contains("CAP_SETFCAP") && mapRoot.contains("lacks") && mapRoot.contains("CAP_NET_ADMIN"), "\(mapRoot)")
        let drop = explain(.dropUID, KAL_USERNS_STEP_SETGROUPS, EPERM)
        #expect(drop.contains("lacks CAP_SETUID and CAP_SETGID"), "\(drop)")
        let dropGid = explain(.dropUID, KAL_USERNS_STEP_SETGID, EPERM, caps: Self.netAdmin | 1 << 7)
        #expect(dropGid.contains("lacks CAP_SETGID") && !dropGid.contains("lacks CAP_SETUID"), "\(dropGid)")
    }

    @Test func unshareRefusalsNameTheirCause() {
        var facts = Self.open
        facts.seccomp = 2
        facts.noNewPrivs = 1
        #expect(explain(.mapSelf, KAL_USERNS_STEP_UNSHARE, EPERM, caps: 0, facts: facts).contains("seccomp filter (Seccomp: 2, NoNewPrivs: 1)"))
        facts = Self.open
        facts.apparmorRestrict = 1
        #expect(explain(.mapSelf, KAL_USERNS_STEP_UNSHARE, EPERM, caps: 0, facts: facts)
            .contains("kernel.apparmor_restrict_unprivileged_userns = 1"))
        facts = Self.open
        facts.unprivilegedUsernsClone = 0
        #expect(explain(.mapSelf, KAL_USERNS_STEP_UNSHARE, EPERM, caps: 0, facts: facts)
            .contains("kernel.unprivileged_userns_clone = 0"))
        facts = Self.open
        facts.maxUserNamespaces = 0
        #expect(explain(.mapSelf, KAL_USERNS_STEP_UNSHARE, ENOSPC, caps: 0, facts: facts)
            .contains("user.max_user_namespaces = 0 forbids"))
        #expect(explain(.mapSelf, KAL_USERNS_STEP_UNSHARE, EPERM, caps: 0).contains("no seccomp filter, AppArmor restriction or sysctl"))
    }

    @Test func apparmorShowsWhenTheMapIsRefused() {
        var facts = Self.open
        facts.apparmorRestrict = 1
        let text = explain(.mapSelf, KAL_USERNS_STEP_UID_MAP, EPERM, caps: 0, facts: facts)
        #expect(text.contains("AppArmor") && text.contains("uid_map"), "\(text)")
    }

    @Test func capabilityNames() {
        #expect(CapabilitySet.names(0) == "none")
        #expect(CapabilitySet.names(1 << 12 | 1 << 31) == "CAP_NET_ADMIN,CAP_SETFCAP")
        #expect(CapabilitySet.names(0x1ff_ffff_ffff) == "all")
        #expect(CapabilitySet.names(0x1ff_feff_ffff) == "all but CAP_SYS_RESOURCE")
    }

    @Test func routeOrder() {
        #expect(UserNamespaceRoute.candidates(euid: 0) == [.mapRoot, .dropUID])
        #expect(UserNamespaceRoute.candidates(euid: 1000) == [.mapSelf])
    }
}
