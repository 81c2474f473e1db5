import CKeepaliveShim
import Foundation

extension UserNamespace {
    /// Where the sandbox keeps temporary files (a directory in its private `/run`).
    public static let sandboxTemporaryDirectory = "/run/kal-tmp"

    /// Turns the calling process into the rootless backend's sandbox: a new user namespace in which
    /// the caller is root (by the first route that works: see `UserNamespaceRoute`), a private mount
    /// namespace and a fresh network namespace.
    /// A private tmpfs replaces `/run`, so `/run/netns` and `/run/keepalive-lab` work unchanged and
    /// whatever is created there vanishes with the last process of the sandbox.
    ///
    /// No host privilege is needed where the kernel allows unprivileged user namespaces. The caller
    /// must be single-threaded (the kernel refuses CLONE_NEWUSER otherwise): call it first thing in
    /// a process, before any Dispatch or Task use. The corresponding C function is `unshare`.
    /// `routes`: the ways in to try, in order (`UserNamespaceRoute`); `uid`: what `dropUID` becomes.
    /// Returns how it got in; throws `UserNamespaceRefused` naming what refused each route.
    @discardableResult
    public static func enterSandbox(routes: [UserNamespaceRoute] = UserNamespaceRoute.candidates(),
                                    dropTo uid: UInt32 = UserNamespaceRoute.unprivilegedUID) throws -> UserNamespaceEntry {
        let threads = threadCount()
        guard threads == 1 else {
            throw SystemCallError("enter a user namespace: the process already has \(threads) threads", errno: EINVAL)
        }
        let entry = try enter(flags: KAL_CLONE_NEWUSER | KAL_CLONE_NEWNS | KAL_CLONE_NEWNET, routes: routes, dropTo: uid)
        // Nothing mounted in the sandbox may propagate back to the host's mount namespace.
        guard mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0 else {
            throw SystemCallError("make the sandbox's mounts private")
        }
        guard mount("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755") == 0 else {
            throw SystemCallError("mount a private tmpfs on /run")
        }
        for (path, mode) in [(NetworkNamespace.directory, 0o755), (RunOwnership.directory, 0o755),
                             (sandboxTemporaryDirectory, 0o1777)] {
            guard mkdir(path, mode_t(mode)) == 0 || errno == EEXIST else { throw SystemCallError("mkdir \(path)") }
        }
        return entry
    }

    static func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 1
    }
}
