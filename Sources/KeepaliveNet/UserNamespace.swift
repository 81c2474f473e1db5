import CKeepaliveShim
import Foundation

/// Rootless mode: a user namespace in which this process is root, plus a network namespace owned by
/// it. No host privilege is needed where the kernel allows unprivileged user namespaces.
public enum UserNamespace {
    /// unshare(CLONE_NEWUSER | CLONE_NEWNET) by the first route that works here (`UserNamespaceRoute`),
    /// with this process root inside. Must run before the process has threads (user namespaces
    /// require a single-threaded caller).
    @discardableResult
    public static func enterUnprivileged(routes: [UserNamespaceRoute] = UserNamespaceRoute.candidates(),
                                         dropTo uid: UInt32 = UserNamespaceRoute.unprivilegedUID) throws -> UserNamespaceEntry {
        try enter(flags: KAL_CLONE_NEWUSER | KAL_CLONE_NEWNET, routes: routes, dropTo: uid)
    }
}
