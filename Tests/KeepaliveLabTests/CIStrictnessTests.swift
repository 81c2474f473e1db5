import Foundation
import KeepaliveNet
import Testing
@testable import KeepaliveLab

/// In CI as root every privileged prerequisite must hold: a missing one is a failure that names it.
@Suite(.enabled(if: CIGate.strict, "only with CI=true as root"))
struct CIStrictnessTests {
    @Test func everyPrivilegedPrerequisiteHolds() {
        let prerequisites: [(String, String?)] = [
            ("lab trials (namespaces, the built binary)", TrialPrerequisites.missing),
            ("uml backend (Debian's user-mode-linux)", BackendPrerequisites.umlMissing),
            ("rootless and capability-set tests (setpriv)", BackendPrerequisites.rootlessMissing),
            ("virtual time (the lab kernel)", VirtualTimePrerequisites.missing),
            ("network namespaces", Privileges.canCreateNamespaces ? nil : "this process cannot create network namespaces"),
        ]
        for (name, missing) in prerequisites {
            #expect(missing == nil, "CI=true as root, but \(name) cannot run: \(missing ?? "")")
        }
    }
}
