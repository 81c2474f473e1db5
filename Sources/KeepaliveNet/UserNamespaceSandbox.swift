import CKeepaliveShim
import Foundation

extension UserNamespace {
    /// Where the sandbox keeps temporary files (a directory in its private `/run`).
    public static let sandboxTemporaryDirectory = "/run/kal-tmp"

    /// Turns the calling process into the rootless backend's sandbox: a new user namespace in which
    /// the caller's uid and gid are root, a private mount namespace and a fresh network namespace.
    /// A private tmpfs replaces `/run`, so `/run/netns` and `/run/keepalive-lab` work unchanged and
    /// whatever is created there vanishes with the last process of the sandbox.
    ///
    /// No host privilege is needed where the kernel allows unprivileged user namespaces. The caller
    /// must be single-threaded (the kernel refuses CLONE_NEWUSER otherwise): call it first thing in
    /// a process, before any Dispatch or Task use. The corresponding C function is `unshare`.
    public static func enterSandbox() throws {
        let uid = getuid(), gid = getgid()
        let threads = threadCount()
        guard threads == 1 else {
            throw SystemCallError("enter a user namespace: the process already has \(threads) threads", errno: EINVAL)
        }
        // After the uid change below /proc/self would become root-owned and uid_map unwritable.
        _ = kal_set_dumpable()
        guard kal_unshare(KAL_CLONE_NEWUSER | KAL_CLONE_NEWNS | KAL_CLONE_NEWNET) == 0 else {
            throw SystemCallError("unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWNET) as uid \(uid)")
        }
        try write("deny", to: "/proc/self/setgroups")
        try write("0 \(uid) 1", to: "/proc/self/uid_map")
        try write("0 \(gid) 1", to: "/proc/self/gid_map")
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
    }

    static func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 1
    }
}
